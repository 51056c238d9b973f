"""Store URLs: ``open_store(url)`` parses a URL once and opens the backend its scheme names.

Backends: ``memory://`` (tests, benchmarks), ``sqlite:///PATH`` (the embedded default, WAL, durable) and
``redis://`` / ``rediss://`` (production; password and database from the URL). Query parameters of the URL
override the options given in code, e.g. ``sqlite:///var/b.db?max_behaviors=200000``;
``redis://host:port?cluster=true`` talks to a Redis Cluster, ``?password_file=PATH`` reads the Redis password from a
file (so that it never shows on a command line); the Redis connection itself is made by ``retrieval.redis_client``.
"""

from __future__ import annotations

from dataclasses import fields, replace
from urllib.parse import parse_qsl, urlsplit

from retrieval.errors import InvalidStoreURL
from retrieval.store.base import BehaviorStore, StoreOptions

CLIENT_PARAMS = frozenset({"cluster", "password_file", "ssl_cert_reqs"})  # read by retrieval.redis_client
NOT_IN_URL = frozenset({"actions", "password"})  # actions are parsed apart; a password never comes as an option


def options_from_query(query: str, base: StoreOptions) -> StoreOptions:
    """Apply ``?max_behaviors=...&per_category=...`` query parameters to ``base``."""
    known = {f.name: f.type for f in fields(StoreOptions) if f.name not in NOT_IN_URL}
    updates: dict[str, object] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "actions":
            try:
                updates[key] = frozenset(int(v) for v in value.split(","))
            except ValueError as exc:
                raise InvalidStoreURL(f"actions={value!r} must be comma-separated integers") from exc
        elif key == "key_prefix":
            updates[key] = value
        elif key in known:
            try:
                updates[key] = float(value) if key.endswith("_s") and "timeout" in key else int(value)
            except ValueError as exc:
                raise InvalidStoreURL(f"{key}={value!r} must be a number") from exc
        elif key not in CLIENT_PARAMS:
            raise InvalidStoreURL(f"unknown store option {key!r}; known: {sorted([*known, 'actions'])}")
    return replace(base, **updates)  # type: ignore[arg-type]


def cluster_from_query(query: str) -> bool:
    """``?cluster=true`` (or 1/yes) selects the Redis Cluster client; false/0/no or absent: a single server."""
    values = [v.lower() for k, v in parse_qsl(query, keep_blank_values=True) if k == "cluster"]
    if not values:
        return False
    if values[-1] in {"true", "1", "yes"}:
        return True
    if values[-1] in {"false", "0", "no"}:
        return False
    raise InvalidStoreURL(f"cluster={values[-1]!r} must be true or false")


def open_store(url: str, options: StoreOptions | None = None) -> BehaviorStore:
    """Open the backend named by ``url``'s scheme."""
    parts = urlsplit(url)
    opts = options_from_query(parts.query, options or StoreOptions())
    scheme = parts.scheme.lower()
    if scheme == "memory":
        from retrieval.store.memory import MemoryStore

        return MemoryStore(opts)
    if scheme == "sqlite":
        from retrieval.store.sqlite import SqliteStore

        path = url.split("://", 1)[1].split("?", 1)[0]
        if not path.startswith("/") or path in {"/", "//", "/:memory:"}:
            raise InvalidStoreURL(f"sqlite URL {url!r} must look like sqlite:///relative/or/absolute/path.db")
        return SqliteStore(path[1:], opts)  # sqlite:///rel.db -> rel.db; sqlite:////abs.db -> /abs.db
    if scheme in {"redis", "rediss"}:
        from retrieval.store.redis import RedisStore

        return RedisStore(url, opts)
    raise InvalidStoreURL(f"store URL {url!r}: unknown scheme {scheme!r}; use memory://, sqlite:///PATH or redis://")

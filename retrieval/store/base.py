"""The behaviour-store contract: the protocol every backend implements, its options, and ``open_store(url)``.

Backends: ``memory://`` (tests, benchmarks), ``sqlite:///PATH`` (the embedded default, WAL, durable) and
``redis://`` / ``rediss://`` (production; password and database from the URL). Each takes its options once, in
its constructor. Query parameters of the URL override the options given in code, e.g.
``sqlite:///var/b.db?max_behaviors=200000``; ``redis://host:port?cluster=true`` talks to a Redis Cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from retrieval.errors import InvalidStoreURL
from retrieval.events import DEFAULT_ACTIONS, Behaviors, EventBatch


@dataclass(frozen=True)
class StoreOptions:
    """Options shared by every backend."""

    max_behaviors: int = 54_000  # per-user cap on the full sequence; oldest evicted first
    per_category: int = 200  # cap of each per-category list (SIM's User Behavior Tree cuts at 200)
    dedupe_window_s: int = 7 * 86_400  # an event_id is remembered this long after it was first seen
    connect_timeout_s: float = 1.0
    command_timeout_s: float = 1.0
    actions: frozenset[int] = field(default=DEFAULT_ACTIONS)
    key_prefix: str = "lr"  # Redis key namespace (tests use their own)

    def __post_init__(self) -> None:
        if self.max_behaviors < 1:
            raise InvalidStoreURL(f"max_behaviors={self.max_behaviors} must be >= 1")
        if self.per_category < 1:
            raise InvalidStoreURL(f"per_category={self.per_category} must be >= 1")
        if self.dedupe_window_s < 1:
            raise InvalidStoreURL(f"dedupe_window_s={self.dedupe_window_s} must be >= 1")
        for name in ("connect_timeout_s", "command_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidStoreURL(f"{name}={value!r} must be a finite number > 0")
        if not self.actions or any(not 0 <= a <= 255 for a in self.actions):
            raise InvalidStoreURL(f"actions={sorted(self.actions)} must be a non-empty set of integers in [0, 255]")


@dataclass(frozen=True)
class UserHistory:
    """What one read returns; every array is of BEHAVIOR_DTYPE, oldest first."""

    length: int  # the user's stored sequence length
    recent: Behaviors  # the last ``recent`` behaviours
    by_category: dict[int, Behaviors]  # each requested category -> its last ``per_category`` behaviours
    full: Behaviors | None  # the whole sequence, when asked for


@runtime_checkable
class BehaviorStore(Protocol):
    """A store of lifelong behaviour sequences, one per user."""

    options: StoreOptions

    def append(self, events: EventBatch) -> tuple[int, int]:
        """Validate and store a batch atomically per user: (accepted, duplicates).

        A batch with an invalid event raises InvalidEvent and stores nothing. An event whose event_id was seen
        within the dedupe window (in this batch or before) counts as a duplicate and is not stored again.
        """
        ...

    def read(
        self,
        user_id: str,
        *,
        recent: int = 50,
        categories: Sequence[int] = (),
        per_category: int | None = None,
        full: bool = False,
    ) -> UserHistory:
        """One round trip: the last ``recent`` behaviours, the last ``per_category`` of each category, the full
        sequence on request. An unknown user reads as empty."""
        ...

    def length(self, user_id: str) -> int: ...

    def delete(self, user_id: str) -> bool:
        """Erase every key/row of the user; True when something was there."""
        ...

    def ping(self) -> None:
        """Return when the backend answers; raise StoreUnavailable otherwise."""
        ...

    def close(self) -> None: ...


def options_from_query(query: str, base: StoreOptions) -> StoreOptions:
    """Apply ``?max_behaviors=...&per_category=...`` query parameters to ``base``."""
    known = {f.name: f.type for f in fields(StoreOptions) if f.name != "actions"}
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
        elif key not in {"ssl_cert_reqs", "cluster"}:
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

        return RedisStore(url.split("?", 1)[0], opts, cluster=cluster_from_query(parts.query))
    raise InvalidStoreURL(f"store URL {url!r}: unknown scheme {scheme!r}; use memory://, sqlite:///PATH or redis://")

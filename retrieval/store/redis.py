"""``redis://`` / ``rediss://``: the production behaviour store (password and database from the URL).

Layout (pinned by tests/integration/test_redis_layout.py). For key prefix ``P`` (``options.key_prefix``) and user
``U`` every key carries the hash tag ``{U}``, so one user lives in one Cluster slot and the append script may touch
all of its keys::

    P:{U}:seq   string  the full sequence: packed 21-byte little-endian records (retrieval.events.pack), sorted
                        by (ts, arrival). The live sequence is its LAST max_behaviors records: the string may carry
                        up to ``margin = max(1, max_behaviors // 64)`` evicted records in front, cut off by the
                        append script when it outgrows the margin (one rewrite per ``margin`` appended records
                        instead of one per append); reads drop them client-side.
    P:{U}:cat   hash    category_id (decimal) -> packed records of that category among the live sequence, its
                        newest min(per_category, count) in time order (SIM's User Behavior Tree: one HMGET of the
                        candidates' distinct categories).
    P:{U}:cnt   hash    category_id (decimal) -> how many live records of that category the sequence holds; on
                        eviction the category list is cut to this count, so an evicted event is never returned.
    P:{U}:eid   zset    event_id -> first-seen server time (ms); members older than dedupe_window_s are dropped
                        by each append; the key expires dedupe_window_s after the last new id.

Writes: ``append`` validates the whole batch (nothing is sent on InvalidEvent), drops ids repeated inside the
batch (first arrival wins) and sorts each user's records stably by ts and by (category, ts), vectorised over the
batch (``retrieval.store.redis_batch``); then ONE Lua script call per user (``retrieval.store.redis_lua``:
dedupe, merge, cap, category lists, atomically), all users of a batch pipelined in one round trip (EVALSHA; the
script is loaded only on NOSCRIPT). A batch is atomic per user, not across users. (Redis does not roll a script
back: only foreign data in a user's keys, e.g. a WRONGTYPE, could stop the script half-way; it raises StoreError.)

Reads: ONE round trip (MULTI/EXEC, a consistent snapshot): ``GET seq`` when the full sequence is asked for (recent
and length are cut from it), otherwise ``STRLEN seq`` + ``GETRANGE seq -21*recent -1``; plus ``HMGET cat c1 c2 ...``.
Arrays are zero-copy read-only views of the reply bytes.

Memory: Redis grows an APPENDed string greedily (doubling below 1 MB, +1 MB above), so a user's ``seq`` may
occupy up to about twice its packed bytes (a 54k user: 1.1 MB of records in 1.1-2.2 MB); the rewrite that cuts
the dead prefix allocates exactly. ``longrank bench store`` reports the measured ``bytes_per_event``.

Redis Cluster: ``open_store("redis://host:port?cluster=true")`` (or ``RedisStore(url, cluster=True)``) uses
redis-py's ``RedisCluster`` with the URL's node as the start-up node (the rest of the cluster is discovered). Nothing
else changes: a user's keys share the ``{U}`` hash tag, hence one slot, so the append script runs on the one node
owning it, a read is still one MULTI/EXEC on that node (a single-slot cluster transaction), and a multi-user append
is one pipeline that redis-py splits into one batch per node (still atomic per user, as on a single server). The
script is loaded on every primary on NOSCRIPT. Only database 0 exists on a cluster.

Connections: ``redis.Redis.from_url`` (hiredis parser when installed), connect timeout
``options.connect_timeout_s``, command timeout ``options.command_timeout_s``, health check after 30 s idle, no
hidden retries inside redis-py: reads, length, delete and ping retry once after a connection error (they are
idempotent); append never retries (a lost reply may have applied; clients resend with event ids). redis-py
exceptions never leak: connection errors raise StoreUnavailable, timeouts StoreTimeout, anything else StoreError,
each naming the URL without its password.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry

from retrieval.errors import InvalidStoreURL, StoreError, StoreTimeout, StoreUnavailable
from retrieval.events import BEHAVIOR_DTYPE, RECORD_SIZE, USER_ID_PATTERN, Behaviors, EventBatch, empty_behaviors
from retrieval.store.base import StoreOptions, UserHistory
from retrieval.store.redis_batch import split_by_user
from retrieval.store.redis_lua import APPEND_LUA, APPEND_SHA

T = TypeVar("T")
HEALTH_CHECK_INTERVAL_S = 30


def redact_url(url: str) -> str:
    """The URL with any user/password replaced by ``***`` (safe for logs and error messages)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def trim_margin(max_behaviors: int) -> int:
    """How many evicted records the stored string may carry in front of the live ones."""
    return max(1, max_behaviors // 64)


@dataclass(frozen=True, slots=True)
class UserKeys:
    """The Redis keys of one user (see the module docstring)."""

    seq: str
    cat: str
    cnt: str
    eid: str

    def all(self) -> tuple[str, str, str, str]:
        return (self.seq, self.cat, self.cnt, self.eid)


def _view(blob: bytes | None, last: int) -> Behaviors:
    """The last ``last`` records of ``blob`` as a zero-copy array (empty for None or last <= 0)."""
    if not blob or last <= 0:
        return empty_behaviors()
    n = len(blob) // RECORD_SIZE
    if n * RECORD_SIZE != len(blob):
        raise StoreError(f"stored behaviours have {len(blob)} bytes, not a multiple of {RECORD_SIZE}")
    skip = max(0, n - last)
    return np.frombuffer(blob, dtype=BEHAVIOR_DTYPE, offset=skip * RECORD_SIZE)


class RedisStore:
    """A BehaviorStore on Redis: one packed string per user plus per-category lists, written by one Lua script."""

    def __init__(self, url: str, options: StoreOptions | None = None, *, cluster: bool = False) -> None:
        self.options = options or StoreOptions()
        self.cluster = cluster
        self._url = url  # holds the password: never log it (safe_url is the redacted form)
        self.safe_url = redact_url(url)
        prefix = self.options.key_prefix
        if not prefix or "{" in prefix or "}" in prefix:
            raise InvalidStoreURL(f"key_prefix={prefix!r} must be non-empty and free of '{{' and '}}' (hash tags)")
        parts = urlsplit(url)
        if parts.scheme.lower() not in {"redis", "rediss"}:
            raise InvalidStoreURL(f"store URL {self.safe_url!r}: RedisStore needs redis:// or rediss://")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise InvalidStoreURL(f"store URL {self.safe_url!r}: the path must be a database number, like /0")
        if cluster and db not in {"", "0"}:
            raise InvalidStoreURL(f"store URL {self.safe_url!r}: a Redis Cluster has only database 0")
        connection: dict[str, Any] = {
            "socket_connect_timeout": self.options.connect_timeout_s,
            "socket_timeout": self.options.command_timeout_s,
            "decode_responses": False,
            "health_check_interval": HEALTH_CHECK_INTERVAL_S,
            "retry": Retry(NoBackoff(), 0),
        }
        self._lock = threading.Lock()
        self._cluster_client: RedisCluster | None = None
        self._cluster_args = (urlunsplit(parts._replace(path="")), connection)
        self._single: redis.Redis | None = None
        if not cluster:
            try:
                self._single = redis.Redis.from_url(url, **connection)
            except ValueError as exc:
                raise InvalidStoreURL(f"store URL {self.safe_url!r}: {exc}") from exc
        self._margin = trim_margin(self.options.max_behaviors)
        self._window_ms = self.options.dedupe_window_s * 1000

    def __repr__(self) -> str:
        mode = ", cluster=True" if self.cluster else ""
        return f"RedisStore({self.safe_url!r}, key_prefix={self.options.key_prefix!r}{mode})"

    @property
    def _client(self) -> redis.Redis | RedisCluster:
        """The connection: a ``redis.Redis``, or a ``RedisCluster`` created on first use (it discovers the cluster's
        topology when created, so a store can be opened, and a service start, while the cluster is still down)."""
        if self._single is not None:
            return self._single
        with self._lock:
            if self._cluster_client is None:
                url, connection = self._cluster_args
                try:
                    self._cluster_client = RedisCluster.from_url(url, **connection)
                except ValueError as exc:
                    raise InvalidStoreURL(f"store URL {self.safe_url!r}: {exc}") from exc
                except (RedisClusterException, redis.ConnectionError, redis.TimeoutError) as exc:
                    raise StoreUnavailable(f"redis cluster at {self.safe_url} cannot be reached: {exc}") from exc
            return self._cluster_client

    @property
    def client(self) -> Any:
        """The underlying redis-py client, ``redis.Redis`` or ``RedisCluster`` (benchmarks and layout tests read raw
        keys with it)."""
        return self._client

    def keys(self, user_id: str) -> UserKeys:
        base = f"{self.options.key_prefix}:{{{user_id}}}"
        return UserKeys(seq=f"{base}:seq", cat=f"{base}:cat", cnt=f"{base}:cnt", eid=f"{base}:eid")

    # -- writes -------------------------------------------------------------------------------------------------

    def append(self, events: EventBatch) -> tuple[int, int]:
        events.validate(actions=self.options.actions)
        parts, duplicates = split_by_user(events)
        if not parts:
            return 0, duplicates
        fixed = (self.options.max_behaviors, self.options.per_category, self._margin, self._window_ms)
        calls: list[list[Any]] = []
        for part in parts:
            args: list[Any] = [*self.keys(part.user_id).all(), part.by_time, *fixed, part.by_category, part.groups]
            if part.event_ids is not None:
                args.append(part.event_ids)
            calls.append(args)
        with self._errors("append"):
            results = self._eval_all(calls)
        accepted = sum(int(r[0]) for r in results)
        return accepted, duplicates + sum(int(r[1]) for r in results)

    def _eval_all(self, calls: list[list[Any]]) -> list[Any]:
        """Run the append script once per call, pipelined; load it and rerun the calls that met NOSCRIPT."""
        results = self._pipeline_evalsha(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            self._client.script_load(APPEND_LUA)
            for i, r in zip(missing, self._pipeline_evalsha([calls[i] for i in missing]), strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    def _pipeline_evalsha(self, calls: list[list[Any]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for args in calls:
            pipe.execute_command("EVALSHA", APPEND_SHA, 4, *args)
        return list(pipe.execute(raise_on_error=False))

    def delete(self, user_id: str) -> bool:
        if not USER_ID_PATTERN.fullmatch(user_id):
            return False
        keys = self.keys(user_id).all()
        return self._idempotent("delete", lambda: int(self._client.delete(*keys))) > 0

    # -- reads --------------------------------------------------------------------------------------------------

    def read(
        self,
        user_id: str,
        *,
        recent: int = 50,
        categories: Sequence[int] = (),
        per_category: int | None = None,
        full: bool = False,
    ) -> UserHistory:
        cap = self.options.max_behaviors
        n_cat = self.options.per_category if per_category is None else min(per_category, self.options.per_category)
        if recent < 0:
            raise ValueError(f"recent={recent} must be >= 0")
        if n_cat < 0:
            raise ValueError(f"per_category={per_category} must be >= 0")
        wanted = list(dict.fromkeys(int(c) for c in categories))
        if not USER_ID_PATTERN.fullmatch(user_id):  # append refuses such ids: nothing can be stored under them
            nothing = {c: empty_behaviors() for c in wanted}
            return UserHistory(0, empty_behaviors(), nothing, empty_behaviors() if full else None)
        keys = self.keys(user_id)
        ask_cats = bool(wanted) and n_cat > 0

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=True)
            if full:
                pipe.get(keys.seq)
            else:
                pipe.strlen(keys.seq)
                if recent > 0:
                    pipe.getrange(keys.seq, -min(recent, cap) * RECORD_SIZE, -1)
            if ask_cats:
                pipe.hmget(keys.cat, [str(c) for c in wanted])
            return list(pipe.execute())

        replies = self._idempotent("read", run)
        if full:
            seq = _view(replies[0], cap)
            length = len(seq)
            last = seq[length - recent :] if 0 < recent < length else (seq if recent > 0 else seq[:0])
        else:
            length = min(int(replies[0]) // RECORD_SIZE, cap)
            seq = None
            last = _view(replies[1], recent) if recent > 0 else empty_behaviors()
        by_category = {c: empty_behaviors() for c in wanted}
        if ask_cats:
            for c, blob in zip(wanted, replies[-1], strict=True):
                by_category[c] = _view(blob, n_cat)
        return UserHistory(length=length, recent=last, by_category=by_category, full=seq)

    def length(self, user_id: str) -> int:
        if not USER_ID_PATTERN.fullmatch(user_id):
            return 0
        key = self.keys(user_id).seq
        n = self._idempotent("length", lambda: int(self._client.strlen(key))) // RECORD_SIZE
        return min(n, self.options.max_behaviors)

    def ping(self) -> None:
        self._idempotent("ping", lambda: self._client.ping())

    def close(self) -> None:
        if self._single is not None:
            self._single.close()
        elif self._cluster_client is not None:
            self._cluster_client.close()

    # -- errors -------------------------------------------------------------------------------------------------

    def _idempotent(self, op: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; after a connection error (a stale pooled connection, a restarted server) try once more."""
        try:
            with self._errors(op):
                return fn()
        except StoreTimeout:
            raise
        except StoreUnavailable:
            with self._errors(op):
                return fn()

    @contextmanager
    def _errors(self, op: str) -> Iterator[None]:
        try:
            yield
        except redis.TimeoutError as exc:
            raise StoreTimeout(
                f"redis {op} at {self.safe_url} timed out (connect {self.options.connect_timeout_s}s, "
                f"command {self.options.command_timeout_s}s): {exc}"
            ) from exc
        except redis.ConnectionError as exc:
            raise StoreUnavailable(f"redis {op} at {self.safe_url} failed: {exc}") from exc
        except (redis.RedisError, RedisClusterException) as exc:
            raise StoreError(f"redis {op} at {self.safe_url} failed: {exc}") from exc

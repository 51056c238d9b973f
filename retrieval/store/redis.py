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

Reads: ONE round trip, a plain pipeline (no MULTI/EXEC: Redis refuses to queue even a GET inside MULTI once it
is over maxmemory, and reads must keep working when the store is full): ``GET seq`` when the full sequence is asked
for (recent and length are cut from it), otherwise ``STRLEN seq`` + ``GETRANGE seq -21*recent -1``; plus
``HMGET cat c1 c2 ...``. Each command is atomic and the append script runs alone, so every part of a read sees a
whole append or none of it (two parts may straddle one: a read concurrent with an append). Arrays are zero-copy
read-only views of the reply bytes.

Full: the append script declares its flags (a ``#!lua`` shebang, no ``allow-oom``), so Redis over ``maxmemory``
refuses it WHOLE before it runs (``-OOM``, mapped to StoreFull: 503 + Retry-After) instead of letting its first,
non-deny-oom write (the id window's ZREMRANGEBYSCORE) open the door to the rest; a read-only replica refuses it the
same way (``-READONLY``, StoreReadOnly). ``ping(writable=True)`` runs a script with the same flags that writes
nothing: it fails exactly when an append would.

Memory: Redis grows an APPENDed string greedily (doubling below 1 MB, +1 MB above), so a user's ``seq`` may
occupy up to about twice its packed bytes (a 54k user: 1.1 MB of records in 1.1-2.2 MB); the rewrite that cuts
the dead prefix allocates exactly. ``longrank bench store`` reports the measured ``bytes_per_event``.

Redis Cluster: ``open_store("redis://host:port?cluster=true")`` uses redis-py's ``RedisCluster`` with the URL's
node as the start-up node (the rest of the cluster is discovered). Nothing else changes: a user's keys share the
``{U}`` hash tag, hence one slot, so the append script runs on the one node owning it, a read is one pipeline to
that node, and a multi-user append is one pipeline that redis-py splits into one batch per node (still atomic per
user, as on a single server). The script is loaded on every primary on NOSCRIPT. Only database 0 exists on a
cluster.

Connections and errors: ``retrieval.redis_client`` (the one factory shared with the impression counter and the
exploration log): explicit connect/command timeouts (``options.connect_timeout_s`` / ``command_timeout_s``), no
retries inside redis-py; reads, length, delete and ping run once more after a connection error when
``options.retries`` allows (the ranking read path uses 0: its budget is its budget); append never retries (a lost
reply may have applied; clients resend with event ids). redis-py exceptions never leak: they become StoreError
subclasses whose messages name no host (the redacted URL is in ``StoreError.where``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from retrieval.errors import InvalidStoreURL, StoreError
from retrieval.events import BEHAVIOR_DTYPE, RECORD_SIZE, USER_ID_PATTERN, Behaviors, EventBatch, empty_behaviors
from retrieval.redis_client import RedisConnection, RedisTarget, redact_url
from retrieval.store.base import StoreOptions, UserHistory
from retrieval.store.redis_batch import split_by_user
from retrieval.store.redis_lua import APPEND_LUA, APPEND_SHA, WRITE_PROBE_LUA

__all__ = ["RedisStore", "UserKeys", "redact_url", "trim_margin"]


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

    def __init__(self, url: str, options: StoreOptions | None = None, *, cluster: bool | None = None) -> None:
        self.options = options or StoreOptions()
        prefix = self.options.key_prefix
        if not prefix or "{" in prefix or "}" in prefix:
            raise InvalidStoreURL(f"key_prefix={prefix!r} must be non-empty and free of '{{' and '}}' (hash tags)")
        target = RedisTarget.parse(url, password=self.options.password, cluster=cluster)
        self.safe_url = target.safe_url
        self._redis = RedisConnection(target, connect_timeout_s=self.options.connect_timeout_s,
                                      command_timeout_s=self.options.command_timeout_s,
                                      retries=self.options.retries)  # fmt: skip
        self._margin = trim_margin(self.options.max_behaviors)
        self._window_ms = self.options.dedupe_window_s * 1000

    def __repr__(self) -> str:
        mode = ", cluster=True" if self.cluster else ""
        return f"RedisStore({self.safe_url!r}, key_prefix={self.options.key_prefix!r}{mode})"

    @property
    def cluster(self) -> bool:
        return self._redis.cluster

    @property
    def _client(self) -> Any:
        return self._redis.client

    @property
    def client(self) -> Any:
        """The underlying redis-py client, ``redis.Redis`` or ``RedisCluster`` (benchmarks and layout tests read raw
        keys with it)."""
        return self._redis.client

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
        results = self._redis.call("append", lambda: self._eval_all(calls))
        accepted = sum(int(r[0]) for r in results)
        return accepted, duplicates + sum(int(r[1]) for r in results)

    def _eval_all(self, calls: list[list[Any]]) -> list[Any]:
        """Run the append script once per call, pipelined; load it and rerun the calls that met NOSCRIPT."""
        results = self._pipeline_evalsha(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            self._client.script_load(APPEND_LUA)  # a cluster client loads it on every primary
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
        return self._redis.call("delete", lambda: int(self._client.delete(*keys)), idempotent=True) > 0

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
            pipe = self._client.pipeline(transaction=False)  # no MULTI: it is refused when Redis is full
            if full:
                pipe.get(keys.seq)
            else:
                pipe.strlen(keys.seq)
                if recent > 0:
                    pipe.getrange(keys.seq, -min(recent, cap) * RECORD_SIZE, -1)
            if ask_cats:
                pipe.hmget(keys.cat, [str(c) for c in wanted])
            return list(pipe.execute())

        replies = self._redis.call("read", run, idempotent=True)
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
        n = self._redis.call("length", lambda: int(self._client.strlen(key)), idempotent=True) // RECORD_SIZE
        return min(n, self.options.max_behaviors)

    def ping(self, *, writable: bool = False) -> None:
        self._redis.call("ping", lambda: self._client.ping(), idempotent=True)
        if writable:
            self._redis.call("write check", self._probe_writes, idempotent=True)

    def _probe_writes(self) -> None:
        """A script with the append script's flags that writes nothing: Redis refuses it exactly when it would
        refuse an append (over maxmemory, a read-only replica), on every primary of a cluster."""
        client = self._client
        if isinstance(client, RedisCluster):
            client.execute_command("EVAL", WRITE_PROBE_LUA, 0, target_nodes=RedisCluster.PRIMARIES)  # type: ignore[no-untyped-call]
        else:
            client.execute_command("EVAL", WRITE_PROBE_LUA, 0)

    def close(self) -> None:
        self._redis.close()

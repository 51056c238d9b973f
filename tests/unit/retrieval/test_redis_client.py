"""The one Redis client factory (retrieval/redis_client.py): URL parsing, the error mapping, the retry policy.

The error mapping is pure logic over redis-py's exception classes; the retry policy and the hidden-retry check run
against real sockets (a closed port; a server that accepts and never answers)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    DataError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from retrieval.errors import (
    InvalidStoreURL,
    StoreError,
    StoreFull,
    StoreLoading,
    StoreReadOnly,
    StoreRequestRefused,
    StoreTimeout,
    StoreUnavailable,
)
from retrieval.impressions import RedisImpressions
from retrieval.redis_client import RedisTarget, open_redis, redact_url, redis_errors, store_error
from retrieval.store.base import StoreOptions


@pytest.mark.parametrize(
    ("exc", "cls", "kind"),
    [
        (redis.ConnectionError("Error 111 connecting to 10.0.0.7:6379. Connection refused."), StoreUnavailable,
         "store_unavailable"),
        (redis.TimeoutError("Timeout reading from 10.0.0.7:6379"), StoreTimeout, "store_timeout"),
        (BusyLoadingError("Redis is loading the dataset in memory"), StoreLoading, "store_loading"),
        (ReadOnlyError("You can't write against a read only replica."), StoreReadOnly, "store_read_only"),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), StoreFull, "store_full"),
        # inside a script Redis prefixes the original error; a pipeline may hand it over as a plain ResponseError
        (ResponseError("OOM command not allowed when used memory > 'maxmemory'. script: abc, on @user_script:9."),
         StoreFull, "store_full"),
        (ResponseError("READONLY You can't write against a read only replica. script: abc"), StoreReadOnly,
         "store_read_only"),
        (ResponseError("BUSY Redis is busy running a script."), StoreUnavailable, "store_unavailable"),
        (ClusterDownError("The cluster is down"), StoreUnavailable, "store_unavailable"),
        (TryAgainError("Multiple keys request during rehashing of slot"), StoreUnavailable, "store_unavailable"),
        (ResponseError("ERR string exceeds maximum allowed size (proto-max-bulk-len)"), StoreRequestRefused,
         "store_request_refused"),
        (DataError("Invalid input of type: 'dict'"), StoreRequestRefused, "store_request_refused"),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), StoreError,
         "store_error"),
    ],
)
def test_every_redis_error_maps_to_a_typed_store_error_naming_no_host(
    exc: Exception, cls: type[StoreError], kind: str
) -> None:
    mapped = store_error(exc, "append", "redis://***@10.0.0.7:6379/0")
    assert type(mapped) is cls and mapped.kind == kind
    assert "10.0.0.7" not in str(mapped) and "6379" not in str(mapped)
    assert mapped.where == "redis://***@10.0.0.7:6379/0"
    with pytest.raises(cls), redis_errors("read"):
        raise exc


def test_conditions_that_pass_are_503_material_and_client_faults_are_not() -> None:
    for cls in (StoreTimeout, StoreLoading, StoreReadOnly, StoreFull):
        assert issubclass(cls, StoreUnavailable) and cls.retry_after_s >= 1
    assert not issubclass(StoreRequestRefused, StoreUnavailable)


def test_redact_url_drops_credentials_and_query() -> None:
    assert redact_url("redis://user:pw@h:1/2?password_file=/x&cluster=true") == "redis://***@h:1/2"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_target_reads_cluster_and_password_file_from_the_url(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    t = RedisTarget.parse(f"redis://h:7000/0?cluster=true&password_file={secret}")
    assert t.cluster and t.password == "s3cret" and t.url == "redis://h:7000/0"
    assert not RedisTarget.parse("redis://h:7000/0").cluster
    assert RedisTarget.parse("redis://h:7000/0", password="x").password == "x"
    with pytest.raises(InvalidStoreURL, match="only database 0"):
        RedisTarget.parse("redis://h:7000/3?cluster=true")
    with pytest.raises(InvalidStoreURL, match="password_file"):
        RedisTarget.parse(f"redis://h:7000/0?password_file={tmp_path / 'missing'}")
    with pytest.raises(InvalidStoreURL, match="database number"):
        RedisTarget.parse("redis://h:7000/x")


def test_the_store_takes_its_password_from_the_options_not_the_url() -> None:
    opts = StoreOptions(password="pw-from-env")
    assert "pw-from-env" not in repr(opts)  # options print without it
    t = RedisTarget.parse("redis://h:1/0", password=opts.password)
    assert t.password == "pw-from-env" and "pw" not in t.safe_url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_idempotent_calls_retry_once_when_allowed_and_never_otherwise() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise redis.ConnectionError("Connection reset by peer")  # a stale pooled connection
        return "ok"

    conn = open_redis(f"redis://127.0.0.1:{closed_port()}/0", retries=1)
    assert conn.call("read", flaky, idempotent=True) == "ok" and len(attempts) == 2
    attempts.clear()
    with pytest.raises(StoreUnavailable):
        conn.call("append", flaky)  # not idempotent: never twice
    assert len(attempts) == 1
    attempts.clear()
    budget = open_redis(f"redis://127.0.0.1:{closed_port()}/0", retries=0)  # inside a read budget
    with pytest.raises(StoreUnavailable):
        budget.call("read", flaky, idempotent=True)
    assert len(attempts) == 1


def test_d9_the_impression_counter_makes_one_attempt_against_a_hung_redis(
    silent_server: tuple[int, list[socket.socket]],
) -> None:
    """D9: the counter inherited redis-py's default retries (each a new connection and a full timeout), so an outage
    stalled every explored request for several timeouts. Now: one connection, one timeout, a typed error."""
    port, accepted = silent_server
    counter = RedisImpressions(f"redis://127.0.0.1:{port}/0",
                               StoreOptions(connect_timeout_s=0.2, command_timeout_s=0.2, retries=0))
    with pytest.raises(StoreTimeout):
        counter.counts([1, 2, 3])
    assert len(accepted) == 1  # one connection, one timeout: no hidden reconnect-and-retry
    with pytest.raises(StoreTimeout):
        counter.add([1])
    assert len(accepted) == 2
    counter.close()

"""RedisStore's URL handling and error wrapping, without a Redis server: the URL's password and database reach
the client, bad URLs and key prefixes are refused, and an unreachable or silent server raises the store's own
errors (never redis-py's) naming the URL without its password."""

from __future__ import annotations

import socket

import pytest
import redis

from retrieval.errors import InvalidStoreURL, StoreError, StoreTimeout, StoreUnavailable
from retrieval.events import EventBatch
from retrieval.store.base import StoreOptions
from retrieval.store.factory import open_store
from retrieval.store.redis import RedisStore, redact_url

TS0 = 1_600_000_000


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_event() -> EventBatch:
    return EventBatch.from_columns(user_id=["u"], item_id=[1], category_id=[2], ts=[TS0])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/2", "redis://***@h:6379/2"),
        ("rediss://user:s3cret@h:6380/0", "rediss://***@h:6380/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_redact_url_hides_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_password_db_and_timeouts_reach_the_client() -> None:
    opts = StoreOptions(connect_timeout_s=0.25, command_timeout_s=0.5, key_prefix="t")
    store = RedisStore("redis://:pw@example.invalid:6390/3", opts)
    kwargs = store.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("example.invalid", 6390, 3, "pw")
    assert kwargs["socket_connect_timeout"] == 0.25 and kwargs["socket_timeout"] == 0.5
    assert kwargs["decode_responses"] is False
    assert "pw" not in repr(store)
    tls = RedisStore("rediss://h:6380/0", opts)
    assert issubclass(tls.client.connection_pool.connection_class, redis.SSLConnection)


def test_open_store_builds_a_redis_store_with_query_options() -> None:
    store = open_store("redis://127.0.0.1:1/0?max_behaviors=10&key_prefix=abc")
    assert isinstance(store, RedisStore)
    assert store.options.max_behaviors == 10 and store.options.key_prefix == "abc"
    assert store.keys("u").seq == "abc:{u}:seq"


@pytest.mark.parametrize("prefix", ["", "a{b", "x}"])
def test_key_prefix_with_hash_tag_braces_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidStoreURL, match="key_prefix"):
        RedisStore("redis://127.0.0.1:6379/0", StoreOptions(key_prefix=prefix))


@pytest.mark.parametrize("url", ["redis://h:notaport/0", "redis://h:6379/notadb", "http://h:6379/0"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        RedisStore(url).ping()


def test_closed_port_raises_store_unavailable_naming_no_host_and_no_password() -> None:
    port = closed_port()
    store = RedisStore(f"redis://:s3cret@127.0.0.1:{port}/0", StoreOptions(connect_timeout_s=0.5))
    calls = {
        "ping": store.ping,
        "read": lambda: store.read("u", categories=[1], full=True),
        "append": lambda: store.append(one_event()),
        "length": lambda: store.length("u"),
        "delete": lambda: store.delete("u"),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable) as info:
            call()
        message = str(info.value)
        assert "127.0.0.1" not in message and str(port) not in message, name  # messages reach HTTP clients
        assert info.value.where == f"redis://***@127.0.0.1:{port}/0", name  # the log's view, redacted
        assert "s3cret" not in message + repr(info.value.where), name
        assert not isinstance(info.value, redis.RedisError)
    store.close()


def test_a_silent_server_raises_store_timeout(silent_server: tuple[int, list[socket.socket]]) -> None:
    store = RedisStore(f"redis://127.0.0.1:{silent_server[0]}/0", StoreOptions(command_timeout_s=0.2))
    with pytest.raises(StoreTimeout, match="did not answer in time"):
        store.ping()
    with pytest.raises(StoreTimeout):
        store.append(one_event())
    store.close()


def test_invalid_batch_raises_before_any_connection() -> None:
    store = RedisStore(f"redis://127.0.0.1:{closed_port()}/0")
    bad = EventBatch.from_columns(user_id=["u"], item_id=[-1], category_id=[2], ts=[TS0])
    with pytest.raises(StoreError) as info:
        store.append(bad)
    assert not isinstance(info.value, StoreUnavailable)
    assert "item_id" in str(info.value)


def test_invalid_user_ids_read_empty_without_a_round_trip() -> None:
    store = RedisStore(f"redis://127.0.0.1:{closed_port()}/0")
    h = store.read("no such {user}", categories=[3], full=True)
    assert h.length == 0 and set(h.by_category) == {3} and h.full is not None and len(h.full) == 0
    assert store.length("bad user") == 0 and store.delete("bad user") is False

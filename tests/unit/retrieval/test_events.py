"""retrieval.events: validation rules (each named in its message), the packed record layout, merging in time order."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from retrieval.errors import InvalidEvent
from retrieval.events import (
    BEHAVIOR_DTYPE,
    FUTURE_SLACK_S,
    MAX_CATEGORY_ID,
    MAX_ITEM_ID,
    MIN_TS,
    RECORD_SIZE,
    Event,
    EventBatch,
    empty_behaviors,
    merge_in_time_order,
    pack,
    unpack,
)

NOW = 1_700_000_000


def one(**overrides: Any) -> EventBatch:
    """A batch of two valid events with row 1 changed by ``overrides``."""
    cols: dict[str, list[Any]] = {
        "user_id": ["u1", "u1"],
        "item_id": [1, 2],
        "category_id": [3, 4],
        "ts": [NOW - 10, NOW - 5],
        "action": [0, 1],
        "event_id": ["a", "b"],
    }
    for key, value in overrides.items():
        cols[key][1] = value
    return EventBatch.from_columns(**cols)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("user_id", "", "1-128 characters of [A-Za-z0-9_.:-]"),
        ("user_id", "x" * 129, "1-128 characters"),
        ("user_id", "has space", "1-128 characters"),
        ("user_id", "ünïcode", "1-128 characters"),
        ("event_id", "a/b", "1-128 characters"),
        ("event_id", "e" * 129, "1-128 characters"),
        ("item_id", -1, "an integer in [0, 2^63-1]"),
        ("category_id", -1, "an integer in [0, 2^31-1]"),
        ("category_id", MAX_CATEGORY_ID + 1, "an integer in [0, 2^31-1]"),
        ("ts", MIN_TS - 1, "unix seconds from 2000-01-01 to one day after now"),
        ("ts", NOW + FUTURE_SLACK_S + 1, "unix seconds from 2000-01-01"),
        ("action", 4, "one of [0, 1, 2, 3]"),
        ("action", -1, "one of [0, 1, 2, 3]"),
    ],
)
def test_each_rule_names_row_field_value_and_rule(field: str, value: Any, rule: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        one(**{field: value}).validate(now=NOW)
    err = info.value
    assert (err.row, err.field, err.value, rule in err.rule) == (1, field, value, True)
    assert str(err).startswith(f"event 1: {field}={value!r} is invalid: must be ")
    assert rule in str(err)


def test_limits_themselves_are_valid() -> None:
    b = EventBatch.from_columns(
        user_id=["x" * 128, "A-z_0.9:-"],
        item_id=[0, MAX_ITEM_ID],
        category_id=[0, MAX_CATEGORY_ID],
        ts=[MIN_TS, NOW + FUTURE_SLACK_S],
        action=[0, 3],
        event_id=["e" * 128, None],
    )
    b.validate(now=NOW)
    assert b.problems(now=NOW) == []


def test_configured_actions_replace_the_default_set() -> None:
    b = one(action=7)
    b.validate(actions=frozenset({0, 7}), now=NOW)
    with pytest.raises(InvalidEvent, match=r"action=1 is invalid: must be one of \[0, 7\]"):
        one(action=1).validate(actions=frozenset({0, 7}), now=NOW)


def test_problems_lists_every_bad_row_once_in_row_order() -> None:
    b = EventBatch.from_columns(
        user_id=["ok", "bad user", "ok", "ok"],
        item_id=[1, -1, -2, 3],
        category_id=[1, 1, 1, -1],
        ts=[NOW, NOW, NOW, NOW],
        action=[0, 0, 9, 0],
    )
    found = b.problems(now=NOW)
    assert [(p.row, p.field) for p in found] == [(1, "user_id"), (2, "item_id"), (3, "category_id")]
    assert [p.row for p in b.problems(now=NOW, limit=2)] == [1, 2]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "item_id=1.5 is invalid: must be an integer"),
        (True, "item_id=True is invalid: must be an integer"),
        (None, "item_id=None is invalid: must be an integer"),
        ("12x", "item_id='12x' is invalid: must be an integer"),
        (2**63, f"item_id={2**63} is invalid: must be an integer below 2^63"),
    ],
)
def test_columns_refuse_non_integers(value: Any, message: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        EventBatch.from_columns(user_id=["u", "u"], item_id=[1, value], category_id=[0, 0], ts=[NOW, NOW])
    assert info.value.row == 1 and info.value.field == "item_id"
    assert message in str(info.value)


def test_columns_coerce_integral_values() -> None:
    b = EventBatch.from_columns(user_id=[7], item_id=[3.0], category_id=["12"], ts=[np.int32(NOW)], event_id=[""])
    assert (b.user_id, int(b.item_id[0]), int(b.category_id[0]), int(b.ts[0])) == (["7"], 3, 12, NOW)
    assert b.event_id == [None] and int(b.action[0]) == 0
    assert b.item_id.dtype == np.int64


def test_uint64_column_above_int64_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="below 2\\^63") as info:
        EventBatch.from_columns(
            user_id=["u", "u"], item_id=np.array([1, 2**64 - 1], dtype=np.uint64), category_id=[0, 0], ts=[NOW, NOW]
        )
    assert info.value.row == 1


def test_column_of_wrong_length_names_the_column() -> None:
    with pytest.raises(InvalidEvent) as info:
        EventBatch.from_columns(user_id=["u", "u"], item_id=[1], category_id=[0, 0], ts=[NOW, NOW])
    assert (info.value.row, info.value.field) == (None, "item_id")
    assert "a column of 2 values" in str(info.value)


def test_from_events_and_by_user() -> None:
    b = EventBatch.from_events([Event("b", 1, 2, NOW), Event("a", 3, 4, NOW, 1, "x"), Event("b", 5, 6, NOW - 1, 2)])
    assert [(u, rows.tolist()) for u, rows in b.by_user()] == [("b", [0, 2]), ("a", [1])]
    recs = b.records(np.array([2, 0]))
    assert recs.dtype == BEHAVIOR_DTYPE
    assert recs.tolist() == [(NOW - 1, 5, 6, 2), (NOW, 1, 2, 0)]


def test_record_layout_is_21_little_endian_bytes() -> None:
    rec = np.zeros(1, dtype=BEHAVIOR_DTYPE)
    rec[0] = (0x0102030405060708, 0x1112131415161718, 0x21222324, 0xFE)
    blob = pack(rec)
    assert RECORD_SIZE == 21 and len(blob) == 21
    assert blob == struct.pack("<qqiB", 0x0102030405060708, 0x1112131415161718, 0x21222324, 0xFE)
    assert blob[:8] == bytes([8, 7, 6, 5, 4, 3, 2, 1])  # ts first, least significant byte first


def test_pack_unpack_round_trip() -> None:
    rng = np.random.default_rng(3)
    recs = np.zeros(1000, dtype=BEHAVIOR_DTYPE)
    recs["ts"] = rng.integers(MIN_TS, NOW, 1000)
    recs["item_id"] = rng.integers(0, MAX_ITEM_ID, 1000, dtype=np.int64)
    recs["category_id"] = rng.integers(0, MAX_CATEGORY_ID, 1000)
    recs["action"] = rng.integers(0, 256, 1000)
    blob = pack(recs)
    assert len(blob) == 1000 * RECORD_SIZE
    back = unpack(blob)
    assert back.dtype == BEHAVIOR_DTYPE and np.array_equal(back, recs)
    assert not back.flags.writeable  # a view of the bytes, no copy
    assert np.array_equal(unpack(bytearray(blob)), recs) and np.array_equal(unpack(memoryview(blob)), recs)
    assert len(unpack(b"")) == 0 and len(unpack(None)) == 0
    assert pack(empty_behaviors()) == b""


def test_unpack_refuses_a_partial_record() -> None:
    with pytest.raises(ValueError, match="not a multiple of 21"):
        unpack(b"\x00" * 43)


def _recs(ts: list[int], start: int) -> np.ndarray:
    out = np.zeros(len(ts), dtype=BEHAVIOR_DTYPE)
    out["ts"] = ts
    out["item_id"] = np.arange(start, start + len(ts))
    return out


def test_merge_in_time_order_keeps_arrival_order_on_ties() -> None:
    existing = _recs([1, 3, 3, 5], 0)  # items 0..3
    new = _recs([3, 0, 5, 3, 9], 10)  # items 10..14
    merged = merge_in_time_order(existing, new)
    assert merged["item_id"].tolist() == [11, 0, 1, 2, 10, 13, 3, 12, 14]
    assert merged["ts"].tolist() == sorted(merged["ts"].tolist())
    assert existing["item_id"].tolist() == [0, 1, 2, 3]  # inputs untouched


def test_merge_edge_cases() -> None:
    existing = _recs([1, 2], 0)
    assert merge_in_time_order(existing, empty_behaviors())["item_id"].tolist() == [0, 1]
    assert merge_in_time_order(empty_behaviors(), _recs([5, 4, 4], 7))["item_id"].tolist() == [8, 9, 7]
    assert merge_in_time_order(existing, _recs([2, 3], 5))["item_id"].tolist() == [0, 1, 5, 6]  # fast path
    assert len(merge_in_time_order(empty_behaviors(), empty_behaviors())) == 0

"""Behaviour records: the schema of one event, its validation, and its packed binary form.

A user's sequence is held as a numpy structured array of ``BEHAVIOR_DTYPE`` (one row per event, oldest first,
ordered by (ts, arrival)). Stores keep it packed: fixed-size little-endian records of ``RECORD_SIZE`` bytes,
so a whole sequence is one byte string that ``unpack`` turns into an array without a per-event loop.

Record layout (21 bytes, little-endian, no padding)::

    offset  size  field
    0       8     ts           int64   unix seconds
    8       8     item_id      int64   >= 0
    16      4     category_id  int32   >= 0
    20      1     action       uint8   0 view, 1 click, 2 like/cart, 3 purchase (or a configured set)

Events enter as an ``EventBatch``: the columns of many events of possibly many users, validated in one
vectorised pass. ``validate`` raises ``InvalidEvent`` naming the row, the field, the value and the rule.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.errors import InvalidEvent

BEHAVIOR_DTYPE = np.dtype([("ts", "<i8"), ("item_id", "<i8"), ("category_id", "<i4"), ("action", "u1")], align=False)
RECORD_SIZE = BEHAVIOR_DTYPE.itemsize
assert RECORD_SIZE == 21

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
EVENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_ITEM_ID = 2**63 - 1
MAX_CATEGORY_ID = 2**31 - 1
MIN_TS = 946_684_800  # 2000-01-01T00:00:00Z
FUTURE_SLACK_S = 86_400  # at most a day ahead of the clock
DEFAULT_ACTIONS: frozenset[int] = frozenset({0, 1, 2, 3})
ACTION_NAMES: Mapping[int, str] = {0: "view", 1: "click", 2: "like/cart", 3: "purchase"}

Behaviors = npt.NDArray[np.void]
"""A structured array of BEHAVIOR_DTYPE, oldest first."""


def empty_behaviors() -> Behaviors:
    return np.empty(0, dtype=BEHAVIOR_DTYPE)


def pack(records: Behaviors) -> bytes:
    """Structured array -> packed little-endian records."""
    return np.ascontiguousarray(records, dtype=BEHAVIOR_DTYPE).tobytes()


def unpack(blob: bytes | bytearray | memoryview | None) -> Behaviors:
    """Packed records -> structured array (a read-only view of ``blob`` when it is bytes)."""
    if not blob:
        return empty_behaviors()
    if len(blob) % RECORD_SIZE:
        raise ValueError(f"packed behaviours have {len(blob)} bytes, not a multiple of {RECORD_SIZE}")
    return np.frombuffer(blob, dtype=BEHAVIOR_DTYPE)


def merge_in_time_order(existing: Behaviors, new: Behaviors) -> Behaviors:
    """Merge ``new`` (any order) into ``existing`` (sorted): order by ts, earlier arrivals first on ties."""
    if len(new) == 0:
        return existing.copy()
    new_sorted = new[np.argsort(new["ts"], kind="stable")]
    if len(existing) == 0 or new_sorted["ts"][0] >= existing["ts"][-1]:
        return np.concatenate([existing, new_sorted]) if len(existing) else new_sorted.copy()
    # side="right": a new event goes after every stored event with the same ts (arrival order).
    positions = np.searchsorted(existing["ts"], new_sorted["ts"], side="right")
    return np.insert(existing, positions, new_sorted)


@dataclass(frozen=True, slots=True)
class Event:
    """One behaviour of one user, as a client sends it."""

    user_id: str
    item_id: int
    category_id: int
    ts: int
    action: int = 0
    event_id: str | None = None


@dataclass(slots=True)
class EventBatch:
    """Columns of a batch of events, possibly of many users, in arrival order."""

    user_id: list[str]
    item_id: npt.NDArray[np.int64]
    category_id: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    action: npt.NDArray[np.int64]
    event_id: list[str | None]

    def __len__(self) -> int:
        return len(self.user_id)

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> EventBatch:
        rows = list(events)
        return cls.from_columns(
            user_id=[e.user_id for e in rows],
            item_id=[e.item_id for e in rows],
            category_id=[e.category_id for e in rows],
            ts=[e.ts for e in rows],
            action=[e.action for e in rows],
            event_id=[e.event_id for e in rows],
        )

    @classmethod
    def from_columns(
        cls,
        *,
        user_id: Sequence[Any],
        item_id: Sequence[Any] | npt.NDArray[Any],
        category_id: Sequence[Any] | npt.NDArray[Any],
        ts: Sequence[Any] | npt.NDArray[Any],
        action: Sequence[Any] | npt.NDArray[Any] | None = None,
        event_id: Sequence[Any] | None = None,
    ) -> EventBatch:
        n = len(user_id)
        users = [u if isinstance(u, str) else str(u) for u in user_id]
        ids: list[str | None] = [None] * n if event_id is None else [_opt_str(x) for x in event_id]
        return cls(
            user_id=users,
            item_id=_int_column("item_id", item_id, n),
            category_id=_int_column("category_id", category_id, n),
            ts=_int_column("ts", ts, n),
            action=np.zeros(n, dtype=np.int64) if action is None else _int_column("action", action, n),
            event_id=ids,
        )

    def records(self, rows: npt.NDArray[np.intp] | slice | None = None) -> Behaviors:
        """The behaviour records of the selected rows, in the order given."""
        sel = slice(None) if rows is None else rows
        out = np.empty(len(self.ts[sel]), dtype=BEHAVIOR_DTYPE)
        out["ts"] = self.ts[sel]
        out["item_id"] = self.item_id[sel]
        out["category_id"] = self.category_id[sel]
        out["action"] = self.action[sel]
        return out

    def by_user(self) -> Iterator[tuple[str, npt.NDArray[np.intp]]]:
        """(user, row indices in arrival order) for each distinct user, in first-seen order."""
        groups: dict[str, list[int]] = {}
        for i, user in enumerate(self.user_id):
            groups.setdefault(user, []).append(i)
        for user, rows in groups.items():
            yield user, np.asarray(rows, dtype=np.intp)

    def validate(self, *, actions: frozenset[int] = DEFAULT_ACTIONS, now: float | None = None) -> None:
        """Raise InvalidEvent for the first row that breaks a rule; return None when every row is valid."""
        problems = self.problems(actions=actions, now=now, limit=1)
        if problems:
            raise problems[0]

    def problems(
        self, *, actions: frozenset[int] = DEFAULT_ACTIONS, now: float | None = None, limit: int | None = None
    ) -> list[InvalidEvent]:
        """Every row that breaks a rule (its first broken rule), in row order; at most ``limit`` of them."""
        clock = time.time() if now is None else now
        found: dict[int, InvalidEvent] = {}

        def note(rows: Iterable[int], field: str, values: Sequence[Any], rule: str) -> None:
            for i in rows:
                found.setdefault(i, InvalidEvent(i, field, values[i], rule))

        id_rule = "1-128 characters of [A-Za-z0-9_.:-]"
        note(
            (i for i, u in enumerate(self.user_id) if not USER_ID_PATTERN.fullmatch(u)),
            "user_id",
            self.user_id,
            id_rule,
        )
        note(
            (i for i, e in enumerate(self.event_id) if e is not None and not EVENT_ID_PATTERN.fullmatch(e)),
            "event_id",
            self.event_id,
            id_rule,
        )
        checks: list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.bool_], str]] = [
            ("item_id", self.item_id, (self.item_id < 0), "an integer in [0, 2^63-1]"),
            (
                "category_id",
                self.category_id,
                (self.category_id < 0) | (self.category_id > MAX_CATEGORY_ID),
                "an integer in [0, 2^31-1]",
            ),
            (
                "ts",
                self.ts,
                (self.ts < MIN_TS) | (self.ts > int(clock) + FUTURE_SLACK_S),
                "unix seconds from 2000-01-01 to one day after now",
            ),
            (
                "action",
                self.action,
                ~np.isin(self.action, np.fromiter(actions, dtype=np.int64)),
                f"one of {sorted(actions)}",
            ),
        ]
        for field, column, bad, rule in checks:
            if bad.any():  # tolist() only for a column that has a bad row: validation stays vectorised
                note(np.flatnonzero(bad).tolist(), field, column.tolist(), rule)
        ordered = [found[i] for i in sorted(found)]
        return ordered if limit is None else ordered[:limit]


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _int_column(name: str, values: Sequence[Any] | npt.NDArray[Any], n: int) -> npt.NDArray[np.int64]:
    """Coerce a column to int64, refusing floats with a fraction, bools, strings and out-of-range values."""
    if len(values) != n:
        raise InvalidEvent(None, name, len(values), f"a column of {n} values (one per event)")
    if isinstance(values, np.ndarray):
        arr = values
        elements: list[Any] | None = None
    else:  # a Python sequence: numpy would turn True into 1 and 2**63 into a float, so check the elements
        elements = list(values)
        arr = np.asarray(elements) if elements else np.empty(0, dtype=np.int64)
        if arr.dtype.kind in "iu" and any(isinstance(v, bool | np.bool_) for v in elements):
            arr = np.asarray(elements, dtype=object)
    if arr.dtype == np.int64:
        return arr
    if arr.dtype.kind in "iu":
        if arr.dtype == np.uint64 and len(arr) and int(arr.max()) > MAX_ITEM_ID:
            i = int(np.argmax(arr))
            raise InvalidEvent(i, name, int(arr[i]), "an integer below 2^63")
        return arr.astype(np.int64)
    out = np.empty(n, dtype=np.int64)
    for i, v in enumerate(arr.tolist() if elements is None else elements):
        out[i] = _to_int(i, name, v)
    return out


def _to_int(row: int, name: str, value: Any) -> int:
    if isinstance(value, bool | np.bool_) or value is None:
        raise InvalidEvent(row, name, value, "an integer")
    if isinstance(value, np.integer | np.floating):
        value = value.item()
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidEvent(row, name, value, "an integer below 2^63")
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        return _to_int(row, name, int(value.strip()))
    raise InvalidEvent(row, name, value, "an integer")

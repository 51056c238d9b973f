"""The behaviour-store contract, run against every backend (see conftest.py): what append/read/length/delete do."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from retrieval.errors import InvalidEvent
from retrieval.events import BEHAVIOR_DTYPE, MAX_CATEGORY_ID, MAX_ITEM_ID, EventBatch
from retrieval.store.base import BehaviorStore, UserHistory

TS0 = 1_600_000_000
MakeStore = Callable[..., BehaviorStore]
WORKER_SCRIPT = Path(__file__).with_name("append_worker.py")


def batch(
    user: str | Sequence[str],
    ts: Sequence[int],
    *,
    items: Sequence[int] | None = None,
    cats: Sequence[int] | None = None,
    actions: Sequence[int] | None = None,
    eids: Sequence[str | None] | None = None,
) -> EventBatch:
    n = len(ts)
    users = [user] * n if isinstance(user, str) else list(user)
    return EventBatch.from_columns(
        user_id=users,
        item_id=list(range(n)) if items is None else items,
        category_id=[0] * n if cats is None else cats,
        ts=[TS0 + t for t in ts],
        action=[0] * n if actions is None else actions,
        event_id=eids,
    )


def rows(arr: np.ndarray | None) -> list[tuple[int, int, int, int]]:
    """(ts offset, item, category, action) of each record, for readable comparisons."""
    assert arr is not None
    assert arr.dtype == BEHAVIOR_DTYPE
    return [(int(r["ts"]) - TS0, int(r["item_id"]), int(r["category_id"]), int(r["action"])) for r in arr]


def items(arr: np.ndarray | None) -> list[int]:
    assert arr is not None
    return [int(x) for x in arr["item_id"]]


def assert_empty(history: UserHistory) -> None:
    assert history.length == 0
    assert len(history.recent) == 0
    assert history.full is not None and len(history.full) == 0


# -- round trip and order ----------------------------------------------------------------------------------------


def test_round_trip_of_every_field(store: BehaviorStore) -> None:
    now = int(time.time())
    b = EventBatch.from_columns(
        user_id=["u:1", "u:1", "u:1"],
        item_id=[0, MAX_ITEM_ID, 123_456_789_012],
        category_id=[0, MAX_CATEGORY_ID, 77],
        ts=[946_684_800, now, now - 5],
        action=[3, 0, 2],
    )
    assert store.append(b) == (3, 0)
    h = store.read("u:1", recent=10, categories=[MAX_CATEGORY_ID], full=True)
    expected = [
        (946_684_800, 0, 0, 3),
        (now - 5, 123_456_789_012, 77, 2),
        (now, MAX_ITEM_ID, MAX_CATEGORY_ID, 0),
    ]
    got = [(int(r["ts"]), int(r["item_id"]), int(r["category_id"]), int(r["action"])) for r in h.full]  # type: ignore[union-attr]
    assert got == expected
    assert h.length == 3 and store.length("u:1") == 3
    assert [tuple(r) for r in h.recent.tolist()] == [tuple(r) for r in h.full.tolist()]  # type: ignore[union-attr]
    assert items(h.by_category[MAX_CATEGORY_ID]) == [MAX_ITEM_ID]


def test_time_order_out_of_order_and_ties_keep_arrival(store: BehaviorStore) -> None:
    assert store.append(batch("u", [100, 300, 200, 200], items=[1, 2, 3, 4])) == (4, 0)
    # 200 ties with stored events (new ones go after them), 50 goes first, 300 ties with the stored 300
    assert store.append(batch("u", [200, 50, 300, 200], items=[5, 6, 7, 8])) == (4, 0)
    h = store.read("u", recent=3, full=True)
    assert items(h.full) == [6, 1, 3, 4, 5, 8, 2, 7]
    assert items(h.recent) == [8, 2, 7]


def test_batches_of_many_users_are_split_per_user(store: BehaviorStore) -> None:
    b = batch(["a", "b", "a", "c", "b"], [5, 4, 3, 2, 1], items=[1, 2, 3, 4, 5])
    assert store.append(b) == (5, 0)
    assert items(store.read("a", full=True).full) == [3, 1]
    assert items(store.read("b", full=True).full) == [5, 2]
    assert items(store.read("c", full=True).full) == [4]
    assert [store.length(u) for u in "abcd"] == [2, 2, 1, 0]


def test_unknown_user_reads_empty(store: BehaviorStore) -> None:
    h = store.read("nobody", recent=50, categories=[1, 2], full=True)
    assert_empty(h)
    assert set(h.by_category) == {1, 2}
    assert all(len(v) == 0 for v in h.by_category.values())
    assert store.read("nobody").full is None
    assert store.length("nobody") == 0
    assert store.delete("nobody") is False


def test_recent_sizes(store: BehaviorStore) -> None:
    store.append(batch("u", list(range(10)), items=list(range(10))))
    assert len(store.read("u", recent=0).recent) == 0
    assert items(store.read("u", recent=3).recent) == [7, 8, 9]
    assert items(store.read("u", recent=100).recent) == list(range(10))
    assert store.read("u", recent=3).full is None


def test_empty_batch_is_a_no_op(store: BehaviorStore) -> None:
    assert store.append(batch("u", [])) == (0, 0)
    assert store.length("u") == 0


def test_ping_answers(store: BehaviorStore) -> None:
    assert store.ping() is None


# -- caps and per-category reads ---------------------------------------------------------------------------------


def test_cap_evicts_oldest_and_category_reads_see_only_retained(make_store: MakeStore) -> None:
    store = make_store(max_behaviors=50, per_category=5)
    # category 9 only among the 10 oldest events: evicted entirely by the end
    first = batch("u", list(range(10)), items=list(range(10)), cats=[9] * 10)
    assert store.append(first) == (10, 0)
    reference = [(t, i, 9) for t, i in zip(range(10), range(10), strict=True)]
    rng = np.random.default_rng(7)
    for b in range(4):
        ts = rng.integers(10, 200, 30).tolist()
        its = list(range(100 + 30 * b, 130 + 30 * b))
        cats = rng.integers(0, 4, 30).tolist()
        assert store.append(batch("u", ts, items=its, cats=cats)) == (30, 0)
        reference += list(zip(ts, its, cats, strict=True))
    reference.sort(key=lambda r: r[0])  # stable: arrival order on ties
    kept = reference[-50:]
    h = store.read("u", recent=7, categories=[0, 1, 2, 3, 9, 42], full=True)
    assert store.length("u") == 50 and h.length == 50
    assert items(h.full) == [i for _, i, _ in kept]
    assert items(h.recent) == [i for _, i, _ in kept[-7:]]
    for cat in (0, 1, 2, 3):
        assert items(h.by_category[cat]) == [i for _, i, c in kept if c == cat][-5:]
    assert len(h.by_category[9]) == 0 and len(h.by_category[42]) == 0
    narrow = store.read("u", categories=[1], per_category=2)
    assert items(narrow.by_category[1]) == [i for _, i, c in kept if c == 1][-2:]


def test_late_event_older_than_a_full_sequence_is_evicted_at_once(make_store: MakeStore) -> None:
    store = make_store(max_behaviors=5)
    store.append(batch("u", [10, 11, 12, 13, 14], items=[1, 2, 3, 4, 5]))
    assert store.append(batch("u", [1], items=[99])) == (1, 0)
    assert items(store.read("u", full=True).full) == [1, 2, 3, 4, 5]
    store.append(batch("u", [12], items=[100]))
    assert items(store.read("u", full=True).full) == [2, 3, 100, 4, 5]


def test_per_category_reads(make_store: MakeStore) -> None:
    store = make_store(per_category=3)
    cats = [1, 2, 1, 1, 3, 1, 2, 1]
    store.append(batch("u", list(range(8)), items=list(range(8)), cats=cats))
    h = store.read("u", recent=0, categories=[1, 2, 5, 1])
    assert set(h.by_category) == {1, 2, 5}
    assert items(h.by_category[1]) == [3, 5, 7]  # the last 3 (options.per_category) of category 1
    assert items(h.by_category[2]) == [1, 6]
    assert len(h.by_category[5]) == 0 and h.by_category[5].dtype == BEHAVIOR_DTYPE
    assert items(store.read("u", categories=[1], per_category=1).by_category[1]) == [7]
    # asking for more than the store keeps per category gives at most options.per_category
    assert items(store.read("u", categories=[1], per_category=10).by_category[1]) == [3, 5, 7]
    assert store.read("u").by_category == {}


def test_per_category_reads_of_many_categories(make_store: MakeStore) -> None:
    store = make_store(per_category=4)
    n = 600
    cats = [(i * 37) % 40 for i in range(n)]
    ts = [(i * 7919) % 97 for i in range(n)]  # scrambled, many ties
    store.append(batch("u", ts, items=list(range(n)), cats=cats))
    ordered = sorted(zip(ts, range(n), cats, strict=True), key=lambda r: r[0])
    wanted = [*range(0, 50, 2), 10**6]  # 26 categories: some present, some absent
    h = store.read("u", recent=0, categories=wanted)
    assert set(h.by_category) == set(wanted)
    for cat in wanted:
        assert items(h.by_category[cat]) == [i for _, i, c in ordered if c == cat][-4:], cat


def test_a_cap_of_200k_works(make_store: MakeStore) -> None:
    store = make_store(max_behaviors=200_000)
    total, step = 210_000, 35_000
    for start in range(0, total, step):
        idx = np.arange(start, start + step)
        b = EventBatch.from_columns(
            user_id=["big"] * step, item_id=idx, category_id=idx % 100, ts=TS0 + idx, action=idx % 4
        )
        assert store.append(b) == (step, 0)
    assert store.length("big") == 200_000
    h = store.read("big", recent=50, categories=[7], per_category=5, full=True)
    assert h.full is not None and len(h.full) == 200_000
    assert int(h.full["item_id"][0]) == total - 200_000 and int(h.full["item_id"][-1]) == total - 1
    assert np.all(np.diff(h.full["ts"]) > 0)
    assert items(h.recent) == list(range(total - 50, total))
    assert items(h.by_category[7]) == [i for i in range(total - 500, total) if i % 100 == 7][-5:]


# -- idempotency -------------------------------------------------------------------------------------------------


def test_duplicate_event_ids_in_one_batch_and_across_batches(store: BehaviorStore) -> None:
    b1 = batch("u", [1, 2, 3, 4], items=[1, 2, 3, 4], eids=["a", "b", "a", None])
    assert store.append(b1) == (3, 1)
    b2 = batch("u", [5, 6, 7, 8], items=[5, 6, 7, 8], eids=["b", "c", None, "c"])
    assert store.append(b2) == (2, 2)
    assert items(store.read("u", full=True).full) == [1, 2, 4, 6, 7]
    # events without an id are never deduplicated
    assert store.append(batch("u", [9, 9], items=[4, 4])) == (2, 0)
    assert store.length("u") == 7


def test_event_ids_are_scoped_per_user(store: BehaviorStore) -> None:
    assert store.append(batch(["a", "b"], [1, 1], eids=["same", "same"])) == (2, 0)
    assert store.length("a") == 1 and store.length("b") == 1


def test_event_id_is_accepted_again_after_the_window(make_store: MakeStore) -> None:
    store = make_store(dedupe_window_s=1)
    assert store.append(batch("u", [1], items=[1], eids=["x"])) == (1, 0)
    assert store.append(batch("u", [2], items=[2], eids=["x"])) == (0, 1)
    time.sleep(1.5)
    assert store.append(batch("u", [3], items=[3], eids=["x"])) == (1, 0)
    assert items(store.read("u", full=True).full) == [1, 3]


# -- invalid input and erasure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "bad"),
    [("action", 3), ("category_id", -1), ("item_id", -5), ("ts", 5), ("user_id", "bad user"), ("event_id", "a b")],
)
def test_invalid_batch_stores_nothing(make_store: MakeStore, field: str, bad: Any) -> None:
    store = make_store(actions={0, 1})
    cols: dict[str, list[Any]] = {
        "user_id": ["good", "other", "good"],
        "item_id": [1, 2, 3],
        "category_id": [1, 2, 3],
        "ts": [TS0, TS0 + 1, TS0 + 2],
        "action": [0, 1, 0],
        "event_id": ["e1", "e2", "e3"],
    }
    cols[field][2] = bad
    with pytest.raises(InvalidEvent) as info:
        store.append(EventBatch.from_columns(**cols))
    assert info.value.field == field and info.value.row == 2
    assert store.length("good") == 0 and store.length("other") == 0
    # the valid rows' event ids were not remembered either
    assert store.append(batch(["good", "other"], [0, 1], eids=["e1", "e2"])) == (2, 0)


def test_delete_erases_sequence_and_event_ids(store: BehaviorStore) -> None:
    store.append(batch("u", [1, 2, 3], items=[1, 2, 3], cats=[4, 4, 5], eids=["a", "b", None]))
    store.append(batch("keep", [1], eids=["a"]))
    assert store.delete("u") is True
    assert_empty(store.read("u", categories=[4], full=True))
    assert store.length("u") == 0
    assert store.delete("u") is False
    assert store.append(batch("u", [4], items=[9], eids=["a"])) == (1, 0)  # the id was forgotten
    assert items(store.read("u", full=True).full) == [9]
    assert store.length("keep") == 1
    assert store.append(batch("keep", [2], eids=["a"])) == (0, 1)


# -- concurrency -------------------------------------------------------------------------------------------------


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("longrank_append_worker", WORKER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected_items(workers: int, batches: int, batch_size: int, shared: int) -> list[int]:
    own = [w * 1_000_000 + i for w in range(workers) for i in range(batches * batch_size)]
    return sorted(own + [999_000_000 + k for k in range(shared)])


def _check_sequence(store: BehaviorStore, user: str, expected_items: list[int]) -> None:
    full = store.read(user, full=True).full
    assert full is not None
    assert sorted(items(full)) == expected_items  # nothing lost, nothing doubled
    assert np.all(np.diff(full["ts"]) >= 0)
    assert store.length(user) == len(expected_items)


def test_concurrent_appends_from_threads(store: BehaviorStore) -> None:
    worker = _load_worker()
    n_workers, batches, size, shared = 4, 15, 20, 30
    totals: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def run(w: int) -> None:
        try:
            acc = dup = 0
            for b in worker.worker_batches("hot", w, batches, size, shared):
                a, d = store.append(b)
                acc, dup = acc + a, dup + d
            totals.append((acc, dup))
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(a for a, _ in totals) == n_workers * batches * size + shared
    assert sum(d for _, d in totals) == (n_workers - 1) * shared
    _check_sequence(store, "hot", _expected_items(n_workers, batches, size, shared))


def test_concurrent_appends_from_processes(backend: Any, store: BehaviorStore) -> None:
    if not backend.shared_between_processes:
        pytest.skip(f"the {backend.name} store lives in one process")
    n_workers, batches, size, shared = 3, 12, 25, 24
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), backend.url(), "hot", str(w), str(batches), str(size), str(shared)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(n_workers)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["accepted"] for r in results) == n_workers * batches * size + shared
    assert sum(r["duplicates"] for r in results) == (n_workers - 1) * shared
    _check_sequence(store, "hot", _expected_items(n_workers, batches, size, shared))

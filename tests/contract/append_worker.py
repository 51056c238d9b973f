"""Subprocess used by the contract suite's multi-process test: append batches to one user of a store URL.

    python append_worker.py URL USER WORKER BATCHES BATCH_SIZE SHARED

Each batch holds BATCH_SIZE events of this worker (event ids ``w{WORKER}-{i}``, item ids WORKER * 10^6 + i) plus
the shared events ``shared-{k}`` that every worker sends too (k < SHARED, spread over the batches). Prints one
JSON line ``{"accepted": a, "duplicates": d}`` at the end.
"""

from __future__ import annotations

import json
import sys

from retrieval.events import EventBatch
from retrieval.store.factory import open_store

TS0 = 1_600_000_000


def worker_batches(user: str, worker: int, batches: int, batch_size: int, shared: int) -> list[EventBatch]:
    """The batches worker ``worker`` sends (also used in-process by the threaded test)."""
    out = []
    for b in range(batches):
        rows = [(f"w{worker}-{b * batch_size + j}", worker * 1_000_000 + b * batch_size + j) for j in range(batch_size)]
        rows += [(f"shared-{k}", 999_000_000 + k) for k in range(shared) if k % batches == b]
        out.append(
            EventBatch.from_columns(
                user_id=[user] * len(rows),
                item_id=[item for _, item in rows],
                category_id=[item % 7 for _, item in rows],
                ts=[TS0 + (item * 7919) % 5000 for _, item in rows],  # scrambled times, many ties
                action=[item % 4 for _, item in rows],
                event_id=[eid for eid, _ in rows],
            )
        )
    return out


def main(argv: list[str]) -> int:
    url, user = argv[0], argv[1]
    worker, batches, batch_size, shared = (int(x) for x in argv[2:6])
    store = open_store(url)
    accepted = duplicates = 0
    try:
        for batch in worker_batches(user, worker, batches, batch_size, shared):
            a, d = store.append(batch)
            accepted += a
            duplicates += d
    finally:
        store.close()
    print(json.dumps({"accepted": accepted, "duplicates": duplicates}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

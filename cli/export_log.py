"""`longrank export-log --log PATH --events SOURCE --format obp --out FILE.npz`: the exploration log as the logged
bandit feedback Open Bandit Pipeline reads (``obp.ope`` estimators take these arrays by name).

One row per SHOWN SLOT of every logged response (n rows), in log order then position order:

    action   [n] int64    the shown item as an index into ``item_ids`` (the sorted distinct candidate ids of the log)
    position [n] int64    its slot, 0 = top
    reward   [n] int64    1 when the user clicked it (an event with action >= 1 of that user on that item with
                          request ts <= event ts < request ts + --window-s), else 0
    pscore   [n] float64  the logged propensity: the probability that the policy put this item at this slot
                          (Monte-Carlo over the policy's own draws, serving/pipeline.py); 1.0 where the record has
                          none (logged without draws, LONGRANK_EXPLORE_PROPENSITY_DRAWS=0), marked False in
                          ``pscore_logged``
    context  [n, 4] float64  what the ranker knew about the shown item: [pCTR, explored score, explored flag,
                          eligible (under the impression limit)]
    plus: pscore_logged [n] bool, explored [n] bool, round [n] int64 (index of the response in the log),
    pctr [n] float64 (the logged pCTR of the shown item: the reward model of DR), greedy_action [n] int64 and
    greedy_pctr [n] float64 (the item greedy — top_n by the logged pCTR, ties by candidate order — puts at this slot,
    and its pCTR: the target of ``longrank ope --policy greedy``), item_ids [n_actions] int64, action_context
    [n_actions, 1] (the item id), n_rounds = n, n_actions, len_list (the longest shown list).

OBP's estimators read ``reward``, ``action``, ``position`` and ``pscore`` by these names, with an ``action_dist``
[n, n_actions, len_list] of the evaluated policy (for greedy: one-hot at ``greedy_action``).

Events come from a behaviour store URL (each logged user's full sequence is read once) or an events file
(CSV/Parquet with user_id, item_id, ts, action columns, as ``longrank ingest`` reads).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HELP = "Export the exploration log (e.g. for Open Bandit Pipeline)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", required=True, help="the exploration log: a JSONL file or a redis:// URL")
    parser.add_argument("--stream", default="longrank:exploration", help="Redis Stream key (with a redis:// --log)")
    parser.add_argument("--events", required=True, help="click events: a store URL or a CSV/Parquet events file")
    parser.add_argument("--format", default="obp", choices=["obp"], help="output format")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--window-s", type=int, default=86_400, help="a click counts within this after the request")


def _click_times_from_file(path: Path, users: set[str]) -> dict[tuple[str, int], npt.NDArray[np.int64]]:
    import pandas as pd

    if path.suffix.lower() in {".parquet", ".pq"}:
        frame = pd.read_parquet(path, columns=["user_id", "item_id", "ts", "action"])
    else:
        frame = pd.read_csv(path, usecols=["user_id", "item_id", "ts", "action"])
    frame = frame[(frame["action"] >= 1) & frame["user_id"].astype(str).isin(users)]
    out: dict[tuple[str, int], npt.NDArray[np.int64]] = {}
    for key, group in frame.groupby([frame["user_id"].astype(str), "item_id"]):
        user, item = key
        out[(str(user), int(str(item)))] = np.sort(group["ts"].to_numpy(np.int64))
    return out


def _click_times_from_store(url: str, users: set[str]) -> dict[tuple[str, int], npt.NDArray[np.int64]]:
    from retrieval.store import open_store

    store = open_store(url)
    out: dict[tuple[str, int], list[int]] = defaultdict(list)
    try:
        for user in sorted(users):
            full = store.read(user, recent=0, full=True).full
            if full is None:
                continue
            clicks = full[full["action"] >= 1]
            for item, ts in zip(clicks["item_id"].tolist(), clicks["ts"].tolist(), strict=True):
                out[(user, int(item))].append(int(ts))
    finally:
        store.close()
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}


def to_obp(records: list[dict[str, Any]], clicks: dict[tuple[str, int], npt.NDArray[np.int64]],
           window_s: int) -> dict[str, Any]:  # fmt: skip
    """The OBP arrays (see the module docstring) of ``records`` with rewards joined from ``clicks``."""
    item_ids = np.unique(np.asarray([i for r in records for i in r["candidates"]], dtype=np.int64))
    action, position, reward, pscore, logged, explored, rounds, context = [], [], [], [], [], [], [], []
    pctr, greedy_action, greedy_pctr = [], [], []
    for index, rec in enumerate(records):
        cands = rec["candidates"]
        logged_pctr = np.asarray(rec["pctr"], dtype=np.float64)
        greedy = np.lexsort((np.arange(len(logged_pctr)), -logged_pctr))[: len(rec["order"])]
        for slot, (cand, flag) in enumerate(zip(rec["order"], rec["explored"], strict=True)):
            item = int(cands[cand])
            times = clicks.get((rec["user_id"], item))
            start = float(rec["ts"])
            hit = times is not None and bool(np.any((times >= int(start)) & (times < start + window_s)))
            prop = None if rec["propensity"] is None else rec["propensity"][slot]
            action.append(int(np.searchsorted(item_ids, item)))
            position.append(slot)
            reward.append(int(hit))
            pscore.append(1.0 if prop is None else float(prop))
            logged.append(prop is not None)
            explored.append(bool(flag))
            rounds.append(index)
            context.append([rec["pctr"][cand], rec["explored_score"][cand], float(flag), float(rec["eligible"][cand])])
            pctr.append(float(logged_pctr[cand]))
            greedy_action.append(int(np.searchsorted(item_ids, int(cands[greedy[slot]]))))
            greedy_pctr.append(float(logged_pctr[greedy[slot]]))
    n = len(action)
    return {
        "n_rounds": n,
        "n_actions": len(item_ids),
        "len_list": max((len(r["order"]) for r in records), default=0),
        "action": np.asarray(action, dtype=np.int64),
        "position": np.asarray(position, dtype=np.int64),
        "reward": np.asarray(reward, dtype=np.int64),
        "pscore": np.asarray(pscore, dtype=np.float64),
        "pscore_logged": np.asarray(logged, dtype=bool),
        "context": np.asarray(context, dtype=np.float64).reshape(n, 4),
        "explored": np.asarray(explored, dtype=bool),
        "round": np.asarray(rounds, dtype=np.int64),
        "pctr": np.asarray(pctr, dtype=np.float64),
        "greedy_action": np.asarray(greedy_action, dtype=np.int64),
        "greedy_pctr": np.asarray(greedy_pctr, dtype=np.float64),
        "item_ids": item_ids,
        "action_context": item_ids[:, None].astype(np.float64),
    }


def run(args: argparse.Namespace) -> int:
    from serving.exploration_log import ExplorationLogError, read_records

    if args.window_s < 1:
        print(f"longrank export-log: --window-s={args.window_s} must be >= 1", file=sys.stderr)
        return 2
    try:
        records = list(read_records(args.log, args.stream))
    except ExplorationLogError as exc:
        print(f"longrank export-log: {exc}", file=sys.stderr)
        return 2
    users = {str(r["user_id"]) for r in records}
    source = Path(args.events)
    if "://" in args.events:
        clicks = _click_times_from_store(args.events, users)
    elif source.is_file():
        clicks = _click_times_from_file(source, users)
    else:
        print(f"longrank export-log: --events {args.events}: neither a store URL nor an events file", file=sys.stderr)
        return 2
    arrays = to_obp(records, clicks, args.window_s)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"wrote {out}: {arrays['n_rounds']} shown slots of {len(records)} responses, "
          f"{int(arrays['reward'].sum())} clicked, {arrays['n_actions']} actions", file=sys.stderr)  # fmt: skip
    return 0

"""`longrank ope --feedback FILE.npz --policy greedy [--json]`: off-policy estimates of another policy's click
rate per shown slot from an explored log exported by ``longrank export-log --format obp``.

Estimators (models/bandits/ope.py): IPW, SNIPW and DR (reward model: the logged pCTR), position-wise, with
standard errors clustered by response. ``--policy greedy``: top_n by the logged pCTR (the export's
``greedy_action`` / ``greedy_pctr``). Every row needs a logged propensity (``pscore_logged``): a log written
without Monte-Carlo draws (LONGRANK_EXPLORE_PROPENSITY_DRAWS=0, or before propensities were logged) is refused.

Prints ``{"policy", "rows", "responses", "logged_click_rate", "share_of_rows_matching", "estimates": {"ipw":
{"value", "se"}, "snipw": {...}, "dr": {...}}}`` with --json, else a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Off-policy evaluation (IPW, SNIPW, DR) of another policy from an exported exploration log."
REQUIRED = ("reward", "action", "position", "pscore", "pscore_logged", "round", "pctr", "greedy_action",
            "greedy_pctr")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feedback", required=True, help="the .npz written by `longrank export-log --format obp`")
    parser.add_argument("--policy", default="greedy", choices=["greedy"], help="the policy to evaluate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from models.bandits.ope import estimate_all

    path = Path(args.feedback)
    if not path.is_file():
        print(f"longrank ope: --feedback {path}: no such file", file=sys.stderr)
        return 2
    try:
        data = np.load(path)
        missing = [k for k in REQUIRED if k not in data.files]
    except (OSError, ValueError) as exc:
        print(f"longrank ope: --feedback {path}: not an .npz export ({exc})", file=sys.stderr)
        return 2
    if missing:
        print(f"longrank ope: --feedback {path}: lacks {missing} (write it with `longrank export-log`)",
              file=sys.stderr)  # fmt: skip
        return 2
    if len(data["reward"]) == 0:
        print(f"longrank ope: --feedback {path}: no logged rows", file=sys.stderr)
        return 2
    unlogged = int((~data["pscore_logged"].astype(bool)).sum())
    if unlogged:
        print(f"longrank ope: pscore: {unlogged} of {len(data['reward'])} rows have no logged propensity; log with "
              "LONGRANK_EXPLORE_PROPENSITY_DRAWS > 0", file=sys.stderr)  # fmt: skip
        return 2
    target = (data["greedy_action"] == data["action"]).astype(float)
    try:
        est = estimate_all(data["round"], data["reward"], data["pscore"], target, data["pctr"], data["greedy_pctr"])
    except ValueError as exc:
        print(f"longrank ope: {exc}", file=sys.stderr)
        return 2
    out = {
        "policy": args.policy, "rows": len(target), "responses": len(np.unique(data["round"])),
        "logged_click_rate": round(float(data["reward"].mean()), 6),
        "share_of_rows_matching": round(float(target.mean()), 4),
        "estimates": {k: e.to_dict() for k, e in est.items()},
    }  # fmt: skip
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['rows']} slots of {out['responses']} responses; logged click rate {out['logged_click_rate']:.4f}; "
          f"{out['share_of_rows_matching']:.1%} of the slots show {args.policy}'s item")  # fmt: skip
    for name, e in est.items():
        print(f"  {name:<6} {e.value:.4f} ± {e.se:.4f}")
    return 0

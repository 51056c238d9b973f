"""PNG plots of load-test results (matplotlib, Agg backend: no display needed).

- ``plot_cdf``: the latency CDF of one run (x: latency in ms, log scale; y: fraction of 2xx responses at or below),
  with p50 and p99 marked and the offered rate in the title.
- ``plot_sweep``: for several rates, their CDFs side by side with p50/p99 against the offered rate.
matplotlib is imported inside the functions so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.openloop import RunOutcome


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_cdf(ax: Any, outcome: RunOutcome, label: str | None = None, marks: bool = True) -> None:
    values = np.sort(outcome.ok_latency_ms)
    if values.size == 0:
        return
    fraction = np.arange(1, values.size + 1) / values.size
    (line,) = ax.step(values, fraction, where="post", label=label)
    if marks:
        for key, style in (("p50_ms", "--"), ("p99_ms", ":")):
            value = outcome.summary.get(key)
            if isinstance(value, float):
                ax.axvline(value, color=line.get_color(), linestyle=style, linewidth=1,
                           label=f"{key.removesuffix('_ms')} = {value:.1f} ms")


def _style_cdf(ax: Any) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("latency from scheduled send (ms, log scale)")
    ax.set_ylabel("fraction of 2xx responses")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def plot_cdf(outcome: RunOutcome, path: str | Path) -> Path:
    """Write the latency CDF of one run to ``path`` (PNG) and return the path."""
    plt = _pyplot()
    s = outcome.summary
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _draw_cdf(ax, outcome, label="2xx latency")
    _style_cdf(ax)
    ax.set_title(f"{s['url']}: open loop at {s['offered_rps']} rps offered, {s['achieved_rps']} achieved\n"
                 f"{s['candidates']} candidates, {s['requests']} requests, {s['errors']} errors", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
    return out


def plot_sweep(outcomes: Sequence[RunOutcome], path: str | Path) -> Path:
    """Write one PNG with the CDF of every run (left) and p50/p99 against offered rate (right)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for outcome in outcomes:
        _draw_cdf(left, outcome, label=f"{outcome.summary['offered_rps']} rps", marks=False)
    _style_cdf(left)
    left.set_title("latency CDF per offered rate", fontsize=9)
    rates = [float(o.summary["offered_rps"]) for o in outcomes]  # type: ignore[arg-type]
    for key, marker in (("p50_ms", "o"), ("p99_ms", "s")):
        values = [o.summary[key] for o in outcomes]
        right.plot(rates, [np.nan if v is None else v for v in values], marker=marker,
                   label=key.removesuffix("_ms"))
    right.set_ylim(bottom=0)
    right.set_xlabel("offered rate (requests/s)")
    right.set_ylabel("latency of 2xx (ms)")
    right.grid(True, which="both", alpha=0.3)
    right.legend()
    candidates = outcomes[0].summary["candidates"] if outcomes else "?"
    right.set_title(f"open-loop sweep, {candidates} candidates per request", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
    return out

"""Training curves as a PNG: train loss and validation AUC / GAUC / logloss per epoch (matplotlib, Agg backend).

The Agg backend is selected inside the function (not at import), so importing this module does no work and never
needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Write the per-epoch curves to ``path``.

    ``history`` holds one mapping per epoch with ``train_loss``, ``valid_auc``, ``valid_gauc``,
    ``valid_logloss`` (and optionally ``train_auc``); missing keys are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [i + 1 for i in range(len(history))]

    def series(key: str) -> list[float]:
        return [float(h.get(key, float("nan"))) for h in history]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, series("train_loss"), marker="o", label="train loss")
    left.plot(epochs, series("valid_logloss"), marker="o", label="validation logloss")
    left.set_xlabel("epoch")
    left.set_ylabel("binary cross-entropy")
    left.legend()
    if any("train_auc" in h for h in history):
        right.plot(epochs, series("train_auc"), marker="o", label="train AUC")
    right.plot(epochs, series("valid_auc"), marker="o", label="validation AUC")
    right.plot(epochs, series("valid_gauc"), marker="o", label="validation GAUC")
    right.set_xlabel("epoch")
    right.set_ylabel("AUC")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

"""Request bodies for `POST /v1/rank`, generated before a load run so JSON encoding is never in the measured path.

A body is ``{"user_id": f"{prefix}{n}", "candidates": [{"item_id", "category_id"}, ...]}`` with ``n < users`` and
``candidates`` distinct item ids drawn from ``[0, items)`` (with replacement only when ``candidates > items``). Each
item keeps one category for the whole run (a random item -> category table), as in real catalogues, so a server that
caches per item sees consistent input. Everything comes from one seeded generator: the same spec gives the same
bytes, which lets tests predict what the server received.

The default shape is MovieLens-100K's (943 users, 1,682 items, 19 genres); the demo's user ids are "1".."943", so
use ``user_prefix=""`` against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

#: How many distinct bodies a run cycles through by default (request i sends body i % pool): enough variety that no
#: per-request cache hides the real cost, small enough that a long run at a high rate does not need gigabytes.
DEFAULT_POOL = 1024


@dataclass(frozen=True)
class PayloadSpec:
    """What the generated rank requests look like."""

    users: int = 943
    candidates: int = 500
    items: int = 1682
    categories: int = 19
    user_prefix: str = "u"
    user_width: int = 0  # zero-pad the user number to this many digits (synthetic data's ids are u000042)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("users", "candidates", "items", "categories"):
            value = getattr(self, name)
            if not 1 <= value <= 10_000_000:
                raise ValueError(f"--{name} must be between 1 and 10000000 (got {value})")


def body_dicts(spec: PayloadSpec, count: int) -> list[dict[str, object]]:
    """``count`` request bodies as dicts (deterministic for a given spec)."""
    if count < 1:
        raise ValueError(f"body count must be >= 1 (got {count})")
    rng = np.random.default_rng(spec.seed)
    category_of = rng.integers(0, spec.categories, size=spec.items)
    user_numbers = rng.integers(0, spec.users, size=count)
    replace = spec.candidates > spec.items
    bodies: list[dict[str, object]] = []
    for n in user_numbers:
        items = rng.choice(spec.items, size=spec.candidates, replace=replace)
        bodies.append(
            {
                "user_id": f"{spec.user_prefix}{int(n):0{spec.user_width}d}",
                "candidates": [{"item_id": int(i), "category_id": int(category_of[i])} for i in items],
            }
        )
    return bodies


def make_bodies(spec: PayloadSpec, count: int = DEFAULT_POOL) -> list[bytes]:
    """``count`` request bodies encoded as compact UTF-8 JSON, ready to send."""
    return [json.dumps(body, separators=(",", ":")).encode() for body in body_dicts(spec, count)]

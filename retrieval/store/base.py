"""The behaviour-store contract: the protocol every backend implements, the options it takes and what a read
returns. Backends take their options once, in their constructor; ``retrieval.store.factory.open_store(url)``
parses a store URL and opens the backend it names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from retrieval.errors import InvalidStoreURL
from retrieval.events import DEFAULT_ACTIONS, Behaviors, EventBatch


@dataclass(frozen=True)
class StoreOptions:
    """Options shared by every backend."""

    max_behaviors: int = 54_000  # per-user cap on the full sequence; oldest evicted first
    per_category: int = 200  # cap of each per-category list (SIM's User Behavior Tree cuts at 200)
    dedupe_window_s: int = 7 * 86_400  # an event_id is remembered this long after it was first seen
    connect_timeout_s: float = 1.0
    command_timeout_s: float = 1.0
    actions: frozenset[int] = field(default=DEFAULT_ACTIONS)
    key_prefix: str = "lr"  # Redis key namespace (tests use their own)
    retries: int = 1  # idempotent calls (reads, delete, ping) run once more after a connection error; 0 = never
    password: str | None = field(default=None, repr=False)  # Redis password when the URL carries none

    def __post_init__(self) -> None:
        if self.max_behaviors < 1:
            raise InvalidStoreURL(f"max_behaviors={self.max_behaviors} must be >= 1")
        if self.per_category < 1:
            raise InvalidStoreURL(f"per_category={self.per_category} must be >= 1")
        if self.dedupe_window_s < 1:
            raise InvalidStoreURL(f"dedupe_window_s={self.dedupe_window_s} must be >= 1")
        for name in ("connect_timeout_s", "command_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidStoreURL(f"{name}={value!r} must be a finite number > 0")
        if not isinstance(self.retries, int) or not 0 <= self.retries <= 3:
            raise InvalidStoreURL(f"retries={self.retries!r} must be an integer in [0, 3]")
        if not self.actions or any(not 0 <= a <= 255 for a in self.actions):
            raise InvalidStoreURL(f"actions={sorted(self.actions)} must be a non-empty set of integers in [0, 255]")


@dataclass(frozen=True)
class UserHistory:
    """What one read returns; every array is of BEHAVIOR_DTYPE, oldest first."""

    length: int  # the user's stored sequence length
    recent: Behaviors  # the last ``recent`` behaviours
    by_category: dict[int, Behaviors]  # each requested category -> its last ``per_category`` behaviours
    full: Behaviors | None  # the whole sequence, when asked for


@runtime_checkable
class BehaviorStore(Protocol):
    """A store of lifelong behaviour sequences, one per user."""

    options: StoreOptions

    def append(self, events: EventBatch) -> tuple[int, int]:
        """Validate and store a batch atomically per user: (accepted, duplicates).

        A batch with an invalid event raises InvalidEvent and stores nothing. An event whose event_id was seen
        within the dedupe window (in this batch or before) counts as a duplicate and is not stored again.
        """
        ...

    def read(
        self,
        user_id: str,
        *,
        recent: int = 50,
        categories: Sequence[int] = (),
        per_category: int | None = None,
        full: bool = False,
    ) -> UserHistory:
        """One round trip: the last ``recent`` behaviours, the last ``per_category`` of each category, the full
        sequence on request. An unknown user reads as empty."""
        ...

    def length(self, user_id: str) -> int: ...

    def delete(self, user_id: str) -> bool:
        """Erase every key/row of the user; True when something was there."""
        ...

    def ping(self, *, writable: bool = False) -> None:
        """Return when the backend answers — and, with ``writable``, would take a write now; raise a StoreError
        subclass otherwise (StoreUnavailable, StoreTimeout, StoreLoading, StoreReadOnly, StoreFull). Writes
        nothing."""
        ...

    def close(self) -> None: ...

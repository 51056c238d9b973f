"""The exceptions every behaviour store raises; backend exceptions (sqlite3, redis-py) never leak raw.

    StoreError                  anything a store refuses or fails to do
    ├── StoreUnavailable        the backend cannot be reached or refused the connection (retry later)
    │   └── StoreTimeout        a connect or command timeout passed (the operation may or may not have applied)
    ├── InvalidEvent            an event breaks a rule of the schema; the whole batch is rejected, nothing stored
    └── InvalidStoreURL         open_store() got a URL it cannot parse or a scheme it does not know
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base of every store error."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached."""


class StoreTimeout(StoreUnavailable):
    """A connect or command timeout passed."""


class InvalidStoreURL(StoreError, ValueError):
    """A store URL that open_store() cannot use."""


class InvalidEvent(StoreError, ValueError):
    """An event that breaks a schema rule. ``row`` is its index in the batch (None for a whole column)."""

    def __init__(self, row: int | None, field: str, value: Any, rule: str) -> None:
        self.row = row
        self.field = field
        self.value = value
        self.rule = rule
        where = f"event {row}: " if row is not None else ""
        super().__init__(f"{where}{field}={value!r} is invalid: must be {rule}")

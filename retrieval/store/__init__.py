"""Behaviour stores: one protocol (base.py), three backends (memory, sqlite, redis), one error tree (errors.py)."""

from retrieval.errors import InvalidEvent, InvalidStoreURL, StoreError, StoreTimeout, StoreUnavailable
from retrieval.store.base import BehaviorStore, StoreOptions, UserHistory, open_store

__all__ = [
    "BehaviorStore",
    "InvalidEvent",
    "InvalidStoreURL",
    "StoreError",
    "StoreOptions",
    "StoreTimeout",
    "StoreUnavailable",
    "UserHistory",
    "open_store",
]

"""Behaviour stores: one protocol (base.py), one URL factory (factory.py), three backends (memory, sqlite, redis),
one error tree (retrieval/errors.py)."""

from retrieval.errors import InvalidEvent, InvalidStoreURL, StoreError, StoreTimeout, StoreUnavailable
from retrieval.store.base import BehaviorStore, StoreOptions, UserHistory
from retrieval.store.factory import open_store

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

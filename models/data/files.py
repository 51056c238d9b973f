"""The dataset directory written by `longrank data ...` and read by training and `longrank ingest`.

    DIR/behaviors.parquet   user_id string, item_id int64, category_id int32, ts int64 (unix s), action uint8,
                            event_id string (unique, deterministic), plus source-specific columns
    DIR/meta.json           {"source", "actions", "n_users", "n_items", "n_categories", "n_behaviors", "order", ...}
    DIR/samples.parquet     (synthetic only) evaluation samples with ground truth

``behaviors.parquet`` is directly ingestible (`longrank ingest DIR --store URL`). The names here are the contract
between the dataset writers and their readers; keep them in one place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

BEHAVIORS_FILE = "behaviors.parquet"
META_FILE = "meta.json"
SAMPLES_FILE = "samples.parquet"

BEHAVIOR_FIELDS: list[pa.Field] = [
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("category_id", pa.int32(), nullable=False),
    pa.field("ts", pa.int64(), nullable=False),
    pa.field("action", pa.uint8(), nullable=False),
    pa.field("event_id", pa.string(), nullable=False),
]
"""The columns every behaviors.parquet starts with, in this order."""

SAMPLE_FIELDS: list[pa.Field] = [
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("category_id", pa.int32(), nullable=False),
    pa.field("ts", pa.int64(), nullable=False),
    pa.field("label", pa.uint8(), nullable=False),
    pa.field("p_true", pa.float32(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
]
"""The columns of samples.parquet (synthetic)."""

SPLITS = ("train", "valid", "test")


def behavior_schema(*extra: pa.Field) -> pa.Schema:
    """The behaviors.parquet schema: the common columns followed by ``extra`` source-specific ones."""
    return pa.schema([*BEHAVIOR_FIELDS, *extra])


def write_meta(out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write ``meta.json`` (sorted keys, so identical inputs give identical bytes)."""
    path = out_dir / META_FILE
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_meta(data_dir: Path) -> dict[str, Any]:
    """Read ``DIR/meta.json``; a clear FileNotFoundError when the directory is not a dataset."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a dataset directory (make one with `longrank data ...`)")
    meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return meta


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` (and parents) and return it as a Path."""
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path

"""MovieLens-100K as a longrank dataset directory, read from the recbole wheel in site-packages.

The data is research-only and may not be redistributed, so it is never copied into the repository: it is read
from ``recbole/dataset_example/ml-100k/`` of an installed ``recbole==1.2.1`` wheel (``pip install --no-deps
recbole==1.2.1``). The package is located with ``importlib.util.find_spec`` and never imported (its import pulls
dependencies that are not installed).

Mapping to the behaviour schema:
- every rating is one behaviour: ``action`` = rating (1..5), ``label`` = rating >= 4;
- ``category_id`` = the item's FIRST listed genre, numbered in the dataset's own genre order (``GENRES``, the
  order of MovieLens' u.genre file); an item with no genre, or not in the item file, gets ``UNKNOWN_CATEGORY``
  (0, the dataset's own "unknown" genre);
- rows are ordered by (timestamp, row), ``row`` being the 0-based line of the rating in ml-100k.inter (header not
  counted), so ties - frequent in this dataset - break the same way everywhere;
- the ratings date from 1997-1998 but stores refuse timestamps before 2000: every ``ts`` is shifted by
  ``TS_OFFSET_S`` (a whole number of days, so weekday and time of day are preserved); ``ts_original`` keeps the
  original value and meta.json records the offset.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.data.files import BEHAVIORS_FILE, behavior_schema, prepare_out_dir, write_meta

SOURCE = "ml100k"
INSTALL_HINT = "pip install --no-deps recbole==1.2.1"
TS_OFFSET_S = 27 * 365 * 86_400  # 851,472,000 s: 1997-09..1998-04 lands in 2024-09..2025-04
GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
GENRE_IDS: dict[str, int] = {name: i for i, name in enumerate(GENRES)}
UNKNOWN_CATEGORY = GENRE_IDS["unknown"]
ACTIONS = (1, 2, 3, 4, 5)
LICENCE_NOTE = (
    "MovieLens-100K (GroupLens, University of Minnesota): research use only, no redistribution; "
    "read from the installed recbole wheel, never committed."
)


class MovieLensMissing(FileNotFoundError):
    """The recbole wheel (or its ml-100k files) is not installed."""


def ml100k_dir() -> Path:
    """The directory holding ml-100k.inter and ml-100k.item inside the installed recbole package."""
    spec = importlib.util.find_spec("recbole")  # locates the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    for root in locations:
        candidate = Path(root) / "dataset_example" / "ml-100k"
        if (candidate / "ml-100k.inter").is_file() and (candidate / "ml-100k.item").is_file():
            return candidate
    raise MovieLensMissing(
        "MovieLens-100K not found: the files recbole/dataset_example/ml-100k/ml-100k.inter and ml-100k.item "
        f"come from the recbole wheel; install it with `{INSTALL_HINT}`"
    )


def _strip_types(frame: pd.DataFrame) -> pd.DataFrame:
    """recbole headers are typed (``user_id:token``); keep the names only."""
    return frame.rename(columns={c: c.split(":", 1)[0] for c in frame.columns})


def item_categories(source: Path | None = None) -> pd.Series:
    """item_id -> category_id (first listed genre; UNKNOWN_CATEGORY when none)."""
    path = (source or ml100k_dir()) / "ml-100k.item"
    items = _strip_types(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3))
    first = items["class"].str.split().str[0].fillna("unknown")
    unknown = sorted(set(first) - set(GENRE_IDS))
    if unknown:
        raise ValueError(f"{path}: genres {unknown} are not in the MovieLens genre list {list(GENRES)}")
    return pd.Series(first.map(GENRE_IDS).to_numpy(np.int32), index=items["item_id"].astype(np.int64).to_numpy())


def load_ml100k(source: Path | None = None) -> pd.DataFrame:
    """Every rating as a behaviour row, ordered by (ts, row); columns as in behaviors.parquet."""
    src = source or ml100k_dir()
    inter = _strip_types(
        pd.read_csv(
            src / "ml-100k.inter",
            sep="\t",
            dtype={"user_id:token": str, "item_id:token": np.int64, "rating:float": float, "timestamp:float": float},
        )
    )
    if not (inter["rating"] == inter["rating"].round()).all() or not inter["rating"].between(1, 5).all():
        raise ValueError(f"{src / 'ml-100k.inter'}: ratings must be whole numbers 1..5")
    row = np.arange(len(inter), dtype=np.int64)
    ts_original = inter["timestamp"].to_numpy().astype(np.int64)
    cats = item_categories(src)
    category = cats.reindex(inter["item_id"].to_numpy()).fillna(UNKNOWN_CATEGORY).to_numpy().astype(np.int32)
    rating = inter["rating"].to_numpy().astype(np.uint8)
    frame = pd.DataFrame(
        {
            "user_id": inter["user_id"].astype(str).to_numpy(),
            "item_id": inter["item_id"].to_numpy(np.int64),
            "category_id": category,
            "ts": ts_original + TS_OFFSET_S,
            "action": rating,
            "event_id": [f"{SOURCE}-{r}" for r in row],
            "label": (rating >= 4).astype(np.uint8),
            "row": row,
            "ts_original": ts_original,
        }
    )
    order = np.lexsort((row, ts_original))  # last key is primary: ts, then row
    return frame.iloc[order].reset_index(drop=True)


def write_ml100k(out_dir: str | Path, source: Path | None = None) -> dict[str, Any]:
    """Write DIR/behaviors.parquet and DIR/meta.json; return the meta."""
    out = prepare_out_dir(out_dir)
    frame = load_ml100k(source)
    schema = behavior_schema(
        pa.field("label", pa.uint8(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("ts_original", pa.int64(), nullable=False),
    )
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, out / BEHAVIORS_FILE, row_group_size=50_000)
    meta: dict[str, Any] = {
        "source": SOURCE,
        "actions": list(ACTIONS),
        "n_users": int(frame["user_id"].nunique()),
        "n_items": int(frame["item_id"].nunique()),
        "n_categories": len(GENRES),
        "n_behaviors": len(frame),
        "label_rate": round(float(frame["label"].mean()), 6),
        "order": "ts,row",
        "ts_offset_s": TS_OFFSET_S,
        "ts_note": "ts = ts_original + ts_offset_s (whole days), so the data passes the store's ts >= 2000 rule",
        "categories": list(GENRES),
        "category_rule": "first listed genre; no genre -> 0 (unknown)",
        "label_rule": "rating >= 4",
        "action_rule": "action = rating (1..5)",
        "licence": LICENCE_NOTE,
    }
    write_meta(out, meta)
    return meta

"""Bulk ingestion: stream events from a CSV or Parquet file into a BehaviorStore, batch by batch.

Input: a ``.csv`` / ``.csv.gz`` / ``.parquet`` file, or a dataset directory (``DIR/behaviors.parquet``). Columns
``user_id, item_id, category_id, ts`` are required; ``action`` (default 0) and ``event_id`` (idempotency) are
optional; other columns are ignored. Memory stays bounded by the batch size: Parquet is read with
``iter_batches``, CSV with pandas in chunks (every value read as text, converted here, so a bad value is reported
with its line instead of failing the whole chunk).

Every row ends up counted exactly once: ``read == accepted + duplicates + skipped``. A bad row (a value that is
not an integer, or an event that breaks a schema rule, see ``EventBatch.problems``) is reported with its place in
the file - CSV: its line number (the header is line 1, data row i is line i + 2; quoted values spanning lines
would shift this); Parquet: its 0-based row number - and the field, value and rule. By default ingestion stops at
the first bad row, after storing every row before it (re-running is safe when rows carry event ids); with
``skip_invalid`` bad rows are counted and skipped.

``default_actions`` reads the allowed action values of a dataset from its ``meta.json`` (the directory's own, or
the file's sibling), so ``longrank ingest DIR`` of MovieLens (ratings 1-5 as actions) needs no flag.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from retrieval.errors import InvalidEvent
from retrieval.events import MAX_ITEM_ID, EventBatch
from retrieval.store.base import BehaviorStore

REQUIRED_COLUMNS = ("user_id", "item_id", "category_id", "ts")
OPTIONAL_COLUMNS = ("action", "event_id")
INT_COLUMNS = ("item_id", "category_id", "ts", "action")
DEFAULT_BATCH_SIZE = 10_000
MAX_REPORTED = 10  # bad rows kept (with details) for the summary; all are counted


class IngestError(Exception):
    """The input cannot be ingested as a whole: unknown format, missing file or column, unreadable CSV."""


@dataclass(frozen=True)
class BadRow:
    """One rejected row and why."""

    where: str  # "line 7" (CSV) or "row 5" (Parquet, 0-based)
    field: str
    value: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}={self.value!r} is invalid: must be {self.rule}"


class IngestAborted(Exception):
    """A bad row stopped the ingestion; ``stats`` counts what was done before it (all of it stored)."""

    def __init__(self, bad: BadRow, stats: IngestStats) -> None:
        self.bad = bad
        self.stats = stats
        super().__init__(str(bad))


@dataclass
class IngestStats:
    """Counts of one ingestion; ``read == accepted + duplicates + skipped`` always holds."""

    path: str
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    skipped: int = 0
    batches: int = 0
    seconds: float = 0.0
    bad_rows: list[BadRow] = field(default_factory=list)  # the first MAX_REPORTED skipped rows

    @property
    def events_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"read {self.read:,}  accepted {self.accepted:,}  duplicates {self.duplicates:,}  "
            f"skipped {self.skipped:,}  in {self.seconds:.2f} s ({self.events_per_s:,.0f} events/s)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "batches": self.batches,
            "seconds": round(self.seconds, 4),
            "events_per_s": round(self.events_per_s, 1),
            "bad_rows": [str(b) for b in self.bad_rows],
        }


def resolve_events_path(path: str | Path) -> Path:
    """A file as given, or DIR/behaviors.parquet for a dataset directory; IngestError when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / "behaviors.parquet"
    if not p.is_file():
        raise IngestError(f"{p}: no such file (give a .csv, .csv.gz or .parquet file, or a dataset directory)")
    if _kind(p) is None:
        raise IngestError(f"{p}: unknown format; the name must end in .csv, .csv.gz or .parquet")
    return p


def default_actions(path: str | Path) -> frozenset[int] | None:
    """The "actions" of the dataset's meta.json (DIR/meta.json, or the file's sibling), when there is one."""
    p = Path(path)
    meta_path = p / "meta.json" if p.is_dir() else p.parent / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        actions = json.loads(meta_path.read_text(encoding="utf-8"))["actions"]
        return frozenset(int(a) for a in actions)
    except (ValueError, KeyError, TypeError) as exc:
        raise IngestError(f"{meta_path}: 'actions' must be a list of integers ({exc})") from exc


def ingest_file(
    path: str | Path,
    store: BehaviorStore,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    skip_invalid: bool = False,
    progress: bool = True,
) -> IngestStats:
    """Stream ``path`` into ``store``; validate with the store's allowed actions. Returns the counts.

    Raises IngestError for an unusable input and IngestAborted at the first bad row unless ``skip_invalid``.
    Store failures (StoreError) propagate unchanged.
    """
    if batch_size < 1:
        raise IngestError(f"batch_size={batch_size} must be >= 1")
    src = resolve_events_path(path)
    stats = IngestStats(path=str(src))
    total, chunks = _open_chunks(src, batch_size)
    actions = store.options.actions
    started = time.perf_counter()
    bar = tqdm(total=total, unit="ev", unit_scale=True, desc="ingest", file=sys.stderr, disable=not progress)
    with bar:
        for start, columns in chunks:
            n = len(columns["user_id"])
            bad, checked = _check_chunk(columns, n, actions)
            stored_upto = n if skip_invalid or not bad else min(bad)
            keep = np.setdiff1d(np.arange(stored_upto), np.fromiter(bad, np.int64, len(bad)), assume_unique=True)
            if len(keep):
                batch = checked if checked is not None and not bad else _batch(columns, keep)
                try:
                    accepted, duplicates = store.append(batch)
                except InvalidEvent as exc:  # the store's own rules differ from ours: still name the row
                    row = int(keep[exc.row]) if exc.row is not None else int(keep[0])
                    bad_row = BadRow(_where(src, start + row), exc.field, exc.value, exc.rule)
                    stats.seconds = time.perf_counter() - started
                    raise IngestAborted(bad_row, stats) from exc
                stats.accepted += accepted
                stats.duplicates += duplicates
            stats.batches += 1
            if bad and not skip_invalid:
                stats.read += len(keep)
                stats.seconds = time.perf_counter() - started
                first = min(bad)
                raise IngestAborted(_bad_row(src, start + first, bad[first]), stats)
            for row in sorted(bad):
                if len(stats.bad_rows) < MAX_REPORTED:
                    stats.bad_rows.append(_bad_row(src, start + row, bad[row]))
            stats.skipped += len(bad)
            stats.read += n
            bar.update(n)
    stats.seconds = time.perf_counter() - started
    return stats


# --- reading ------------------------------------------------------------------------------------------------------

Chunk = tuple[int, dict[str, npt.NDArray[Any]]]  # (index of the chunk's first data row, column -> values)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "csv"
    return None


def _wanted(names: list[str], path: Path) -> list[str]:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(names) or 'none'}; "
            f"required: {', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    return [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in names]


def _open_chunks(path: Path, batch_size: int) -> tuple[int | None, Iterator[Chunk]]:
    """(total rows when known, chunk iterator); checks the columns before any row is read."""
    if _kind(path) == "parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
        cols = _wanted(list(pf.schema_arrow.names), path)
        return pf.metadata.num_rows, _parquet_chunks(pf, cols, batch_size)
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: not a readable CSV file with a header line ({exc})") from exc
    cols = _wanted(header, path)
    return None, _csv_chunks(path, cols, batch_size)


def _parquet_chunks(pf: pq.ParquetFile, cols: list[str], batch_size: int) -> Iterator[Chunk]:
    start = 0
    for rb in pf.iter_batches(batch_size=batch_size, columns=cols):
        columns: dict[str, npt.NDArray[Any]] = {}
        for name in cols:
            arr = rb.column(name)
            if pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            columns[name] = arr.to_numpy(zero_copy_only=False)
        yield start, columns
        start += rb.num_rows


def _csv_chunks(path: Path, cols: list[str], batch_size: int) -> Iterator[Chunk]:
    start = 0
    reader = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=cols, chunksize=batch_size)
    try:
        for frame in reader:
            yield start, {name: frame[name].to_numpy(dtype=object) for name in cols}
            start += len(frame)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: unreadable CSV after data line {start + 1} ({exc})") from exc
    finally:
        reader.close()


# --- checking -----------------------------------------------------------------------------------------------------

_Problem = tuple[str, Any, str]  # field, value, rule


def _check_chunk(
    columns: dict[str, npt.NDArray[Any]], n: int, actions: frozenset[int]
) -> tuple[dict[int, _Problem], EventBatch | None]:
    """Convert the integer columns in place; return {row: first problem} for every bad row of the chunk, and the
    EventBatch built of its convertible rows (all rows when none is bad, so it can be stored as it is)."""
    bad: dict[int, _Problem] = {}
    for name in INT_COLUMNS:
        if name not in columns:
            continue
        values, not_int = _to_int64(columns[name])
        for i in np.flatnonzero(not_int).tolist():
            bad.setdefault(i, (name, columns[name][i], "an integer"))
        columns[name] = values
    users = columns["user_id"]
    columns["user_id"] = np.array(["" if u is None else u if isinstance(u, str) else str(u) for u in users], object)
    ok = np.setdiff1d(np.arange(n), np.fromiter(bad, np.int64, len(bad)))
    if not len(ok):
        return bad, None
    batch = _batch(columns, ok)
    for problem in batch.problems(actions=actions):
        assert problem.row is not None
        bad.setdefault(int(ok[problem.row]), (problem.field, problem.value, problem.rule))
    return bad, batch


def _to_int64(values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(int64 values, mask of values that are not integers in int64 range); bad slots hold 0."""
    kind = values.dtype.kind
    if kind in "iu":
        too_big = values > MAX_ITEM_ID if values.dtype == np.uint64 else np.zeros(len(values), bool)
        return np.where(too_big, 0, values).astype(np.int64), too_big
    if kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values != np.floor(values)) | (np.abs(values) >= 2.0**63)
        return np.where(bad, 0, values).astype(np.int64), bad
    items = values.tolist()
    if all(type(v) is str for v in items):
        try:  # fast path: Python int() syntax (surrounding spaces and a sign are fine)
            return np.asarray(values).astype(np.int64), np.zeros(len(items), dtype=bool)
        except (ValueError, OverflowError):
            pass
    out = np.zeros(len(items), dtype=np.int64)
    bad = np.zeros(len(items), dtype=bool)
    for i, v in enumerate(items):
        try:
            number = int(v) if isinstance(v, str) else None
        except ValueError:
            number = None
        if number is not None and -(2**63) <= number < 2**63:
            out[i] = number
        else:
            bad[i] = True
    return out, bad


def _batch(columns: dict[str, npt.NDArray[Any]], rows: npt.NDArray[np.int64]) -> EventBatch:
    return EventBatch.from_columns(
        user_id=columns["user_id"][rows].tolist(),
        item_id=columns["item_id"][rows],
        category_id=columns["category_id"][rows],
        ts=columns["ts"][rows],
        action=columns["action"][rows] if "action" in columns else None,
        event_id=columns["event_id"][rows].tolist() if "event_id" in columns else None,
    )


def _where(path: Path, row: int) -> str:
    return f"line {row + 2}" if _kind(path) == "csv" else f"row {row}"


def _bad_row(path: Path, row: int, problem: _Problem) -> BadRow:
    name, value, rule = problem
    return BadRow(_where(path, row), name, value, rule)

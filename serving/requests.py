"""The bodies of POST /v1/rank and POST /v1/events, decoded straight from the request bytes with msgspec.

Why not pydantic here: these two bodies carry up to thousands of rows, and a pydantic model per candidate cost more
than the GSU (1.2 ms for 500 candidates against 0.05 ms). msgspec validates while it parses, in C, and is strict the
way the API promises: no bool where an integer belongs (``true`` is not an item id), no string where a bool belongs
(``"yes"`` is not ``explore``), no float where an integer belongs, no unknown field.

Limits come BEFORE the work: the body is first decoded as an envelope whose row lists stay raw bytes
(``msgspec.Raw``: checked as JSON, not turned into objects), the rows are counted in those bytes (an object per
``{``, a number per ``,`` — exact for any body the schema admits), and a body over LONGRANK_MAX_CANDIDATES /
LONGRANK_MAX_EVENTS_PER_BATCH is refused then, so 100,000 candidates in a 4 MiB body never become 100,000 objects.

Two forms of the candidates, one response: the list ``"candidates": [{"item_id", "category_id"?}, ...]`` and the
columnar ``"item_ids": [...], "category_ids": [...]`` (``category_ids`` optional; a ``null`` entry = unknown),
which becomes two numpy arrays without a Python object per candidate. Exactly one form per request.

Every refusal is a ``BodyError`` (field, message, limit) that the API answers with its documented error body.
The OpenAPI schema of both bodies is generated from these very types (``openapi_components``), so schemathesis
fuzzes what the decoder enforces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta, Raw, Struct

from retrieval.events import EventBatch

ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
UNKNOWN_CATEGORY = 2**31 - 1  # stands for an absent category_id; no real category has it in practice

UserId = Annotated[str, Meta(min_length=1, max_length=128, pattern=ID_PATTERN, examples=["196"])]
ItemId = Annotated[int, Meta(ge=0, le=2**63 - 1, examples=[242])]
CategoryId = Annotated[int, Meta(ge=0, le=2**31 - 1, examples=[3])]
RequestId = Annotated[str, Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
TopN = Annotated[int, Meta(ge=1, description="how many to return (default: all candidates)")]
Explore = Annotated[bool, Meta(description="rank with AGE exploration (default: the configured policy)")]


class BodyError(ValueError):
    """A body the API refuses: ``field`` names where, ``limit`` the limit broken (if any), ``error`` the kind."""

    def __init__(self, field: str, message: str, *, error: str = "invalid_request", limit: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.error, self.limit = field, error, limit


class RankCandidate(Struct, forbid_unknown_fields=True):
    item_id: ItemId
    category_id: CategoryId | None = None


class RankEvent(Struct, forbid_unknown_fields=True):
    user_id: UserId
    item_id: ItemId
    category_id: CategoryId
    ts: Annotated[int, Meta(description="unix seconds, from 2000-01-01 to one day ahead", examples=[1764000000])]
    action: Annotated[int, Meta(ge=0, le=255, description="0 view, 1 click, 2 like/cart, 3 purchase")] = 0
    event_id: Annotated[str, Meta(min_length=1, max_length=128, pattern=ID_PATTERN,
                                  description="idempotency key")] | None = None  # fmt: skip


class _RankCommon(Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: UserId
    top_n: TopN | None = None
    explore: Explore | None = None
    request_id: RequestId | None = None


class _RankEnvelope(_RankCommon, kw_only=True):
    candidates: Raw = Raw()  # empty = absent; the bytes are validated as JSON but not decoded here
    item_ids: Raw = Raw()
    category_ids: Raw = Raw()


class _EventsEnvelope(Struct, forbid_unknown_fields=True):
    events: Raw


@dataclass(frozen=True)
class RankRequest:
    user_id: str
    items: npt.NDArray[np.int64]  # [C] distinct
    cats: npt.NDArray[np.int64]  # [C] UNKNOWN_CATEGORY where none was given
    top_n: int | None
    explore: bool | None
    request_id: str | None

    def categories(self) -> list[int | None]:
        """The categories as sent (None where absent), e.g. for the exploration log."""
        return [None if c == UNKNOWN_CATEGORY else c for c in self.cats.tolist()]


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]*)`")


def _field(prefix: str, path: str) -> str:
    """``$[3].item_id`` under ``candidates`` -> ``candidates[3].item_id``."""
    name = prefix + path
    return name[1:] if name.startswith(".") else (name or "body")


def _error(exc: msgspec.MsgspecError | RecursionError, prefix: str = "") -> BodyError:
    if isinstance(exc, RecursionError):  # msgspec raises it for JSON nested deeper than it recurses
        return BodyError("body", "not valid JSON here: nested too deeply")
    text = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return BodyError("body", f"not valid JSON ({text})")
    at = _AT.search(text)
    path = at.group("path") if at else ""
    message = text[: at.start()] if at else text
    unknown = _UNKNOWN.search(message)
    if unknown:  # name the unknown field itself
        return BodyError(_field(prefix, f"{path}.{unknown.group('name')}"), "unknown field (not allowed)")
    missing = _MISSING.search(message)
    if missing:
        return BodyError(_field(prefix, f"{path}.{missing.group('name')}"), "required")
    message = message.replace("`", "").rstrip(".")
    return BodyError(_field(prefix, path), message[:1].lower() + message[1:])


def _count_objects(raw: bytes) -> int:
    """Objects in a JSON array of flat objects whose strings hold no ``{`` (ids are [A-Za-z0-9_.:-])."""
    return raw.count(b"{")


def _count_numbers(raw: bytes) -> int:
    """Elements of a JSON array of numbers/nulls."""
    inner = raw.strip()[1:-1].strip()
    return inner.count(b",") + 1 if inner else 0


class RequestDecoders:
    """The decoders of one app, with its limits (settings are read once, in create_app)."""

    def __init__(self, max_candidates: int, max_events: int, *,
                 candidates_variable: str = "LONGRANK_MAX_CANDIDATES") -> None:  # fmt: skip
        self.max_candidates = max_candidates
        self.candidates_variable = candidates_variable  # the setting a refusal names (explain has its own)
        self.max_events = max_events
        rows = Meta(min_length=1, max_length=max_candidates)
        self._envelope = msgspec.json.Decoder(_RankEnvelope)
        self._candidates = msgspec.json.Decoder(Annotated[list[RankCandidate], rows])
        self._item_ids = msgspec.json.Decoder(Annotated[list[ItemId], rows])
        self._category_ids = msgspec.json.Decoder(Annotated[list[CategoryId | None], rows])
        self._events_envelope = msgspec.json.Decoder(_EventsEnvelope)
        self._events = msgspec.json.Decoder(Annotated[list[RankEvent], Meta(min_length=1, max_length=max_events)])

    # -- /v1/rank ------------------------------------------------------------------------------------------------

    def rank(self, body: bytes) -> RankRequest:
        try:
            env = self._envelope.decode(body)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise _error(exc) from None
        cands, item_ids, cat_ids = (_present(env.candidates), _present(env.item_ids), _present(env.category_ids))
        if (cands is None) == (item_ids is None):
            raise BodyError("candidates", "give exactly one of candidates (a list of objects) or item_ids (columns)")
        if cands is not None:
            if cat_ids is not None:
                raise BodyError("category_ids", "goes with item_ids, not with candidates")
            self._check_count("candidates", _count_objects(cands))
            items, cats = self._list_form(cands)
        else:
            assert item_ids is not None
            self._check_count("item_ids", _count_numbers(item_ids))
            items, cats = self._columnar_form(item_ids, cat_ids)
        if env.top_n is not None and env.top_n > self.max_candidates:
            raise _over("top_n", f"{env.top_n} exceeds", self.max_candidates, "", self.candidates_variable)
        _refuse_duplicates(items, "candidates[{}].item_id" if cands is not None else "item_ids[{}]")
        return RankRequest(env.user_id, items, cats, env.top_n, env.explore, env.request_id)

    def _check_count(self, field: str, n: int) -> None:
        if n > self.max_candidates:
            raise _over(field, f"{n} candidates exceed", self.max_candidates, " per request", self.candidates_variable)

    def _list_form(self, raw: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        try:
            rows: list[RankCandidate] = self._candidates.decode(raw)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise self._rows_error(exc, "candidates") from None
        n = len(rows)
        items = np.fromiter((c.item_id for c in rows), dtype=np.int64, count=n)
        cats = np.fromiter((UNKNOWN_CATEGORY if c.category_id is None else c.category_id for c in rows),
                           dtype=np.int64, count=n)  # fmt: skip
        return items, cats

    def _columnar_form(self, raw_items: bytes, raw_cats: bytes | None) -> tuple[npt.NDArray[np.int64],
                                                                                  npt.NDArray[np.int64]]:
        try:
            items = np.asarray(self._item_ids.decode(raw_items), dtype=np.int64)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise self._rows_error(exc, "item_ids") from None
        if raw_cats is None:
            return items, np.full(len(items), UNKNOWN_CATEGORY, dtype=np.int64)
        try:
            values: list[int | None] = self._category_ids.decode(raw_cats)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise self._rows_error(exc, "category_ids") from None
        if len(values) != len(items):
            raise BodyError("category_ids", f"has {len(values)} entries for {len(items)} item_ids; give one per item "
                            "(null = unknown)")  # fmt: skip
        if None in values:
            values = [UNKNOWN_CATEGORY if c is None else c for c in values]
        return items, np.asarray(values, dtype=np.int64)

    def _rows_error(self, exc: msgspec.MsgspecError | RecursionError, field: str) -> BodyError:
        err = _error(exc, field)
        if err.field == field and "length <=" in str(exc):
            return _over(field, "exceeds", self.max_candidates, " candidates per request", self.candidates_variable)
        return err

    # -- /v1/events ----------------------------------------------------------------------------------------------

    def events(self, body: bytes) -> EventBatch:
        try:
            raw = bytes(self._events_envelope.decode(body).events)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise _error(exc) from None
        n = _count_objects(raw)
        events_var = "LONGRANK_MAX_EVENTS_PER_BATCH"
        if n > self.max_events:
            raise _over("events", f"{n} events exceed", self.max_events, " per request", events_var)
        try:
            rows: list[RankEvent] = self._events.decode(raw)
        except (msgspec.MsgspecError, RecursionError) as exc:
            err = _error(exc, "events")
            if err.field == "events" and "length <=" in str(exc):
                raise _over("events", "exceed", self.max_events, " per request", events_var) from None
            raise err from None
        return EventBatch.from_columns(
            user_id=[e.user_id for e in rows],
            item_id=np.fromiter((e.item_id for e in rows), dtype=np.int64, count=len(rows)),
            category_id=np.fromiter((e.category_id for e in rows), dtype=np.int64, count=len(rows)),
            ts=np.fromiter((e.ts for e in rows), dtype=np.int64, count=len(rows)),
            action=np.fromiter((e.action for e in rows), dtype=np.int64, count=len(rows)),
            event_id=[e.event_id for e in rows],
        )

    # -- the OpenAPI schema --------------------------------------------------------------------------------------

    def openapi_components(self) -> dict[str, Any]:
        """JSON schemas of the request bodies, with this app's limits, for ``components.schemas``: RankRequest
        (oneOf the list and the columnar form) and EventsRequest."""
        rows = Meta(min_length=1, max_length=self.max_candidates,
                    description="at most LONGRANK_MAX_CANDIDATES, distinct item ids")  # fmt: skip
        cat_rows = Meta(min_length=1, max_length=self.max_candidates,
                        description="one per item id (null = unknown); absent = all unknown")  # fmt: skip
        by_list = msgspec.defstruct("RankByList", [("candidates", Annotated[list[RankCandidate], rows])],
                                    bases=(_RankCommon,), kw_only=True)  # fmt: skip
        by_columns = msgspec.defstruct("RankByColumns", [
            ("item_ids", Annotated[list[ItemId], rows]),
            ("category_ids", Annotated[list[CategoryId | None], cat_rows] | None, None),
        ], bases=(_RankCommon,), kw_only=True)  # fmt: skip
        events = msgspec.defstruct("EventsRequest", [
            ("events", Annotated[list[RankEvent], Meta(min_length=1, max_length=self.max_events)]),
        ], forbid_unknown_fields=True)  # fmt: skip
        (_, _, _), components = msgspec.json.schema_components(
            [by_list, by_columns, events], ref_template="#/components/schemas/{name}"
        )
        components["RankRequest"] = {"oneOf": [{"$ref": "#/components/schemas/RankByList"},
                                               {"$ref": "#/components/schemas/RankByColumns"}]}  # fmt: skip
        components["RankByList"]["examples"] = [{"user_id": "196", "top_n": 2, "candidates": [
            {"item_id": 242, "category_id": 3}, {"item_id": 302, "category_id": 7}, {"item_id": 377}]}]
        components["RankByColumns"]["examples"] = [{"user_id": "196", "top_n": 2, "item_ids": [242, 302, 377],
                                                    "category_ids": [3, 7, None]}]  # fmt: skip
        components["EventsRequest"]["examples"] = [{"events": [{"user_id": "196", "item_id": 242, "category_id": 3,
                                                    "ts": 1764000000, "action": 1, "event_id": "196-242-1764000000"}]}]
        return dict(components)


def _over(field: str, what: str, limit: int, unit: str, variable: str) -> BodyError:
    return BodyError(field, f"{what} the limit of {limit}{unit} ({variable})", error="limit_exceeded", limit=limit)


def _present(raw: Raw) -> bytes | None:
    """The raw bytes of a field, None when absent or null."""
    data = bytes(raw)
    return None if not data or data.strip() == b"null" else data


def _refuse_duplicates(items: npt.NDArray[np.int64], field: str) -> None:
    """A ranking has one slot per item: name the first repeated position."""
    if len(items) < 2:
        return
    _, first, counts = np.unique(items, return_index=True, return_counts=True)
    if counts.max() > 1:
        repeated = items[first[np.argmax(counts > 1)]]
        where = int(np.flatnonzero(items == repeated)[1])
        raise BodyError(field.format(where), f"item {int(repeated)} appears more than once; candidates must be "
                        "distinct", error="duplicate_candidate")  # fmt: skip


def request_body(component: str) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is the component ``component``."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{component}"}}}}}  # fmt: skip

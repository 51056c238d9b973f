"""The response body of POST /v1/explain (pydantic, for the OpenAPI schema and the tests' validation); built by
serving/explain.py."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExplainBehavior(_Strict):
    position: int = Field(description="0-based position in the user's whole history (0 = oldest)")
    item_id: int
    category_id: int
    ts: int = Field(description="unix seconds")
    action: int


class RetrievedBehavior(ExplainBehavior):
    slot: int = Field(description="the GSU's order (0 = most relevant)")
    age_s: int = Field(description="seconds between the behaviour and the request")
    kind: str = Field(description="the search that found it: category (the candidate's category, SIM hard search), "
                      "item (one of the candidate item's own behaviours) or soft (a nearby item vector)")
    same_item: bool = Field(description="the behaviour is on the candidate item itself")
    attention: float | None = Field(description="ESU attention weight, mean over the heads (null: no ESU)")
    attention_heads: list[float] = Field(description="ESU attention weight per head; each head sums to 1 over the "
                                         "retrieved behaviours")


class Bins(_Strict):
    position: list[int] = Field(description="bin edges as history positions: [0, …, length]")
    ts: list[int] = Field(description="the time of the behaviour at each edge (the last one at the final edge)")


class HistoryOut(_Strict):
    length: int = Field(description="behaviours in the user's whole history")
    short_len: int = Field(description="S: the short branch reads the last S behaviours")
    short_start: int = Field(description="position of the first behaviour of the short window")
    first_ts: int | None
    last_ts: int | None
    bins: Bins
    short: list[ExplainBehavior] = Field(description="the short window, oldest first")


class ExplainedItem(_Strict):
    item_id: int
    category_id: int | None = Field(description="as sent (null: not given)")
    rank: int = Field(description="1-based position by pctr, as /v1/rank ranks without exploration")
    score: float = Field(description="equal to pctr (the explainer does not explore)")
    pctr: float = Field(description="the model's click probability: what /v1/rank returns for the same request")
    score_short_only: float = Field(description="the score when the user's history is only its last short_len "
                                    "behaviours (GSU and statistics then see only those)")
    long_contribution: float = Field(description="pctr − score_short_only: what the history beyond the short "
                                     "window adds")
    retrieved: list[RetrievedBehavior] = Field(description="the GSU's behaviours for this candidate, in its order")
    short_attention: list[float] | None = Field(description="DIN weight of each behaviour of history.short "
                                                "(null: the model mean-pools)")
    stats: dict[str, float] = Field(description="target-aware history statistics fed to the model, by name (raw "
                                    "values before standardisation; empty when the model has none)")
    category_density: list[int] = Field(description="behaviours of the candidate's category in each timeline bin")


class ExplainOut(_Strict):
    request_id: str
    model_version: str
    variant: str = Field(description="the model variant, e.g. sim_can")
    gsu: str = Field(description="the GSU: none, hard, soft or hybrid")
    degraded: bool = Field(description="the history could not be read in time: explained without it")
    now: int = Field(description="the request's clock (unix seconds): ages are measured from it")
    history: HistoryOut
    heads: int = Field(description="ESU heads (0: the model has no long branch)")
    items: list[ExplainedItem] = Field(description="best first, cut to top_n")

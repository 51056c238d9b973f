"""ModelConfig: every architecture choice of a RankerModel, written into each artifact as ``config.json``.

An artifact rebuilds its model from this config alone, so it holds architecture only (no optimiser, learning rate
or epoch count: those belong to the training run and go into ``metrics.json``). ``ModelConfig.for_variant(name)``
gives the defaults of each named variant; keyword overrides change single fields.

Variants (DESIGN.md §4):

==========  =================================================================================================
dnn         candidate ⊕ average of the last S behaviours → MLP
din         candidate ⊕ DIN target attention over the last S behaviours → MLP
din_long    din ⊕ target attention over the WHOLE sequence (the expensive reference)
sim_hard    din ⊕ ESU over the top-K behaviours of the hard (category) search ⊕ history statistics
sim_soft    din ⊕ ESU over the top-K behaviours of the soft (item-vector) search ⊕ history statistics
sim_hybrid  din ⊕ ESU over the hybrid search (the target item's own behaviours ∪ soft ∪ category) ⊕ statistics
can         din ⊕ CAN co-action of the candidate with each short-term behaviour
sim_can     sim_hybrid ⊕ CAN
==========  =================================================================================================

dnn, din, din_long and can see the short history only (din_long: the whole sequence through attention); they are
the references the long-history variants must beat. The long-history variants read the whole stored history twice:
through the GSU's top-K (the ESU) and through target-aware statistics (retrieval.history_stats), and map item ids
through an exact vocabulary (``vocabulary``; unseen ids share hashed overflow rows) that comes with the item
tables fitted on the training data (retrieval.item_tables). With ``vocabulary=False`` ids are hashed into
``item_buckets`` rows and no item tables are needed (the exploration simulator's setting).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

VARIANTS: tuple[str, ...] = ("dnn", "din", "din_long", "sim_hard", "sim_soft", "sim_hybrid", "can", "sim_can")
GSU_KINDS: tuple[str, ...] = ("none", "hard", "soft", "hybrid")
SHORT_ONLY = {"short_arch": "din", "gsu": "none", "coaction": False, "full_attention": False, "stats": False,
              "vocabulary": False}  # fmt: skip
ATTENTION_NORMS: tuple[str, ...] = ("softmax", "sum")


class ConfigError(ValueError):
    """A ModelConfig field is out of range, unknown, or inconsistent with another field."""


_LONG = {"short_arch": "din", "coaction": False, "full_attention": False, "stats": True, "vocabulary": True}
_VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "dnn": {**SHORT_ONLY, "short_arch": "mean"},
    "din": SHORT_ONLY,
    "din_long": {**SHORT_ONLY, "full_attention": True},
    "sim_hard": {**_LONG, "gsu": "hard"},
    "sim_soft": {**_LONG, "gsu": "soft"},
    "sim_hybrid": {**_LONG, "gsu": "hybrid"},
    "can": {**SHORT_ONLY, "coaction": True},
    "sim_can": {**_LONG, "gsu": "hybrid", "coaction": True},
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one RankerModel. Defaults follow the papers where they give a number (REFERENCE.md)."""

    variant: str = "sim_can"
    # which sub-architectures exist (set by for_variant; overridable, e.g. gsu="soft" for sim_can)
    short_arch: str = "din"  # "din" (target attention) or "mean" (dnn's average pooling)
    gsu: str = "hybrid"  # "none" | "hard" | "soft" | "hybrid": the long-term branch and how it retrieves
    coaction: bool = True  # CAN branch
    full_attention: bool = False  # din_long: target attention over the whole sequence
    stats: bool = True  # target-aware statistics of the whole history (retrieval.history_stats) into the OverArch
    vocabulary: bool = True  # ids -> rows through the item tables' exact vocabulary; False: hashed buckets

    # embeddings: rows of the tables (vocabulary: 1 + known + overflow, set by training from the data;
    # hashing: retrieval.hashing.bucket into this many rows); row 0 is padding
    item_buckets: int = 2**17
    category_buckets: int = 4096
    action_buckets: int = 8  # index 0 = padding, action a -> 1 + min(a, action_buckets - 2)
    item_dim: int = 16  # also CAN's feed size
    category_dim: int = 8
    use_action: bool = True  # add an action embedding (size item_dim + category_dim) to each behaviour
    time_buckets: int = 32  # log2 buckets of now - ts (index 0 = padding)
    time_dim: int = 8
    user_dim: int = 0  # > 0: a user-id embedding of this size into the OverArch (ids hashed into user_buckets rows)
    user_buckets: int = 2**14  # rows of the user table (retrieval.hashing.user_bucket; an unseen user's row stays 0)

    # short-term branch (DIN)
    short_len: int = 50  # S: the last S behaviours
    attention_hidden: tuple[int, ...] = (32, 16)  # DIN attention MLP over [q, k, q-k, q*k] (sigmoid, as DIN)
    attention_norm: str = "softmax"  # "softmax" (masked) or "sum" (DIN's raw weights); see layers.TargetAttention
    full_chunk_elements: int = 2**20  # din_long: candidates are processed in chunks of ~this many (C·L) pairs

    # long-term branch (SIM ESU)
    long_k: int = 64  # K: behaviours the GSU retrieves per candidate
    heads: int = 4  # ESU attention heads
    head_dim: int = 16  # size of the W_b z / W_a e_a projections of one head
    item_hits: int = 16  # hybrid search: at most this many of the target item's own behaviours lead the list

    # target-aware history statistics (retrieval.history_stats.StatsSpec)
    stats_windows: tuple[int, ...] = (50, 500)
    stats_bins: int = 8  # StatsArch: quantile bins of each statistic's piecewise-linear encoding
    stats_dim: int = 32  # StatsArch: width of that encoding after its linear layer
    strong_action: int = 2  # actions >= this count as strong (likes, purchases; MovieLens: rating >= 4)
    vector_dim: int = 16  # item tables: size of the co-occurrence item vectors (the soft search's space)
    init_from_vectors: bool = True  # item embeddings start from the item vectors' first item_dim dimensions
    n_clusters: int = 256  # soft search: Faiss IVF clusters of the item index
    nprobe: int = 16  # soft search: clusters probed per query

    # co-action branch (CAN)
    can_dims: tuple[int, ...] = (16, 8, 4)  # micro-MLP layer sizes, no bias: D' = 16·8 + 8·4 = 160
    can_orders: int = 3  # element-wise powers 1..orders of the feed vector
    can_category: bool = True  # the candidate's category induces a second micro-MLP beside its item id
    can_init_std: float = 0.01

    # over arch
    mlp_dims: tuple[int, ...] = (200, 80)  # hidden layers; the output layer (1) is added
    dropout: float = 0.1  # in the over MLP's hidden layers (AGE also uses it for MC-dropout)

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (e.g. dataset); not architecture

    def __post_init__(self) -> None:
        self.validate()

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def for_variant(cls, name: str, **overrides: Any) -> ModelConfig:
        """The defaults of variant ``name`` with ``overrides`` applied (field names of ModelConfig)."""
        if name not in _VARIANT_DEFAULTS:
            raise ConfigError(f"variant={name!r} is unknown; expected one of: {', '.join(VARIANTS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s) {unknown}; known fields: {sorted(known)}")
        values = {**_VARIANT_DEFAULTS[name], **overrides, "variant": name}
        return cls(**values)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # -- JSON ---------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; unknown keys are refused (a config from a newer or foreign build)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s) {unknown}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = tuple(value) if isinstance(value, list) and name != "extra" else value
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    # -- derived sizes ------------------------------------------------------------------------------------------

    @property
    def behavior_dim(self) -> int:
        """Size of one behaviour (and of the candidate): item ⊕ category embedding."""
        return self.item_dim + self.category_dim

    @property
    def can_param_size(self) -> int:
        """D': the number of micro-MLP weights one induction id carries."""
        return sum(a * b for a, b in zip(self.can_dims[:-1], self.can_dims[1:], strict=False))

    @property
    def can_out_dim(self) -> int:
        per_order = sum(self.can_dims[1:])
        return per_order * self.can_orders * (2 if self.can_category else 1)

    @property
    def z_dim(self) -> int:
        """One retrieved behaviour in the ESU: behaviour ⊕ time embedding."""
        return self.behavior_dim + self.time_dim

    @property
    def long_extras(self) -> int:
        """Per-candidate extras of a retrieved slot: its search tag one-hot (N_TAGS − 1) ⊕ relevance (item tables)."""
        from retrieval.gsu_kinds import N_TAGS

        return N_TAGS - 1 + (1 if self.vocabulary else 0)

    @property
    def long_dim(self) -> int:
        """ESU output: heads × (z_dim + extras)."""
        return self.heads * (self.z_dim + self.long_extras)

    @property
    def n_stats(self) -> int:
        """Width of the statistics input (retrieval.history_stats.stat_names)."""
        from retrieval.history_stats import stat_names

        return len(stat_names(self.stats_spec, self.vocabulary)) if self.stats else 0

    @property
    def stats_spec(self) -> Any:
        from retrieval.history_stats import StatsSpec

        return StatsSpec(windows=self.stats_windows, strong_action=self.strong_action)

    # -- validation ---------------------------------------------------------------------------------------------

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant={self.variant!r} is unknown; expected one of: {', '.join(VARIANTS)}")
        if self.gsu not in GSU_KINDS:
            raise ConfigError(f"gsu={self.gsu!r} must be one of {GSU_KINDS}")
        if self.short_arch not in ("din", "mean"):
            raise ConfigError(f"short_arch={self.short_arch!r} must be 'din' or 'mean'")
        if self.attention_norm not in ATTENTION_NORMS:
            raise ConfigError(f"attention_norm={self.attention_norm!r} must be one of {ATTENTION_NORMS}")
        positive = {
            "item_buckets": (self.item_buckets, 2),
            "category_buckets": (self.category_buckets, 2),
            "action_buckets": (self.action_buckets, 2),
            "time_buckets": (self.time_buckets, 2),
            "item_dim": (self.item_dim, 1),
            "category_dim": (self.category_dim, 1),
            "time_dim": (self.time_dim, 1),
            "user_dim": (self.user_dim, 0),
            "user_buckets": (self.user_buckets, 2),
            "short_len": (self.short_len, 1),
            "long_k": (self.long_k, 1),
            "item_hits": (self.item_hits, 0),
            "stats_bins": (self.stats_bins, 1),
            "stats_dim": (self.stats_dim, 1),
            "heads": (self.heads, 1),
            "head_dim": (self.head_dim, 1),
            "vector_dim": (self.vector_dim, 1),
            "n_clusters": (self.n_clusters, 1),
            "nprobe": (self.nprobe, 1),
            "can_orders": (self.can_orders, 1),
            "full_chunk_elements": (self.full_chunk_elements, 1),
        }
        for name, (value, low) in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name}={value!r} must be an integer >= {low}")
        for name in ("attention_hidden", "mlp_dims", "can_dims", "stats_windows"):
            dims = getattr(self, name)
            if not isinstance(dims, tuple) or any(not isinstance(d, int) or d < 1 for d in dims):
                raise ConfigError(f"{name}={dims!r} must be a list of positive integers")
        if len(self.can_dims) < 2:
            raise ConfigError(f"can_dims={list(self.can_dims)} needs at least an input and an output size")
        if self.coaction and self.can_dims[0] != self.item_dim:
            raise ConfigError(
                f"can_dims[0]={self.can_dims[0]} must equal item_dim={self.item_dim}: CAN feeds each behaviour's "
                "item embedding into the micro-MLP"
            )
        if self.gsu in ("soft", "hybrid") and not self.vocabulary:
            raise ConfigError(f"gsu={self.gsu!r} searches the item tables' vectors: it needs vocabulary=True")
        if self.stats and not self.stats_windows:
            raise ConfigError("stats_windows must hold at least one window")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout!r} must be in [0, 1)")
        if not self.can_init_std > 0:
            raise ConfigError(f"can_init_std={self.can_init_std!r} must be > 0")
        if self.nprobe > self.n_clusters:
            raise ConfigError(f"nprobe={self.nprobe} must be <= n_clusters={self.n_clusters}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a JSON object, got {type(self.extra).__name__}")

"""RankerModel: one CTR model, several named sub-architectures, every variant of DESIGN.md §4.

Reading order (top to bottom): EmbeddingArch → ShortArch → LongArch → FullArch → CoActionArch → StatsArch →
OverArch → RankerModel → score. Shapes: C candidate rows, U users, S short length, K retrieved per candidate, L
full length, d = item_dim + category_dim (one behaviour or candidate), t = time_dim, E = per-slot extras (the
search tag one-hot, and the relevance with item tables), F = statistics.

    candidate ─┬──────────────────────────────────────────────────────────────────┐
    short  [U,S] ── ShortArch (DIN target attention, or mean for dnn) ────────────┤
    long   [C,K] ── LongArch (SIM ESU over GSU top-K ⊕ time, tags, relevance) ────┤
    full   [U,L] ── FullArch (din_long: target attention over everything) ────────┼─► OverArch 200→80→1 ─► logit
    short items ── CoActionArch (CAN micro-MLPs induced by the candidate) ────────┤
    stats  [C,F] ── StatsArch (statistics, standardised + quantile-encoded) ──────┤
    user   [U]   ── EmbeddingArch.user (optional user-id embedding) ──────────────┘

User-side work (short keys, CAN feed powers, the k-part of DIN's attention) is computed once per user and
broadcast over that user's candidates (a view when U == 1); the long branch's behaviour ⊕ time embeddings are
computed once per distinct GSU row and read through a slot index (hard search: one row per category), and only the
small per-candidate extras (tag, relevance) are per candidate. The model never trains itself: models/train.py owns
the optimiser and the loss.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from models.config import ModelConfig
from models.features import NO_LOOKUPS, Batch, Lookups, RetrievedLike, Searcher, build_batch
from models.layers import (
    MLP,
    CoActionUnit,
    MultiHeadTargetAttention,
    TargetAttention,
    TimeBuckets,
    distinct_rows,
    per_candidate,
)
from retrieval.events import Behaviors
from retrieval.gsu_kinds import N_TAGS
from retrieval.history_view import HistoryView


class RankerOutput(NamedTuple):
    logits: Tensor  # [C] click logit


class CandidateFree(NamedTuple):
    """The parts of a forward that do not depend on the candidate embedding h (RankerModel.context)."""

    short_seq: Tensor  # [U,S,d] short-term behaviour embeddings
    long_z: Tensor | None  # behaviour ⊕ time of the retrieved behaviours: [R,d+t] rows (long_slot) or [C,K,d+t]
    long_slot: Tensor | None  # [C,K] the row of long_z filling each slot; None: long_z is per slot
    full_seq: Tensor | None  # [U,L,d] the whole sequence (din_long)
    coaction: Tensor | None  # [C, can_out] CAN's output (induced by the candidate's ids)
    stats: Tensor | None  # [C,F] standardised history statistics
    user: Tensor | None  # [C,user_dim] the user-id embedding of each candidate's user

    def take(self, rows: Tensor) -> CandidateFree:
        """The per-candidate parts restricted to candidate ``rows`` (user-side parts and long_z's rows shared)."""
        long_z, slot = self.long_z, self.long_slot
        if long_z is not None:
            if slot is None:  # per-slot z: make it rows + slots
                c, k, dz = long_z.shape
                long_z, slot = long_z.reshape(c * k, dz), torch.arange(c * k).view(c, k)
            slot = slot.index_select(0, rows)

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, rows)

        return CandidateFree(self.short_seq, long_z, slot, self.full_seq, pick(self.coaction), pick(self.stats),
                             pick(self.user))  # fmt: skip


class EmbeddingArch(nn.Module):
    """Hashed id embeddings shared by the short, long and full branches (bucket 0 = padding = zeros).
    A behaviour is item ⊕ category, plus an action embedding of the same size (added, like a position
    embedding, so that the target attention can compare behaviours with the candidate); the candidate has no
    action."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(cfg.item_buckets, cfg.item_dim, padding_idx=0)
        self.category = nn.Embedding(cfg.category_buckets, cfg.category_dim, padding_idx=0)
        self.action = nn.Embedding(cfg.action_buckets, cfg.behavior_dim, padding_idx=0) if cfg.use_action else None
        for table in (self.item, self.category, self.action):
            if table is not None:
                nn.init.normal_(table.weight, std=0.1)
                with torch.no_grad():
                    table.weight[0].zero_()
        # optional user-id embedding, started at zero: a user training never saw keeps the all-zero row (the
        # average user) instead of a random one
        self.user = nn.Embedding(cfg.user_buckets, cfg.user_dim, padding_idx=0) if cfg.user_dim else None
        if self.user is not None:
            nn.init.zeros_(self.user.weight)

    @torch.no_grad()
    def init_items(self, vectors: npt.NDArray[np.float32], std: float = 0.1) -> None:
        """Start the item table from item vectors [rows, v] (the item tables' co-occurrence vectors): their first
        item_dim dimensions, scaled to ``std``; rows without a vector keep their random start."""
        width = min(vectors.shape[1], self.item.embedding_dim)
        v = torch.from_numpy(np.ascontiguousarray(vectors[:, :width], dtype=np.float32))
        real = v.abs().sum(1) > 0
        scale = std / max(float(v[real].std()), 1e-6) if bool(real.any()) else 0.0
        self.item.weight[real, :width] = v[real] * scale
        self.item.weight[0].zero_()

    def candidate(self, item: Tensor, cat: Tensor) -> Tensor:  # [C], [C] -> [C,d]
        return torch.cat([self.item(item), self.category(cat)], dim=-1)

    def behaviors(self, item: Tensor, cat: Tensor, action: Tensor) -> Tensor:  # [...,T] x3 -> [...,T,d]
        out = torch.cat([self.item(item), self.category(cat)], dim=-1)
        return out + self.action(action) if self.action is not None else out


class ShortArch(nn.Module):
    """The last S behaviours: DIN target attention (din and every richer variant) or a masked mean (dnn)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.behavior_dim
        din = cfg.short_arch == "din"
        self.attention = TargetAttention(d, cfg.attention_hidden, cfg.attention_norm) if din else None
        self.out_dim = d

    def forward(self, cand: Tensor, seq: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        """cand [C,d], seq [U,S,d], mask [U,S], user_of [C] -> [C,d]."""
        if self.attention is not None:
            out: Tensor = self.attention(cand, seq, mask, user_of)
            return out
        m = mask.to(seq.dtype)[..., None]  # [U,S,1]
        mean = (seq * m).sum(1) / m.sum(1).clamp(min=1.0)  # [U,d]
        return per_candidate(mean, user_of)  # [C,d]


class LongArch(nn.Module):
    """SIM's ESU over the GSU's top-K behaviours of each candidate: z_j = e_j ⊕ time(now − ts_j), plus per-candidate
    extras of each slot (which search found it and whether it is the target item; with item tables the relevance);
    multi-head target attention with the candidate -> [C, heads·(d+t+E)].

    z does not depend on the candidate, only on the retrieved behaviour, and the candidates of one request retrieve
    many behaviours in common (hard search: one list per category; the hybrid search: the category's latest, the
    user's favourites). ``memory`` therefore embeds each DISTINCT retrieved behaviour once and a slot index [C,K]
    says which row of z fills each slot: for one user build_batch hands over the GSU's grouping by history position
    (``Batch.long_rows`` / ``long_slot``); otherwise, when there are more candidates than users (the simulator),
    equal rows of K are found here (``distinct_rows``); training batches (one candidate per user) embed every slot
    ([C,K,d+t])."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.time = TimeBuckets(cfg.time_buckets, cfg.time_dim)
        self.esu = MultiHeadTargetAttention(cfg.behavior_dim, cfg.z_dim, cfg.heads, cfg.head_dim, cfg.long_extras,
                                            tag_dim=N_TAGS - 1)  # fmt: skip
        self.out_dim = cfg.long_dim

    def memory(self, emb: EmbeddingArch, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """-> (z, slot): z of the distinct retrieved behaviours ([R+1,d+t], build_batch's) or rows ([G·K,d+t]) and
        slot [C,K]; or z [C,K,d+t] and None."""
        if batch.long_slot is not None and batch.long_rows is not None:
            item, cat, action, dt = batch.long_rows  # [R+1] each; column 0 is the padding
            return torch.cat([emb.behaviors(item, cat, action), self.time(dt)], dim=-1), batch.long_slot
        item, cat, action, dt = _need(batch, "long_item", "long_cat", "long_action", "long_dt")  # [C,K] each
        share = batch.n_candidates > batch.n_users  # several candidates per user: rows may repeat
        groups = distinct_rows(item, cat, action, dt) if share else None
        if groups is None:
            return torch.cat([emb.behaviors(item, cat, action), self.time(dt)], dim=-1), None  # [C,K,d+t]
        first, row_of = groups  # [G], [C]
        item, cat, action, dt = (x.index_select(0, first) for x in (item, cat, action, dt))  # [G,K] each
        z = torch.cat([emb.behaviors(item, cat, action), self.time(dt)], dim=-1)  # [G,K,d+t]
        g, k, dz = z.shape
        return z.reshape(g * k, dz), row_of[:, None] * k + torch.arange(k)  # [G·K,d+t], [C,K]

    def forward(self, cand: Tensor, z: Tensor, slot: Tensor | None, mask: Tensor, tag: Tensor,
                rel: Tensor | None) -> Tensor:  # fmt: skip
        """cand [C,d], z [R,d+t] + slot [C,K] (or z [C,K,d+t], slot None), mask/tag/rel [C,K] -> [C, heads·(d+t+E)]."""
        out: Tensor = self.esu(cand, z, mask, slot, tag, rel)
        return out


class FullArch(nn.Module):
    """din_long's reference branch: DIN target attention over the WHOLE sequence [U,L,d] (its own parameters).
    Candidates are processed in chunks so that one chunk holds about ``full_chunk_elements`` (C·L) pairs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention = TargetAttention(cfg.behavior_dim, cfg.attention_hidden, cfg.attention_norm)
        self.chunk_elements = cfg.full_chunk_elements
        self.out_dim = cfg.behavior_dim

    def forward(self, cand: Tensor, seq: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        """cand [C,d], seq [U,L,d], mask [U,L], user_of [C] -> [C,d]."""
        chunk = max(1, self.chunk_elements // max(1, seq.shape[1]))
        out: Tensor = self.attention(cand, seq, mask, user_of, chunk=chunk)
        return out


class CoActionArch(nn.Module):
    """CAN. Induction: the candidate's item id (and category) look up their own parameter vectors of size D'
    (parameter independence: separate from the ordinary embeddings; init N(0, can_init_std)); feed: each
    short-term behaviour's item embedding. -> [C, (1 or 2) · orders · Σ can_dims[1:]]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.unit = CoActionUnit(cfg.can_dims, cfg.can_orders)
        self.induce_item = nn.Embedding(cfg.item_buckets, self.unit.param_size)
        self.induce_cat = nn.Embedding(cfg.category_buckets, self.unit.param_size) if cfg.can_category else None
        for table in (self.induce_item, self.induce_cat):
            if table is not None:
                nn.init.normal_(table.weight, std=cfg.can_init_std)
        self.out_dim = cfg.can_out_dim

    def forward(self, cand_item: Tensor, cand_cat: Tensor, feed: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        """cand_item [C], cand_cat [C], feed [U,S,item_dim], mask [U,S], user_of [C] -> [C, out_dim].

        Both induction tables run through ONE unit call (their rows stacked). One user (serving): once per distinct
        id of each table (a request's 500 candidates span few categories), then gathered; several users: per row."""
        pairs = [(self.induce_item, cand_item)] + ([(self.induce_cat, cand_cat)] if self.induce_cat is not None else [])
        c = cand_item.shape[0]
        if feed.shape[0] == 1:
            distinct = [torch.unique(ids, return_inverse=True) for _, ids in pairs]
            params = torch.cat([table(ids) for (table, _), (ids, _) in zip(pairs, distinct, strict=True)])
            pooled: Tensor = self.unit(params, feed, mask, user_of.new_zeros(params.shape[0]))  # [Σn, out]
            parts, start = [], 0
            for ids, inverse in distinct:
                parts.append(pooled[start : start + ids.shape[0]].index_select(0, inverse))  # [C, out]
                start += ids.shape[0]
            return torch.cat(parts, dim=-1)
        params = torch.cat([table(ids) for table, ids in pairs])  # [T·C, D']
        pooled = self.unit(params, feed, mask, user_of.repeat(len(pairs)))  # [T·C, out]
        return pooled.view(len(pairs), c, -1).transpose(0, 1).reshape(c, -1)


class StatsArch(nn.Module):
    """Target-aware history statistics x [C,F] (retrieval.history_stats), read two ways and concatenated:

    - standardised with the training split's mean and standard deviation and clipped to ±CLIP deviations;
    - a piecewise-linear encoding over each statistic's training quantiles (``stats_bins`` bins: bin t holds
      clip((x − e_t) / (e_{t+1} − e_t), 0, 1)) mixed by one linear layer and a ReLU into ``stats_dim`` values: counts,
      days and similarities act on a click far from linearly, and this gives the network their shape cheaply (the
      numerical-feature encodings of Gorishniy et al., 2022).

    The buffers are set by ``fit`` before training and saved with the weights. A statistic that never varied in
    training (MovieLens: the target is never in its own history) is zeroed in both views: the network never learnt
    what its other values mean (fed raw, such a value once gave pCTR 1.0 to every movie a user had rated)."""

    CLIP = 8.0
    mean: Tensor
    scale: Tensor
    keep: Tensor
    edges: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        f, t = cfg.n_stats, cfg.stats_bins
        self.register_buffer("mean", torch.zeros(f))
        self.register_buffer("scale", torch.ones(f))
        self.register_buffer("keep", torch.ones(f))
        self.register_buffer("edges", torch.linspace(0, 1, t + 1).repeat(f, 1))  # [F, T+1]
        self.encode = nn.Linear(f * t, cfg.stats_dim)
        self.out_dim = f + cfg.stats_dim

    @torch.no_grad()
    def fit(self, stats: Tensor) -> None:
        """stats [N,F] of the training samples -> the standardisation and the bin edges."""
        std = stats.std(0)
        self.mean.copy_(stats.mean(0))
        self.scale.copy_(std.clamp(min=1e-3))
        self.keep.copy_((std > 1e-6).to(self.keep.dtype))
        levels = torch.linspace(0, 1, self.edges.shape[1])
        self.edges.copy_(torch.quantile(stats.double(), levels.double(), dim=0).T.float())  # [F, T+1]

    def forward(self, stats: Tensor) -> Tensor:  # [C,F] -> [C, F + stats_dim]
        z = ((stats - self.mean) / self.scale).clamp(-self.CLIP, self.CLIP) * self.keep  # [C,F]
        low, width = self.edges[:, :-1], self.edges[:, 1:] - self.edges[:, :-1]  # [F,T] each
        filled = ((stats[:, :, None] - low) / width.clamp(min=1e-6)).clamp(0.0, 1.0)  # [C,F,T]
        filled = filled * (width > 1e-6) * self.keep[:, None]  # empty bins and constant statistics say nothing
        h = torch.relu(self.encode(filled.flatten(1)))  # [C, stats_dim]
        return torch.cat([z, h], dim=-1)


class OverArch(nn.Module):
    """The final MLP (200→80→1 by default, ReLU, dropout) over the concatenated branch outputs."""

    def __init__(self, in_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, cfg.mlp_dims, out_dim=1, activation=nn.ReLU, dropout=cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:  # [C,in] -> [C]
        out: Tensor = self.mlp(x).squeeze(-1)
        return out


class RankerModel(nn.Module):
    """Every variant of the ranker; which branches exist is decided by the config alone (ModelConfig.for_variant)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = EmbeddingArch(config)
        self.short = ShortArch(config)
        self.long = LongArch(config) if config.gsu != "none" else None
        self.full = FullArch(config) if config.full_attention else None
        self.coaction = CoActionArch(config) if config.coaction else None
        self.stats = StatsArch(config) if config.stats else None
        width = config.behavior_dim + self.short.out_dim
        width += sum(arch.out_dim for arch in (self.long, self.full, self.coaction, self.stats) if arch is not None)
        width += config.user_dim
        self.over = OverArch(width, config)

    def forward(self, batch: Batch) -> RankerOutput:
        cand = self.embedding.candidate(batch.cand_item, batch.cand_cat)  # [C,d]
        return RankerOutput(self.over(self.over_input(batch, cand)))  # [C]

    def context(self, batch: Batch) -> CandidateFree:
        """Everything of the OverArch's input that does not depend on the candidate embedding: the behaviour
        embeddings of each branch and CAN's co-action output (induced by the candidate's ids, not by h)."""
        emb = self.embedding
        short_seq = emb.behaviors(batch.short_item, batch.short_cat, batch.short_action)  # [U,S,d]
        long_z = long_slot = full_seq = coaction = stats = user = None
        if self.long is not None:
            long_z, long_slot = self.long.memory(emb, batch)  # [R,d+t] + [C,K], or [C,K,d+t] + None
        if self.full is not None:
            item, cat, action = _need(batch, "full_item", "full_cat", "full_action")
            full_seq = emb.behaviors(item, cat, action)  # [U,L,d]
        if self.coaction is not None:
            feed = emb.item(batch.short_item)  # [U,S,item_dim]
            coaction = self.coaction(batch.cand_item, batch.cand_cat, feed, batch.short_mask, batch.user_of)
        if self.stats is not None:
            stats = self.stats(_need(batch, "cand_stats")[0])  # [C,F]
        if emb.user is not None:
            user = emb.user(_need(batch, "user_row")[0]).index_select(0, batch.user_of)  # [U,u] -> [C,u]
        return CandidateFree(short_seq, long_z, long_slot, full_seq, coaction, stats, user)

    def over_input(self, batch: Batch, cand: Tensor, ctx: CandidateFree | None = None) -> Tensor:
        """The OverArch's input [C, in] for candidate embeddings ``cand`` [C,d] (normally
        ``embedding.candidate(...)``), from ``ctx = context(batch)`` (computed here when not given). Taking
        ``cand`` as an argument lets AGE (models/age.py) pass a leaf tensor and get ∂f/∂h for every candidate in
        one backward pass, with ``ctx`` computed once outside the graph; ``forward`` is exactly
        ``over(over_input(...))``."""
        ctx = self.context(batch) if ctx is None else ctx
        parts = [cand, self.short(cand, ctx.short_seq, batch.short_mask, batch.user_of)]  # [C,d] each
        if self.long is not None:
            mask, tag = _need(batch, "long_mask", "long_tag")
            rel = _need(batch, "long_rel")[0] if self.config.vocabulary else None
            assert ctx.long_z is not None
            parts.append(self.long(cand, ctx.long_z, ctx.long_slot, mask, tag, rel))  # [C, heads·(d+t+E)]
        if self.full is not None:
            (mask,) = _need(batch, "full_mask")
            assert ctx.full_seq is not None
            parts.append(self.full(cand, ctx.full_seq, mask, batch.user_of))  # [C,d]
        if ctx.coaction is not None:
            parts.append(ctx.coaction)  # [C, can_out]
        if ctx.stats is not None:
            parts.append(ctx.stats)  # [C,F]
        if ctx.user is not None:
            parts.append(ctx.user)  # [C,user_dim]
        return torch.cat(parts, dim=-1)  # [C, in]


class Attention(NamedTuple):
    """Where the model looked, for the explainer (``RankerModel.attention``)."""

    short: Tensor | None  # [C,S] DIN weight of each short-term behaviour (None for dnn's mean)
    long: Tensor | None  # [C,H,K] ESU weight of each retrieved behaviour, per head (None without a GSU)


def attention(model: RankerModel, batch: Batch) -> Attention:
    """The attention weights of ``model``'s forward on ``batch`` (computed again, outside the fast paths)."""
    with torch.inference_mode():
        cand = model.embedding.candidate(batch.cand_item, batch.cand_cat)  # [C,d]
        ctx = model.context(batch)
        short = None
        if model.short.attention is not None:
            short = model.short.attention.weights(cand, ctx.short_seq, batch.short_mask, batch.user_of)  # [C,S]
        long = None
        if model.long is not None:
            mask, tag = _need(batch, "long_mask", "long_tag")
            rel = _need(batch, "long_rel")[0] if model.config.vocabulary else None
            assert ctx.long_z is not None
            long = model.long.esu.weights(cand, ctx.long_z, mask, ctx.long_slot, tag, rel)  # [C,H,K]
    return Attention(short, long)


def _need(batch: Batch, *names: str) -> list[Tensor]:
    out = []
    for name in names:
        value = getattr(batch, name)
        if value is None:
            raise ValueError(f"batch.{name} is missing: build the batch with the same ModelConfig as the model")
        out.append(value)
    return out


def score(
    model: RankerModel,
    history: Behaviors | HistoryView,
    cand_items: npt.ArrayLike,
    cand_cats: npt.ArrayLike,
    now: int,
    gsu: Searcher | None = None,
    *,
    lookups: Lookups = NO_LOOKUPS,
    retrieved: RetrievedLike | None = None,
    user_id: str | None = None,
) -> npt.NDArray[np.float32]:
    """pCTR [C] of one user's candidates: build_batch with U = 1 (models.features: the features training sees),
    forward under inference_mode, sigmoid. ``history``: the plain array or the request's HistoryView (the one the
    GSU searched: what both derive is computed once). ``user_id``: needed by a model with a user-id embedding.

    The model is used as it is (artifacts.load returns it in eval mode); this never switches modes, so concurrent
    callers can share one model.
    """
    items = np.asarray(cand_items, dtype=np.int64).reshape(-1)
    batch = build_batch([history], np.zeros(len(items), dtype=np.int64), items, cand_cats, now, model.config, gsu,
                        retrieved=None if retrieved is None else [retrieved], lookups=lookups,
                        user_ids=None if user_id is None else [user_id])  # fmt: skip
    with torch.inference_mode():
        logits = model(batch).logits
    out: npt.NDArray[np.float32] = torch.sigmoid(logits).numpy().astype(np.float32, copy=False)
    return out

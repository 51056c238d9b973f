"""RankerModel: one CTR model, several named sub-architectures, every variant of DESIGN.md §4.

Reading order (top to bottom): EmbeddingArch → ShortArch → LongArch → FullArch → CoActionArch → GSUArch →
OverArch → RankerModel. Shapes: C candidate rows, U users, S short length, K retrieved per candidate, L full
length, d = item_dim + category_dim (one behaviour or candidate), t = time_dim.

    candidate ─┬──────────────────────────────────────────────────────────────┐
    short  [U,S] ── ShortArch (DIN target attention, or mean for dnn) ────────┤
    long   [C,K] ── LongArch (SIM ESU over GSU top-K ⊕ time buckets) ─────────┼─► OverArch MLP 200→80→1 ─► logit
    full   [U,L] ── FullArch (din_long: target attention over everything) ────┤
    short items ── CoActionArch (CAN micro-MLPs induced by the candidate) ────┘
    GSUArch (sim_soft): its own item embeddings, W_a / W_b, auxiliary CTR head ─► aux logit (α·L_GSU)

User-side work (short keys, CAN feed powers, the k-part of DIN's attention) is computed once per user and
broadcast over that user's candidates (a view when U == 1); the long branch's behaviour ⊕ time embeddings are
computed once per distinct GSU row and read through ``long_of`` (hard search: one row per category). The model
never trains itself: models/train.py owns the optimiser and the losses (logits with BCE, plus α·BCE on
``aux_logits`` when present).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from models.config import ModelConfig
from models.features import Batch
from models.layers import (
    MLP,
    CoActionUnit,
    MultiHeadTargetAttention,
    TargetAttention,
    TimeBuckets,
    distinct_rows,
    per_candidate,
)


class RankerOutput(NamedTuple):
    logits: Tensor  # [C] click logit
    aux_logits: Tensor | None  # [C] GSU auxiliary CTR logit (soft search only), else None


class CandidateFree(NamedTuple):
    """The parts of a forward that do not depend on the candidate embedding h (RankerModel.context)."""

    short_seq: Tensor  # [U,S,d] short-term behaviour embeddings
    long_z: Tensor | None  # [G,K,d+t] behaviour ⊕ time of each distinct GSU result row (SIM)
    long_of: Tensor | None  # [C] the row of long_z of each candidate; None: row c is candidate c (G = C)
    full_seq: Tensor | None  # [U,L,d] the whole sequence (din_long)
    coaction: Tensor | None  # [C, can_out] CAN's output (induced by the candidate's ids)

    def take(self, rows: Tensor) -> CandidateFree:
        """The per-candidate parts restricted to candidate ``rows`` (user-side parts and long_z shared)."""
        long_of = None
        if self.long_z is not None:
            long_of = rows if self.long_of is None else self.long_of.index_select(0, rows)
        return CandidateFree(
            self.short_seq,
            self.long_z,
            long_of,
            self.full_seq,
            None if self.coaction is None else self.coaction.index_select(0, rows),
        )


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
    """SIM's ESU over the GSU's top-K behaviours of each candidate: z_j = e_j ⊕ time(now − ts_j) [·,K,d+t],
    multi-head target attention with the candidate -> [C, heads·(d+t)].

    z does not depend on the candidate, only on the retrieved row, and with hard search every candidate of a
    category retrieves the same row (500 candidates of a request: ~20 distinct rows). ``memory`` therefore embeds
    each DISTINCT row once ([G,K,d+t]) and ``long_of`` [C] says which row a candidate reads, the way the short
    branch shares its user-side work through ``user_of``. Rows are only compared when there are more candidates
    than users (serving, simulation); training batches (one candidate per user) embed every row."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.time = TimeBuckets(cfg.time_buckets, cfg.time_dim)
        self.esu = MultiHeadTargetAttention(cfg.behavior_dim, cfg.behavior_dim + cfg.time_dim, cfg.heads, cfg.head_dim)
        self.out_dim = cfg.long_dim

    def memory(
        self, emb: EmbeddingArch, item: Tensor, cat: Tensor, action: Tensor, dt: Tensor, share: bool
    ) -> tuple[Tensor, Tensor | None]:
        """item, cat, action, dt [C,K] -> (z [G,K,d+t], long_of [C] or None when G = C). ``share``: look for
        candidates with identical rows."""
        groups = distinct_rows(item, cat, action, dt) if share else None
        long_of = None
        if groups is not None:
            first, long_of = groups  # [G], [C]
            item, cat, action, dt = (x.index_select(0, first) for x in (item, cat, action, dt))  # [G,K] each
        z = torch.cat([emb.behaviors(item, cat, action), self.time(dt)], dim=-1)  # [G,K,d+t]
        return z, long_of

    def forward(self, cand: Tensor, z: Tensor, long_of: Tensor | None, mask: Tensor) -> Tensor:
        """cand [C,d], z [G,K,d+t], long_of [C] (None: G = C), mask [C,K] -> [C, heads·(d+t)]."""
        out: Tensor = self.esu(cand, z, mask, long_of)
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
        """cand_item [C], cand_cat [C], feed [U,S,item_dim], mask [U,S], user_of [C] -> [C, out_dim]."""
        parts = [self._induce(self.induce_item, cand_item, feed, mask, user_of)]  # [C, orders·Σdims]
        if self.induce_cat is not None:
            parts.append(self._induce(self.induce_cat, cand_cat, feed, mask, user_of))
        return torch.cat(parts, dim=-1)

    def _induce(self, table: nn.Embedding, ids: Tensor, feed: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        """One user (serving): run the unit once per distinct id (a request's 500 candidates span few categories)
        and gather; several users: once per row."""
        if feed.shape[0] != 1:
            out: Tensor = self.unit(table(ids), feed, mask, user_of)
            return out
        distinct, inverse = torch.unique(ids, return_inverse=True)
        pooled: Tensor = self.unit(table(distinct), feed, mask, user_of.new_zeros(distinct.shape[0]))  # [n, out]
        return pooled.index_select(0, inverse)


class GSUArch(nn.Module):
    """SIM soft search. Its own item ⊕ category embeddings e (separate from the short-term ones: sharing them was
    found to mislead) and projections: relevance r_i = (W_b e_i) · (W_a e_a). Trained only by the auxiliary CTR task
    aux = MLP([Σ_i r_i e_i ⊕ e_a]) over the long behaviours of the batch (masked sum); the main logit does not
    depend on it (top-K is a discrete choice), so the main loss gives it no gradient."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.item_buckets, cfg.gsu_dim, padding_idx=0)
        # e = item ⊕ category (summed). An item id is seen a handful of times (new items keep arriving), so with
        # item-only vectors the aux task memorises ids and the search stays ~random (synthetic: 4% of its picks in
        # the candidate's category, test AUC 0.48, below din). The category part carries relevance across items;
        # the item part starts small so that it refines, not drowns, the category similarity.
        self.category = nn.Embedding(cfg.category_buckets, cfg.gsu_dim, padding_idx=0)
        for table, std in ((self.embedding, 0.03), (self.category, 0.1)):
            nn.init.normal_(table.weight, std=std)
            with torch.no_grad():
                table.weight[0].zero_()
        self.w_a = nn.Linear(cfg.gsu_dim, cfg.gsu_proj_dim, bias=False)
        self.w_b = nn.Linear(cfg.gsu_dim, cfg.gsu_proj_dim, bias=False)
        # W_b = W_a at init: r = e_i·WᵀW·e_a then starts out favouring behaviours like the candidate (same category),
        # a useful search from the first index on; with independent W's r starts as noise and the aux task on
        # the hard-search rows (all of the candidate's category) gives no signal to learn category matching.
        with torch.no_grad():
            self.w_b.weight.copy_(self.w_a.weight)
        self.aux = MLP(2 * cfg.gsu_dim, cfg.gsu_hidden, out_dim=1)

    def forward(self, cand_item: Tensor, cand_cat: Tensor, seq_item: Tensor, seq_cat: Tensor, mask: Tensor) -> Tensor:
        """cand_item, cand_cat [C], seq_item, seq_cat [C,K], mask [C,K] -> aux logit [C]."""
        e_a = self.embedding(cand_item) + self.category(cand_cat)  # [C,g]
        e = self.embedding(seq_item) + self.category(seq_cat)  # [C,K,g]
        r = (self.w_b(e) * self.w_a(e_a)[:, None, :]).sum(-1) * mask.to(e.dtype)  # [C,K]
        pooled = (r[..., None] * e).sum(1)  # [C,g]
        out: Tensor = self.aux(torch.cat([pooled, e_a], dim=-1)).squeeze(-1)
        return out

    @torch.no_grad()
    def tables(
        self, category_of_bucket: npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(keys = W_b e, queries = W_a e) for every item bucket, float32 [item_buckets, gsu_proj_dim]; e adds the
        category embedding of ``category_of_bucket[b]`` (a category bucket per item bucket, 0 = unknown)."""
        weight = self.embedding.weight
        if category_of_bucket is not None:
            cats = torch.from_numpy(np.asarray(category_of_bucket, dtype=np.int64))
            weight = weight + self.category(cats)
        keys = self.w_b(weight).float().numpy().astype(np.float32)
        queries = self.w_a(weight).float().numpy().astype(np.float32)
        return keys, queries


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
        self.gsu = GSUArch(config) if config.gsu == "soft" else None
        width = config.behavior_dim + self.short.out_dim
        width += sum(arch.out_dim for arch in (self.long, self.full, self.coaction) if arch is not None)
        self.over = OverArch(width, config)

    def forward(self, batch: Batch) -> RankerOutput:
        cand = self.embedding.candidate(batch.cand_item, batch.cand_cat)  # [C,d]
        logits = self.over(self.over_input(batch, cand))  # [C]
        aux = None
        if self.gsu is not None:
            item, cat, mask = _need(batch, "long_item", "long_cat", "long_mask")
            aux = self.gsu(batch.cand_item, batch.cand_cat, item, cat, mask)  # [C]
        return RankerOutput(logits, aux)

    def context(self, batch: Batch) -> CandidateFree:
        """Everything of the OverArch's input that does not depend on the candidate embedding: the behaviour
        embeddings of each branch and CAN's co-action output (induced by the candidate's ids, not by h)."""
        emb = self.embedding
        short_seq = emb.behaviors(batch.short_item, batch.short_cat, batch.short_action)  # [U,S,d]
        long_z = long_of = full_seq = coaction = None
        if self.long is not None:
            item, cat, action, dt = _need(batch, "long_item", "long_cat", "long_action", "long_dt")
            share = batch.n_candidates > batch.n_users  # several candidates per user: rows may repeat
            long_z, long_of = self.long.memory(emb, item, cat, action, dt, share)  # [G,K,d+t], [C] or None
        if self.full is not None:
            item, cat, action = _need(batch, "full_item", "full_cat", "full_action")
            full_seq = emb.behaviors(item, cat, action)  # [U,L,d]
        if self.coaction is not None:
            feed = emb.item(batch.short_item)  # [U,S,item_dim]
            coaction = self.coaction(batch.cand_item, batch.cand_cat, feed, batch.short_mask, batch.user_of)
        return CandidateFree(short_seq, long_z, long_of, full_seq, coaction)

    def over_input(self, batch: Batch, cand: Tensor, ctx: CandidateFree | None = None) -> Tensor:
        """The OverArch's input [C, in] for candidate embeddings ``cand`` [C,d] (normally
        ``embedding.candidate(...)``), from ``ctx = context(batch)`` (computed here when not given). Taking
        ``cand`` as an argument lets AGE (models/age.py) pass a leaf tensor and get ∂f/∂h for every candidate in
        one backward pass, with ``ctx`` computed once outside the graph; ``forward`` is exactly
        ``over(over_input(...))``."""
        ctx = self.context(batch) if ctx is None else ctx
        parts = [cand, self.short(cand, ctx.short_seq, batch.short_mask, batch.user_of)]  # [C,d] each
        if self.long is not None:
            (mask,) = _need(batch, "long_mask")
            assert ctx.long_z is not None
            parts.append(self.long(cand, ctx.long_z, ctx.long_of, mask))  # [C, heads·(d+t)]
        if self.full is not None:
            (mask,) = _need(batch, "full_mask")
            assert ctx.full_seq is not None
            parts.append(self.full(cand, ctx.full_seq, mask, batch.user_of))  # [C,d]
        if ctx.coaction is not None:
            parts.append(ctx.coaction)  # [C, can_out]
        return torch.cat(parts, dim=-1)  # [C, in]

    def gsu_tables(
        self, category_of_bucket: npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Soft search's (keys, queries) float32 [item_buckets, gsu_proj_dim], to build retrieval's ItemIndex;
        ``category_of_bucket`` [item_buckets]: each item bucket's category bucket (GSUArch.tables)."""
        if self.gsu is None:
            raise ValueError(f"variant {self.config.variant!r} (gsu={self.config.gsu!r}) has no soft-search tables")
        return self.gsu.tables(category_of_bucket)


def _need(batch: Batch, *names: str) -> list[Tensor]:
    out = []
    for name in names:
        value = getattr(batch, name)
        if value is None:
            raise ValueError(f"batch.{name} is missing: build the batch with the same ModelConfig as the model")
        out.append(value)
    return out

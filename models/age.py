"""AGE — Adversarial Gradient Driven Exploration (KDD 2022, REFERENCE.md): pseudo-exploration and the Dynamic
Gating Unit.

For a candidate with input embedding h (item ⊕ category, ``EmbeddingArch.candidate``) and model f (click logit):

    ĝ    = ∇_h f / ‖∇_h f‖                 the normalised adversarial gradient (FGM; PGD: T projected steps)
    δ_y  = MC-dropout uncertainty           TS: one dropout prediction − the deterministic one (signed)
                                            UCB: the spread (RMS around the deterministic one) of N dropout samples
    σ    = 1[pCTR > DGU(h)]                 the Dynamic Gating Unit: explore only above the item's average CTR
    ŷ_e  = f(h + σ·λ·δ_y·ĝ)                 the explored score (probability)

Cost (one request of C candidates): ONE forward with h as a leaf tensor and ONE batched backward give pCTR and ĝ for
all C candidates at once (candidates are independent rows, so ∂Σf/∂h_c = ∂f_c/∂h_c); the N dropout samples reuse
that forward's last hidden layer (only it is dropped, so a sample is the deterministic logit minus the dropped
units' terms, drawn sparsely); the h-independent parts of the forward (behaviour embeddings, CAN's co-action output:
``RankerModel.context``) are computed once, outside the graph, and reused; then one forward of the rows that
actually moved (σ·eligible·δ ≠ 0). No Python loop over
candidates. With λ = 0 nothing moves and the scores are the deterministic ones, bit for bit.

MC dropout without touching shared state: the model object is shared by concurrent requests, so it is never
switched to train mode. The dropout samples are drawn FUNCTIONALLY on the last hidden layer of the OverArch — one
of the positions where the model was trained with dropout — with the AGE dropout rate (0.01 in the paper), not the
training rate, from a per-request ``torch.Generator`` (a request's draws are reproducible). Only that layer is
dropped, so each sample's logit is exactly the deterministic one corrected by the dropped units' terms
(``_dropout_logits``): only the dropped positions are drawn (geometric gaps of a Bernoulli process), reusing the
gradient pass's hidden activation — no [N, C, width] mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from models.features import Batch
from models.ranker import CandidateFree, OverArch, RankerModel

POLICIES = ("ts", "ucb")
_EPS = 1e-12


@dataclass(frozen=True)
class AGEParams:
    """One exploration policy. Defaults: the paper's online setting (λ = 0.002, dropout 0.01, N = 20)."""

    policy: str = "ts"  # "ts" (one dropout sample, signed) or "ucb" (spread of N samples, >= 0)
    lam: float = 0.002  # λ: step size in embedding space per unit of uncertainty
    dropout: float = 0.01  # MC-dropout rate of the sampled passes
    samples: int = 20  # N dropout samples (UCB; TS uses one)
    pgd_steps: int = 1  # T: 1 = FGM; >1 = PGD, T projected steps inside the ball of radius |λ·δ_y|
    use_gradient: bool = True  # False: rank gated candidates by the dropout prediction itself (MC-dropout TS)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy={self.policy!r} must be one of {POLICIES}")
        if not (self.lam >= 0 and np.isfinite(self.lam)):
            raise ValueError(f"lam={self.lam!r} must be a finite number >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"samples={self.samples!r} must be an integer >= 1")
        if not isinstance(self.pgd_steps, int) or self.pgd_steps < 1:
            raise ValueError(f"pgd_steps={self.pgd_steps!r} must be an integer >= 1")

    @property
    def n_draws(self) -> int:
        return self.samples if self.policy == "ucb" else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DynamicGatingUnit(nn.Module):
    """A 2-layer MLP from the candidate's item-side embedding h (the main model's item ⊕ category embedding, read
    and never updated) to the logit of the item's average CTR. Trained by ``models.dgu.train_dgu``."""

    def __init__(self, in_dim: int, hidden: int = 32) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ValueError(f"DynamicGatingUnit needs in_dim >= 1 and hidden >= 1, got {in_dim}, {hidden}")
        self.in_dim, self.hidden = in_dim, hidden
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, h: Tensor) -> Tensor:  # [C,d] -> [C] logit
        out: Tensor = self.net(h).squeeze(-1)
        return out

    def config(self) -> dict[str, int]:
        return {"in_dim": self.in_dim, "hidden": self.hidden}


@dataclass
class Exploration:
    """Per candidate (input order), float32/bool numpy arrays."""

    pctr: npt.NDArray[np.float32]  # deterministic f(h), as a probability
    score: npt.NDArray[np.float32]  # ŷ_e where moved, else pctr
    moved: npt.NDArray[np.bool_]  # σ · eligible · (λ·δ_y ≠ 0): the rows whose score is an explored one
    gate: npt.NDArray[np.bool_]  # σ (all True without a DGU)
    delta: npt.NDArray[np.float32]  # δ_y
    dgu: npt.NDArray[np.float32] | None  # DGU(h) as a probability, when a DGU was given


def take_candidates(batch: Batch, rows: Tensor) -> Batch:
    """The batch restricted to candidate ``rows`` (user-side tensors are shared, per-candidate ones indexed)."""

    def pick(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.index_select(0, rows)

    return Batch(
        cand_item=batch.cand_item.index_select(0, rows),
        cand_cat=batch.cand_cat.index_select(0, rows),
        user_of=batch.user_of.index_select(0, rows),
        now=batch.now,
        short_item=batch.short_item,
        short_cat=batch.short_cat,
        short_action=batch.short_action,
        short_mask=batch.short_mask,
        long_item=pick(batch.long_item),
        long_cat=pick(batch.long_cat),
        long_action=pick(batch.long_action),
        long_dt=pick(batch.long_dt),
        long_mask=pick(batch.long_mask),
        full_item=batch.full_item,
        full_cat=batch.full_cat,
        full_action=batch.full_action,
        full_mask=batch.full_mask,
    )


def dropout_probs(over: OverArch, x: Tensor, p: float, n: int, generator: torch.Generator | None) -> Tensor:
    """N MC-dropout predictions [n, C] (probabilities) of the OverArch on its input x [C, in]: the hidden layers
    once (``_hidden``), then ``_dropout_logits``."""
    hidden, out = _hidden(over, x)
    logits = _dropout_logits(out, hidden, out(hidden).squeeze(-1), p, n, generator, droppable=len(over.mlp.net) > 1)
    probs: Tensor = torch.sigmoid(logits)
    return probs


def _hidden(over: OverArch, x: Tensor) -> tuple[Tensor, nn.Linear]:
    """(the activation h [C,w] feeding the OverArch's output Linear, that Linear). Dropout modules are skipped
    (functional, whatever the mode), so in eval mode ``out(h).squeeze(-1)`` is ``over(x)``, the same ops."""
    *below, out = over.mlp.net
    if not isinstance(out, nn.Linear) or out.out_features != 1:
        raise ValueError("AGE needs an OverArch whose last layer is a Linear to one logit")
    h = x
    for layer in below:
        if not isinstance(layer, nn.Dropout):
            h = layer(h)
    return h, out


def _dropout_logits(out: nn.Linear, h: Tensor, z: Tensor, p: float, n: int, generator: torch.Generator | None,
                    droppable: bool = True) -> Tensor:
    """N MC-dropout logits [n, C]: last-layer MC dropout (no mode switch), i.e. inverted dropout at rate p on the
    activation h [C,w] feeding the output Linear ``out`` (weight w, bias b; z = out(h) the deterministic logit).
    With u = w ⊙ h, a sample whose dropped units are D is (Σu − Σ_D u)/(1 − p) + b = z + (p·(z − b) − Σ_D u)/(1 − p).
    So only the DROPPED positions are drawn (``_bernoulli_positions``: a Bernoulli(p) process over the n·C·w
    units, by geometric gaps — exact in distribution) and summed: at p = 0.01 about 1% of the uniforms of a dense
    mask, and no [n, C, w] tensor. ``droppable`` False (no hidden layer: h is the input) drops nothing."""
    c, w = h.shape
    if p <= 0 or not droppable:
        return z.unsqueeze(0).expand(n, c).clone()
    u = (h * out.weight[0]).reshape(-1)  # [C·w]
    pos = _bernoulli_positions(n * c * w, p, generator)  # flat indices into [n, C, w]
    dropped = torch.zeros(n * c, dtype=z.dtype).index_add_(0, pos // w, u.index_select(0, pos % (c * w)))
    bias = out.bias[0] if out.bias is not None else z.new_zeros(())
    logits: Tensor = z + (p * (z - bias) - dropped.view(n, c)) / (1.0 - p)  # [n,C]
    return logits


def _bernoulli_positions(total: int, p: float, generator: torch.Generator | None) -> Tensor:
    """The sorted int64 positions in [0, total) where independent Bernoulli(p) trials succeed: the gaps between
    successes are Geometric(p), drawn in chunks sized to cover ``total`` with near certainty (one chunk)."""
    mean = total * p
    chunk = int(mean + 6.0 * (mean * (1.0 - p)) ** 0.5) + 16
    parts: list[Tensor] = []
    offset = -1.0  # position of the previous success
    while offset < total:
        pos = torch.empty(chunk, dtype=torch.float64).geometric_(p, generator=generator).cumsum_(0).add_(offset)
        parts.append(pos)
        offset = float(pos[-1])
    flat = torch.cat(parts) if len(parts) > 1 else parts[0]
    return flat[flat < total].to(torch.int64)


def _grad(model: RankerModel, batch: Batch, h: Tensor, ctx: CandidateFree | None = None
          ) -> tuple[Tensor, Tensor, Tensor]:
    """(logit [C], the OverArch's last hidden activation [C,w], ∂Σlogit/∂h [C,d]) — one forward and one backward
    for all rows. The h-independent parts (``ctx``) are computed outside the graph, so the backward only runs
    through h's paths; the hidden activation is returned for the MC-dropout samples (``_dropout_logits``)."""
    if ctx is None:
        with torch.no_grad():
            ctx = model.context(batch)
    with torch.inference_mode(False), torch.enable_grad():
        leaf = h.detach().clone().requires_grad_(True)
        hidden, out = _hidden(model.over, model.over_input(batch, leaf, ctx))
        logit = out(hidden).squeeze(-1)
        (grad,) = torch.autograd.grad(logit.sum(), leaf)
    return logit.detach(), hidden.detach(), grad


def _unit(g: Tensor) -> Tensor:
    out: Tensor = g / g.norm(dim=-1, keepdim=True).clamp(min=_EPS)
    return out


def explore(
    model: RankerModel,
    batch: Batch,
    params: AGEParams,
    *,
    dgu: DynamicGatingUnit | None = None,
    eligible: npt.NDArray[np.bool_] | None = None,
    generator: torch.Generator | None = None,
) -> Exploration:
    """Score every candidate of ``batch`` deterministically and with AGE's pseudo-exploration.

    ``eligible`` [C] (e.g. fewer than N impressions) limits which rows may move; ``dgu`` gates them further
    (σ = 1[pCTR > DGU(h)]; without a DGU every eligible row is gated in). The model is only read."""
    c = batch.n_candidates
    with torch.no_grad():
        h0 = model.embedding.candidate(batch.cand_item, batch.cand_cat)  # [C,d]
        ctx = model.context(batch)
    logit, hidden, grad = _grad(model, batch, h0, ctx)
    with torch.no_grad():
        pctr = torch.sigmoid(logit)  # [C]
        out = model.over.mlp.net[-1]
        assert isinstance(out, nn.Linear)
        droppable = len(model.over.mlp.net) > 1
        logits = _dropout_logits(out, hidden, logit, params.dropout, params.n_draws, generator, droppable)
        draws = torch.sigmoid(logits)  # [n,C]
        delta = draws[0] - pctr if params.policy == "ts" else (draws - pctr).pow(2).mean(0).sqrt()
        dgu_p = torch.sigmoid(dgu(h0)) if dgu is not None else None
        gate = pctr > dgu_p if dgu_p is not None else torch.ones(c, dtype=torch.bool)
        allowed = gate if eligible is None else gate & torch.from_numpy(np.asarray(eligible, dtype=bool))
        score = pctr.clone()
        if not params.use_gradient:  # MC-dropout TS: the dropout prediction itself, no step along ĝ
            moved = allowed & (params.lam > 0)
            score = torch.where(moved, draws[0], pctr)
        else:
            step = torch.where(allowed, params.lam * delta, torch.zeros_like(delta))  # [C] signed
            moved = step != 0
            rows = torch.nonzero(moved).squeeze(-1)
            if len(rows):
                score[rows] = _moved_scores(model, take_candidates(batch, rows), ctx.take(rows), h0[rows],
                                            _unit(grad[rows]), step[rows], params.pgd_steps)  # fmt: skip
    return Exploration(
        pctr=pctr.numpy().astype(np.float32, copy=False),
        score=score.numpy().astype(np.float32, copy=False),
        moved=moved.numpy().astype(bool, copy=False),
        gate=gate.numpy().astype(bool, copy=False),
        delta=delta.numpy().astype(np.float32, copy=False),
        dgu=None if dgu_p is None else dgu_p.numpy().astype(np.float32, copy=False),
    )


def _moved_scores(model: RankerModel, sub: Batch, ctx: CandidateFree, h: Tensor, g_hat: Tensor, step: Tensor,
                  steps: int) -> Tensor:
    """f(h_T) for the moving rows: FGM (T = 1) is h + s·ĝ; PGD takes T steps of s/T along the current normalised
    gradient, each projected back into the ball of radius |s| around h."""
    s = step[:, None]  # [R,1]
    moved = h + s / steps * g_hat
    for _ in range(steps - 1):
        _, _, grad = _grad(model, sub, moved, ctx)
        offset = moved + s / steps * _unit(grad) - h
        norm = offset.norm(dim=-1, keepdim=True)
        radius = s.abs()
        moved = h + offset * torch.where(norm > radius, radius / norm.clamp(min=_EPS), torch.ones_like(norm))
    with torch.inference_mode():  # nothing here is recorded: a plain forward of the moved rows
        return torch.sigmoid(model.over(model.over_input(sub, moved, ctx)))


def apply_budget(
    pctr: npt.NDArray[np.float32], explored_score: npt.NDArray[np.float32], moved: npt.NDArray[np.bool_],
    top_n: int, budget: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """(order cut to top_n, ranking score, explored flags) with at most ``budget`` explored items in top_n.

    Explored = moved and ŷ_e > pCTR. While top_n holds more than ``budget`` explored items, the lowest-ranked
    ones among them fall back to their pCTR (and lose the flag) and the list is sorted again; this ends because
    every round removes flags and none are added."""
    explored = moved & (explored_score > pctr)
    ranking = np.where(explored, explored_score, pctr).astype(np.float32)
    index = np.arange(len(pctr))
    while True:
        order = np.lexsort((index, -ranking))[:top_n].astype(np.int64)
        inside = order[explored[order]]
        if len(inside) <= budget:
            return order, ranking, explored
        drop = inside[budget:]
        ranking[drop] = pctr[drop]
        explored[drop] = False

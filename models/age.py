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
actually moved (σ·eligible·δ ≠ 0; with a slate size, only rows outside the greedy top_n with an upward step: no
other row can enter the slate). No Python loop over candidates. With λ = 0 nothing moves and the scores are the
deterministic ones, bit for bit. ``prepare`` (the deterministic part) and ``sample`` (the draws) split the work so
that several draws of one request — the served one and the Monte-Carlo draws of its propensities — share the
forward and backward and score their moved rows in one batched forward (``sample``'s docstring).

Slates (``apply_budget``): an item is *explored* only when exploration put it into the slate — shown, and not in
the greedy top_n; at most ``budget`` of them.

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
SCREEN_MARGIN = 0.5  # logits: see ``sample``'s pre-screen
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
    return batch.take_candidates(rows)


def dropout_probs(over: OverArch, x: Tensor, p: float, n: int, generator: torch.Generator | None) -> Tensor:
    """N MC-dropout predictions [n, C] (probabilities) of the OverArch on its input x [C, in]: the hidden layers
    once (``_hidden``), then ``_dropout_logits``."""
    hidden, out = _hidden(over, x)
    logits = _dropout_logits(out, hidden, out(hidden).squeeze(-1), p, n, generator, droppable=len(over.mlp.net) > 1)
    probs: Tensor = torch.sigmoid(logits)
    return probs


def last_hidden(model: RankerModel, batch: Batch) -> tuple[Tensor, Tensor]:
    """(logit [C], the OverArch's last hidden activation φ [C,w]) of a plain forward, without autograd: the
    features of the neural-linear bandits (models/bandits/linear.py)."""
    with torch.inference_mode():
        hidden, out = _hidden(model.over, model.over_input(batch, model.embedding.candidate(batch.cand_item,
                                                                                         batch.cand_cat)))
        return out(hidden).squeeze(-1), hidden


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


@dataclass
class Prepared:
    """The deterministic part of one exploration (everything but the dropout draws): computed once per request,
    then sampled by ``sample`` (the served draw, and the Monte-Carlo draws of the propensities)."""

    batch: Batch
    ctx: CandidateFree
    h0: Tensor  # [C,d] candidate embeddings
    logit: Tensor  # [C]
    hidden: Tensor  # [C,w] the OverArch's last hidden activation
    grad: Tensor  # [C,d] ∂logit/∂h
    pctr: Tensor  # [C]
    gate: Tensor  # [C] bool σ
    allowed: Tensor  # [C] bool: gated in and eligible
    dgu_p: Tensor | None  # [C] DGU(h) as a probability
    skip: Tensor  # [C] bool: rows whose explored score cannot matter (inside the greedy top_n)


def prepare(
    model: RankerModel,
    batch: Batch,
    *,
    dgu: DynamicGatingUnit | None = None,
    eligible: npt.NDArray[np.bool_] | None = None,
    top_n: int | None = None,
    need_grad: bool = True,
) -> Prepared:
    """One forward with h as a leaf and one batched backward (pCTR, φ, ĝ for all rows), the DGU gate, eligibility.
    With ``top_n`` the rows of the greedy top_n are marked ``skip``: exploration cannot put them into the slate
    (``apply_budget``), so their explored score is never computed. ``need_grad`` False (MC-dropout TS) skips the
    backward: ĝ is then zero."""
    c = batch.n_candidates
    with torch.no_grad():
        h0 = model.embedding.candidate(batch.cand_item, batch.cand_cat)  # [C,d]
        ctx = model.context(batch)
    if need_grad:
        logit, hidden, grad = _grad(model, batch, h0, ctx)
    else:  # MC-dropout TS needs no ĝ: a plain forward
        with torch.no_grad():
            hidden, out = _hidden(model.over, model.over_input(batch, h0, ctx))
            logit, grad = out(hidden).squeeze(-1), torch.zeros_like(h0)
    with torch.no_grad():
        pctr = torch.sigmoid(logit)  # [C]
        dgu_p = torch.sigmoid(dgu(h0)) if dgu is not None else None
        gate = pctr > dgu_p if dgu_p is not None else torch.ones(c, dtype=torch.bool)
        allowed = gate if eligible is None else gate & torch.from_numpy(np.asarray(eligible, dtype=bool))
        skip = torch.zeros(c, dtype=torch.bool)
        if top_n is not None:
            order = np.lexsort((np.arange(c), -pctr.numpy()))[:top_n]
            skip[torch.from_numpy(order.astype(np.int64))] = True
    return Prepared(batch, ctx, h0, logit, hidden, grad, pctr, gate, allowed, dgu_p, skip)


def _deltas(model: RankerModel, prep: Prepared, params: AGEParams, generators: list[torch.Generator | None]
            ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(δ_y [M,C], the first dropout sample [M,C] as a probability) of M draws, draw j from generator j: each
    draw's dropped positions come from its own generator (``_bernoulli_positions``, as ``_dropout_logits``), and
    the dropped terms of all draws are summed in one ``index_add``."""
    out = model.over.mlp.net[-1]
    assert isinstance(out, nn.Linear)
    n, m = params.n_draws, len(generators)
    c, w = prep.hidden.shape
    z, p = prep.logit, params.dropout
    if p <= 0 or len(model.over.mlp.net) <= 1:
        logits = z.unsqueeze(0).expand(m * n, c)
    else:
        u = (prep.hidden * out.weight[0]).reshape(-1)  # [C·w]
        total = n * c * w
        pos = torch.cat([_bernoulli_positions(total, p, g) + j * total for j, g in enumerate(generators)])
        dropped = torch.zeros(m * n * c, dtype=z.dtype).index_add_(0, pos // w, u.index_select(0, pos % (c * w)))
        bias = out.bias[0] if out.bias is not None else z.new_zeros(())
        logits = z + (p * (z - bias) - dropped.view(m * n, c)) / (1.0 - p)  # [M·n, C]
    draws = torch.sigmoid(logits).view(m, n, c)
    pctr = prep.pctr
    delta = draws[:, 0] - pctr if params.policy == "ts" else (draws - pctr).pow(2).mean(1).sqrt()
    return delta, draws[:, 0]


def sample(model: RankerModel, prep: Prepared, params: AGEParams, generators: list[torch.Generator | None]
           ) -> list[Exploration]:  # fmt: skip
    """One Exploration per generator (each generator drives one draw's dropout samples); a single generator gives
    exactly ``explore``'s result.

    Without ``skip`` rows (no top_n) every row with a non-zero step is moved. With them (``prepare(top_n=...)``)
    only rows that can enter the slate are scored, in at most two batched forwards for all draws together: a row
    outside the greedy top_n whose step is upwards in some draw is first scored at its LARGEST step over the draws
    s*; only where that beats τ, the lowest pCTR of the greedy top_n (an entering item must outrank a greedy one),
    are its other draws' smaller steps scored. This takes f to rise along the ray h + s·ĝ up to s* (ĝ is the ascent
    direction at h; AGE's steps are small), so a row below τ at s* is below it at every smaller step: it cannot
    enter any of the draws' slates and keeps its pCTR in the draws where its step is not s*. Before that, rows
    whose tangent cannot come near τ are not scored at all: logit + 2·s*·‖∇_h logit‖ + ``SCREEN_MARGIN`` ≤ logit(τ)
    (the true rise along the ray would have to exceed twice the first-order one by half a logit)."""
    with torch.no_grad():
        delta, first = _deltas(model, prep, params, generators)  # [M,C] each
        m = len(generators)
        step = torch.where(prep.allowed, params.lam * delta, torch.zeros_like(delta))  # [M,C] signed
        score = prep.pctr.expand(m, -1).clone()
        if not params.use_gradient:  # MC-dropout TS: the dropout prediction itself, no step along ĝ
            moved = (prep.allowed & ~prep.skip & (params.lam > 0)).expand(m, -1).clone()
            score = torch.where(moved, first, score)
        elif not prep.skip.any():  # every moved row of every draw, in one forward
            moved = step != 0
            _score_rows(model, prep, params, moved, step, score)
        else:
            up = (step > 0) & ~prep.skip
            step_up = torch.where(up, step, torch.zeros_like(step))
            s_star = step_up.max(0).values  # [C]
            tau = prep.pctr[prep.skip].min()
            # pre-screen on the tangent: a row whose first-order logit at s*, with twice the rise and half a logit
            # to spare, stays below τ is not scored (its rise would have to exceed the tangent's by that much)
            rise = s_star * prep.grad.norm(dim=-1)
            reach = (s_star > 0) & (prep.logit + 2.0 * rise + SCREEN_MARGIN > torch.logit(tau.clamp(1e-7, 1 - 1e-7)))
            rows = torch.nonzero(reach).squeeze(-1)
            f_star = prep.pctr.clone()
            if len(rows):
                f_star[rows] = _forward_steps(model, prep, params, rows, s_star[rows])
            contender = reach & (f_star > tau)
            moved = up & reach
            at_star = moved & (step_up == s_star)
            score = torch.where(at_star, f_star.expand(m, -1), score)
            smaller = moved & contender & ~at_star
            moved = at_star | smaller
            _score_rows(model, prep, params, smaller, step_up, score)
    pctr = prep.pctr.numpy().astype(np.float32, copy=False)
    gate = prep.gate.numpy().astype(bool, copy=False)
    dgu = None if prep.dgu_p is None else prep.dgu_p.numpy().astype(np.float32, copy=False)
    scores, moves, deltas = score.numpy().astype(np.float32), moved.numpy().astype(bool), delta.numpy()
    return [Exploration(pctr=pctr, score=scores[j], moved=moves[j], gate=gate, delta=deltas[j].astype(np.float32),
                        dgu=dgu) for j in range(m)]  # fmt: skip


def _forward_steps(model: RankerModel, prep: Prepared, params: AGEParams, rows: Tensor, step: Tensor) -> Tensor:
    """f(h + s·ĝ) (FGM; PGD with T > 1) of candidate ``rows`` (may repeat) at steps ``step``."""
    return _moved_scores(model, take_candidates(prep.batch, rows), prep.ctx.take(rows), prep.h0[rows],
                         _unit(prep.grad[rows]), step, params.pgd_steps)  # fmt: skip


def _score_rows(model: RankerModel, prep: Prepared, params: AGEParams, which: Tensor, step: Tensor,
                score: Tensor) -> None:  # fmt: skip
    """Score the (draw, row) pairs of ``which`` [M,C] at their ``step`` in ONE forward into ``score`` [M,C]."""
    draw, rows = torch.nonzero(which, as_tuple=True)
    if len(rows):
        score[draw, rows] = _forward_steps(model, prep, params, rows, step[draw, rows])


def explore(
    model: RankerModel,
    batch: Batch,
    params: AGEParams,
    *,
    dgu: DynamicGatingUnit | None = None,
    eligible: npt.NDArray[np.bool_] | None = None,
    generator: torch.Generator | None = None,
    top_n: int | None = None,
) -> Exploration:
    """Score every candidate of ``batch`` deterministically and with AGE's pseudo-exploration.

    ``eligible`` [C] (e.g. fewer than N impressions) limits which rows may move; ``dgu`` gates them further
    (σ = 1[pCTR > DGU(h)]; without a DGU every eligible row is gated in). With ``top_n`` only rows that could
    enter the slate are moved (outside the greedy top_n, upward step). The model is only read."""
    prep = prepare(model, batch, dgu=dgu, eligible=eligible, top_n=top_n)
    return sample(model, prep, params, [generator])[0]


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
    """(order cut to top_n, ranking score, explored flags): the slate, with at most ``budget`` explored items.

    An item is *explored* only when exploration put it into the slate: it is shown and it is NOT in the greedy
    top_n (top_n by pCTR; ties by candidate order). Only such items may rank by their explored score (a moved row
    with ŷ_e > pCTR outside the greedy top_n); every other item ranks by its pCTR, so a moved item that greedy would
    show anyway is neither flagged nor counted. While the slate holds more than ``budget`` explored items, the
    lowest-ranked of them fall back to their pCTR and the slate is sorted again (this ends: every round removes
    promotions and none are added). Without any explored item the order is exactly the greedy one."""
    c = len(pctr)
    index = np.arange(c)
    in_greedy = np.zeros(c, dtype=bool)
    in_greedy[np.lexsort((index, -pctr))[:top_n]] = True
    promoted = moved & (explored_score > pctr) & ~in_greedy
    ranking = np.where(promoted, explored_score, pctr).astype(np.float32)
    while True:
        order = np.lexsort((index, -ranking))[:top_n].astype(np.int64)
        entered = order[promoted[order]]
        if len(entered) <= budget:
            explored = np.zeros(c, dtype=bool)
            explored[entered] = True
            final = np.where(explored, explored_score, pctr).astype(np.float32)  # promotions left outside: pCTR
            return order, final, explored
        drop = entered[budget:]
        ranking[drop] = pctr[drop]
        promoted[drop] = False

"""Building blocks of the ranker: MLP, DIN target attention, SIM's ESU multi-head attention, time-interval buckets
and CAN's co-action unit.

Conventions shared by every layer:
- ``C`` candidates (rows to score), ``U`` users; user-side tensors have a leading ``U`` and ``user_of`` [C] maps a
  candidate row to its user. With ``U == 1`` (serving) the user side is broadcast over the candidates with
  ``expand``/matmul broadcasting, never copied C times.
- A ``mask`` is True at real positions. Padded positions are never attended: their weight is exactly zero, and a
  row that is all padding pools to zeros (never NaN), also in the backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn


def per_candidate(user_side: Tensor, user_of: Tensor) -> Tensor:
    """[U, ...] -> [C, ...]: a broadcast view when U == 1, else a gather by ``user_of``."""
    if user_side.shape[0] == 1:
        return user_side.expand(user_of.shape[0], *user_side.shape[1:])
    return user_side.index_select(0, user_of)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the True positions of ``mask`` (broadcastable to ``scores``); padded positions get exactly 0
    and an all-padding row gives all zeros, never NaN, in either pass. The padding gets half the most negative
    finite float added (an add with a mask-shaped bias is cheaper than a broadcast masked_fill): in a row with a
    real position exp(that − max) underflows to exactly 0; all-padding rows are zeroed, only when there are any."""
    lowest = torch.finfo(scores.dtype).min / 2
    bias = torch.where(mask, scores.new_zeros(()), scores.new_full((), lowest))  # mask's shape: 0 or lowest
    weights = torch.softmax(scores + bias, dim=dim)
    real = torch.count_nonzero(mask, dim=dim).unsqueeze(dim)  # real positions per row
    return weights * (real > 0).to(weights.dtype) if bool((real == 0).any()) else weights


class MLP(nn.Module):
    """Linear → activation → dropout for each hidden size, then a Linear to ``out_dim`` (omitted when None)."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int | None = 1,
        activation: type[nn.Module] = nn.ReLU,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), activation()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        if out_dim is not None:
            layers.append(nn.Linear(width, out_dim))
            width = out_dim
        self.net = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: Tensor) -> Tensor:  # [..., in_dim] -> [..., out_dim]
        out: Tensor = self.net(x)
        return out


class TargetAttention(nn.Module):
    """DIN's local activation unit: weight_t = MLP([q, k_t, q − k_t, q ⊙ k_t]), pooled Σ_t weight_t · k_t.

    Normalisation (``norm``): DIN itself uses the raw weights ("sum", no softmax) to keep the intensity of
    interest. The default here is "softmax" (masked): the same layer serves the last 50 behaviours and din_long's
    whole 54k-behaviour sequence, and un-normalised sums grow with the length, which destabilises training on long
    histories. Both are available; the choice is in ModelConfig.attention_norm.

    The first linear layer over the 4·d concatenation is evaluated in three parts, W·[q, k, q−k, q⊙k] =
    (W_q + W_d)·q + (W_k − W_d)·k + W_p·(q⊙k): the k-part is computed once per user and broadcast, which is exactly
    the same function as DIN's with the same parameters, only cheaper. With one user (serving) the padding is
    dropped once and the k- and (q⊙k)-parts become one matmul over that user's behaviours (``_attend_shared``):
    no [C,T,d] product, no [C,T,h] sums, no mask.
    """

    def __init__(self, dim: int, hidden: Sequence[int], norm: str = "softmax") -> None:
        super().__init__()
        if norm not in ("softmax", "sum"):
            raise ValueError(f"norm={norm!r} must be 'softmax' or 'sum'")
        self.dim, self.norm = dim, norm
        self.first = nn.Linear(4 * dim, hidden[0])
        self.rest = MLP(hidden[0], hidden[1:], out_dim=1, activation=nn.Sigmoid)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor, user_of: Tensor, chunk: int | None = None) -> Tensor:
        """query [C,d], keys [U,T,d], mask [U,T], user_of [C] -> pooled [C,d]. ``chunk`` candidates at a time."""
        n = query.shape[0]
        if keys.shape[0] == 1:  # one user (serving): keep its real behaviours once, share them with every chunk
            real = keys[0].index_select(0, mask[0].nonzero().squeeze(1))  # [T',d]
            step = n if chunk is None else chunk
            parts = [self._attend_shared(query[i : i + step], real) for i in range(0, max(n, 1), max(step, 1))]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        if chunk is None or chunk >= n:
            return self._attend(query, keys, mask, user_of)
        parts = [self._attend(query[i : i + chunk], keys, mask, user_of[i : i + chunk]) for i in range(0, n, chunk)]
        return torch.cat(parts, dim=0)

    def _split_first(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The first layer's weight [h, 4d] cut into its parts for q, k, q − k and q ⊙ k: each [h, d]."""
        w, d = self.first.weight, self.dim
        w_q, w_k, w_d, w_p = (w[:, i * d : (i + 1) * d] for i in range(4))
        return w_q, w_k, w_d, w_p

    def weights(self, query: Tensor, keys: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        """The attention weight of every (candidate, behaviour): [C,T], 0 at padding (the explainer's view; the
        forward never materialises it for one user)."""
        w_q, w_k, w_d, w_p = self._split_first()
        q_part = query @ (w_q + w_d).T + self.first.bias  # [C,h]
        keys_c, mask_c = per_candidate(keys, user_of), per_candidate(mask, user_of)  # [C,T,d], [C,T]
        hidden = torch.sigmoid(q_part[:, None, :] + keys_c @ (w_k - w_d).T + (query[:, None, :] * keys_c) @ w_p.T)
        scores = self.rest(hidden).squeeze(-1)  # [C,T]
        return masked_softmax(scores, mask_c) if self.norm == "softmax" else scores * mask_c.to(scores.dtype)

    def _attend(self, query: Tensor, keys: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        """Several users (training): keys gathered per candidate."""
        w_q, w_k, w_d, w_p = self._split_first()
        q_part = query @ (w_q + w_d).T + self.first.bias  # [C,h]
        k_part = per_candidate(keys @ (w_k - w_d).T, user_of)  # [U,T,h] -> [C,T,h]
        keys_c = per_candidate(keys, user_of)  # [C,T,d]
        mask_c = per_candidate(mask, user_of)  # [C,T]
        hidden = torch.sigmoid(q_part[:, None, :] + k_part + (query[:, None, :] * keys_c) @ w_p.T)  # [C,T,h]
        scores = self.rest(hidden).squeeze(-1)  # [C,T]
        softmax = self.norm == "softmax"
        weights = masked_softmax(scores, mask_c) if softmax else scores * mask_c.to(scores.dtype)  # [C,T]
        return torch.bmm(weights[:, None, :], keys_c).squeeze(1)  # [C,d]

    def _attend_shared(self, query: Tensor, keys: Tensor) -> Tensor:
        """One user's REAL behaviours keys [T',d] (padding already dropped, so no mask) for all C candidates, the
        first layer as ONE matmul: W_k'·k + W_p·(q ⊙ k) = k · M_q with M_q = (W_k − W_d)^T + diag(q)·W_p^T, so
        hidden[t, c] = σ(k_t · M_{q_c} + q_part_c), laid out [T', C·h] with q_part fused in as the bias."""
        (t, d), c, h = keys.shape, query.shape[0], self.first.out_features
        w_q, w_k, w_d, w_p = self._split_first()
        q_part = torch.addmm(self.first.bias, query, (w_q + w_d).T)  # [C,h]
        mix = torch.addcmul((w_k - w_d).T[:, None, :], query.T[:, :, None], w_p.T[:, None, :])  # [d,C,h]
        hidden = torch.addmm(q_part.reshape(-1), keys, mix.reshape(d, c * h)).sigmoid_()  # [T',C·h]
        scores = self.rest(hidden.view(t, c, h)).squeeze(-1)  # [T',C]
        weights = torch.softmax(scores, dim=0) if self.norm == "softmax" else scores  # [T',C]; none when T' = 0
        return weights.T @ keys  # [C,T'] @ [T',d] -> [C,d] (zeros when T' = 0)


class MultiHeadTargetAttention(nn.Module):
    """SIM's Exact Search Unit: head_i = softmax_j((W_bi z_j) · (W_ai e_a) / √a + w_i · x_j) over the unmasked j,
    pooled Σ_j w_ij [z_j ⊕ x_j]; the heads are concatenated -> [C, heads · (dz + E)]. The 1/√a scale is ours (the
    paper gives none); it keeps the initial logits of larger head sizes in the softmax's useful range. x_j are
    per-candidate extras of a slot: the one-hot of its tag (which search found it, whether it is the target item;
    ``tag_dim`` columns for tags 1..tag_dim, tag 0 = padding) and, when ``extra_dim`` > ``tag_dim``, its relevance;
    each head learns a bias from them (w_i) and pools them beside z.

    Computed as z_j · (W_bi^T W_ai e_a): the projection is applied once per candidate and head instead of once per
    retrieved behaviour (the same function and parameters, K times fewer multiplications for W_b), and W_ai^T W_bi
    is folded into one [da, heads·dz] matrix, so the candidate side is one matmul. The extras are never materialised
    as one-hot vectors: w_i · x_j is a lookup of the tag's column of w plus rel_j times the relevance column, and
    the pooled one-hot is the sum of the weights per tag. z may hold each distinct retrieved behaviour once
    ([R, dz]) with ``slot`` [C,K] saying which row fills each slot (one gather), or be given per slot ([C,K,dz])."""

    def __init__(self, query_dim: int, z_dim: int, heads: int, head_dim: int, extra_dim: int = 0,
                 tag_dim: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.heads, self.head_dim, self.z_dim, self.extra_dim = heads, head_dim, z_dim, extra_dim
        self.tag_dim = extra_dim if tag_dim is None else tag_dim
        if not 0 <= extra_dim - self.tag_dim <= 1:
            raise ValueError(f"extra_dim={extra_dim} must be tag_dim={self.tag_dim} or tag_dim + 1 (relevance)")
        self.w_a = nn.Linear(query_dim, heads * head_dim, bias=False)
        self.w_b = nn.Linear(z_dim, heads * head_dim, bias=False)
        self.w_x = nn.Linear(extra_dim, heads, bias=False) if extra_dim else None

    @property
    def has_relevance(self) -> bool:
        return self.extra_dim > self.tag_dim

    def _slots(self, z: Tensor, slot: Tensor | None) -> Tensor:
        """[C,K,dz]: z per slot (a gather of the distinct rows when ``slot`` is given)."""
        if slot is None:
            return z
        c, k = slot.shape
        return z.index_select(0, slot.reshape(-1)).view(c, k, self.z_dim)

    def _scores(self, query: Tensor, z_c: Tensor, tag: Tensor | None, rel: Tensor | None) -> Tensor:
        """Attention logits [C,H,K] before the mask."""
        c, h, a = query.shape[0], self.heads, self.head_dim
        w_a = self.w_a.weight.view(h, a, -1)  # [H,a,da]
        w_b = self.w_b.weight.view(h, a, self.z_dim)  # [H,a,dz]
        qmap = torch.bmm(w_a.transpose(1, 2), w_b).transpose(0, 1).reshape(-1, h * self.z_dim)  # [da, H·dz]
        qz = (query @ qmap).view(c, h, self.z_dim) / math.sqrt(a)  # [C,H,dz]
        scores = torch.bmm(qz, z_c.transpose(1, 2))  # [C,H,dz] @ [C,dz,K] -> [C,H,K]
        if self.w_x is None:
            return scores
        if tag is None or (self.has_relevance and rel is None):
            wanted = "tags and relevance" if self.has_relevance else "tags"
            raise ValueError(f"this ESU takes {self.extra_dim} extras per slot ({wanted}); some were not given")
        w = self.w_x.weight  # [H,E]
        table = torch.nn.functional.pad(w[:, : self.tag_dim].T, (0, 0, 1, 0))  # [1+tag_dim, H]; row 0: padding
        bias = torch.nn.functional.embedding(tag, table)  # [C,K,H] = w · onehot(tag)
        if rel is not None and self.has_relevance:
            bias = torch.addcmul(bias, rel[..., None], w[:, self.tag_dim])  # + rel · w_rel
        return scores + bias.transpose(1, 2)

    def weights(self, query: Tensor, z: Tensor, mask: Tensor, slot: Tensor | None = None, tag: Tensor | None = None,
                rel: Tensor | None = None) -> Tensor:  # fmt: skip
        """The attention weights [C,H,K] (0 at padding) of ``forward``'s arguments."""
        return masked_softmax(self._scores(query, self._slots(z, slot), tag, rel), mask[:, None, :])

    def forward(self, query: Tensor, z: Tensor, mask: Tensor, slot: Tensor | None = None, tag: Tensor | None = None,
                rel: Tensor | None = None) -> Tensor:  # fmt: skip
        """query [C,da]; z [R,dz] with slot [C,K] (the row of each slot), or z [C,K,dz] when ``slot`` is None;
        mask [C,K]; tag [C,K] int64 (0 = padding), rel [C,K] -> [C, heads·(dz+E)]."""
        c, h = query.shape[0], self.heads
        z_c = self._slots(z, slot)  # [C,K,dz]
        weights = masked_softmax(self._scores(query, z_c, tag, rel), mask[:, None, :])  # [C,H,K]
        pooled = torch.bmm(weights, z_c)  # [C,H,K] @ [C,K,dz] -> [C,H,dz]
        if self.w_x is not None:
            assert tag is not None
            index = tag[:, None, :].expand(c, h, tag.shape[1])
            by_tag = weights.new_zeros(c, h, 1 + self.tag_dim).scatter_add(2, index, weights)  # Σ_j w·onehot(tag_j)
            parts = [pooled, by_tag[..., 1:]]
            if rel is not None and self.has_relevance:
                parts.append(torch.bmm(weights, rel[..., None]))  # [C,H,1]
            pooled = torch.cat(parts, dim=-1)  # [C,H,dz+E]
        return pooled.reshape(c, h * (self.z_dim + self.extra_dim))


class TimeBuckets(nn.Module):
    """Embedding of the time interval now − ts on a log2 scale: bucket 1 + ⌊log2(1 + Δ)⌋ (Δ in seconds, clipped at
    0 and at the last bucket); bucket 0 is padding and embeds to zeros."""

    def __init__(self, n_buckets: int, dim: int) -> None:
        super().__init__()
        self.n_buckets = n_buckets
        self.embedding = nn.Embedding(n_buckets, dim, padding_idx=0)

    @staticmethod
    def bucketize(dt: npt.ArrayLike, n_buckets: int) -> npt.NDArray[np.int64]:
        """Seconds (any int array) -> bucket index in [1, n_buckets − 1]."""
        seconds = np.maximum(np.asarray(dt, dtype=np.int64), 0).astype(np.float64)
        idx = np.floor(np.log2(seconds + 1.0)).astype(np.int64) + 1
        return np.minimum(idx, n_buckets - 1)

    def forward(self, idx: Tensor) -> Tensor:  # [...] int64 -> [..., dim]
        out: Tensor = self.embedding(idx)
        return out


class CoActionUnit(nn.Module):
    """CAN's co-action unit. The induction side's parameter vector (size D' = Σ d_i·d_{i+1}) is reshaped into the
    weights of a micro-MLP ``dims`` (no bias, tanh); the feed side is each behaviour's vector (size dims[0]) raised
    element-wise to the powers 1..orders. Every layer's output is kept and concatenated (e.g. 8 + 4 = 12 per order),
    the orders are concatenated, and the result is sum-pooled over the unmasked behaviours:
    [C, orders · Σ dims[1:]]. This module has no parameters: the induction tables live in CoActionArch."""

    def __init__(self, dims: Sequence[int], orders: int) -> None:
        super().__init__()
        self.dims, self.orders = tuple(dims), orders
        self.param_size = sum(a * b for a, b in zip(self.dims[:-1], self.dims[1:], strict=False))
        self.out_dim = orders * sum(self.dims[1:])

    def weights(self, params: Tensor) -> list[Tensor]:
        """[C, D'] -> the micro-MLP's weight matrices [C, d_i, d_{i+1}]."""
        out, offset = [], 0
        for a, b in zip(self.dims[:-1], self.dims[1:], strict=False):
            out.append(params[:, offset : offset + a * b].reshape(-1, a, b))
            offset += a * b
        return out

    def forward(self, params: Tensor, feed: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        """params [C,D'], feed [U,S,d0], mask [U,S], user_of [C] -> [C, orders·Σdims[1:]].

        Laid out feature-major ([C, d_i, S·O]) so that every layer is one contiguous matmul and nothing is copied.
        One user (serving): only its real behaviours are fed (padding dropped once), so nothing needs masking."""
        if feed.shape[0] == 1:
            return self._one_user(params, feed[0].index_select(0, mask[0].nonzero().squeeze(1)))
        c, (u, s, d0), o = params.shape[0], feed.shape, self.orders
        # tanh(x) = 2σ(2x) − 1, and torch's CPU tanh costs ~6 sigmoids: each layer carries g = tanh(x)/2 = σ(2x) − ½,
        # so layer i's doubled pre-activation is 2·W_i·tanh(x_{i−1}) = 4·W_i·g_{i−1}, and Σ tanh = 2·Σ g.
        w_t = [w.transpose(1, 2) * (2.0 if i == 0 else 4.0) for i, w in enumerate(self.weights(params))]
        powers = torch.stack([feed**k for k in range(1, o + 1)], dim=1).reshape(u, o * s, d0)  # [U,O·S,d0]
        g = _half_tanh(torch.bmm(w_t[0], powers.index_select(0, user_of).transpose(1, 2)))  # [C,d1,O·S]
        keep = per_candidate(mask, user_of).to(g.dtype)[:, None, None, :]  # [C,1,1,S] 1.0 at real behaviours
        pooled = [self._pool(g, keep, s)]  # masked sum over S -> [C,d1,O]
        for w in w_t[1:]:
            g = _half_tanh(torch.bmm(w, g))  # [C,d_{i+1},O·S]
            pooled.append(self._pool(g, keep, s))  # [C,d_{i+1},O]
        out = torch.cat(pooled, dim=1).transpose(1, 2) * 2.0  # [C,O,Σdims[1:]]: per order, every layer's Σ tanh
        return out.reshape(c, self.out_dim)

    def _one_user(self, params: Tensor, real: Tensor) -> Tensor:
        """One user's real behaviours ``real`` [S',d0] for every row of params [C,D'] -> [C, orders·Σdims[1:]].

        With s_i = σ(2·x_i) (x_i layer i's pre-activation), tanh(x_i) = 2·s_i − 1, so layer i+1's doubled
        pre-activation is 2·W·tanh(x_i) = 4·W·s_i − 2·W·1 (a per-row bias: one baddbmm, no pass over the [C,d,S'·O]
        activations to centre them) and Σ_behaviours tanh(x_i) = 2·Σ s_i − S'. Layer 1 is ONE matmul for all rows:
        [C·d1, d0] @ [d0, O·S']."""
        c, (s, d0), o = params.shape[0], real.shape, self.orders
        grad = params.requires_grad or real.requires_grad

        def sigmoid(x: Tensor) -> Tensor:
            return torch.sigmoid(x) if grad else x.sigmoid_()

        weights = self.weights(params)  # [C,d_i,d_{i+1}] each
        powers = torch.stack([real**k for k in range(1, o + 1)]).reshape(o * s, d0)  # [O·S',d0]
        d1 = weights[0].shape[2]
        first = weights[0].transpose(1, 2).reshape(c * d1, d0) * 2.0  # [C·d1,d0]
        act = sigmoid(torch.mm(first, powers.T)).view(c, d1, o * s)  # s_1 [C,d1,O·S']
        pooled = [act.view(c, d1, o, s).sum(-1)]  # Σ s per order [C,d1,O]
        for w in weights[1:]:
            w4 = w.transpose(1, 2) * 4.0  # [C,d_{i+1},d_i]
            bias = (w4.sum(-1) * -0.5)[..., None]  # −2·W·1 [C,d_{i+1},1]
            act = sigmoid(torch.baddbmm(bias, w4, act))  # s_{i+1} [C,d_{i+1},O·S']
            pooled.append(act.view(c, act.shape[1], o, s).sum(-1))
        out = torch.cat(pooled, dim=1).transpose(1, 2) * 2.0 - float(s)  # Σ tanh = 2·Σ s − S' [C,O,Σdims[1:]]
        return out.reshape(c, self.out_dim)

    def _pool(self, h: Tensor, keep: Tensor, s: int) -> Tensor:
        """[C,d,O·S] -> [C,d,O]: sum over the behaviours, times ``keep`` [C,1,1,S]."""
        per_order = h.view(h.shape[0], h.shape[1], self.orders, s)  # [C,d,O,S]
        return (per_order * keep).sum(-1)


def _half_tanh(doubled: Tensor) -> Tensor:
    """tanh(x)/2 from 2x: σ(2x) − ½ (in place when no gradient is recorded)."""
    if doubled.requires_grad:
        return torch.sigmoid(doubled) - 0.5
    return doubled.sigmoid_().sub_(0.5)


def distinct_rows(*columns: Tensor) -> tuple[Tensor, Tensor] | None:
    """Rows shared by several candidates: ``columns`` are [C,K] int64 tensors; rows c and c' are equal when every
    column agrees. Returns (first [G], inverse [C]) with columns[i][first][inverse] == columns[i], or None when all
    C rows differ. Exact: a 64-bit hash groups the rows, then every row is compared with its group's first row
    (after a hash collision, nothing is shared)."""
    c, k = columns[0].shape
    if c < 2:
        return None
    seeded = torch.Generator().manual_seed(0x5EED)
    weights = torch.randint(-(2**62), 2**62, (len(columns), k), generator=seeded, dtype=torch.int64)  # [n,K]
    key = sum(torch.mv(col.long(), w) for col, w in zip(columns, weights, strict=True))  # [C] (int64 wraps)
    assert isinstance(key, Tensor)
    distinct, inverse = torch.unique(key, return_inverse=True)  # [G], [C]
    g = distinct.shape[0]
    if g == c:
        return None
    first = torch.full((g,), c).scatter_reduce_(0, inverse, torch.arange(c), "amin")  # [G]
    source = first.index_select(0, inverse)  # [C] the first row of each row's group
    if not all(torch.equal(col.index_select(0, source), col) for col in columns):
        return None
    return first, inverse

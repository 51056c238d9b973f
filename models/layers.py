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
    """Softmax over the True positions of ``mask``; padded positions get exactly 0 and an all-padding row gives
    all zeros. Uses the most negative finite float instead of -inf so that neither pass produces NaN."""
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask.to(scores.dtype)


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
    the same function as DIN's with the same parameters, only cheaper.
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
        if chunk is None or chunk >= n:
            return self._attend(query, keys, mask, user_of)
        parts = [self._attend(query[i : i + chunk], keys, mask, user_of[i : i + chunk]) for i in range(0, n, chunk)]
        return torch.cat(parts, dim=0)

    def _attend(self, query: Tensor, keys: Tensor, mask: Tensor, user_of: Tensor) -> Tensor:
        w, d = self.first.weight, self.dim
        w_q, w_k, w_d, w_p = (w[:, i * d : (i + 1) * d] for i in range(4))  # each [h, d]
        q_part = query @ (w_q + w_d).T + self.first.bias  # [C,h]
        k_part = per_candidate(keys @ (w_k - w_d).T, user_of)  # [U,T,h] -> [C,T,h] (view when U == 1)
        keys_c = per_candidate(keys, user_of)  # [C,T,d]
        mask_c = per_candidate(mask, user_of)  # [C,T]
        hidden = torch.sigmoid(q_part[:, None, :] + k_part + (query[:, None, :] * keys_c) @ w_p.T)  # [C,T,h]
        scores = self.rest(hidden).squeeze(-1)  # [C,T]
        softmax = self.norm == "softmax"
        weights = masked_softmax(scores, mask_c) if softmax else scores * mask_c.to(scores.dtype)  # [C,T]
        if keys.shape[0] == 1:
            return weights @ keys[0]  # [C,T] @ [T,d] -> [C,d]
        return torch.bmm(weights[:, None, :], keys_c).squeeze(1)  # [C,d]


class MultiHeadTargetAttention(nn.Module):
    """SIM's Exact Search Unit: head_i = softmax_j((W_bi z_j) · (W_ai e_a) / √a) over the unmasked j, pooled
    Σ_j w_ij z_j; the heads are concatenated -> [C, heads · z_dim]. The 1/√a scale is ours (the paper gives none);
    it keeps the initial logits of larger head sizes in the softmax's useful range.

    Computed as z_j · (W_bi^T W_ai e_a): the projection is applied once per candidate and head instead of once per
    retrieved behaviour (the same function and parameters, K times fewer multiplications for W_b)."""

    def __init__(self, query_dim: int, z_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim, self.z_dim = heads, head_dim, z_dim
        self.w_a = nn.Linear(query_dim, heads * head_dim, bias=False)
        self.w_b = nn.Linear(z_dim, heads * head_dim, bias=False)

    def forward(self, query: Tensor, z: Tensor, mask: Tensor) -> Tensor:
        """query [C,da], z [C,K,dz], mask [C,K] -> [C, heads·dz]."""
        c = z.shape[0]
        qa = self.w_a(query).view(c, self.heads, self.head_dim)  # [C,H,a]
        w_b = self.w_b.weight.view(self.heads, self.head_dim, self.z_dim)  # [H,a,dz]
        qz = torch.einsum("cha,had->chd", qa, w_b) / math.sqrt(self.head_dim)  # [C,H,dz]
        scores = torch.bmm(qz, z.transpose(1, 2))  # [C,H,dz] @ [C,dz,K] -> [C,H,K]
        weights = masked_softmax(scores, mask[:, None, :])  # [C,H,K]
        pooled = torch.bmm(weights, z)  # [C,H,K] @ [C,K,dz] -> [C,H,dz]
        return pooled.reshape(c, self.heads * self.z_dim)


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

        Laid out feature-major ([C, d_i, S·O]) so that every layer is one contiguous matmul and nothing is copied."""
        c, (u, s, d0), o = params.shape[0], feed.shape, self.orders
        powers = torch.stack([feed**k for k in range(1, o + 1)], dim=1).reshape(u, o * s, d0)  # [U,O·S,d0]
        w_t = [w.transpose(1, 2) for w in self.weights(params)]  # [C,d_{i+1},d_i]
        d1 = w_t[0].shape[1]
        if u == 1:  # one matmul for all candidates: [C·d1, d0] @ [d0, O·S]
            h = torch.tanh((w_t[0].reshape(c * d1, d0) @ powers[0].T).view(c, d1, o * s))  # [C,d1,O·S]
        else:
            h = torch.tanh(torch.bmm(w_t[0], powers.index_select(0, user_of).transpose(1, 2)))  # [C,d1,O·S]
        mask_c = per_candidate(mask, user_of).to(h.dtype)[:, None, None, :]  # [C,1,1,S]
        pooled = [(h.view(c, d1, o, s) * mask_c).sum(-1)]  # masked sum over S -> [C,d1,O]
        for w in w_t[1:]:
            h = torch.tanh(torch.bmm(w, h))  # [C,d_{i+1},O·S]
            pooled.append((h.view(c, -1, o, s) * mask_c).sum(-1))  # [C,d_{i+1},O]
        out = torch.cat(pooled, dim=1).transpose(1, 2)  # [C,O,Σdims[1:]]: per order, every layer's outputs
        return out.reshape(c, self.out_dim)

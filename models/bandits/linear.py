"""Neural-linear bandit statistics: a Bayesian linear layer on the ranker's last hidden layer φ (the activation
feeding the OverArch's output Linear; ``models.age.last_hidden``), per item or shared by all items.

For a group g (one item, or every item when shared) the posterior precision is A_g = reg·I + Σ φ φᵀ over the
impressions shown so far (φ with a constant 1 appended). The network's own logit is the posterior mean; the linear
layer supplies the spread: q = φᵀ A_g⁻¹ φ. LinUCB ranks by logit + α·√q; linear Thompson sampling by
logit + ν·√q·ξ, ξ ~ N(0, 1) drawn per row. A_g⁻¹ is kept directly and updated per impression by Sherman–Morrison
(A + φφᵀ)⁻¹ = A⁻¹ − A⁻¹φφᵀA⁻¹ / (1 + φᵀA⁻¹φ); φ is the feature at the time the item was shown (the network keeps
training, and the covariance is not recomputed with the newer features).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class LinearPosterior:
    """A⁻¹ per group: ``groups`` independent ones (per item: group = item index) or a single shared one."""

    def __init__(self, dim: int, groups: int, *, shared: bool, reg: float = 1.0) -> None:
        if dim < 1 or groups < 1 or not reg > 0:
            raise ValueError(f"LinearPosterior needs dim >= 1, groups >= 1 and reg > 0, got {dim}, {groups}, {reg}")
        self.dim, self.shared, self.reg = dim + 1, shared, reg
        n = 1 if shared else groups
        self.inv: FloatArray = np.tile(np.eye(self.dim) / reg, (n, 1, 1))  # [G, d+1, d+1]

    def _phi(self, phi: npt.ArrayLike) -> FloatArray:
        x = np.asarray(phi, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim - 1:
            raise ValueError(f"features must be [n, {self.dim - 1}], got {x.shape}")
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    def _group(self, group: npt.ArrayLike, n: int) -> IntArray:
        g = np.asarray(group, dtype=np.int64).reshape(-1)
        if len(g) != n:
            raise ValueError(f"{len(g)} groups for {n} rows")
        return np.zeros(n, dtype=np.int64) if self.shared else g

    def spread(self, phi: npt.ArrayLike, group: npt.ArrayLike) -> FloatArray:
        """q = φᵀ A_g⁻¹ φ per row [n] (>= 0)."""
        x = self._phi(phi)
        g = self._group(group, len(x))
        q: FloatArray = np.einsum("ni,nij,nj->n", x, self.inv[g], x)
        return np.maximum(q, 0.0)

    def update(self, phi: npt.ArrayLike, group: npt.ArrayLike) -> None:
        """Add one impression per row, in row order (Sherman–Morrison, one rank-one update each)."""
        x = self._phi(phi)
        for row, g in zip(x, self._group(group, len(x)).tolist(), strict=True):
            a = self.inv[g]
            v = a @ row
            a -= np.outer(v, v) / (1.0 + row @ v)

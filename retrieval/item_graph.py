"""Fit ItemTables from behaviour histories: global counts, the co-occurrence item graph and item vectors.

Items that a user engages within a few behaviours of each other share a context (a session around a favourite,
a short-term browse of one taste region). Over all users this is a sparse co-occurrence matrix X[a, b] (pairs at
distance 1..``window`` in one user's sequence, both directions, an item never pairs with itself). It becomes a
positive pointwise mutual information matrix with context-distribution smoothing (exponent 0.75, as in
word2vec), keeping pairs seen at least ``min_pair`` times:

    PMI[a, b] = max(0, log X[a, b] − log X[a, ·] − log P_0.75(b) + log Σ X)

Its rows give each item's top-``neighbours`` co-occurrence neighbours (the item graph), and a truncated SVD
(scikit-learn's randomized_svd) of it gives ``dim``-dimensional unit vectors: U·√S row-normalised. Factorising a
shifted PMI matrix is what skip-gram with negative sampling does implicitly (Levy & Goldberg, 2014); done
explicitly it is a few seconds of sparse algebra, with no training loop. The pairs are accumulated in chunks of
``chunk`` behaviours, so memory stays bounded on large datasets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from retrieval.events import Behaviors
from retrieval.item_tables import ItemTables
from retrieval.vocabulary import Vocabulary

DEFAULT_WINDOW = 5
DEFAULT_NEIGHBOURS = 32
DEFAULT_DIM = 32


def _sequences(histories: Sequence[Behaviors], vocab: Vocabulary) -> tuple[npt.NDArray[np.int64], ...]:
    """Concatenated vocabulary rows, owner index and action of every behaviour."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    owner = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    items = np.concatenate([h["item_id"] for h in histories]) if len(histories) else np.zeros(0, np.int64)
    actions = np.concatenate([h["action"] for h in histories]) if len(histories) else np.zeros(0, np.uint8)
    return vocab.rows(items), owner, actions.astype(np.int64)


def cooccurrence(rows: npt.NDArray[np.int64], owner: npt.NDArray[np.int64], n: int, window: int,
                 chunk: int = 2_000_000) -> sp.csr_matrix:  # fmt: skip
    """Symmetric counts of row pairs at distance 1..window within one owner's sequence (self pairs dropped)."""
    total = sp.csr_matrix((n, n), dtype=np.float32)
    for start in range(0, len(rows), chunk):
        # a pair belongs to the chunk holding its later element; the slice reaches back ``window`` behaviours
        lead = min(start, window)
        r, o = rows[start - lead : start + chunk], owner[start - lead : start + chunk]
        firsts, seconds = [], []
        for d in range(1, window + 1):
            first = max(lead, d)
            a, b = r[first:], r[first - d : len(r) - d]
            keep = (o[first:] == o[first - d : len(o) - d]) & (a != b)
            firsts += [a[keep], b[keep]]
            seconds += [b[keep], a[keep]]
        i, j = np.concatenate(firsts), np.concatenate(seconds)
        part = sp.csr_matrix((np.ones(len(i), dtype=np.float32), (i, j)), shape=(n, n))
        part.sum_duplicates()
        total = total + part
    return total.tocsr()


def positive_pmi(counts: sp.csr_matrix, min_pair: int = 2, alpha: float = 0.75) -> sp.csr_matrix:
    """PPMI with context-distribution smoothing; pairs seen fewer than ``min_pair`` times are dropped."""
    coo = counts.tocoo()
    row_sum = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
    context = row_sum**alpha
    context /= max(context.sum(), 1e-12)
    total = max(row_sum.sum(), 1e-12)
    with np.errstate(divide="ignore"):
        pmi = np.log(coo.data) - np.log(row_sum[coo.row] / total) - np.log(context[coo.col]) - np.log(total)
    keep = (coo.data >= min_pair) & (pmi > 0)
    return sp.csr_matrix((pmi[keep].astype(np.float32), (coo.row[keep], coo.col[keep])), shape=counts.shape)


def top_neighbours(pmi: sp.csr_matrix, m: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Each row's ``m`` largest entries: (columns [n, m] int32, values [n, m] float32), 0-padded, best first."""
    n = pmi.shape[0]
    coo = pmi.tocoo()
    order = np.lexsort((-coo.data, coo.row))
    row, col, val = coo.row[order], coo.col[order], coo.data[order]
    starts = np.searchsorted(row, np.arange(n))
    rank = np.arange(len(row)) - starts[row]
    keep = rank < m
    cols = np.zeros((n, m), dtype=np.int32)
    vals = np.zeros((n, m), dtype=np.float32)
    cols[row[keep], rank[keep]] = col[keep]
    vals[row[keep], rank[keep]] = val[keep]
    return cols, vals


def svd_vectors(pmi: sp.csr_matrix, dim: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Unit rows of U·√S from a rank-``dim`` randomized SVD; all-zero rows stay zero."""
    n = pmi.shape[0]
    rank = max(1, min(dim, n - 1))
    u, s, _ = randomized_svd(pmi, rank, n_iter=5, random_state=seed)
    vectors = u * np.sqrt(s)
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.where(norm > 1e-9, vectors / np.maximum(norm, 1e-12), 0.0)
    out = np.zeros((n, dim), dtype=np.float32)
    out[:, :rank] = vectors
    return out


def fit_item_tables(
    histories: Sequence[Behaviors],
    strong_action: int,
    *,
    window: int = DEFAULT_WINDOW,
    neighbours: int = DEFAULT_NEIGHBOURS,
    dim: int = DEFAULT_DIM,
    overflow: int | None = None,
    seed: int = 0,
) -> ItemTables:
    """ItemTables of ``histories`` (each oldest first); every item occurring in them gets a vocabulary row."""
    items = np.concatenate([h["item_id"] for h in histories]) if len(histories) else np.zeros(0, np.int64)
    vocab = Vocabulary.fit(items, overflow)
    rows, owner, actions = _sequences(histories, vocab)
    n = vocab.size
    count = np.bincount(rows, minlength=n).astype(np.float32)
    strong = np.bincount(rows, weights=(actions >= strong_action).astype(np.float64), minlength=n)
    pmi = positive_pmi(cooccurrence(rows, owner, n, window))
    cols, vals = top_neighbours(pmi, neighbours)
    vectors = svd_vectors(pmi, dim, seed) if pmi.nnz else np.zeros((n, dim), dtype=np.float32)
    return ItemTables(vocab, count, strong.astype(np.float32), cols, vals, vectors, strong_action, window)

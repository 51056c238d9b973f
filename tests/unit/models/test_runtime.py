"""set_threads: torch, Faiss and numpy BLAS thread counts, and a clear error for a bad count."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from models.runtime import set_threads


def blas_threads() -> set[int]:
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    return {int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_set_threads_sets_torch_faiss_and_blas() -> None:
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    blas_before = threadpool_limits(limits=None)  # restores the BLAS pools' counts on exit
    try:
        set_threads(2)
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (2, 2)
        assert blas_threads() and max(blas_threads()) <= 2  # pools that cannot take 2 (fewer cores) stay lower
        set_threads(1)  # a second call (inter-op threads can no longer change) still sets the rest
        assert (torch.get_num_threads(), faiss.omp_get_max_threads(), blas_threads()) == (1, 1, {1})
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])
        blas_before.restore_original_limits()


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_thread_count_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match="threads="):
        set_threads(bad)  # type: ignore[arg-type]

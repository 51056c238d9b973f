"""set_threads: torch and Faiss thread counts, and a clear error for a bad count."""

from __future__ import annotations

import faiss
import pytest
import torch

from models.runtime import set_threads


def test_set_threads_sets_torch_and_faiss() -> None:
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        set_threads(2)
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (2, 2)
        set_threads(1)  # a second call (inter-op threads can no longer change) still sets the rest
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_thread_count_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match="threads="):
        set_threads(bad)  # type: ignore[arg-type]

"""Exact vocabularies with a hashed overflow: known ids never collide, unseen ids still get a row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrieval.vocabulary import Vocabulary, VocabularyError


def test_known_ids_get_their_own_rows_in_order_and_unseen_ids_spill_over() -> None:
    vocab = Vocabulary.fit([50, 7, 7, 2**40, 50, 3], overflow=4)
    assert vocab.known.tolist() == [3, 7, 50, 2**40] and vocab.size == 1 + 4 + 4
    assert vocab.rows([3, 7, 50, 2**40]).tolist() == [1, 2, 3, 4]
    spill = vocab.rows([1, 8, 10**15])
    assert np.all((spill > vocab.n_known) & (spill < vocab.size))
    assert vocab.is_known([7, 8]).tolist() == [True, False]
    assert vocab.collision_rate([3, 7, 50]) == 0.0


def test_min_count_leaves_rare_ids_to_the_overflow() -> None:
    vocab = Vocabulary.fit([1, 1, 2, 3, 3, 3], min_count=2)
    assert vocab.known.tolist() == [1, 3] and vocab.overflow == 64  # max(64, n_known // 8)


def test_a_pure_hashed_table_reports_its_collisions() -> None:
    hashed = Vocabulary([], overflow=16)
    rate = hashed.collision_rate(np.arange(200))
    assert 0.9 < rate <= 1.0  # 200 ids in 16 rows: nearly all share
    assert hashed.rows(np.arange(200)).min() >= 1


@given(st.lists(st.integers(min_value=0, max_value=2**62), min_size=1, max_size=60),
       st.lists(st.integers(min_value=0, max_value=2**62), max_size=30))
def test_rows_are_a_function_of_the_id(known: list[int], other: list[int]) -> None:
    vocab = Vocabulary.fit(known, overflow=8)
    ids = np.array(known + other, dtype=np.int64)
    rows = vocab.rows(ids)
    assert rows.min() >= 1 and rows.max() < vocab.size
    assert np.array_equal(rows, vocab.rows(ids[::-1])[::-1])  # no dependence on the batch
    assert len(np.unique(vocab.rows(np.unique(known)))) == len(np.unique(known))  # known ids never collide


def test_save_load_and_bad_input_name_the_problem(tmp_path: Path) -> None:
    vocab = Vocabulary.fit([9, 4, 1], overflow=5)
    loaded = Vocabulary.load(vocab.save(tmp_path / "v.npy"), overflow=5)
    assert np.array_equal(loaded.known, vocab.known) and loaded.size == vocab.size
    with pytest.raises(VocabularyError, match="sorted and unique"):
        Vocabulary([3, 1], overflow=2)
    with pytest.raises(VocabularyError, match="overflow"):
        Vocabulary([1], overflow=0)
    np.save(tmp_path / "bad.npy", np.array([1.5, 2.5]))
    with pytest.raises(VocabularyError, match=r"bad\.npy.*int64"):
        Vocabulary.load(tmp_path / "bad.npy", overflow=2)
    with pytest.raises(VocabularyError, match="missing"):
        Vocabulary.load(tmp_path / "none.npy", overflow=2)

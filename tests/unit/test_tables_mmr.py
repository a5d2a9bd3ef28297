"""MMR choice of context columns against hand-computed selections (aegir/tasks/tables/mmr.py)."""

from __future__ import annotations

import numpy as np
import pytest

from aegir.tasks.tables.mmr import mmr_select, select_context_columns

# Candidates 0 and 1 are near-duplicates (0.95) and both relevant; 2 is moderately relevant and novel; 3 is
# barely relevant and unlike everything.
RELEVANCE = [0.9, 0.8, 0.3, 0.1]
PAIRWISE = [
    [1.0, 0.95, 0.1, 0.0],
    [0.95, 1.0, 0.2, 0.1],
    [0.1, 0.2, 1.0, 0.05],
    [0.0, 0.1, 0.05, 1.0],
]


def test_balanced_lambda_skips_the_near_duplicate() -> None:
    # step 1: 0.5*r = [.45, .40, .15, .05] -> 0
    # step 2: 1: .40-.5*.95=-.075, 2: .15-.5*.10=.10, 3: .05-.5*0=.05 -> 2
    # step 3: 1: .40-.5*max(.95,.2)=-.075, 3: .05-.5*max(0,.05)=.025 -> 3
    assert mmr_select(RELEVANCE, PAIRWISE, 3, 0.5) == [0, 2, 3]


def test_lambda_one_is_pure_relevance() -> None:
    assert mmr_select(RELEVANCE, PAIRWISE, 4, 1.0) == [0, 1, 2, 3]


def test_lambda_zero_is_pure_diversity() -> None:
    # step 1: all scores 0 -> tie -> lowest position 0; step 2: -[.95, .10, 0] -> 3; step 3: -[.95, .10] -> 2
    assert mmr_select(RELEVANCE, PAIRWISE, 3, 0.0) == [0, 3, 2]


def test_ties_go_to_the_lowest_position_even_with_float_noise() -> None:
    assert mmr_select([0.5, 0.5, 0.5], np.zeros((3, 3)), 3, 0.7) == [0, 1, 2]
    assert mmr_select([0.3, 0.3 + 1e-13, 0.1], np.zeros((3, 3)), 1, 1.0) == [0]  # within TIE_TOLERANCE
    assert mmr_select([0.3, 0.3 + 1e-6, 0.1], np.zeros((3, 3)), 1, 1.0) == [1]  # a real difference wins


def test_preselected_items_count_as_redundancy_from_the_start() -> None:
    # The CPA main column is pre-selected: candidate 0 duplicates it (0.95), so 1 wins: .45-.475 < .40.
    pairwise = [[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]]
    assert mmr_select([0.9, 0.8, 0.3], pairwise, 1, 0.5, preselected=[[0.95], [0.0], [0.0]]) == [1]
    assert mmr_select([0.9, 0.8, 0.3], pairwise, 1, 0.5) == [0]


def test_k_larger_than_the_pool_and_k_zero() -> None:
    assert mmr_select(RELEVANCE, PAIRWISE, 10, 0.5) == [0, 2, 3, 1]
    assert mmr_select(RELEVANCE, PAIRWISE, 0, 0.5) == []
    with pytest.raises(ValueError, match="lambda"):
        mmr_select(RELEVANCE, PAIRWISE, 2, 1.5)


def test_select_context_columns_maps_positions_to_column_indices() -> None:
    # Column 2 is the target; the other columns reproduce RELEVANCE/PAIRWISE at indices 0, 1, 3, 4.
    order = [0, 1, 3, 4]
    sims = np.eye(5)
    for a, ca in enumerate(order):
        sims[ca, 2] = sims[2, ca] = RELEVANCE[a]
        for b, cb in enumerate(order):
            sims[ca, cb] = PAIRWISE[a][b]
    assert select_context_columns(sims, 2, 3, 0.5) == [0, 3, 4]
    assert select_context_columns(sims, 2, 3, 1.0) == [0, 1, 3]
    assert select_context_columns(sims, 2, 3, 0.5, candidates=[1, 3, 4]) == [1, 3, 4]
    # CPA: main column 0 is never a candidate and pushes its near-duplicate (1) down.
    assert select_context_columns(sims, 2, 2, 0.5, main=0) == [3, 4]
    assert select_context_columns(sims, 2, 0, 0.5) == []


def test_select_context_columns_on_real_vectors_follows_the_oracle() -> None:
    # Unit vectors whose cosines are easy to read: target t; a ~ t; b == a (duplicate); c orthogonal to all.
    t = np.array([1.0, 0.0, 0.0])
    a = np.array([0.8, 0.6, 0.0])
    c = np.array([0.0, 0.0, 1.0])
    from aegir.tasks.tables.similarity import cosine_matrix

    sims = cosine_matrix(np.stack([t, a, a, c]))
    # relevance: a .8, b .8, c 0; lambda .5: pick 1 (tie with 2 -> lowest), then 2: .4-.5 < c: 0 -> 3, then 2
    assert select_context_columns(sims, 0, 3, 0.5) == [1, 3, 2]

"""Maximal Marginal Relevance (Carbonell & Goldstein 1998) for choosing a column's context columns.

Greedy: repeatedly pick the candidate c maximising

    λ · sim(c, target)  −  (1 − λ) · max_{s ∈ S} sim(c, s)

where S holds the columns already chosen (plus any ``preselected`` ones, e.g. the main column of a CPA pair) and
the redundancy term is 0 while S is empty. λ = 1 ranks purely by relevance to the target; λ = 0 purely by
novelty (its first pick, with nothing chosen yet, is the tie-break below).

Why: a wide table's context should tell the model about the target column (relevance) without spending the byte
budget on near-duplicates (five date columns). Ties are broken by the lowest position (callers order candidates
by column index), and scores within ``TIE_TOLERANCE`` of the best count as ties, so the selection -- and hence a
cached dataset -- is reproducible whatever the floating-point summation order.

Tables have tens of columns at most, so the greedy loop is plain Python over lists: for such sizes it is several
times faster than numpy calls, and a dataset runs it once per example.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TIE_TOLERANCE = 1e-9

Matrix = np.ndarray | Sequence[Sequence[float]]


def _rows(matrix: Matrix) -> Sequence[Sequence[float]]:
    """Row lists of a matrix (a numpy array is converted; nested sequences are used as they are, not copied)."""
    return matrix.tolist() if isinstance(matrix, np.ndarray) else matrix


def mmr_select(relevance: Sequence[float] | np.ndarray, pairwise: Matrix, k: int, lam: float,
               preselected: Matrix | None = None) -> list[int]:
    """Positions of up to ``k`` candidates in MMR order.

    ``relevance[i]`` is sim(candidate i, target); ``pairwise[i][j]`` is sim(candidate i, candidate j);
    ``preselected[i][p]`` (optional) is sim(candidate i, already-chosen item p), counted as redundancy from the
    start. Ties go to the lowest position.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
    relevance = [float(r) for r in (relevance.tolist() if isinstance(relevance, np.ndarray) else relevance)]
    m = len(relevance)
    k = max(0, min(int(k), m))
    if k == 0:
        return []
    pair = _rows(pairwise)
    if len(pair) != m or any(len(row) != m for row in pair):
        raise ValueError(f"pairwise must be {m} x {m}")
    pre = _rows(preselected) if preselected is not None else []
    redundancy: list[float | None] = [max(row) if row else None for row in pre] if pre else [None] * m
    available = [True] * m
    chosen: list[int] = []
    for _ in range(k):
        scores = [lam * relevance[i] - (1.0 - lam) * redundancy[i] if redundancy[i] is not None
                  else lam * relevance[i] for i in range(m)]
        best = max(scores[i] for i in range(m) if available[i])
        pick = next(i for i in range(m) if available[i] and scores[i] >= best - TIE_TOLERANCE)
        chosen.append(pick)
        available[pick] = False
        for i in range(m):
            value = pair[i][pick]
            current = redundancy[i]
            redundancy[i] = value if current is None or value > current else current
    return chosen


def select_context_columns(similarity: Matrix, target: int, k: int, lam: float,
                           candidates: Sequence[int] | None = None, main: int | None = None) -> list[int]:
    """Column indices of up to ``k`` context columns for ``target``, in MMR order.

    ``similarity[i][j]`` is the cosine similarity of columns i and j of one table (see
    :func:`aegir.tasks.tables.similarity.cosine_matrix`). ``candidates`` defaults to every column; the target (and
    ``main``) are never candidates. For CPA, ``main`` is pre-selected: context is relevant to the target column and
    non-redundant with the main column as well as with each other.
    """
    sims = _rows(similarity)
    n = len(sims)
    excluded = {target} if main is None else {target, main}
    pool = sorted(set(range(n) if candidates is None else candidates) - excluded)
    if not pool or k <= 0:
        return []
    relevance = [sims[c][target] for c in pool]
    pairwise = [[sims[a][b] for b in pool] for a in pool]
    preselected = [[sims[c][main]] for c in pool] if main is not None else None
    return [pool[i] for i in mmr_select(relevance, pairwise, k, lam, preselected)]

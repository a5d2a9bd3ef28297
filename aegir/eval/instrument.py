"""Scoring the fixed cross-arm instrument (aegir/tasks/pretrain/instrument.py): bpb per segment kind and relational
probes by log-likelihood. The math is in plain functions (tests/unit/test_instrument.py has their oracles); the
model plumbing is in the loop (aegir.loops.lm: `candidate_scores`, `score_instrument`).

Metric names (docs/metrics.md): `eval/bpb/<kind>` for kind in rows, ddl, prose, ontology, and `eval/bpb/common`
(rows and prose: the kinds every arm trains on), the same as `eval/bpb_heldout/<kind>` on documents about the
held-out classes (`task.heldout_classes`); `eval/relational/<probe>` (accuracy) and
`eval/relational/<probe>/log_odds`, plus `eval/relational/mean` and `eval/relational/log_odds` over the probes. Each
has `/n`, `/lower`, `/upper` companions (95% CI, Student t over windows or items), like `eval/reward`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from aegir.eval.stats import MeanCI, mean_ci

LN2 = math.log(2.0)
COMMON_KINDS = ("rows", "prose")  # kept by every arm: the bytes `eval/bpb/common` compares arms on
PROBE_MAX_BYTES = 128  # longest probe sequence scored (context trimmed from the left)


def per_kind_window_bpb(losses: np.ndarray, kinds: np.ndarray, codes: Sequence[int]) -> np.ndarray:
    """Per window, the mean loss in bits of the target bytes whose kind is in `codes`; windows without such a
    byte are left out. `losses` [n, T] in nats, `kinds` [n, T] the kind code of each target byte."""
    mask = np.isin(kinds, list(codes))
    counts = mask.sum(axis=1)
    sums = np.where(mask, losses, 0.0).sum(axis=1)
    keep = counts > 0
    return sums[keep] / counts[keep] / LN2


def choice_outcomes(scores: np.ndarray, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per item (rows of `scores` [n, k]: a higher score = the model prefers that candidate): accuracy, with a tie
    for first place counted as 1/(number tied) when the answer is among them (so a model that cannot tell the
    candidates apart scores exactly chance), and log-odds: the answer's score minus the mean of the others'."""
    n, k = scores.shape
    rows = np.arange(n)
    correct = scores[rows, answers]
    best = scores.max(axis=1)
    tied = (scores == best[:, None]).sum(axis=1)
    accuracy = np.where(correct == best, 1.0 / tied, 0.0)
    others = (scores.sum(axis=1) - correct) / (k - 1)
    return accuracy, correct - others


def with_companions(name: str, stat: MeanCI) -> dict[str, float]:
    """`name`, `name/n`, `name/lower`, `name/upper` (the 95% CI bounds), like eval/reward's."""
    return {name: stat.mean, f"{name}/n": float(stat.n), f"{name}/lower": stat.mean - stat.ci95,
            f"{name}/upper": stat.mean + stat.ci95}


def probe_metrics(name: str, scores: np.ndarray, answers: np.ndarray) -> tuple[dict[str, float], np.ndarray,
                                                                               np.ndarray]:
    """`eval/relational/<name>` (accuracy) and `.../log_odds`, with companions; also the per-item arrays."""
    accuracy, log_odds = choice_outcomes(scores, answers)
    metrics = {**with_companions(f"eval/relational/{name}", mean_ci(accuracy)),
               **with_companions(f"eval/relational/{name}/log_odds", mean_ci(log_odds))}
    return metrics, accuracy, log_odds

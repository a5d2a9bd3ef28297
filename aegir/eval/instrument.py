"""Scoring the fixed cross-arm instrument (aegir/tasks/pretrain/instrument.py): bpb per segment kind and relational
probes by log-likelihood. The math is in plain functions (tests/unit/test_instrument.py has their oracles); the
model plumbing is `score_instrument`.

Metric names (docs/metrics.md): `eval/bpb/<kind>` for kind in rows, ddl, prose, ontology, and `eval/bpb/common`
(rows and prose: the kinds every arm trains on); `eval/relational/<probe>` (accuracy) and
`eval/relational/<probe>/log_odds`, plus `eval/relational/mean` and `eval/relational/log_odds` over the probes. Each
has `/n`, `/lower`, `/upper` companions (95% CI, Student t over windows or items), like `eval/reward`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aegir.eval.stats import MeanCI, mean_ci
from aegir.tasks.pretrain.instrument import KIND_CODES, Instrument, ProbeItem

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


@torch.no_grad()
def candidate_scores(model: nn.Module, items: Sequence[ProbeItem], max_len: int, batch_size: int) -> np.ndarray:
    """[n_items, k]: the mean log-probability per byte (nats) of each candidate's bytes after its context. A context
    longer than fits `max_len` together with the candidate loses its oldest bytes (the model was trained on windows
    of that length). Length-normalised so that longer candidates are not penalised for their length."""
    from aegir.loops.lm import lm_logits

    sequences: list[tuple[list[int], int]] = []  # (bytes, length of the candidate at the end)
    for item in items:
        context = list(item.context.encode("utf-8"))
        for candidate in item.candidates:
            tail = list(candidate.encode("utf-8"))
            keep = max(1, max_len - len(tail))
            sequences.append((context[-keep:] + tail, len(tail)))
    out = np.empty(len(sequences))
    was_training = model.training
    model.eval()
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)  # right padding: causal models never look ahead
        for row, (seq, _) in enumerate(chunk):
            ids[row, :len(seq)] = torch.tensor(seq)
        logp = F.log_softmax(lm_logits(model, ids[:, :-1]).float(), dim=-1)
        token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        for row, (seq, n_tail) in enumerate(chunk):
            out[start + row] = float(token_logp[row, len(seq) - 1 - n_tail:len(seq) - 1].mean())
    model.train(was_training)
    k = len(items[0].candidates) if items else 0
    return out.reshape(len(items), k)


def probe_metrics(name: str, scores: np.ndarray, answers: np.ndarray) -> tuple[dict[str, float], np.ndarray,
                                                                               np.ndarray]:
    """`eval/relational/<name>` (accuracy) and `.../log_odds`, with companions; also the per-item arrays."""
    accuracy, log_odds = choice_outcomes(scores, answers)
    metrics = {**with_companions(f"eval/relational/{name}", mean_ci(accuracy)),
               **with_companions(f"eval/relational/{name}/log_odds", mean_ci(log_odds))}
    return metrics, accuracy, log_odds


def score_instrument(model: nn.Module, instrument: Instrument, seq_len: int, batch_size: int) -> dict[str, float]:
    """Every instrument metric of the model's current weights. Probe sequences are at most PROBE_MAX_BYTES long
    (and never longer than a training window): their contexts are short by construction, the cap trims the top of
    a long CREATE TABLE, and it bounds the cost of the evaluation."""
    from aegir.loops.lm import evaluate_windows

    metrics: dict[str, float] = {}
    if instrument.eval_windows is not None:
        windows = instrument.eval_windows
        losses = evaluate_windows(model, windows.windows, batch_size, per_byte=True).numpy()
        kinds = windows.kinds[:, 1:].numpy()
        for kind, code in KIND_CODES.items():
            metrics.update(with_companions(f"eval/bpb/{kind}", mean_ci(per_kind_window_bpb(losses, kinds, [code]))))
        common = [KIND_CODES[k] for k in COMMON_KINDS]
        metrics.update(with_companions("eval/bpb/common", mean_ci(per_kind_window_bpb(losses, kinds, common))))
    accuracies, log_odds = [], []
    max_len = min(seq_len + 1, PROBE_MAX_BYTES)
    for name, items in instrument.probes.items():
        answers = np.array([item.answer for item in items])
        probe, accuracy, odds = probe_metrics(name, candidate_scores(model, items, max_len, batch_size), answers)
        metrics.update(probe)
        accuracies.append(accuracy)
        log_odds.append(odds)
    if accuracies:  # every probe has the same number of items: the pooled mean is the mean of the probe means
        metrics.update(with_companions("eval/relational/mean", mean_ci(np.concatenate(accuracies))))
        metrics.update(with_companions("eval/relational/log_odds", mean_ci(np.concatenate(log_odds))))
    return metrics

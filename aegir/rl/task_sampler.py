"""Multi-task prompt weighting for GRPO: which task each prompt of a batch comes from.

A sampler holds one weight per task (summing to 1), re-weights the tasks from per-task rewards every
``update_interval`` steps, and turns the weights into the task of each prompt in a batch. All samplers share one
interface (``update``, ``weights``, ``sample_tasks``, ``state_dict``/``load_state_dict``, ``metrics``) so the
trainer never branches on the kind, and a run resumed from ``state_dict`` makes the same updates and draws.

Kinds (``build_task_sampler``):

* ``uniform`` -- fixed equal weights; the baseline.
* ``improvement`` -- ``ImprovementAwareSampler``: a heuristic that boosts tasks whose eval reward stalls and damps
  tasks that improve quickly, within ``[floor, cap]``.
* ``mt_grpo`` -- ``MTGRPOSampler``: MT-GRPO's improvement-aware weight update (IWU) and ratio-preserving (RP)
  sampler, docs/grpo.md, Multi-task prompt mix.

Config mistakes (unknown kind or key, bad hyperparameter, a checkpoint for other tasks) raise ``InputError``;
wrong calls from the trainer (missing task reward, steps going backwards) raise ``ValueError``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from aegir.config.schema import ImprovementSamplerConfig, MTGRPOSamplerConfig, TaskSamplerArgs
from aegir.errors import InputError
from aegir.schema import check_section

SamplerKind = Literal["improvement", "mt_grpo", "uniform"]
Allocation = Literal["largest_remainder", "multinomial"]

_FLOAT_TOL = 1e-9


# --------------------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------------------


def largest_remainder_counts(n: int, weights: Sequence[float]) -> list[int]:
    """Split ``n`` prompts by ``weights`` as exactly as integers allow (Hamilton's largest-remainder method).

    Each task gets ``floor(n·w_k)``; the prompts left over go one each to the largest remainders
    ``n·w_k − floor(n·w_k)``, ties broken by task order. Every count is then within 1 of ``n·w_k`` and the counts
    sum to ``n``, so a batch keeps the weights' proportions instead of drifting with sampling noise. A tolerance of
    1e-9 absorbs float error (``10 × 0.3`` is 3, not 2 with remainder 0.999...).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    quotas = [n * w for w in weights]
    counts = [math.floor(q + _FLOAT_TOL) for q in quotas]
    remainders = [max(q - c, 0.0) for q, c in zip(quotas, counts)]
    left = n - sum(counts)
    order = sorted(range(len(weights)), key=lambda k: (-round(remainders[k], 9), k))
    for k in order[:left]:
        counts[k] += 1
    return counts


def project_to_bounds(values: Sequence[float], low: float, high: float) -> np.ndarray:
    """Renormalise positive ``values`` to sum 1 with every weight in ``[low, high]`` (multiplicative water-filling).

    Returns ``w_k = clip(c·v_k, low, high)`` with the one scale ``c > 0`` that makes ``Σ w_k = 1``. Tasks strictly
    inside the bounds keep their relative proportions (this *is* renormalisation for them); the others sit exactly
    on a bound. Clipping and then renormalising once is not enough -- renormalising can push a clipped weight back
    over the cap -- so ``c`` is solved exactly: ``f(c) = Σ clip(c·v_k, low, high)`` is continuous, non-decreasing
    and linear between the breakpoints ``low/v_k``, ``high/v_k``; find the segment where ``f`` crosses 1 and solve
    the linear equation there. Needs ``K·low <= 1 <= K·high`` (the caller relaxes the bounds when it is not).
    """
    v = np.asarray(values, dtype=np.float64)
    k = v.size
    if k == 0 or not np.all(v > 0) or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite and > 0, got {v.tolist()}")
    if k * low >= 1.0 - _FLOAT_TOL:
        return np.full(k, 1.0 / k)
    if k * high <= 1.0 + _FLOAT_TOL:
        return np.full(k, 1.0 / k)
    breakpoints = np.unique(np.concatenate([low / v, high / v]))
    totals = np.array([np.clip(c * v, low, high).sum() for c in breakpoints])
    j = int(np.searchsorted(totals, 1.0))  # first breakpoint with f(c) >= 1; f(first) = K·low < 1, so j >= 1
    j = min(max(j, 1), breakpoints.size - 1)
    mid = 0.5 * (breakpoints[j - 1] + breakpoints[j])
    at_low = mid * v <= low
    at_high = mid * v >= high
    free = ~(at_low | at_high)
    scale = (1.0 - low * at_low.sum() - high * at_high.sum()) / v[free].sum()
    return np.clip(scale * v, low, high)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


# --------------------------------------------------------------------------------------------------------------
# Shared interface
# --------------------------------------------------------------------------------------------------------------


class TaskSampler:
    """Weights over tasks plus the update cadence; subclasses decide how the weights move in ``_apply``.

    The cadence is ``update(step, ...)``-driven: the first call records a baseline (the eval rewards at that step)
    and later calls act only once ``step − last_update_step >= update_interval``; calls in between return False
    and leave everything unchanged, so the trainer can call ``update`` after every eval without bookkeeping.
    """

    kind: str = "base"

    def __init__(self, tasks: Sequence[str], initial: Mapping[str, float] | None, update_interval: int) -> None:
        self.tasks: list[str] = _check_tasks(tasks)
        self.update_interval = update_interval
        self._weights = _initial_weights(self.tasks, initial)
        self._prev_rewards: np.ndarray | None = None
        self._last_step: int | None = None

    # -- weights and batches --------------------------------------------------------------------------------

    @property
    def weights(self) -> dict[str, float]:
        """Current task weights (sum 1), in task order."""
        return {t: float(w) for t, w in zip(self.tasks, self._weights)}

    def task_counts(self, n: int) -> dict[str, int]:
        """How many of ``n`` prompts each task gets: largest-remainder allocation of the weights (exact ratios)."""
        return dict(zip(self.tasks, largest_remainder_counts(n, self._weights.tolist())))

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[str]:
        """The task of each of ``n`` prompts: ``task_counts(n)`` laid out in task order, then shuffled.

        The counts are deterministic (no sampling noise); ``generator`` only decides the order, so the same
        generator state gives the same list and a batch never groups all prompts of one task together.
        """
        counts = self.task_counts(n)
        layout = [t for t in self.tasks for _ in range(counts[t])]
        order = torch.randperm(n, generator=generator).tolist()
        return [layout[i] for i in order]

    # -- updates --------------------------------------------------------------------------------------------

    def update(self, step: int, eval_rewards: Mapping[str, float]) -> bool:
        """Re-weight from each task's eval reward now vs at the previous update; True if the weights changed."""
        rewards = self._rewards_vector(eval_rewards, "eval_rewards")
        if not self._due(step):
            return False
        previous, self._prev_rewards, self._last_step = self._prev_rewards, rewards, step
        if previous is None:
            return False
        return self._set_weights(self._apply(rewards - previous, previous, rewards))

    def _apply(self, improvement: np.ndarray, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """New (normalised) weights from the per-task improvement since the previous update."""
        raise NotImplementedError

    def _due(self, step: int) -> bool:
        """Whether ``step`` is an update step (first call, or ``update_interval`` steps after the last update)."""
        if self._last_step is not None and step < self._last_step:
            raise ValueError(f"update step went backwards: {step} after {self._last_step}")
        return self._last_step is None or step - self._last_step >= self.update_interval

    def _set_weights(self, new: np.ndarray) -> bool:
        changed = bool(np.any(np.abs(new - self._weights) > 1e-12))
        self._weights = new
        return changed

    def _rewards_vector(self, values: Mapping[str, float], name: str) -> np.ndarray:
        """Per-task values in task order; every task must be present and finite (extra keys are ignored)."""
        missing = [t for t in self.tasks if t not in values]
        if missing:
            raise ValueError(f"{name}: no value for task(s) {missing}")
        out = np.array([float(values[t]) for t in self.tasks], dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{name}: values must be finite, got {dict(zip(self.tasks, out.tolist()))}")
        return out

    # -- resume and logging ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON-safe) state; with the same config, ``load_state_dict`` resumes exactly."""
        return {
            "kind": self.kind,
            "tasks": list(self.tasks),
            "weights": self._weights.tolist(),
            "prev_rewards": None if self._prev_rewards is None else self._prev_rewards.tolist(),
            "last_step": self._last_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``; a state saved for another kind or other tasks is an ``InputError``."""
        if state.get("kind") != self.kind:
            raise InputError(f"task sampler state: saved for kind {state.get('kind')!r}, config says {self.kind!r}")
        if list(state.get("tasks", [])) != self.tasks:
            raise InputError(f"task sampler state: saved for tasks {state.get('tasks')}, config has {self.tasks}")
        self._weights = np.array(state["weights"], dtype=np.float64)
        prev = state["prev_rewards"]
        self._prev_rewards = None if prev is None else np.array(prev, dtype=np.float64)
        self._last_step = state["last_step"]

    def metrics(self) -> dict[str, float]:
        """``sampler/<task>_weight`` for every task."""
        return {f"sampler/{t}_weight": float(w) for t, w in zip(self.tasks, self._weights)}


def _check_tasks(tasks: Sequence[str]) -> list[str]:
    names = list(tasks)
    if not names:
        raise InputError("algo.task_sampler: tasks: needs at least one task")
    for t in names:
        if not isinstance(t, str) or not t:
            raise InputError(f"algo.task_sampler: tasks: task names must be non-empty strings, got {t!r}")
    duplicates = sorted({t for t in names if names.count(t) > 1})
    if duplicates:
        raise InputError(f"algo.task_sampler: tasks: duplicate task(s) {duplicates}")
    return names


def _initial_weights(tasks: list[str], initial: Mapping[str, float] | None) -> np.ndarray:
    """Uniform, or the given weights (one positive finite value per task) normalised to sum 1."""
    if initial is None:
        return np.full(len(tasks), 1.0 / len(tasks))
    if set(initial) != set(tasks):
        raise InputError(
            f"algo.sampler.initial: keys {sorted(initial)} must be exactly the tasks {sorted(tasks)}"
        )
    w = np.array([float(initial[t]) for t in tasks], dtype=np.float64)
    if not np.all(np.isfinite(w)) or not np.all(w > 0):
        raise InputError(f"algo.sampler.initial: weights must be finite and > 0, got {dict(initial)}")
    return w / w.sum()


# --------------------------------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------------------------------


class UniformSampler(TaskSampler):
    """Equal weights forever (``update`` only tracks the cadence); the baseline against which re-weighting is judged."""

    kind = "uniform"

    def __init__(self, tasks: Sequence[str], update_interval: int = 1) -> None:
        super().__init__(tasks, None, update_interval)

    def _apply(self, improvement: np.ndarray, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        return self._weights


class ImprovementAwareSampler(TaskSampler):
    """Boost tasks that stall, damp tasks that improve fast, keep every weight in ``[floor, cap]``.

    At each update, with ``Δ_k = r_k(now) − r_k(previous update)`` from the eval rewards:

    1. ``Δ_k < low``  → ``v_k = up·w_k``   (stalled or regressing: give it more prompts)
       ``Δ_k > high`` → ``v_k = down·w_k`` (improving fast: it needs fewer)
       otherwise      → ``v_k = w_k``      (bounds are strict: ``Δ = low`` or ``Δ = high`` leaves ``w_k`` alone)
    2. ``w_new = project_to_bounds(v, floor, cap)``: renormalise to sum 1 *and* clip to ``[floor, cap]`` in one
       step, ``w_k = clip(c·v_k, floor, cap)`` with the scale ``c`` that makes the sum 1. The cap/floor are thus
       applied to the *final* weights (clipping before renormalising, as a naive reading of "×up then cap" would
       do, lets renormalisation break the cap again); tasks off the bounds keep the proportions of step 1.

    The bounds are feasible only if ``K·floor <= 1 <= K·cap``; otherwise the effective floor is ``min(floor, 1/K)``
    and the effective cap ``max(cap, 1/K)`` (e.g. one task: weight 1; 12 tasks with floor 0.10: floor 1/12).
    The initial weights are projected the same way, so they respect the bounds from step 0.
    """

    kind = "improvement"

    def __init__(
        self,
        tasks: Sequence[str],
        initial: Mapping[str, float] | None = None,
        update_interval: int = 1,
        up: float = 1.3,
        down: float = 0.85,
        low: float = 0.01,
        high: float = 0.05,
        cap: float = 0.60,
        floor: float = 0.10,
    ) -> None:
        super().__init__(tasks, initial, update_interval)
        if not (low <= high):
            raise InputError(f"algo.sampler.improvement.low/high: need low <= high, got low={low!r}, high={high!r}")
        if not (floor <= cap):
            raise InputError(f"algo.sampler.improvement.floor/cap: need floor <= cap, got floor={floor!r}, cap={cap!r}")
        self.up, self.down, self.low, self.high = up, down, low, high
        k = len(self.tasks)
        self.cap = max(cap, 1.0 / k)
        self.floor = min(floor, 1.0 / k)
        self._weights = project_to_bounds(self._weights, self.floor, self.cap)

    def _apply(self, improvement: np.ndarray, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        factor = np.where(improvement < self.low, self.up, np.where(improvement > self.high, self.down, 1.0))
        return project_to_bounds(self._weights * factor, self.floor, self.cap)


class MTGRPOSampler(TaskSampler):
    """MT-GRPO task weighting: IWU on softmax logits plus the ratio-preserving sampler (docs/grpo.md, Multi-task
    prompt mix).

    **IWU** (Subroutine 1), with logits ``ξ`` and weights ``z = softmax(ξ)``:

        I_k = J_GRPO,k(θ_{t+1}) − J_GRPO,k(θ_t)        per-task improvement over the update
        s_k = I_k + λ·J_k(θ_t)                         λ = ``lambda_bias`` (0.2; the paper's scripts use 0.2/0.25)
        g_k = z_k·(s_k − Σ_j z_j s_j)
        ξ  ← ξ − β·g,   z ← softmax(ξ)                  β = ``lr`` (0.025, ``trainer.sec.bandit.lr``)

    so tasks that improve less, or are already worse, gain weight (the minimax direction); no cap/floor (softmax
    keeps every weight > 0). Inputs ``update`` consumes, per task:

    * ``eval_rewards`` -- task reward J_k (accuracy / mean verifiable reward), *not* the GRPO loss (which is 0
      for all-correct and all-wrong groups alike).
    * ``improvements`` (optional) -- I_k measured by the trainer. Then ``eval_rewards`` must be J_k(θ_t), the
      reward at the parameters *before* the step (e.g. the accuracy of that step's rollouts), and the update acts
      at once. Without it, I_k is approximated by the change of ``eval_rewards`` since the previous update and
      J_k(θ_t) is the previous value; the first call then only records that baseline.
    * ``zero_grad_rates`` (optional; also ``observe_zero_gradient``) -- the fraction of this step's groups of
      task k with zero reward std. Recorded on every call, due or not.

    **RP sampler**: post-filter targets ``n ~ Multinomial(B, z)`` (``target_counts``); generation draws tasks from
    the acceptance-corrected ``ẑ_k ∝ z_k·m_k``, ``m_k = min(1/(1 − ρ̂_k), M_acc)`` (``sample_tasks``), so that after
    zero-std groups are dropped the survivors come out in proportion ``z``; the trainer keeps generating until
    ``still_needed`` is all zero or ``max_gen_batches`` rounds are spent. ``ρ̂_k`` is a running average
    ``ρ̂ ← d·ρ̂ + (1−d)·rate`` (d = ``zero_grad_decay``; the first observation is taken as is). The reference does not
    fix ``M_acc`` or the averaging: ``max_accept=3.0`` follows the scripts' ``rejection_sample_multiplier=3.0`` and
    ``max_gen_batches=10`` their ``filter_groups.max_num_gen_batches``. ``allocation="largest_remainder"`` swaps the
    multinomial draws for exact largest-remainder counts (shuffled), as the other samplers use.
    """

    kind = "mt_grpo"

    def __init__(
        self,
        tasks: Sequence[str],
        initial: Mapping[str, float] | None = None,
        update_interval: int = 1,
        lambda_bias: float = 0.2,
        lr: float = 0.025,
        max_accept: float = 3.0,
        zero_grad_decay: float = 0.9,
        max_gen_batches: int = 10,
        allocation: Allocation = "multinomial",
    ) -> None:
        super().__init__(tasks, initial, update_interval)
        if not isinstance(max_gen_batches, int) or max_gen_batches < 1:
            raise InputError(f"max_gen_batches: must be an integer >= 1, got {max_gen_batches!r}")
        self.lambda_bias, self.lr, self.max_accept = lambda_bias, lr, max_accept
        self.zero_grad_decay, self.max_gen_batches, self.allocation = zero_grad_decay, max_gen_batches, allocation
        self._logits = np.log(self._weights)
        self._zero_grad_rate: np.ndarray | None = None

    # -- IWU --------------------------------------------------------------------------------------------------

    def update(
        self,
        step: int,
        eval_rewards: Mapping[str, float],
        improvements: Mapping[str, float] | None = None,
        zero_grad_rates: Mapping[str, float] | None = None,
    ) -> bool:
        """One IWU step when due (see the class docstring for the inputs); True if the weights changed."""
        if zero_grad_rates is not None:
            self.observe_zero_gradient(zero_grad_rates)
        if improvements is None:
            return super().update(step, eval_rewards)
        rewards = self._rewards_vector(eval_rewards, "eval_rewards")
        gains = self._rewards_vector(improvements, "improvements")
        if not self._due(step):
            return False
        self._prev_rewards, self._last_step = rewards, step
        return self._set_weights(self._apply(gains, rewards, rewards))

    def _apply(self, improvement: np.ndarray, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        z = self._weights
        score = improvement + self.lambda_bias * previous
        grad = z * (score - np.dot(z, score))
        self._logits = self._logits - self.lr * grad
        self._logits -= self._logits.max()  # softmax-invariant; keeps the logits bounded over long runs
        return _softmax(self._logits)

    # -- RP sampler -------------------------------------------------------------------------------------------

    def observe_zero_gradient(self, rates: Mapping[str, float]) -> None:
        """Fold this step's per-task zero-std-group fractions (each in [0, 1]) into the running ρ̂_k."""
        r = self._rewards_vector(rates, "zero_grad_rates")
        if np.any((r < 0) | (r > 1)):
            raise ValueError(f"zero_grad_rates: must be in [0, 1], got {dict(zip(self.tasks, r.tolist()))}")
        if self._zero_grad_rate is None:
            self._zero_grad_rate = r
        else:
            d = self.zero_grad_decay
            self._zero_grad_rate = d * self._zero_grad_rate + (1.0 - d) * r

    def generation_weights(self) -> dict[str, float]:
        """ẑ_k ∝ z_k·min(1/(1 − ρ̂_k), M_acc): oversample tasks whose groups are often dropped (ρ̂ = 0 before data)."""
        rho = np.zeros(len(self.tasks)) if self._zero_grad_rate is None else self._zero_grad_rate
        with np.errstate(divide="ignore"):
            accept = np.minimum(1.0 / np.maximum(1.0 - rho, 0.0), self.max_accept)
        zhat = self._weights * accept
        return {t: float(w) for t, w in zip(self.tasks, zhat / zhat.sum())}

    def target_counts(self, batch_size: int, generator: torch.Generator) -> dict[str, int]:
        """Post-filter target counts ``n_k``: ``Multinomial(batch_size, z)`` (or largest remainder of ``z``)."""
        return dict(zip(self.tasks, self._allocate(batch_size, self._weights, generator)))

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[str]:
        """Tasks of ``n`` prompts to *generate*, drawn from ẑ (one RP round); deterministic given ``generator``."""
        zhat = np.array(list(self.generation_weights().values()))
        if self.allocation == "largest_remainder":
            counts = largest_remainder_counts(n, zhat.tolist())
            layout = [t for t, c in zip(self.tasks, counts) for _ in range(c)]
            return [layout[i] for i in torch.randperm(n, generator=generator).tolist()]
        if n == 0:
            return []
        draws = torch.multinomial(torch.from_numpy(zhat), n, replacement=True, generator=generator)
        return [self.tasks[i] for i in draws.tolist()]

    def still_needed(self, targets: Mapping[str, int], survivors: Mapping[str, int]) -> dict[str, int]:
        """``max(n_k − c_k, 0)`` per task: what the RP loop must still generate (all zero → batch complete)."""
        return {t: max(int(targets[t]) - int(survivors.get(t, 0)), 0) for t in self.tasks}

    def _allocate(self, n: int, probs: np.ndarray, generator: torch.Generator) -> list[int]:
        if self.allocation == "largest_remainder":
            return largest_remainder_counts(n, probs.tolist())
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return [0] * len(self.tasks)
        draws = torch.multinomial(torch.from_numpy(probs), n, replacement=True, generator=generator)
        return torch.bincount(draws, minlength=len(self.tasks)).tolist()

    # -- resume and logging -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["logits"] = self._logits.tolist()
        state["zero_grad_rate"] = None if self._zero_grad_rate is None else self._zero_grad_rate.tolist()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._logits = np.array(state["logits"], dtype=np.float64)
        rate = state["zero_grad_rate"]
        self._zero_grad_rate = None if rate is None else np.array(rate, dtype=np.float64)

    def metrics(self) -> dict[str, float]:
        """Weights, plus the generation weights ẑ and the running zero-gradient rates ρ̂."""
        out = super().metrics()
        for t, w in self.generation_weights().items():
            out[f"sampler/{t}_gen_weight"] = w
        rho = np.zeros(len(self.tasks)) if self._zero_grad_rate is None else self._zero_grad_rate
        for t, r in zip(self.tasks, rho):
            out[f"sampler/{t}_zero_grad_rate"] = float(r)
        return out


_CONFIGS: dict[str, type] = {"improvement": ImprovementSamplerConfig, "mt_grpo": MTGRPOSamplerConfig}
_KINDS: dict[str, type[TaskSampler]] = {
    "uniform": UniformSampler,
    "improvement": ImprovementAwareSampler,
    "mt_grpo": MTGRPOSampler,
}


def build_task_sampler(kind: SamplerKind, tasks: Sequence[str], **cfg: Any) -> TaskSampler:
    """The sampler of ``kind`` for ``tasks``; ``cfg`` are its keyword arguments (an unknown key is an InputError),
    checked against the ranges `algo.sampler` declares in aegir/config/schema.py."""
    if kind not in _KINDS:
        raise InputError(f"algo.task_sampler: unknown kind {kind!r}; one of {sorted(_KINDS)}")
    cls = _KINDS[kind]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "tasks"}
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise InputError(f"algo.sampler.{kind}: unknown key(s) {unknown}; accepted: {sorted(accepted)}")
    check_section(cfg, TaskSamplerArgs, "algo.sampler")
    if kind in _CONFIGS:
        check_section(cfg, _CONFIGS[kind], f"algo.sampler.{kind}")
    return cls(tasks, **cfg)

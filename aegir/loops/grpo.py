"""Lightning module for GRPO: rollout -> verifiable rewards -> group advantages -> clipped policy update.

Orchestration only: sampling and log-probs are in `aegir.rl.rollout`, rewards in `aegir.rl.rewards`, advantages and
losses are pure functions in `aegir.rl.advantages` / `aegir.rl.losses`. One `training_step` is one generation batch
(`prompts_per_step` prompts x `group_size` completions); it makes `num_iterations` optimizer steps over it, each
accumulating gradients over micro-batches (manual optimisation, so the dapo global-token normaliser is exact).
Evaluation is Lightning's validation loop over a fixed prompt set, so checkpointing on `eval/reward` and resume
work as for every other loop.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from aegir.config.schema import GRPOAlgoConfig
from aegir.errors import InputError
from aegir.eval.stats import mean_ci
from aegir.loops.lm import adamw_with_schedule, keep_trainable_weights_only
from aegir.rl.advantages import compute_advantages, zero_std_groups
from aegir.models.policy import Policy
from aegir.rl.losses import high_entropy_threshold, mask_truncated, policy_loss, soft_overlong_penalty
from aegir.observe.tensorboard import EVAL_BANDS, add_band_charts, band, band_bounds, log_samples_table
from aegir.rl.rewards import (RewardBatch, RewardComposer, RewardSpec, gated_components, pass_rate,
                              write_error_samples)
from aegir.rl.rollout import RolloutBatch
from aegir.rl.task_sampler import MTGRPOSampler, TaskSampler, build_task_sampler
from aegir.tasks.pretrain.windows import mix_seed
from aegir.loops.record_batches import RecordBatches, record_loader

log = logging.getLogger("aegir")
OVERLONG_COMPONENT = "overlong_penalty"
"""The name the soft overlong penalty is logged under (grpo/reward/overlong_penalty/{mean,std})."""
# The frozen KL reference is in eval mode on purpose; Lightning warns about any eval-mode module at fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


class GRPOModule(L.LightningModule):
    """GRPO with the knobs of TRL / verl (docs/grpo.md): advantage kind and scaling, clip-higher, loss normalisation,
    KL estimator and coefficient (no reference copy when 0), entropy bonus, truncation masking, soft overlong
    penalty, dynamic sampling of zero-variance groups, and a reward-collapse canary."""

    def __init__(self, policy: Policy, train_records: Sequence[Mapping[str, Any]],
                 eval_records: Sequence[Mapping[str, Any]], reward_spec: RewardSpec, algo: GRPOAlgoConfig,
                 *, seed: int, total_steps: int, samples_dir: Path, reward_context: Any = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.lm = policy
        self.policy: nn.Module = policy.model  # registered here: checkpoints keep the `policy.` keys
        # The KL reference only when the term is on: a frozen copy, or none at all for a LoRA policy (its adapter
        # disabled is the reference).
        self.ref: nn.Module | None = policy.enable_reference() if algo.kl_coef > 0 else None
        # A LoRA policy's checkpoints hold only the adapter (on_save_checkpoint), so loading them is not strict.
        self.strict_loading = not policy.adapter_only
        self.train_records, self.eval_records = list(train_records), list(eval_records)
        self.reward_spec = reward_spec
        self.algo = algo
        self.seed, self.total_steps = seed, total_steps
        self.samples_dir = Path(samples_dir)
        self._composer: RewardComposer | None = None
        self.reward_errors: dict[str, Any] = {"count": 0, "first": None}
        """Reward calls that raised, timed out or returned garbage in this process (train and eval), and the first
        one's "component: reason"; finalize_stage copies it into summary.json."""
        # Optional task hook around scoring (task=ontology: the catalog watcher, aegir/tasks/ontology/reload.py):
        # before_step(step) -> metrics, annotate(records) -> records as the verifiers see them, state_dict().
        self.reward_context = reward_context
        self._low_std_streak = 0
        self._eval_rows: list[dict[str, Any]] = []
        self._generation_index = 0
        self.task_sampler = task_sampler_from_config(self.algo, self.train_records, self.eval_records)
        self._pools: dict[str, list[Mapping[str, Any]]] = {}
        for record in self.train_records:
            self._pools.setdefault(_task_of(record), []).append(record)

    # ------------------------------------------------------------------ helpers
    @property
    def composer(self) -> RewardComposer:
        if self._composer is None:  # built lazily, in the process that trains (spawned DDP workers included)
            self._composer = RewardComposer(self.reward_spec)
        return self._composer

    def _prompt_ids(self, record: Mapping[str, Any]) -> list[int]:
        return self.lm.encode_prompt(record["prompt"])

    def _decode(self, batch: RolloutBatch) -> list[str]:
        return [self.lm.decode(row[: int(n)].tolist()) for row, n in zip(batch.completion_ids, batch.lengths)]

    def _reward_rows(self, rows: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        return rows if self.reward_context is None else self.reward_context.annotate(rows)

    def _reward_texts(self, texts: Sequence[str]) -> list[str]:
        """What the verifiers read (HF policies: <think> blocks removed); samples keep the raw text."""
        return [self.lm.reward_text(t) for t in texts]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_composer"] = None  # worker pools do not pickle (ddp_spawn)
        return state

    # ------------------------------------------------------------------ data
    def train_dataloader(self) -> Any:
        iterations = self.algo.num_iterations
        batches = RecordBatches(self.train_records, self.algo.prompts_per_step, self.seed,
                                rank=self.trainer.global_rank,
                                start_index=lambda: self.trainer.global_step // iterations)
        return record_loader(batches)

    def val_dataloader(self) -> Any:
        size = self.algo.eval_batch_size
        chunks = [self.eval_records[i: i + size] for i in range(0, len(self.eval_records), size)]
        return record_loader(chunks)

    def _draw_records(self, n: int, round_index: int) -> list[Mapping[str, Any]]:
        """`n` training prompts whose tasks follow the task sampler's weights; a pure function of (seed, rank,
        step, round, sampler state), and the sampler state is checkpointed, so a resumed run draws the same."""
        assert self.task_sampler is not None
        generator = torch.Generator().manual_seed(
            mix_seed(self.seed + 3 + 7919 * round_index, self.global_rank, self.global_step))
        records = []
        for task in self.task_sampler.sample_tasks(n, generator):
            pool = self._pools[task]
            records.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
        return records

    def _update_task_sampler(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Feed the per-task eval rewards (summed over ranks, so every rank makes the same update) to the sampler."""
        if self.task_sampler is None or self.trainer.sanity_checking:
            return
        tasks = self.task_sampler.tasks
        index = {t: i for i, t in enumerate(tasks)}
        sums = torch.zeros(len(tasks), dtype=torch.float64)
        counts = torch.zeros(len(tasks), dtype=torch.float64)
        for row in rows:
            i = index.get(str(row["task"]))
            if i is not None:
                sums[i] += float(row["reward"])
                counts[i] += 1
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum").cpu()
            counts = self.trainer.strategy.reduce(counts.to(self.device), reduce_op="sum").cpu()
        if bool((counts == 0).any()):
            log.warning("task sampler not updated at step %d: no eval rows for %s", self.global_step,
                        [t for t, c in zip(tasks, counts.tolist()) if c == 0])
            return
        rewards = {t: float(s / c) for t, s, c in zip(tasks, sums.tolist(), counts.tolist())}
        if self.task_sampler.update(int(self.global_step), rewards):
            log.info("task weights at step %d: %s", self.global_step,
                     ", ".join(f"{t} {w:.3f}" for t, w in self.task_sampler.weights.items()))

    def _observe_zero_std(self, rows: Sequence[Mapping[str, Any]], zero_std: Tensor, group: int) -> None:
        """MT-GRPO's ratio-preserving sampler needs each task's rate of zero-variance groups (all ranks)."""
        if not isinstance(self.task_sampler, MTGRPOSampler):
            return
        tasks = self.task_sampler.tasks
        task_ids = torch.tensor([tasks.index(_task_of(rows[g * group])) for g in range(zero_std.numel())],
                                device=self.device, dtype=torch.float32)
        task_ids, flags = self._gather(task_ids), self._gather(zero_std.float())
        current = self.task_sampler.metrics()
        rates = {}
        for i, task in enumerate(tasks):  # a task absent from this batch keeps its running rate
            mine = flags[task_ids == i]
            rates[task] = float(mine.mean()) if mine.numel() else current[f"sampler/{task}_zero_grad_rate"]
        self.task_sampler.observe_zero_gradient(rates)

    # ------------------------------------------------------------------ rollout + scoring
    def _rollout(self, records: Sequence[Mapping[str, Any]], group_size: int, temperature: float,
                 generator: torch.Generator | None) -> tuple[RolloutBatch, list[Mapping[str, Any]], list[str]]:
        batch = self.lm.sample([self._prompt_ids(r) for r in records], group_size,
                               self.algo.max_completion_length, temperature=temperature,
                               top_p=self.algo.top_p, generator=generator)
        rows = [r for r in records for _ in range(group_size)]
        return batch, rows, self._decode(batch)

    def _score_texts(self, rows: Sequence[Mapping[str, Any]], texts: Sequence[str], phase: str) -> RewardBatch:
        """Score completions; reward errors go to samples/errors.jsonl, the console and `reward_errors`."""
        scored = self.composer.score(self._reward_rows(rows), self._reward_texts(texts))
        if scored.errors:
            step = int(self.global_step)
            if scored.error_samples:
                write_error_samples(self.samples_dir / "errors.jsonl",
                                    [{**s, "step": step, "phase": phase} for s in scored.error_samples])
            first = scored.error_samples[0] if scored.error_samples else {"component": "?", "error": "?"}
            message = f"{first['component']}: {first['error']}"
            if self.reward_errors["first"] is None:
                self.reward_errors["first"] = message
            self.reward_errors["count"] += scored.errors
            log.warning("reward errors: %d of %d calls failed (%s, step %d; %d so far) and scored 0; first: %s "
                        "(all in samples/errors.jsonl)", scored.errors, len(rows) * len(self.composer.names), phase,
                        step, self.reward_errors["count"], message[:300])
        return scored

    def _score(self, rows: Sequence[Mapping[str, Any]], texts: Sequence[str], batch: RolloutBatch
               ) -> tuple[Tensor, Tensor, dict[str, Tensor], int]:
        """(total [N], components [N, K], every evaluated reward by name for logging, error count).

        total: R = G·Σ_k w_k R_k (+ the soft overlong penalty when `algo.overlong.enabled`), what grpo / rloo
        normalise; NaN where no weighted component applies, so the row leaves its group's baseline and gets
        advantage 0 (TRL's None -> NaN). With the penalty on it applies to every row (TRL: a reward function of
        its own), so such a row's total is the penalty alone.
        components: what gdpo normalises, each column on its own: G·R_k per weighted component in the spec's
        order (the gate multiplies every component, so their weighted sum is the gated total; NaN where R_k does
        not apply), then the overlong penalty as one more column of weight 1 (see `_component_weights`).
        """
        scored = self._score_texts(rows, texts, "train")
        total = torch.where(scored.applicable, scored.total, torch.full_like(scored.total, math.nan))
        components = gated_components(scored, self.reward_spec)
        by_name = dict(scored.components)
        overlong = self.algo.overlong
        if overlong.enabled:
            penalty = soft_overlong_penalty(batch.lengths.float(), self.algo.max_completion_length,
                                            overlong.cache_len).to(total)
            total = torch.where(torch.isnan(total), penalty, total + penalty)
            components = torch.cat([components, penalty.unsqueeze(1)], dim=1)
            by_name[OVERLONG_COMPONENT] = penalty
        return total.to(self.device), components.to(self.device), by_name, scored.errors

    def _component_weights(self) -> Tensor:
        """The weight of each column of `_score`'s components: the spec's weights, then 1 for the overlong penalty."""
        weights = list(self.reward_spec.components.values())
        if self.algo.overlong.enabled:
            weights.append(1.0)
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    def _zero_variance(self, total: Tensor, components: Tensor) -> Tensor:
        """Groups with no advantage signal in what the chosen advantage normalises: the total for grpo / rloo,
        every weighted component for gdpo (the dynamic-sampling filter and grpo/frac_zero_std)."""
        group = self.algo.group_size
        if self.algo.advantage == "gdpo":
            return zero_std_groups(components.view(-1, group, components.shape[-1]),
                                   weights=self._component_weights())
        return zero_std_groups(total.view(-1, group))

    # ------------------------------------------------------------------ training
    def training_step(self, records: list[Mapping[str, Any]], batch_idx: int) -> None:
        algo, group = self.algo, self.algo.group_size
        timings: dict[str, float] = {}
        generator = torch.Generator().manual_seed(mix_seed(self.seed + 1, self.global_rank, self.global_step))

        if self.reward_context is not None:
            self.log_dict(self.reward_context.before_step(int(self.global_step)), on_step=True, on_epoch=False)
        if self.task_sampler is not None:  # the loader's uniform draw is replaced by the weighted one
            records = self._draw_records(len(records), 0)
        started = time.perf_counter()
        self.policy.eval()
        batch, rows, texts = self._rollout(records, group, algo.temperature, generator)
        timings["generate"] = time.perf_counter() - started
        started = time.perf_counter()
        total, components, by_name, errors = self._score(rows, texts, batch)
        timings["score"] = time.perf_counter() - started

        rewards = total.view(-1, group)
        zero_std = self._zero_variance(total, components)
        self._observe_zero_std(rows, zero_std, group)
        resamples = 0
        dynamic = algo.dynamic_sampling
        # Dynamic sampling (DAPO): replace zero-variance groups by fresh samples of new prompts, up to a limit.
        while dynamic.enabled and bool(zero_std.any()) and resamples < dynamic.max_resamples:
            resamples += 1
            keep = (~zero_std).nonzero().squeeze(1)
            need = int(zero_std.sum())
            if self.task_sampler is not None:
                extra_records = self._draw_records(need, resamples)
            else:
                extra_records = RecordBatches(self.train_records, need, self.seed + 7919 * resamples,
                                              self.global_rank).batch(int(self.global_step))
            started = time.perf_counter()
            extra, extra_rows, extra_texts = self._rollout(extra_records, group, algo.temperature,
                                                           generator)
            timings["generate"] += time.perf_counter() - started
            started = time.perf_counter()
            e_total, e_comp, e_by_name, e_errors = self._score(extra_rows, extra_texts, extra)
            timings["score"] += time.perf_counter() - started
            keep_rows = (keep[:, None] * group + torch.arange(group, device=keep.device)).reshape(-1)
            batch = batch.select(keep_rows.cpu()).concat(extra)
            rows = [rows[i] for i in keep_rows.tolist()] + extra_rows
            texts = [texts[i] for i in keep_rows.tolist()] + extra_texts
            total = torch.cat([total[keep_rows], e_total])
            components = torch.cat([components[keep_rows], e_comp])
            by_name = {k: torch.cat([v[keep_rows.cpu()], e_by_name[k]]) for k, v in by_name.items()}
            errors += e_errors
            rewards = total.view(-1, group)
            zero_std = self._zero_variance(total, components)

        kind = algo.advantage
        weights = self._component_weights()
        if kind == "gdpo":
            advantages = compute_advantages("gdpo", components.view(-1, group, components.shape[-1]),
                                            weights=weights, eps=algo.adv_eps)
        else:
            advantages = compute_advantages(kind, rewards, scale_rewards=algo.scale_rewards,
                                            eps=algo.adv_eps)
        advantages = advantages.reshape(-1)
        mask = batch.mask.to(self.device)
        if algo.mask_truncated_completions:
            mask = mask_truncated(mask, batch.truncated.to(self.device))
        batch.mask = mask

        started = time.perf_counter()
        temperature = algo.temperature
        old_logp = None
        if algo.num_iterations > 1:
            with torch.no_grad():
                old_logp, _ = self.lm.completion_logprobs(batch, temperature=temperature)
        ref_logp = None
        if algo.kl_coef > 0:
            ref_logp = self.lm.reference_logprobs(batch, temperature=temperature)
        timings["logprob"] = time.perf_counter() - started

        started = time.perf_counter()
        stats = self._update(batch, advantages, old_logp, ref_logp)
        timings["update"] = time.perf_counter() - started

        reward_std = self._log_step(rewards, by_name, errors, advantages, batch, zero_std, stats, timings, resamples)
        self._collapse_canary(reward_std)

    def _update(self, batch: RolloutBatch, advantages: Tensor, old_logp: Tensor | None, ref_logp: Tensor | None
                ) -> dict[str, float]:
        algo = self.algo
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        n = batch.size
        micro = max(1, min(algo.micro_batch_size, n))
        chunks = [torch.arange(i, min(i + micro, n)) for i in range(0, n, micro)]
        world = self.trainer.world_size
        global_tokens = batch.mask.sum().detach()
        if world > 1:
            global_tokens = self.trainer.strategy.reduce(global_tokens, reduce_op="sum")
        totals: dict[str, float] = {}
        self.policy.train()
        for _ in range(algo.num_iterations):
            for rows in chunks:
                part = batch.select(rows)
                logp, entropy = self.lm.completion_logprobs(part, temperature=algo.temperature,
                                                            with_entropy=True)
                # Every normaliser refers to the whole generation batch (batch_size = n rows, global_tokens), so
                # the micro-batch losses are summed and an uneven last micro-batch weighs each row like the others.
                loss, stats = policy_loss(
                    logp, (old_logp[rows] if old_logp is not None else logp.detach()), advantages[rows.to(self.device)],
                    part.mask, clip_eps_low=algo.clip_eps_low, clip_eps_high=algo.clip_eps_high,
                    loss_type=algo.loss_type, max_completion_length=algo.max_completion_length,
                    ref_logp=None if ref_logp is None else ref_logp[rows], kl_coef=algo.kl_coef,
                    kl_estimator=algo.kl_estimator, entropy=entropy,
                    entropy_coef=algo.entropy_coef, entropy_norm=algo.entropy_norm,
                    global_token_count=global_tokens, world_size=world, batch_size=n,
                    importance_sampling_level=algo.importance_sampling_level,
                    delta=None if algo.delta is None else algo.delta,
                    top_entropy_quantile=algo.top_entropy_quantile,
                    entropy_threshold=self._entropy_threshold(entropy, part.mask))
                self.manual_backward(loss)
                totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
            if algo.grad_clip > 0:
                self.clip_gradients(optimizer, gradient_clip_val=algo.grad_clip,
                                    gradient_clip_algorithm="norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        self.policy.eval()
        totals["iterations"] = algo.num_iterations
        return totals

    def _entropy_threshold(self, entropy: Tensor, mask: Tensor) -> Tensor | None:
        """The top-entropy threshold of this micro-batch over every rank's active tokens (TRL gathers them), or
        None on one process, where `policy_loss` computes the same from its own tokens. Rows are padded with NaN to
        `max_completion_length` so every rank gathers one shape."""
        quantile = self.algo.top_entropy_quantile
        if quantile >= 1.0 or self.trainer.world_size < 2:
            return None
        width = max(self.algo.max_completion_length, entropy.shape[1])
        padded = torch.full((entropy.shape[0], width), math.nan, dtype=torch.float32, device=entropy.device)
        padded[:, : entropy.shape[1]] = torch.where(mask.bool(), entropy.detach().float(),
                                                    torch.full_like(padded[:, : entropy.shape[1]], math.nan))
        values = self.all_gather(padded).reshape(-1)
        values = values[~torch.isnan(values)]
        return high_entropy_threshold(values, torch.ones_like(values), quantile)

    def _log_step(self, rewards: Tensor, by_name: Mapping[str, Tensor], errors: int, advantages: Tensor,
                  batch: RolloutBatch, zero_std: Tensor, stats: Mapping[str, float], timings: Mapping[str, float],
                  resamples: int) -> float:
        """Log the step's metrics; return the reward std over the whole (all-rank) generation batch."""
        # Distribution statistics over the whole generation batch of every rank (std of a union is not the mean
        # of per-rank stds), so gather the per-sample values first; every rank then logs identical numbers.
        flat = self._gather(rewards.reshape(-1).float())
        flat = flat[~torch.isnan(flat)]  # rows where no reward applies have no reward to report
        if flat.numel() == 0:
            flat = torch.zeros(1, device=self.device)
        advantages = self._gather(advantages.float())
        lengths = self._gather(batch.lengths.float().to(self.device))
        truncated = self._gather(batch.truncated.float().to(self.device))
        zero_std = self._gather(zero_std.float())
        tokens = max(stats.get("token_count", 0.0), 1.0)
        mean, std = float(flat.mean()), float(flat.std(unbiased=False))
        metrics = {
            "grpo/reward/mean": mean, "grpo/reward/std": std,
            "grpo/reward/lower": mean - std, "grpo/reward/upper": mean + std,
            "grpo/reward/errors": float(errors), "grpo/adv/mean": float(advantages.mean()),
            "grpo/adv/std": float(advantages.std(unbiased=False)),
            "grpo/frac_zero_std": float(zero_std.mean()), "grpo/resamples": float(resamples),
            "grpo/completion_len/mean": float(lengths.mean()), "grpo/completion_len/min": float(lengths.min()),
            "grpo/completion_len/max": float(lengths.max()), "grpo/reward/min": float(flat.min()),
            "grpo/reward/max": float(flat.max()), "grpo/truncated_ratio": float(truncated.mean()),
            "grpo/clip_ratio/low": stats.get("clip_low_sum", 0.0) / tokens,
            "grpo/clip_ratio/high": stats.get("clip_high_sum", 0.0) / tokens,
            "grpo/clip_ratio/region": stats.get("clip_region_sum", 0.0) / tokens,
            "grpo/entropy": stats.get("entropy_sum", 0.0) / tokens,
            "train/loss": stats.get("loss", 0.0) / max(stats.get("iterations", 1.0), 1.0),
            "train/lr": self.optimizers().param_groups[0]["lr"],  # type: ignore[union-attr]
        }
        if "kl_sum" in stats:
            metrics["grpo/kl"] = stats["kl_sum"] / tokens
        if self.algo.top_entropy_quantile < 1.0:  # share of tokens left in the policy-gradient term
            metrics["grpo/top_entropy/kept"] = stats.get("pg_token_count", 0.0) / tokens
        for name, values in by_name.items():
            values = self._gather(values.float().to(self.device))
            finite = values[~torch.isnan(values)]
            if finite.numel():
                metrics[f"grpo/reward/{name}/mean"] = float(finite.mean())
                metrics[f"grpo/reward/{name}/std"] = float(finite.std(unbiased=False))
        for name, (component, bar) in self.reward_spec.pass_rates.items():
            if component in by_name:
                rate = pass_rate(self._gather(by_name[component].float().to(self.device)), bar)
                if not math.isnan(rate):
                    metrics[f"grpo/pass/{name}"] = rate
        for phase, seconds in timings.items():
            metrics[f"perf/time/{phase}"] = seconds
        if self.task_sampler is not None:
            metrics.update(self.task_sampler.metrics())
        generated = float(batch.lengths.sum())
        metrics["perf/tokens_per_s"] = generated / max(sum(timings.values()), 1e-9)
        # Sums (tokens, clip counts, timings) are per rank; sync_dist averages them, which equals the global
        # ratio when ranks carry equal work (they do: same prompts_per_step and group_size everywhere).
        self.log_dict(metrics, on_step=True, on_epoch=False, sync_dist=True)
        return std

    def _gather(self, values: Tensor) -> Tensor:
        """All ranks' values concatenated (this rank's alone on one process)."""
        if self.trainer.world_size < 2:
            return values
        return self.all_gather(values).reshape(-1)

    def _collapse_canary(self, reward_std: float) -> None:
        """Reward std under `threshold` for `patience` consecutive steps: a collapsed policy (every completion
        scores the same, so every advantage is 0). Warn, log grpo/collapse, and stop if configured."""
        canary = self.algo.collapse
        self._low_std_streak = self._low_std_streak + 1 if reward_std < canary.std_threshold else 0
        collapsed = self._low_std_streak >= canary.patience
        self.log("grpo/collapse", float(collapsed), on_step=True, on_epoch=False, sync_dist=True, reduce_fx="max")
        if collapsed and self._low_std_streak == canary.patience:
            log.warning("reward collapse: reward std < %s for %d consecutive steps (step %d)",
                        canary.std_threshold, canary.patience, self.global_step)
            if canary.stop:
                self.trainer.should_stop = True

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        eval_temperature = self.algo.eval_temperature
        generator = torch.Generator().manual_seed(mix_seed(self.seed + 2, 0, len(records)))
        batch, rows, texts = self._rollout(records, 1, eval_temperature, generator)
        scored = self._score_texts(rows, texts, "eval")
        return [{"id": r.get("id"), "task": r.get("task", "default"), "prompt": r["prompt"], "completion": t,
                 "reward": float(scored.total[i]),
                 **{f"reward/{k}": (None if math.isnan(float(v[i])) else float(v[i]))
                    for k, v in scored.components.items()}}
                for i, (r, t) in enumerate(zip(rows, texts))]

    def on_train_start(self) -> None:
        """Score the untrained policy once, so every curve of eval/reward starts at its step-0 value."""
        self._add_margin_charts()
        if self.global_step != 0:
            return
        rows = self.evaluate_all()
        metrics = {k: v for k, v in self._eval_metrics(rows).items() if not k.endswith("/n")}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=0)
        self._write_eval_samples(rows)
        self._update_task_sampler(rows)

    def _add_margin_charts(self) -> None:
        """TensorBoard custom-scalars layout: eval reward ± 95% CI and train reward mean ± std as shaded bands."""
        if self.global_rank == 0:
            add_band_charts(self.loggers, {
                EVAL_BANDS: {"eval/reward ± 95% CI": band("eval/reward")},
                "GRPO": {"train reward (mean ± std)": ["grpo/reward/mean", "grpo/reward/lower", "grpo/reward/upper"]},
            })

    def _write_eval_samples(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.global_rank != 0:
            return
        path = self.samples_dir / f"eval_step{int(self.global_step):06d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        log_samples_table(self.loggers, rows, int(self.global_step))  # TensorBoard's text tab, per eval

    def on_validation_epoch_start(self) -> None:
        self._eval_rows = []

    def validation_step(self, records: list[Mapping[str, Any]], batch_idx: int) -> None:
        self._eval_rows.extend(self._evaluate(records))

    def on_validation_epoch_end(self) -> None:
        if not self._eval_rows:
            return
        metrics = self._eval_metrics(self._eval_rows)
        self.log_dict({k: v for k, v in metrics.items() if not k.endswith("/n")}, sync_dist=True)
        self._write_eval_samples(self._eval_rows)
        self._update_task_sampler(self._eval_rows)

    def evaluate_all(self) -> list[dict[str, Any]]:
        """Every fixed eval prompt scored with the current weights (eval decoding settings)."""
        was_training = self.policy.training
        self.policy.eval()
        rows: list[dict[str, Any]] = []
        size = self.algo.eval_batch_size
        with torch.no_grad():
            for i in range(0, len(self.eval_records), size):
                rows.extend(self._evaluate(self.eval_records[i: i + size]))
        self.policy.train(was_training)
        return rows

    def final_metrics(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Score the current weights on the fixed eval set: (metrics, per-task mean/std/n/ci95)."""
        rows = self.evaluate_all()
        return self._eval_metrics(rows), eval_stats(rows)

    def _eval_metrics(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """`eval_metrics` plus eval/pass/NAME for every configured pass rate (reward.pass_rates)."""
        metrics = eval_metrics(rows)
        for name, (component, bar) in self.reward_spec.pass_rates.items():
            values = torch.tensor([math.nan if r.get(f"reward/{component}") is None else float(r[f"reward/{component}"])
                                   for r in rows], dtype=torch.float64)
            rate = pass_rate(values, bar)
            if not math.isnan(rate):
                metrics[f"eval/pass/{name}"] = rate
        return metrics

    # ------------------------------------------------------------------ optimisation + state
    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self.policy, self.algo, self.total_steps)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep_trainable_weights_only(self, checkpoint)
        checkpoint["aegir_grpo"] = {
            "low_std_streak": self._low_std_streak,
            "task_sampler": None if self.task_sampler is None else self.task_sampler.state_dict(),
            "reward_errors": dict(self.reward_errors),
            "reward_context": None if self.reward_context is None else self.reward_context.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("aegir_grpo", {})
        self._low_std_streak = int(saved.get("low_std_streak", 0))
        if isinstance(saved.get("reward_errors"), dict):
            self.reward_errors = {"count": int(saved["reward_errors"].get("count", 0)),
                                  "first": saved["reward_errors"].get("first")}
        if self.task_sampler is not None and saved.get("task_sampler") is not None:
            self.task_sampler.load_state_dict(saved["task_sampler"])
        if self.reward_context is not None and saved.get("reward_context") is not None:
            self.reward_context.load_state_dict(saved["reward_context"])

    def teardown(self, stage: str) -> None:
        if self._composer is not None:
            self._composer.close()
            self._composer = None


def _task_of(record: Mapping[str, Any]) -> str:
    return str(record.get("task", "default"))


def task_sampler_from_config(algo: GRPOAlgoConfig, train_records: Sequence[Mapping[str, Any]],
                             eval_records: Sequence[Mapping[str, Any]]) -> TaskSampler | None:
    """The sampler `algo.task_sampler` names over the training tasks (sorted), or None for `none`.

    Re-weighting reads per-task eval rewards, so every training task needs prompts in the fixed eval set.
    """
    kind = algo.task_sampler
    if kind == "none":
        return None
    tasks = sorted({_task_of(r) for r in train_records})
    missing = sorted(set(tasks) - {_task_of(r) for r in eval_records})
    if missing:
        raise InputError(f"config error: algo.task_sampler: task(s) {', '.join(missing)} have no eval prompts; "
                         "the sampler re-weights tasks from their eval rewards")
    kwargs: dict[str, Any] = {"update_interval": algo.sampler.update_interval}
    if kind != "uniform":
        kwargs["initial"] = algo.sampler.initial
        kwargs.update(asdict(getattr(algo.sampler, kind)))
    return build_task_sampler(kind, tasks, **kwargs)  # type: ignore[arg-type]


def eval_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task (and overall) mean reward with n and the 95% CI."""
    by_task: dict[str, list[float]] = {}
    for row in rows:
        by_task.setdefault(str(row["task"]), []).append(float(row["reward"]))
    stats = {task: mean_ci(values).as_dict() for task, values in sorted(by_task.items())}
    stats["all"] = mean_ci([float(r["reward"]) for r in rows]).as_dict()
    return stats


def eval_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """`eval/<task>/reward` (+ `/ci95`, `/n`) and `eval/reward` over every eval prompt (docs/metrics.md, eval/*)."""
    metrics: dict[str, float] = {}
    for task, stat in eval_stats(rows).items():
        prefix = "eval" if task == "all" else f"eval/{task}"
        metrics[f"{prefix}/reward"] = float(stat["mean"])
        if task == "all":  # the band of the eval margin chart
            metrics.update(band_bounds("eval/reward", float(stat["mean"]), float(stat["ci95"])))
        metrics[f"{prefix}/reward/ci95"] = float(stat["ci95"])
        metrics[f"{prefix}/reward/n"] = float(stat["n"])
    return metrics


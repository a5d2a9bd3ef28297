"""The model side of the reward audit: which config is audited, and the completions a person will score.

`aegir.audit` (math and sheet I/O, no torch) calls this to fill a sheet: for the RL stage of an experiment it
builds the same policy, prompts and reward the training run would use, samples `audit.completions_per_task`
completions per task from the fixed eval set at `audit.temperature`, and scores them with the automatic reward.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict

from aegir.cli import format_config_error
from aegir.config import validate
from aegir.errors import InputError
from aegir.run.compose import compose_config
from aegir.rundir import RunPaths

log = logging.getLogger("aegir")


def rl_stage_config(cfg: DictConfig, overrides: Sequence[str]) -> tuple[str | None, DictConfig]:
    """The validated config whose reward is audited: the run itself if it is GRPO, else its last GRPO stage."""
    if cfg.algo.name == "grpo" and not cfg.stages:
        return None, cfg
    for name in reversed(list(cfg.stages)):
        try:
            raw = compose_config([*overrides, *cfg.stages[name].overrides])
        except HydraException as err:
            raise InputError(f"stages.{name}.overrides: {format_config_error(err)}") from None
        with open_dict(raw):
            raw.stages = {}
        stage = validate(raw)
        if stage.algo.name == "grpo":
            return name, stage
    raise InputError("audit: this config trains no reward (no algo=grpo run or stage); nothing to audit")


def render_prompt(prompt: str | Sequence[Mapping[str, Any]]) -> str:
    """A chat prompt as the text a person reads in the sheet: one `role: content` paragraph per message."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def pick_prompts(records: Sequence[Mapping[str, Any]], per_task: int) -> list[Mapping[str, Any]]:
    """The first `per_task` records of each task in eval-set order: the fixed eval set is already a seeded,
    stratified draw, so its head is a representative sample that does not move with the run seed."""
    if per_task < 1:
        raise InputError(f"config error: audit.completions_per_task: must be >= 1, got {per_task}")
    taken: dict[str, int] = {}
    picked = []
    for record in records:
        task = str(record.get("task", "default"))
        if taken.get(task, 0) < per_task:
            picked.append(record)
            taken[task] = taken.get(task, 0) + 1
    return picked


def generate_audit_rows(stage_cfg: DictConfig, checkpoint: str | None) -> list[dict[str, Any]]:
    """Sample and score the audit completions with the policy at `checkpoint` (None: the untrained init)."""
    from aegir.loops.factory import build_stage  # imports Lightning: only when completions are generated

    with open_dict(stage_cfg):
        stage_cfg.model.pretrained = checkpoint
    with tempfile.TemporaryDirectory(prefix="aegir-audit-") as scratch:
        module = build_stage(stage_cfg, RunPaths(Path(scratch))).module
        try:
            records = pick_prompts(module.eval_records, int(stage_cfg.audit.completions_per_task))
            generator = torch.Generator().manual_seed(int(stage_cfg.seed))
            module.policy.eval()
            with torch.no_grad():
                _, rows, texts = module._rollout(records, 1, float(stage_cfg.audit.temperature), generator)
            scored = module.composer.score(rows, module._reward_texts(texts))
        finally:
            module.teardown("audit")
    return [{"id": str(r.get("id", i)), "task": str(r.get("task", "default")), "prompt": render_prompt(r["prompt"]),
             "completion": text, "auto_reward": float(scored.total[i])}
            for i, (r, text) in enumerate(zip(rows, texts))]

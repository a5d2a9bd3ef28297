"""Build the LightningModule of a stage from its validated config: the task decides the data, the algo the loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import lightning as L
from omegaconf import DictConfig, OmegaConf

from aegir.config import section_object
from aegir.models.build import build_model, build_policy, count_parameters
from aegir.rundir import RunPaths, sha256_bytes


@dataclass
class StageBuild:
    module: L.LightningModule
    n_parameters: int
    provenance: dict[str, Any] = field(default_factory=dict)


def build_stage(cfg: DictConfig, paths: RunPaths) -> StageBuild:
    """Data + model + loop for `cfg.task.name`; every input check (InputError) happens here, before any work."""
    if cfg.task.name == "pretrain":
        return _pretrain(cfg)
    if cfg.task.name == "toy_arith":
        return _toy_grpo(cfg, paths)
    if cfg.task.name == "commerce":
        return _commerce(cfg, paths)
    if cfg.task.name in ("cta", "cpa"):
        return _tables(cfg)
    if cfg.task.name == "ontology":
        return _ontology(cfg, paths)
    raise AssertionError(f"task {cfg.task.name} has a schema but no builder")  # aegir.config lists the tasks


def _pretrain(cfg: DictConfig) -> StageBuild:
    from aegir.loops.lm import ByteLMModule
    from aegir.tasks.pretrain.task import prepare_pretrain_data

    data = prepare_pretrain_data(section_object("task", cfg.task), arm=cfg.arm.name, data_seed=cfg.data_seed)
    model = build_model(section_object("model", cfg.model))
    module = ByteLMModule(model, data.train, data.val_windows, task=section_object("task", cfg.task),
                          algo=section_object("algo", cfg.algo), seed=cfg.seed, total_steps=cfg.trainer.max_steps,
                          instrument=data.instrument)
    return StageBuild(module, count_parameters(model), data.provenance)


def _toy_grpo(cfg: DictConfig, paths: RunPaths) -> StageBuild:
    import json

    from aegir.loops.grpo import GRPOModule
    from aegir.rl.rewards import RewardSpec
    from aegir.tasks.toy import toy_allowed_token_ids, toy_splits

    reward = OmegaConf.to_container(cfg.reward, resolve=True)
    spec = RewardSpec.from_config(reward)  # type: ignore[arg-type]
    splits = toy_splits(cfg.data_seed, cfg.task.n_train, cfg.task.n_eval, cfg.task.max_operand, cfg.task.ops)
    allowed = toy_allowed_token_ids(cfg.task.ops) if cfg.task.restrict_vocab else None
    policy = build_policy(section_object("model", cfg.model), allowed)
    module = GRPOModule(policy, splits.train, splits.eval, spec, section_object("algo", cfg.algo), seed=cfg.seed,
                        total_steps=cfg.trainer.max_steps, samples_dir=paths.samples)
    provenance = {"toy": {**splits.provenance,
                          "eval_sha256": sha256_bytes(json.dumps(splits.eval, sort_keys=True).encode()),
                          "train_sha256": sha256_bytes(json.dumps(splits.train, sort_keys=True).encode())}}
    return StageBuild(module, count_parameters(policy.model), provenance)


def _record_loop(cfg: DictConfig, paths: RunPaths, policy: Any, train: Sequence[Any], eval_records: Sequence[Any],
                 *, check: Callable[[Any], None] | None = None, reward_context: Callable[[Any], Any] | None = None
                 ) -> L.LightningModule:
    """The SFT or GRPO module of a prompt/record task. For GRPO, `check(spec)` may refuse records the reward cannot
    score and `reward_context(spec)` builds the task's hook around scoring."""
    algo = section_object("algo", cfg.algo)
    if cfg.algo.name == "sft":
        from aegir.loops.sft import SFTModule

        return SFTModule(policy, train, eval_records, algo, seed=cfg.seed, total_steps=cfg.trainer.max_steps)
    from aegir.loops.grpo import GRPOModule
    from aegir.rl.rewards import RewardSpec

    spec = RewardSpec.from_config(OmegaConf.to_container(cfg.reward, resolve=True))  # type: ignore[arg-type]
    if check is not None:
        check(spec)
    context = None if reward_context is None else reward_context(spec)
    return GRPOModule(policy, train, eval_records, spec, algo, seed=cfg.seed, total_steps=cfg.trainer.max_steps,
                      samples_dir=paths.samples, reward_context=context)


def _commerce(cfg: DictConfig, paths: RunPaths) -> StageBuild:
    from pathlib import Path

    import aegir.tasks.commerce.rewards  # noqa: F401  (registers the commerce verifiers)
    from aegir.rl.rewards import check_records
    from aegir.tasks.commerce.task import prepare_commerce

    # First: a model that cannot be loaded fails before the world is built.
    policy = build_policy(section_object("model", cfg.model))
    data = prepare_commerce(section_object("task", cfg.task), cfg.data_seed, Path(cfg.paths.cache_dir))
    # A record no reward can score: one line naming it, exit 2.
    module = _record_loop(cfg, paths, policy, data.train, data.eval,
                          check=lambda spec: check_records(spec, data.records, data.where))
    return StageBuild(module, count_parameters(policy.model), data.provenance)


def _ontology(cfg: DictConfig, paths: RunPaths) -> StageBuild:
    """Ontology composition (aegir/tasks/ontology): SFT on the reference compositions or GRPO on the verifier, with
    the catalog watcher (hot reload, catalogs/<version>.yaml in the run directory) around every scoring call."""
    from aegir.tasks.ontology.reload import CatalogWatcher
    from aegir.tasks.ontology.task import prepare_ontology

    policy = build_policy(section_object("model", cfg.model))
    data = prepare_ontology(section_object("task", cfg.task), cfg.data_seed)
    module = _record_loop(cfg, paths, policy, data.train, data.eval, reward_context=lambda spec: CatalogWatcher(
        cfg.task.catalog, paths.root, reload=spec.catalog_reload))
    return StageBuild(module, count_parameters(policy.model), data.provenance)


def _tables(cfg: DictConfig) -> StageBuild:
    """CTA / CPA: the column dataset, the backbone (from `model.pretrained` when given) and the classifier loop."""
    from aegir.errors import InputError
    from aegir.loops.classify import ColumnClassifierModule
    from aegir.tasks.tables.dataset import build_column_dataset

    pretrained, init = cfg.model.pretrained, cfg.algo.backbone_init
    if init == "pretrained" and not pretrained:
        raise InputError("model.pretrained: missing; algo.backbone_init=pretrained fine-tunes a pretrained backbone: "
                         "pass model.pretrained=PATH (e.g. a pretraining run's checkpoints/best.ckpt)")
    if init == "scratch" and pretrained:
        raise InputError(f"model.pretrained: algo.backbone_init=scratch trains from random init, but "
                         f"model.pretrained={pretrained} is set; drop it or pass algo.backbone_init=auto")
    data = build_column_dataset(cfg.task, cfg.data_seed, kind=cfg.task.name)
    for split in ("train", "val"):
        if not data.split(split):  # type: ignore[arg-type]
            raise InputError(f"task.data: the {split} split of {cfg.task.name} has no examples; raise "
                             f"task.data.n_tables (or task.data.val_fraction)")
    model = build_model(section_object("model", cfg.model))
    module = ColumnClassifierModule(
        model, data.labels, data.train, data.val, data.test if cfg.task.eval_test else (),
        algo=section_object("algo", cfg.algo), gates=OmegaConf.to_container(cfg.gates, resolve=True),  # type: ignore[arg-type]
        seed=cfg.seed, total_steps=cfg.trainer.max_steps)
    return StageBuild(module, count_parameters(module), data.provenance)

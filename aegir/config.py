"""Structured-config schemas: every key a run accepts, with its type.

The YAML files under `conf/` carry the documentation and the defaults; these dataclasses carry the *types* and the
set of allowed keys. `validate(cfg)` merges a composed config into the schemas, so a misspelt key or a value of the
wrong type fails before any work starts with one line naming the key and what is allowed (exit status 2 from the
entry points). Sections whose shape depends on a choice (`model.arch`, `task.name`, `algo.name`) pick their schema
from that discriminator, so later issues add a dataclass and a registry entry instead of editing a union.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional, Sequence, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from aegir.errors import InputError
from aegir.observe.config import ObservatoryConfig, observatory_problems
from aegir.tasks.tables.dataset import TablesDataConfig

log = logging.getLogger("aegir")


# --------------------------------------------------------------------------------------------------- model
@dataclass
class RWKV7ModelConfig:
    arch: str = "rwkv7"
    name: str = "rwkv7_nano"
    vocab_size: int = 512
    d_model: int = 128
    n_layers: int = 4
    head_size: int = 32
    tie_embeddings: bool = True
    pretrained: Optional[str] = None


@dataclass
class HNetModelConfig:
    """H-Net of RWKV-7 stacks (conf/model/hnet_{nano,tiny,small,base}.yaml document the keys). The layout, the
    per-stage widths and target_compression are cross-checked by aegir.models.build (one-line InputErrors)."""

    arch: str = "hnet"
    name: str = "hnet_nano"
    vocab_size: int = 512
    d_model: list[int] = field(default_factory=lambda: [96, 128, 128])
    arch_layout: list[Any] = field(default_factory=lambda: ["w1", ["w1", ["w1"], "w1"], "w1"])
    head_size: int = 32
    target_compression: list[float] = field(default_factory=lambda: [2.0, 2.0])
    ratio_loss_weight: float = 0.03
    tie_embeddings: bool = True
    pretrained: Optional[str] = None


@dataclass
class LoraAdapterConfig:
    """peft LoRA adapter of a Hugging Face policy (conf/model/hf.yaml documents the keys)."""

    enabled: bool = True
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: Any = "all-linear"
    bias: str = "none"


@dataclass
class HFModelConfig:
    """Any Hugging Face causal LM (conf/model/hf.yaml documents the keys; aegir/models/hf_policy.py loads it)."""

    arch: str = "hf"
    name: str = "hf"
    name_or_path: str = "???"
    revision: Optional[str] = None
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    chat_template: Optional[str] = None
    enable_thinking: Optional[bool] = None
    strip_thinking: bool = True
    create_tiny: bool = False
    lora: LoraAdapterConfig = field(default_factory=LoraAdapterConfig)
    pretrained: Optional[str] = None


MODEL_SCHEMAS: dict[str, type] = {"rwkv7": RWKV7ModelConfig, "hnet": HNetModelConfig, "hf": HFModelConfig}


# --------------------------------------------------------------------------------------------------- task
@dataclass
class PretrainDataConfig:
    source: str = "synthetic"
    path: Optional[str] = None
    n_documents: int = 1500
    val_fraction: float = 0.1


@dataclass
class PretrainTaskConfig:
    name: str = "pretrain"
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    seq_len: int = 256
    batch_size: int = 16
    val_windows: int = 64
    val_batch_size: int = 32


@dataclass
class ToyTaskConfig:
    name: str = "toy_arith"
    n_train: int = 2000
    n_eval: int = 50
    max_operand: int = 9
    ops: str = "+"
    restrict_vocab: bool = True


@dataclass
class CommerceDataConfig:
    db: Optional[str] = None
    pairs: Optional[str] = None
    scale: str = "small"
    n_per_task: dict[str, int] = field(default_factory=lambda: {"extraction": 160, "sql_qa": 120, "insights": 120,
                                                                 "push": 120})
    eval_fraction: float = 0.25


@dataclass
class CommerceTaskConfig:
    name: str = "commerce"
    tasks: list[str] = field(default_factory=lambda: ["extraction", "sql_qa", "insights", "push"])
    data: CommerceDataConfig = field(default_factory=CommerceDataConfig)
    eval_minimums: dict[str, int] = field(default_factory=lambda: {"extraction": 20, "sql_qa": 15, "insights": 15,
                                                                    "push": 15})


@dataclass
class CTATaskConfig:
    """Column type annotation (conf/task/cta.yaml documents the keys; `data` is aegir/tasks/tables/dataset.py's)."""

    name: str = "cta"
    data: TablesDataConfig = field(default_factory=TablesDataConfig)
    eval_test: bool = True


@dataclass
class CPATaskConfig(CTATaskConfig):
    """Column property annotation: the same data section; examples pair each column with the table's main one."""

    name: str = "cpa"


TASK_SCHEMAS: dict[str, type] = {"pretrain": PretrainTaskConfig, "toy_arith": ToyTaskConfig,
                                 "commerce": CommerceTaskConfig, "cta": CTATaskConfig, "cpa": CPATaskConfig}
# Which loop (algo.name) each task trains with.
TASK_ALGOS: dict[str, tuple[str, ...]] = {"pretrain": ("lm",), "toy_arith": ("grpo",), "commerce": ("sft", "grpo"),
                                          "cta": ("classify",), "cpa": ("classify",)}


# --------------------------------------------------------------------------------------------------- arm
@dataclass
class ArmConfig:
    name: str = "full"
    description: str = ""


ARMS = ("full", "no_ontology", "no_schema")


# --------------------------------------------------------------------------------------------------- algo
@dataclass
class OptimConfig:
    """AdamW + warm-up/cosine knobs shared by every loop (documented in conf/algo/*.yaml)."""

    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0
    w0_lr_mult: float = 2.0


@dataclass
class LMAlgoConfig(OptimConfig):
    name: str = "lm"


@dataclass
class OverlongConfig:
    enabled: bool = False
    cache_len: int = 4


@dataclass
class DynamicSamplingConfig:
    enabled: bool = False
    max_resamples: int = 2


@dataclass
class CollapseConfig:
    std_threshold: float = 1e-3
    patience: int = 20
    stop: bool = False


@dataclass
class ImprovementSamplerConfig:
    up: float = 1.3
    down: float = 0.85
    low: float = 0.01
    high: float = 0.05
    cap: float = 0.60
    floor: float = 0.10


@dataclass
class MTGRPOSamplerConfig:
    lambda_bias: float = 0.2
    lr: float = 0.025
    max_accept: float = 3.0
    zero_grad_decay: float = 0.9
    allocation: str = "multinomial"


@dataclass
class TaskSamplerArgs:
    update_interval: int = 100
    initial: Optional[dict[str, float]] = None
    improvement: ImprovementSamplerConfig = field(default_factory=ImprovementSamplerConfig)
    mt_grpo: MTGRPOSamplerConfig = field(default_factory=MTGRPOSamplerConfig)


@dataclass
class GRPOAlgoConfig(OptimConfig):
    name: str = "grpo"
    group_size: int = 8
    prompts_per_step: int = 8
    micro_batch_size: int = 64
    num_iterations: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 8
    advantage: str = "grpo"
    scale_rewards: str = "group"
    adv_eps: float = 1e-4
    loss_type: str = "dapo"
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.28
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    entropy_norm: str = "token_mean"
    importance_sampling_level: str = "token"
    delta: Optional[float] = None
    top_entropy_quantile: float = 1.0
    mask_truncated_completions: bool = False
    overlong: OverlongConfig = field(default_factory=OverlongConfig)
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    eval_temperature: float = 0.0
    eval_batch_size: int = 64
    task_sampler: str = "none"
    sampler: TaskSamplerArgs = field(default_factory=TaskSamplerArgs)


@dataclass
class SFTAlgoConfig(OptimConfig):
    name: str = "sft"
    batch_size: int = 8
    max_len: int = 1024


@dataclass
class LivenessConfig:
    """Markov clustering of pooled validation embeddings for the liveness gate (aegir/eval/collapse.py)."""

    knn_k: int = 10
    inflation: float = 2.0
    expansion: int = 3
    max_points: int = 1024


@dataclass
class ClassifyAlgoConfig(OptimConfig):
    """Column classification head on the pooled backbone (conf/algo/classify.yaml documents the keys)."""

    name: str = "classify"
    batch_size: int = 16
    val_batch_size: int = 64
    freeze_backbone_steps: int = 0
    backbone_lr_mult: float = 1.0
    head_dropout: float = 0.1
    pooling: str = "mean"
    class_weighting: str = "none"
    backbone_init: str = "auto"
    liveness: LivenessConfig = field(default_factory=LivenessConfig)


ALGO_SCHEMAS: dict[str, type] = {"lm": LMAlgoConfig, "grpo": GRPOAlgoConfig, "sft": SFTAlgoConfig,
                                 "classify": ClassifyAlgoConfig}
# Metric families each loop logs, with the usual objective: `objective.metric` (which also selects best.ckpt)
# must be one of them, or the run would fail at its first checkpoint.
ALGO_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "lm": (("val/", "train/"), "objective.metric=val/bpb objective.mode=min"),
    "sft": (("val/", "train/"), "objective.metric=val/bpb objective.mode=min"),
    "grpo": (("eval/", "grpo/", "train/"), "objective.metric=eval/reward objective.mode=max"),
    "classify": (("val/", "test/", "live/", "gate/", "chunk/", "train/"),
                 "objective.metric=val/macro_f1 objective.mode=max"),
}


# --------------------------------------------------------------------------------------------------- the rest
@dataclass
class TrainerConfig:
    name: str = "cpu"
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = 360
    val_check_interval: int = 60
    log_every_n_steps: int = 10
    accumulate_grad_batches: int = 1
    deterministic: bool = True
    enable_progress_bar: bool = True
    num_threads: Optional[int] = None


@dataclass
class TensorBoardConfig:
    enabled: bool = True


@dataclass
class LoggerConfig:
    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)


@dataclass
class CheckpointConfig:
    monitor: str = "val/bpb"
    mode: str = "min"
    save_last: bool = True


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    progress_bar: str = "tqdm"
    observatory: ObservatoryConfig = field(default_factory=ObservatoryConfig)  # aegir/observe/config.py


@dataclass
class PathsConfig:
    output_root: str = "outputs"
    cache_dir: str = "outputs/cache"


@dataclass
class ObjectiveConfig:
    metric: str = "val/bpb"
    mode: str = "min"


@dataclass
class GateConfig:
    metric: str = "???"
    op: str = "<"
    value: float = 0.0


@dataclass
class StageConfig:
    overrides: list[str] = field(default_factory=list)
    init_from: Optional[str] = "previous"
    set: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditConfig:
    required: bool = False
    sheet: Optional[str] = None
    min_rho: float = 0.70
    completions_per_task: int = 5
    temperature: float = 0.1
    checkpoint: Optional[str] = None
    overwrite: bool = False


@dataclass
class RootConfig:
    name: str = "run"
    seed: int = 42
    data_seed: int = 0
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    resume: bool = False
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    arm: ArmConfig = field(default_factory=ArmConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)


# Sections validated by a discriminator key rather than by RootConfig.
_DISCRIMINATED = {"model": ("arch", MODEL_SCHEMAS), "task": ("name", TASK_SCHEMAS), "algo": ("name", ALGO_SCHEMAS)}
# Sections whose keys are free-form names validated entry by entry.
_NAMED = {"gates", "stages"}
# Sections passed through as mappings and validated by their consumer before any work (aegir.rl.rewards).
_FREEFORM = {"reward"}
_HYDRA_KEYS = {"hydra"}
GATE_OPS = ("<", "<=", ">", ">=", "==", "!=")
# Keys whose value must be one of a closed set (checked after the schema merge, before any work).
CHOICES: dict[str, tuple[str, ...]] = {
    "objective.mode": ("min", "max"),
    "callbacks.checkpoint.mode": ("min", "max"),
    "callbacks.progress_bar": ("tqdm", "rich", "none"),
    "trainer.accelerator": ("cpu", "gpu", "cuda", "mps", "auto"),
    "trainer.precision": ("32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"),
    "task.data.source": ("synthetic", "files", "tables", "sotab"),  # per task: aegir/tasks/*, TASK_CHECKS
    "algo.advantage": ("grpo", "gdpo", "rloo"),
    "algo.scale_rewards": ("group", "batch", "none"),
    "algo.loss_type": ("grpo", "bnpo", "dr_grpo", "dapo"),
    "algo.kl_estimator": ("k1", "k2", "k3"),
    "model.dtype": ("auto", "bfloat16", "float16", "float32"),
    "model.attn_implementation": ("sdpa", "eager", "flash_attention_2", "flex_attention"),
    "model.lora.bias": ("none", "all", "lora_only"),
    "algo.entropy_norm": ("token_mean", "loss_type"),
    "algo.importance_sampling_level": ("token", "sequence"),
    "algo.pooling": ("mean", "max", "last", "mean_last", "cls_last"),
    "algo.class_weighting": ("none", "balanced", "sqrt"),
    "algo.backbone_init": ("auto", "pretrained", "scratch"),
    "algo.task_sampler": ("none", "uniform", "improvement", "mt_grpo"),
    "algo.sampler.mt_grpo.allocation": ("multinomial", "largest_remainder"),
}


def _check_tables_task(task: dict[str, Any]) -> None:
    """The CTA/CPA data loader's own value checks (sources, budgets, fractions, sotab root), run by `validate` so
    a bad value fails before any work -- in a multi-stage run, before the first stage."""
    data = task.get("data") or {}
    if any("${" in str(value) for value in data.values()):
        return  # interpolated values are checked by the loader once resolved
    problems = TablesDataConfig(**data).problems()
    if problems:
        key, _, reason = problems[0].partition(": ")
        _fail(f"task.data.{key}", reason)


def _check_hf_model(model: dict[str, Any]) -> None:
    """Values of `model=hf` that no type can rule out (one line naming the key, before any run directory)."""
    if model.get("name_or_path") in (None, "", "???"):
        _fail("model.name_or_path", "missing; a Hugging Face hub id (e.g. Polygl0t/Tucano2-qwen-0.5B-Instruct) or a "
                                    "local model directory")
    lora = model.get("lora") or {}
    if int(lora.get("r", 1)) < 1:
        _fail("model.lora.r", f"must be >= 1, got {lora.get('r')}")
    if not float(lora.get("alpha", 1.0)) > 0:
        _fail("model.lora.alpha", f"must be > 0, got {lora.get('alpha')}")
    if not 0 <= float(lora.get("dropout", 0.0)) < 1:
        _fail("model.lora.dropout", f"must be in [0, 1), got {lora.get('dropout')}")


# Per-model value checks beyond types and CHOICES, keyed by model.arch.
MODEL_CHECKS: dict[str, Any] = {"hf": _check_hf_model}
# Per-task value checks beyond types and CHOICES (one line naming the key), keyed by task.name.
TASK_CHECKS: dict[str, Any] = {"cta": _check_tables_task, "cpa": _check_tables_task}


def _check_observatory(out: dict[str, Any]) -> None:
    """Ranges of callbacks.observatory.* (aegir/observe/config.py) and, when switched on, the user's probe file and
    hard-example board (one line naming the file and line)."""
    obs = (out.get("callbacks") or {}).get("observatory")
    if not obs or "${" in str(obs):
        return
    for key, message in observatory_problems(obs):
        _fail(f"callbacks.observatory.{key}", message)
    if obs["enabled"]:
        from aegir.observe.probes import check_user_files

        check_user_files(obs)


def _schema_at(schema: Any, path: Sequence[str]) -> Any:
    """The dataclass found by walking `path` through nested schema fields, or None."""
    for part in path:
        schema = get_type_hints(schema).get(part) if is_dataclass(schema) else None
    return schema


def _keys_of(schema: Any) -> list[str]:
    return sorted(f.name for f in fields(schema)) if is_dataclass(schema) else []


def allowed_keys(path: str) -> list[str]:
    """Keys allowed at a dotted config path (for error messages), or [] if the path is not a structured section."""
    parts = [p for p in path.split(".") if p]
    if not parts:
        return sorted([f.name for f in fields(RootConfig)] + list(_DISCRIMINATED) + sorted(_NAMED | _FREEFORM))
    if parts[0] in _DISCRIMINATED:  # the first registered schema stands for the section's shape
        return _keys_of(_schema_at(next(iter(_DISCRIMINATED[parts[0]][1].values())), parts[1:]))
    return _keys_of(_schema_at(RootConfig, parts))


def _fail(key: str, message: str) -> None:
    raise InputError(f"config error: {key}: {message}")


def _merge_section(schema: type, node: Any, prefix: str) -> DictConfig:
    """Merge one config section into its schema, translating OmegaConf's multi-line errors into one line."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        full = ".".join(part for part in (prefix, key) if part)
        msg = str(err).splitlines()[0]
        if isinstance(err, ConfigKeyError):
            allowed = _keys_of(_schema_at(schema, key.split(".")[:-1]))
            _fail(full, f"unknown key; allowed keys here: {', '.join(allowed)}")
        _fail(full, msg)
    raise AssertionError("unreachable")


def validate(cfg: DictConfig) -> DictConfig:
    """Return a typed, struct-mode copy of a composed config, or raise InputError naming the bad key."""
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    out: dict[str, Any] = {}
    root_names = {f.name for f in fields(RootConfig)}
    for key in container:
        if key not in root_names | set(_DISCRIMINATED) | _NAMED | _FREEFORM | _HYDRA_KEYS:
            _fail(key, f"unknown top-level key; allowed: {', '.join(allowed_keys(''))}")
    root_part = {k: v for k, v in container.items() if k in root_names}
    out.update(OmegaConf.to_container(_merge_section(RootConfig, root_part, ""), resolve=False))  # type: ignore[arg-type]
    for section, (disc, registry) in _DISCRIMINATED.items():
        node = container.get(section)
        if not isinstance(node, dict):
            _fail(section, "missing; choose one from its config group, e.g. `" + section + "=...`")
        kind = node.get(disc)
        if kind not in registry:
            _fail(f"{section}.{disc}", f"'{kind}' is not one of: {', '.join(sorted(registry))}")
        out[section] = OmegaConf.to_container(_merge_section(registry[kind], node, section), resolve=False)
    algos = TASK_ALGOS[out["task"]["name"]]
    if out["algo"]["name"] not in algos:
        _fail("algo", f"task {out['task']['name']} trains with algo={' or algo='.join(algos)}, "
                      f"not algo={out['algo']['name']}")
    prefixes, usual = ALGO_METRICS.get(out["algo"]["name"], ((), ""))
    metric = str(out["objective"]["metric"])
    if prefixes and "${" not in metric and not metric.startswith(prefixes):
        _fail("objective.metric", f"algo={out['algo']['name']} does not log '{metric}' (it logs "
                                  f"{', '.join(p + '*' for p in prefixes)}); e.g. {usual}")
    reward = container.get("reward") or {}
    if not isinstance(reward, dict):
        _fail("reward", "must be a mapping {components, gate, workers, timeout_s}")
    out["reward"] = reward
    out["gates"] = _validate_gates(container.get("gates") or {})
    out["stages"] = _validate_stages(container.get("stages") or {})
    if out["arm"]["name"] not in ARMS:
        _fail("arm.name", f"'{out['arm']['name']}' is not one of: {', '.join(ARMS)}")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(OmegaConf.create(out), key, default=None)
        if value is not None and str(value) not in allowed and "${" not in str(value):
            _fail(key, f"'{value}' is not one of: {', '.join(allowed)}")
    if out["task"]["name"] in TASK_CHECKS:
        TASK_CHECKS[out["task"]["name"]](out["task"])
    if out["model"]["arch"] in MODEL_CHECKS:
        MODEL_CHECKS[out["model"]["arch"]](out["model"])
    _check_observatory(out)
    if out["algo"]["name"] == "grpo":
        for notice in grpo_knob_notices(out["algo"]):
            log.warning("config notice: %s", notice)
    if "hydra" in container:
        out["hydra"] = container["hydra"]
    typed = OmegaConf.create(out)
    try:
        # Resolve every interpolation now so a dangling `${...}` fails here and not mid-run.
        OmegaConf.to_container(OmegaConf.masked_copy(typed, [k for k in typed if k != "hydra"]), resolve=True)
    except OmegaConfBaseException as err:
        _fail(getattr(err, "full_key", "") or "?", str(err).splitlines()[0])
    OmegaConf.set_struct(typed, True)
    return typed


def grpo_knob_notices(algo: dict[str, Any]) -> list[str]:
    """One line per GRPO knob set away from its default where the chosen mode ignores it (a notice, not an
    error: the run is valid, the knob is just inert). Also refuses out-of-range values of the policy-loss
    variants with a one-line config error."""
    if any("${" in str(algo.get(key)) for key in ("advantage", "scale_rewards", "delta", "top_entropy_quantile",
                                                  "clip_eps_high", "clip_eps_low", "entropy_coef", "kl_coef")):
        return []  # interpolated values are checked once resolved, by the loss itself
    delta, eps_high = algo.get("delta"), float(algo.get("clip_eps_high", 0.0))
    if delta is not None and not float(delta) > 1.0 + eps_high:
        _fail("algo.delta", f"{delta} must be > 1 + algo.clip_eps_high = {1.0 + eps_high} (or null to disable)")
    quantile = float(algo.get("top_entropy_quantile", 1.0))
    if not 0.0 < quantile <= 1.0:
        _fail("algo.top_entropy_quantile", f"{quantile} is not in (0, 1] (1 keeps every token)")
    default = GRPOAlgoConfig()
    notices = []
    advantage = str(algo.get("advantage"))
    if advantage in ("gdpo", "rloo") and algo.get("scale_rewards") != default.scale_rewards:
        notices.append(f"algo.scale_rewards={algo['scale_rewards']} has no effect under algo.advantage={advantage} "
                       "(only advantage=grpo scales by a std; gdpo always normalises per component, then over the "
                       "batch; rloo never scales)")
    if float(algo.get("entropy_coef", 0.0)) == 0.0 and algo.get("entropy_norm") != default.entropy_norm:
        notices.append(f"algo.entropy_norm={algo['entropy_norm']} has no effect with algo.entropy_coef=0")
    if float(algo.get("kl_coef", 0.0)) == 0.0 and algo.get("kl_estimator") != default.kl_estimator:
        notices.append(f"algo.kl_estimator={algo['kl_estimator']} has no effect with algo.kl_coef=0 (no KL term)")
    if algo.get("importance_sampling_level") == "sequence" and algo.get("loss_type") != "grpo":
        notices.append(f"algo.importance_sampling_level=sequence with algo.loss_type={algo.get('loss_type')} "
                       "weights each sequence by its length; GSPO is loss_type=grpo")
    return notices


def _validate_gates(node: Any) -> dict[str, Any]:
    if not isinstance(node, dict):
        _fail("gates", "must be a mapping of gate names to {metric, op, value} plus an optional `required` flag")
    out: dict[str, Any] = {"required": False}
    for name, spec in node.items():
        if name == "required":
            if not isinstance(spec, bool):
                _fail("gates.required", f"must be true or false, got {spec!r}")
            out["required"] = spec
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            _fail(f"gates.{name}", "gate names may use letters, digits, '_', '.', '-'")
        gate = OmegaConf.to_container(_merge_section(GateConfig, spec, f"gates.{name}"))
        assert isinstance(gate, dict)
        if gate["metric"] == "???":
            _fail(f"gates.{name}.metric", "missing; name the metric to check, e.g. val/bpb")
        if gate["op"] not in GATE_OPS:
            _fail(f"gates.{name}.op", f"'{gate['op']}' is not one of: {' '.join(GATE_OPS)}")
        out[name] = gate
    return out


def _validate_stages(node: Any) -> dict[str, Any]:
    if not isinstance(node, dict):
        _fail("stages", "must be a mapping of stage names to {overrides, init_from}")
    out: dict[str, Any] = {}
    names: list[str] = []
    for name, spec in node.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            _fail(f"stages.{name}", "stage names may use letters, digits, '_', '-'")
        stage = OmegaConf.to_container(_merge_section(StageConfig, spec or {}, f"stages.{name}"))
        assert isinstance(stage, dict)
        src = stage["init_from"]
        if src not in (None, "previous") and src not in names:
            _fail(f"stages.{name}.init_from", f"'{src}' is not an earlier stage; earlier: {', '.join(names) or 'none'}")
        if src == "previous" and not names:
            stage["init_from"] = None
        out[name] = stage
        names.append(name)
    return out

"""Every key a run accepts: its type (the annotation) and its allowed values (`key(...)`), never its default.

The defaults and the one-line meaning of each key live beside each other in the YAML under conf/ (the option files
of each config group); `python -m aegir.config explain KEY` joins the two. Sections whose shape depends on a choice
(`model.arch`, `task.name`, `algo.name`) pick their schema from that discriminator through the registries below.
tests/unit/test_config_schema.py keeps the schema and the YAML in step (same keys, no default stated twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from aegir.observe.config import ObservatoryConfig
from aegir.schema import key
from aegir.tasks.pretrain.corpus import ARMS
from aegir.tasks.tables.data_config import TablesDataConfig

GATE_OPS = ("<", "<=", ">", ">=", "==", "!=")
PROBABILITY = {"ge": 0.0, "le": 1.0}
FRACTION = {"ge": 0.0, "lt": 1.0}


# --------------------------------------------------------------------------------------------------- model
@dataclass
class RWKV7ModelConfig:
    arch: str
    name: str
    vocab_size: int = key(ge=1)
    d_model: int = key(ge=1)
    n_layers: int = key(ge=1)
    head_size: int = key(ge=1)
    tie_embeddings: bool
    compile_step: bool
    pretrained: Optional[str]


@dataclass
class HNetModelConfig:
    """The layout, the per-stage widths and target_compression are cross-checked by aegir.models.build."""

    arch: str
    name: str
    vocab_size: int = key(ge=1)
    d_model: list[int] = key(ge=1)
    arch_layout: list[Any]
    head_size: int = key(ge=1)
    target_compression: list[float]  # one value > 1 per routed stage: checked with the layout by the builder
    ratio_loss_weight: float = key(ge=0.0)
    tie_embeddings: bool
    compile_step: bool
    pretrained: Optional[str]


@dataclass
class LoraAdapterConfig:
    enabled: bool
    r: int = key(ge=1)
    alpha: float = key(gt=0.0)
    dropout: float = key(**FRACTION)
    target_modules: Any
    bias: str = key(choices=("none", "all", "lora_only"))


@dataclass
class HFModelConfig:
    arch: str
    name: str
    name_or_path: str
    revision: Optional[str]
    dtype: str = key(choices=("auto", "bfloat16", "float16", "float32"))
    attn_implementation: str = key(choices=("sdpa", "eager", "flash_attention_2", "flex_attention"))
    gradient_checkpointing: bool
    trust_remote_code: bool
    chat_template: Optional[str]
    enable_thinking: Optional[bool]
    strip_thinking: bool
    create_tiny: bool
    lora: LoraAdapterConfig
    pretrained: Optional[str]


MODEL_SCHEMAS: dict[str, type] = {"rwkv7": RWKV7ModelConfig, "hnet": HNetModelConfig, "hf": HFModelConfig}


# --------------------------------------------------------------------------------------------------- task
@dataclass
class PretrainDataConfig:
    source: str = key(choices=("synthetic", "files", "tables"))
    path: Optional[str]
    n_documents: int = key(ge=1)
    val_fraction: float = key(gt=0.0, lt=1.0)


@dataclass
class PretrainTaskConfig:
    name: str
    catalog: Optional[str]
    data: PretrainDataConfig
    seq_len: int = key(ge=1)
    batch_size: int = key(ge=1)
    val_windows: int = key(ge=1)
    val_batch_size: int = key(ge=1)
    eval_windows: int = key(ge=0)
    probe_items: int = key(ge=0)
    heldout_classes: int = key(ge=0)


@dataclass
class ToyTaskConfig:
    name: str
    n_train: int = key(ge=1)
    n_eval: int = key(ge=1)
    max_operand: int = key(ge=0)
    ops: str
    restrict_vocab: bool


@dataclass
class CommerceDataConfig:
    db: Optional[str]
    pairs: Optional[str]
    scale: str = key(choices=("tiny", "small", "medium"))
    n_per_task: dict[str, int] = key(ge=1)
    eval_fraction: float = key(gt=0.0, lt=1.0)


@dataclass
class CommerceTaskConfig:
    name: str
    tasks: list[str]
    data: CommerceDataConfig
    eval_minimums: dict[str, int] = key(ge=0)


@dataclass
class CTATaskConfig:
    """Column type annotation; `data` is aegir/tasks/tables/dataset.py's TablesDataConfig."""

    name: str
    data: TablesDataConfig
    eval_test: bool


@dataclass
class CPATaskConfig(CTATaskConfig):
    """Column property annotation: the same data section; examples pair each column with the table's main one."""


@dataclass
class OntologyTaskConfig:
    """Ontology composition over generated relational footprints (aegir/tasks/ontology)."""

    name: str
    catalog: Optional[str]
    n_records: int = key(ge=2)
    max_columns: int = key(ge=1)
    eval_fraction: float = key(gt=0.0, lt=1.0)
    n_eval: int = key(ge=1)


TASK_SCHEMAS: dict[str, type] = {"pretrain": PretrainTaskConfig, "toy_arith": ToyTaskConfig,
                                 "commerce": CommerceTaskConfig, "cta": CTATaskConfig, "cpa": CPATaskConfig,
                                 "ontology": OntologyTaskConfig}
# Which loop (algo.name) each task trains with.
TASK_ALGOS: dict[str, tuple[str, ...]] = {"pretrain": ("lm",), "toy_arith": ("grpo",), "commerce": ("sft", "grpo"),
                                          "cta": ("classify",), "cpa": ("classify",), "ontology": ("sft", "grpo")}


# --------------------------------------------------------------------------------------------------- arm
@dataclass
class ArmConfig:
    name: str = key(choices=ARMS)
    description: str


# --------------------------------------------------------------------------------------------------- algo
@dataclass
class OptimConfig:
    """AdamW + warm-up/cosine: the optimiser of every loop."""

    name: str
    lr: float = key(gt=0.0)
    min_lr_ratio: float = key(**PROBABILITY)
    warmup_steps: int = key(ge=0)
    weight_decay: float = key(ge=0.0)
    beta1: float = key(**FRACTION)
    beta2: float = key(**FRACTION)
    eps: float = key(gt=0.0)
    grad_clip: float = key(ge=0.0)
    w0_lr_mult: float = key(ge=0.0)


@dataclass
class LMAlgoConfig(OptimConfig):
    pass


@dataclass
class OverlongConfig:
    enabled: bool
    cache_len: int = key(ge=1)


@dataclass
class DynamicSamplingConfig:
    enabled: bool
    max_resamples: int = key(ge=0)


@dataclass
class CollapseConfig:
    std_threshold: float = key(ge=0.0)
    patience: int = key(ge=1)
    stop: bool


@dataclass
class ImprovementSamplerConfig:
    up: float = key(ge=1.0)
    down: float = key(gt=0.0, le=1.0)
    low: float
    high: float
    cap: float = key(**PROBABILITY)
    floor: float = key(**PROBABILITY)


@dataclass
class MTGRPOSamplerConfig:
    lambda_bias: float = key(ge=0.0)
    lr: float = key(gt=0.0)
    max_accept: float = key(ge=1.0)
    zero_grad_decay: float = key(**FRACTION)
    allocation: str = key(choices=("multinomial", "largest_remainder"))


@dataclass
class TaskSamplerArgs:
    update_interval: int = key(ge=1)
    initial: Optional[dict[str, float]] = key(gt=0.0)
    improvement: ImprovementSamplerConfig
    mt_grpo: MTGRPOSamplerConfig


@dataclass
class GRPOAlgoConfig(OptimConfig):
    group_size: int = key(ge=2)  # one completion per prompt has no group to compare with: advantage 0
    prompts_per_step: int = key(ge=1)
    micro_batch_size: int = key(ge=1)
    num_iterations: int = key(ge=1)
    temperature: float = key(gt=0.0)
    top_p: float = key(gt=0.0, le=1.0)
    max_completion_length: int = key(ge=1)
    advantage: str = key(choices=("grpo", "gdpo", "rloo"))
    scale_rewards: str = key(choices=("group", "batch", "none"))
    adv_eps: float = key(ge=0.0)
    loss_type: str = key(choices=("grpo", "bnpo", "dr_grpo", "dapo"))
    clip_eps_low: float = key(ge=0.0, lt=1.0)
    clip_eps_high: float = key(ge=0.0)
    kl_coef: float = key(ge=0.0)
    kl_estimator: str = key(choices=("k1", "k2", "k3"))
    entropy_coef: float = key(ge=0.0)
    entropy_norm: str = key(choices=("token_mean", "loss_type"))
    importance_sampling_level: str = key(choices=("token", "sequence"))
    delta: Optional[float] = key(gt=1.0)
    top_entropy_quantile: float = key(gt=0.0, le=1.0)
    mask_truncated_completions: bool
    overlong: OverlongConfig
    dynamic_sampling: DynamicSamplingConfig
    collapse: CollapseConfig
    eval_temperature: float = key(ge=0.0)
    eval_batch_size: int = key(ge=1)
    task_sampler: str = key(choices=("none", "uniform", "improvement", "mt_grpo"))
    sampler: TaskSamplerArgs


@dataclass
class SFTAlgoConfig(OptimConfig):
    batch_size: int = key(ge=1)
    max_len: int = key(ge=1)


@dataclass
class LivenessConfig:
    """Markov clustering of pooled validation embeddings for the liveness gate (aegir/eval/collapse.py)."""

    knn_k: int = key(ge=1)
    inflation: float = key(gt=1.0)
    expansion: int = key(ge=2)
    max_points: int = key(ge=2)


@dataclass
class ClassifyAlgoConfig(OptimConfig):
    batch_size: int = key(ge=1)
    val_batch_size: int = key(ge=1)
    freeze_backbone_steps: int = key(ge=0)
    backbone_lr_mult: float = key(ge=0.0)
    head_dropout: float = key(**FRACTION)
    pooling: str = key(choices=("mean", "max", "last", "mean_last", "cls_last"))
    backbone_init: str = key(choices=("auto", "pretrained", "scratch"))
    class_weighting: str = key(choices=("none", "balanced", "sqrt"))
    liveness: LivenessConfig


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
    name: str
    accelerator: str = key(choices=("cpu", "gpu", "cuda", "mps", "auto"))
    devices: Any
    num_nodes: int = key(ge=1)
    strategy: str
    precision: str = key(choices=("32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"))
    max_steps: int = key(ge=1)
    val_check_interval: int = key(ge=1)
    log_every_n_steps: int = key(ge=1)
    accumulate_grad_batches: int = key(ge=1)
    deterministic: bool
    enable_progress_bar: bool
    num_threads: Optional[int] = key(ge=1)
    stop_on_nonfinite: bool


@dataclass
class TensorBoardConfig:
    enabled: bool


@dataclass
class LoggerConfig:
    tensorboard: TensorBoardConfig


@dataclass
class CheckpointConfig:
    monitor: str
    mode: str = key(choices=("min", "max"))
    save_last: bool


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig
    progress_bar: str = key(choices=("tqdm", "rich", "none"))
    observatory: ObservatoryConfig  # aegir/observe/config.py


@dataclass
class PathsConfig:
    output_root: str
    cache_dir: str


@dataclass
class ObjectiveConfig:
    metric: str
    mode: str = key(choices=("min", "max"))


@dataclass
class GateConfig:
    """One entry of `gates`: NAME: {metric, op, value} (documented beside `gates` in conf/config.yaml)."""

    metric: str
    op: str = key(choices=GATE_OPS)
    value: float


@dataclass
class StageConfig:
    """One entry of `stages` (documented beside `stages` in conf/config.yaml); `init_from` and `set` may be
    left out of an entry."""

    overrides: list[str]
    init_from: Optional[str]
    set: dict[str, Any]


# What a stage entry that leaves a key out means (documented beside `stages` in conf/config.yaml).
STAGE_ENTRY_DEFAULTS: dict[str, Any] = {"overrides": [], "init_from": "previous", "set": {}}


@dataclass
class AuditConfig:
    required: bool
    sheet: Optional[str]
    min_rho: float = key(ge=-1.0, le=1.0)
    completions_per_task: int = key(ge=1)
    temperature: float = key(ge=0.0)
    checkpoint: Optional[str]
    overwrite: bool


@dataclass
class RootConfig:
    name: str
    seed: int = key(ge=0)
    data_seed: int = key(ge=0)
    tags: list[str]
    notes: str
    resume: bool
    objective: ObjectiveConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    callbacks: CallbacksConfig
    paths: PathsConfig
    arm: ArmConfig
    audit: AuditConfig


# Config groups whose option files fill a RootConfig section (conf/<group>/<option>.yaml).
ROOT_GROUPS: dict[str, type] = {"trainer": TrainerConfig, "logger": LoggerConfig, "callbacks": CallbacksConfig,
                                "paths": PathsConfig, "arm": ArmConfig}
# Sections validated by a discriminator key rather than by RootConfig: section -> (key, registry).
DISCRIMINATED: dict[str, tuple[str, dict[str, type]]] = {
    "model": ("arch", MODEL_SCHEMAS), "task": ("name", TASK_SCHEMAS), "algo": ("name", ALGO_SCHEMAS)}

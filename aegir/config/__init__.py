"""The config spine: one declaration per key.

- conf/<group>/<option>.yaml holds every key's **default** and its **one-line meaning**, side by side (Hydra composes
  them; an option file states only what differs from the base in its `defaults:` list).
- aegir/config/schema.py holds every key's **type** and **allowed values** (`key(gt=0)`, `key(choices=...)`), never a
  default, so nothing can drift: tests/unit/test_config_schema.py fails when a key is in one place and not the other,
  or when a default is stated twice.
- `validate(cfg)` checks a composed config against the schema (one line naming the key, exit 2, before any run
  directory); `section_object` turns a section into the typed dataclass the loops receive.
- `python -m aegir.config explain KEY` prints a key's type, default, range and meaning.
"""

from aegir.config.groups import CONF_DIR, group_defaults
from aegir.config.schema import (
    ALGO_SCHEMAS,
    MODEL_SCHEMAS,
    TASK_SCHEMAS,
    ClassifyAlgoConfig,
    GRPOAlgoConfig,
    HFModelConfig,
    HNetModelConfig,
    LMAlgoConfig,
    RWKV7ModelConfig,
    SFTAlgoConfig,
)
from aegir.config.validate import allowed_keys, grpo_knob_notices, load_group, section_object, validate

__all__ = ["ALGO_SCHEMAS", "CONF_DIR", "ClassifyAlgoConfig", "GRPOAlgoConfig", "HFModelConfig", "HNetModelConfig",
           "LMAlgoConfig", "MODEL_SCHEMAS", "RWKV7ModelConfig", "SFTAlgoConfig", "TASK_SCHEMAS", "allowed_keys",
           "group_defaults", "grpo_knob_notices", "load_group", "section_object", "validate"]

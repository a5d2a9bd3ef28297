"""Aegir: a declarative, config-driven framework for small byte-level language models (SFT + GRPO)."""

__version__ = "0.1.0"

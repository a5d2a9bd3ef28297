"""Reinforcement learning for language models (GRPO family): advantages and policy losses as pure tensor functions."""

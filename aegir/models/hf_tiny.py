"""A tiny random-init Qwen3 causal LM with a real PT-BR tokenizer, built locally and deterministically.

Why: tests and CPU runs of the Hugging Face policy path need a model that loads exactly like the real V4.2 policy
(a Qwen3 checkpoint with a ChatML chat template, where ``<|im_end|>`` ends an assistant turn) but is a few MB and
takes seconds to make. Nothing is downloaded: the tokenizer is a byte-level BPE trained here on the commerce task's
own prompts and reference completions (world and pairs generated from ``data_seed``), and the weights are a seeded
random init. The output is a standard Hugging Face directory::

    python -m aegir.models.hf_tiny OUT_DIR [--data-seed N] [--vocab-size V] [--force]

    AutoModelForCausalLM.from_pretrained(OUT_DIR); AutoTokenizer.from_pretrained(OUT_DIR)

The same settings give byte-identical ``model.safetensors`` and ``tokenizer.json``. A directory is written to a
temporary sibling and renamed into place, so a reader never sees a half-built model. ``aegir_tiny_model.json``
records the build settings and marks the directory as one of ours (only such a directory is replaced without
``force``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aegir.errors import InputError
from aegir.exit_status import FINISHED, exit_status

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
SPECIAL_TOKENS: tuple[str, ...] = (END_OF_TEXT, IM_START, IM_END, THINK_OPEN, THINK_CLOSE)
"""The trainer's special tokens: ids 0..4 in this order, never split. The think tags are then marked non-special,
as in Qwen3, so ``decode(skip_special_tokens=True)`` drops only the first three."""

MARKER_FILE = "aegir_tiny_model.json"
"""Build settings; its presence marks a directory written by this module."""

MAX_POSITIONS = 4096
"""Context length, as the real policy's (prompt + completion must fit)."""

CORPUS_SCALE = "small"
CORPUS_PAIRS: dict[str, int] = {"extraction": 1600, "sql_qa": 240, "insights": 240, "push": 600}
"""The commerce world scale and records per task the tokenizer is trained on. More than the task's defaults, so the
corpus has enough distinct words for the default 4096-token vocab; every data_seed tried (0..29) can draw them."""

CHAT_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "{%- if message['role'] == 'assistant' -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- generation -%}\n"
    "{{- message['content'] + '<|im_end|>' -}}\n"
    "{%- endgeneration -%}\n"
    "{{- '\\n' -}}\n"
    "{%- else -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- if enable_thinking is defined and enable_thinking is false -%}\n"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- endif -%}\n"
)
"""ChatML as Qwen3/Tucano2: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message. Assistant content and its
``<|im_end|>`` sit inside ``{% generation %}`` markers (for ``return_assistant_tokens_mask``); ``enable_thinking=False``
appends an empty think block after the generation prompt, as Qwen3's template does."""


# ----------------------------------------------------------------------------------------------------------------
# Settings and the output directory
# ----------------------------------------------------------------------------------------------------------------


def _settings(data_seed: int, vocab_size: int, hidden_size: int, n_layers: int, n_heads: int, n_kv_heads: int,
              intermediate_size: int) -> dict[str, int]:
    """The build settings, checked; raises InputError naming the first bad one."""
    settings = {"data_seed": data_seed, "vocab_size": vocab_size, "hidden_size": hidden_size, "n_layers": n_layers,
                "n_heads": n_heads, "n_kv_heads": n_kv_heads, "intermediate_size": intermediate_size}
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"hf_tiny: {name}: expected an integer, got {value!r}")
        if value < (0 if name == "data_seed" else 1):
            raise InputError(f"hf_tiny: {name}: expected an integer >= {0 if name == 'data_seed' else 1}, "
                             f"got {value}")
    if vocab_size < 512:
        raise InputError(f"hf_tiny: vocab_size: expected >= 512 (256 byte tokens + specials + merges), "
                         f"got {vocab_size}")
    if hidden_size % n_heads:
        raise InputError(f"hf_tiny: hidden_size {hidden_size} is not a multiple of n_heads {n_heads}")
    if (hidden_size // n_heads) % 2:
        raise InputError(f"hf_tiny: head_dim = hidden_size / n_heads = {hidden_size // n_heads} must be even (RoPE)")
    if n_heads % n_kv_heads:
        raise InputError(f"hf_tiny: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
    return settings


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _check_target(out_dir: Path, force: bool) -> None:
    """Refuse a target this module must not replace: a non-directory, or (without force) a non-empty directory
    that it did not write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force and _read_marker(out_dir) is None:
        raise InputError(f"{out_dir}: directory is not empty and holds no tiny model ({MARKER_FILE}); "
                         f"pass --force (force=True) to replace it")


def _install(staged: Path, out_dir: Path, replace: bool) -> bool:
    """Rename `staged` to `out_dir` atomically. An existing non-empty `out_dir` is swapped out when `replace`,
    else left alone (returns False and the caller discards `staged`)."""
    try:
        os.rename(staged, out_dir)  # succeeds when out_dir is missing or an empty directory
        return True
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if not replace:
        return False
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rename(out_dir, old / out_dir.name)
    os.rename(staged, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return True


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------------


def commerce_corpus(data_seed: int) -> list[str]:
    """The texts the tokenizer is trained on: every message of the commerce prompts as it appears between ChatML
    markers (``{role}\\n{content}``), the reference completions as assistant turns, and the newline between turns."""
    from aegir.tasks.commerce.pairs import build_pairs
    from aegir.tasks.commerce.world import build_world

    with tempfile.TemporaryDirectory(prefix="aegir-hf-tiny-world-") as tmp:
        world = build_world(data_seed, Path(tmp) / "world.sqlite", scale=CORPUS_SCALE)
        records = build_pairs(data_seed, world, CORPUS_PAIRS)
    texts = ["\n"]
    for record in records:
        texts.extend(f"{m['role']}\n{m['content']}" for m in record["prompt"])
        texts.append(f"assistant\n{record['reference']}")
    return texts


def build_tokenizer(data_seed: int = 0, vocab_size: int = 4096) -> Any:
    """A byte-level BPE tokenizer trained on :func:`commerce_corpus`, wrapped as a ``PreTrainedTokenizerFast`` with
    the ChatML template, EOS ``<|im_end|>``, pad ``<|endoftext|>``, no BOS and left padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = commerce_corpus(data_seed)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
    # As in Qwen3, the think tags are added tokens but not special: decode(skip_special_tokens=True) keeps them.
    spec = json.loads(tokenizer.to_str())
    for added in spec["added_tokens"]:
        added["special"] = added["content"] not in (THINK_OPEN, THINK_CLOSE)
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=IM_END, pad_token=END_OF_TEXT,
                                   bos_token=None, chat_template=CHAT_TEMPLATE, padding_side="left",
                                   model_max_length=MAX_POSITIONS)


def _batches(texts: Sequence[str], size: int = 256) -> Iterator[list[str]]:
    for start in range(0, len(texts), size):
        yield list(texts[start:start + size])


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def _readme(settings: dict[str, int], vocab: int, n_params: int, head_dim: int) -> str:
    s = settings
    return (
        "# Tiny Qwen3 test model (aegir.models.hf_tiny)\n\n"
        "A randomly initialised Qwen3-architecture causal LM with a byte-level BPE tokenizer, the local stand-in "
        "for the real chat policy in tests and CPU runs. Nothing here was downloaded; the weights carry no "
        "knowledge.\n\n"
        f"- Made by `python -m aegir.models.hf_tiny OUT_DIR --data-seed {s['data_seed']} "
        f"--vocab-size {s['vocab_size']}`, deterministically: the same settings give identical files.\n"
        f"- Tokenizer: byte-level BPE trained on the commerce task's prompts and reference completions "
        f"(world scale `{CORPUS_SCALE}`, data_seed {s['data_seed']}); {vocab} tokens ({s['vocab_size']} asked), "
        f"added tokens {', '.join(f'`{t}`' for t in SPECIAL_TOKENS)} (the think tags not special); "
        f"EOS `{IM_END}`, pad `{END_OF_TEXT}`, no BOS, left padding; "
        "ChatML chat template with `{% generation %}` markers and `enable_thinking`.\n"
        f"- Model: hidden {s['hidden_size']}, {s['n_layers']} layers, {s['n_heads']} heads ({s['n_kv_heads']} KV), "
        f"head_dim {head_dim}, intermediate {s['intermediate_size']}, tied embeddings, context {MAX_POSITIONS}, "
        f"float32, `torch.manual_seed({s['data_seed']})` init: {n_params:,} parameters.\n"
        f"- Generation config: stops on `{IM_END}` or `{END_OF_TEXT}`; samples at temperature 1 with top_k 0, "
        "top_p 1.\n"
    )


def _write_model(staged: Path, settings: dict[str, int]) -> tuple[int, int]:
    """Write tokenizer, model, marker and README into `staged`; returns (parameter count, vocab size)."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    tokenizer = build_tokenizer(settings["data_seed"], settings["vocab_size"])
    vocab = len(tokenizer)
    end_of_text, im_end = tokenizer.convert_tokens_to_ids([END_OF_TEXT, IM_END])
    head_dim = settings["hidden_size"] // settings["n_heads"]
    config = Qwen3Config(
        vocab_size=vocab, hidden_size=settings["hidden_size"], intermediate_size=settings["intermediate_size"],
        num_hidden_layers=settings["n_layers"], num_attention_heads=settings["n_heads"],
        num_key_value_heads=settings["n_kv_heads"], head_dim=head_dim, tie_word_embeddings=True,
        max_position_embeddings=MAX_POSITIONS, bos_token_id=None, eos_token_id=im_end, pad_token_id=end_of_text,
        dtype="float32")
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        torch.manual_seed(settings["data_seed"])
        model = Qwen3ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[im_end, end_of_text], pad_token_id=end_of_text, do_sample=True, temperature=1.0, top_p=1.0,
        top_k=0)
    n_params = sum(p.numel() for p in model.parameters())
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar for a one-file model
    try:
        model.save_pretrained(staged)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(staged)
    marker = {"builder": "aegir.models.hf_tiny", **settings, "vocab_size_actual": vocab, "head_dim": head_dim,
              "n_parameters": n_params}
    (staged / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    (staged / "README.md").write_text(_readme(settings, vocab, n_params, head_dim))
    return n_params, vocab


def _build(out_dir: Path, settings: dict[str, int], replace: bool) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_model(staged, settings)
        staged.chmod(0o755)  # mkdtemp makes it 0700
        if not _install(staged, out_dir, replace) and not _is_complete(out_dir):
            raise InputError(f"{out_dir}: appeared while building and holds no model")
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out_dir


def build_tiny_model(out_dir: str | Path, *, data_seed: int = 0, vocab_size: int = 4096, hidden_size: int = 128,
                     n_layers: int = 4, n_heads: int = 4, n_kv_heads: int = 2, intermediate_size: int = 512,
                     force: bool = False) -> Path:
    """Build the tiny model into `out_dir` (replacing a tiny model there) and return the path.

    Raises InputError for bad settings, for an `out_dir` that is a file, or for a non-empty directory that this
    module did not write, unless `force`.
    """
    out_dir = Path(out_dir).absolute()
    settings = _settings(data_seed, vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, intermediate_size)
    _check_target(out_dir, force)
    try:
        return _build(out_dir, settings, replace=True)
    except PermissionError as err:
        raise InputError(f"{out_dir}: cannot write here ({err.strerror})") from None


def ensure_tiny_model(out_dir: str | Path, **kwargs: Any) -> Path:
    """Return `out_dir` if it already holds a model (config.json and model.safetensors), else build it there with
    :func:`build_tiny_model`'s keyword arguments. Safe when several processes race: each builds in its own
    temporary sibling and the first rename wins. A tiny model built with other settings raises InputError."""
    out_dir = Path(out_dir).absolute()
    force = bool(kwargs.pop("force", False))
    defaults = {"data_seed": 0, "vocab_size": 4096, "hidden_size": 128, "n_layers": 4, "n_heads": 4,
                "n_kv_heads": 2, "intermediate_size": 512}
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(f"ensure_tiny_model: unexpected keyword argument(s) {', '.join(unknown)}")
    settings = _settings(**{**defaults, **kwargs})
    if _is_complete(out_dir):
        marker = _read_marker(out_dir)
        if marker is not None:
            differ = [k for k, v in settings.items() if marker.get(k) != v]
            if differ:
                raise InputError(f"{out_dir}: holds a tiny model built with other settings "
                                 f"({', '.join(f'{k}={marker.get(k)} not {settings[k]}' for k in differ)})")
        return out_dir
    _check_target(out_dir, force)
    try:
        return _build(out_dir, settings, replace=force)
    except PermissionError as err:
        raise InputError(f"{out_dir}: cannot write here ({err.strerror})") from None


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Build the model and print one line: directory, parameter count, vocab size. Bad input: one line, exit 2."""
    parser = argparse.ArgumentParser(prog="python -m aegir.models.hf_tiny", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="output directory (created; a tiny model there is rebuilt)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the commerce corpus and the init")
    parser.add_argument("--vocab-size", type=int, default=4096, help="BPE vocab size asked (may come out smaller)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty directory that is not a tiny model")
    args = parser.parse_args(argv)
    try:
        path = build_tiny_model(args.out_dir, data_seed=args.data_seed, vocab_size=args.vocab_size, force=args.force)
    except InputError as err:
        print(f"aegir.models.hf_tiny: {err}", file=sys.stderr)
        return exit_status(err)
    marker = _read_marker(path) or {}
    print(f"{path}: {marker.get('n_parameters', 0):,} parameters, vocab {marker.get('vocab_size_actual')}")
    return FINISHED


if __name__ == "__main__":
    sys.exit(main())

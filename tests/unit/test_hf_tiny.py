"""The tiny local Qwen3 model (aegir.models.hf_tiny): loads like a Hub checkpoint, offline, and is reproducible."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: nothing may be downloaded

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aegir.errors import InputError
from aegir.models.hf_tiny import END_OF_TEXT, IM_END, IM_START, MARKER_FILE, build_tiny_model, ensure_tiny_model

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("hf_tiny") / "model", data_seed=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aegir.models.hf_tiny", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=ENV)


def test_reloads_offline_as_a_qwen3_chat_model(tiny_dir: Path, tokenizer) -> None:
    from transformers import AutoModelForCausalLM, Qwen3ForCausalLM

    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "README.md", MARKER_FILE):
        assert (tiny_dir / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert isinstance(model, Qwen3ForCausalLM)
    cfg = model.config
    assert cfg.vocab_size == len(tokenizer) and cfg.head_dim == 32 and cfg.tie_word_embeddings
    assert cfg.max_position_embeddings == 4096 and model.dtype == torch.float32
    im_end, end_of_text = tokenizer.convert_tokens_to_ids([IM_END, END_OF_TEXT])
    assert cfg.eos_token_id == im_end and cfg.pad_token_id == end_of_text and cfg.bos_token_id is None
    assert tokenizer.eos_token == IM_END and tokenizer.pad_token == END_OF_TEXT and tokenizer.bos_token is None
    assert tokenizer.padding_side == "left"
    gen = model.generation_config
    assert gen.eos_token_id == [im_end, end_of_text] and gen.pad_token_id == end_of_text
    assert gen.do_sample and gen.temperature == 1.0 and gen.top_p == 1.0 and gen.top_k == 0

    batch = tokenizer(["Olá", "Qual o ticket médio em SP?"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0  # left padding
    with torch.no_grad():
        torch.manual_seed(0)
        out = model.generate(**batch, max_new_tokens=3)
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)


def test_parameter_count_and_vocab(tiny_dir: Path, tokenizer) -> None:
    from transformers import AutoModelForCausalLM

    marker = json.loads((tiny_dir / MARKER_FILE).read_text())
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_dir).parameters())
    assert n_params == marker["n_parameters"]
    assert 1_000_000 < n_params < 5_000_000
    assert 1_000 < len(tokenizer) <= 4096 and marker["vocab_size_actual"] == len(tokenizer)
    assert f"{n_params:,} parameters" in (tiny_dir / "README.md").read_text()


def test_ptbr_round_trip_and_special_tokens(tokenizer) -> None:
    text = "Pedido nº 123: R$ 1.234,56 — ação, São Paulo/SP, 12 de março de 2023 🙂"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: no unknown tokens, no specials added
    assert len(ids) < len(text.encode())  # the BPE learned merges on this kind of text
    assert tokenizer.convert_tokens_to_ids([END_OF_TEXT, IM_START, IM_END, "<think>", "</think>"]) == [0, 1, 2, 3, 4]
    marked = tokenizer(f"{IM_START}user\noi{IM_END}")["input_ids"]
    assert marked[0] == 1 and marked[-1] == 2  # specials are single tokens, never split
    # As in Qwen3: the ChatML markers are special, the think tags are not.
    thought = tokenizer("<think>\nok\n</think>\n\nfim<|im_end|>")["input_ids"]
    assert tokenizer.decode(thought, skip_special_tokens=True) == "<think>\nok\n</think>\n\nfim"


def test_chat_template_renders_chatml(tokenizer) -> None:
    conv = [{"role": "system", "content": "Você é um analista."}, {"role": "user", "content": "Quantos pedidos?"}]
    prompt = ("<|im_start|>system\nVocê é um analista.<|im_end|>\n"
              "<|im_start|>user\nQuantos pedidos?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False) == prompt
    assert tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False,
                                         enable_thinking=True) == prompt
    assert tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False,
                                         enable_thinking=False) == prompt + "<think>\n\n</think>\n\n"
    assert tokenizer.apply_chat_template(conv, tokenize=False) == prompt.removesuffix("<|im_start|>assistant\n")


def test_assistant_mask_covers_content_and_im_end(tokenizer) -> None:
    answer = "Resposta: 42"
    conv = [{"role": "user", "content": "Quantos pedidos?"}, {"role": "assistant", "content": answer}]
    out = tokenizer.apply_chat_template(conv, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tokenizer.decode(ids) == (f"{IM_START}user\nQuantos pedidos?{IM_END}\n"
                                     f"{IM_START}assistant\n{answer}{IM_END}\n")
    masked = [i for i, m in zip(ids, mask) if m]
    assert tokenizer.decode(masked) == answer + IM_END
    assert masked[-1] == tokenizer.convert_tokens_to_ids(IM_END)
    first = mask.index(1)
    assert all(mask[first:first + len(masked)]) and not any(mask[first + len(masked):])  # one contiguous span


@pytest.mark.slow
def test_cli_build_is_byte_identical(tiny_dir: Path, tmp_path: Path) -> None:
    result = _cli(tmp_path / "again", "--data-seed", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "again") in lines[0] and "parameters" in lines[0]
    for name in sorted(p.name for p in tiny_dir.iterdir()):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary siblings left


@pytest.mark.parametrize("kind", ["file", "foreign_dir"])
def test_cli_bad_out_dir_exits_2(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not a model")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
    result = _cli(target)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(target) in result.stderr
    assert result.stdout == ""
    assert target.is_file() if kind == "file" else (target / "notes.txt").read_text() == "keep me"


def test_ensure_returns_existing_and_refuses_other_settings(tiny_dir: Path, tmp_path: Path) -> None:
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tiny_dir) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    with pytest.raises(InputError, match="data_seed=0 not 1"):
        ensure_tiny_model(tiny_dir, data_seed=1)
    with pytest.raises(InputError, match="not a multiple"):
        build_tiny_model(tmp_path / "bad", hidden_size=100, n_heads=3)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x").write_text("x")
    with pytest.raises(InputError, match="holds no tiny model"):
        ensure_tiny_model(tmp_path / "foreign")

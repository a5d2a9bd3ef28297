"""H-Net wiring: hnet model configs validate and build (bad layouts are one-line InputErrors naming the key and the
letter), parameter counts of the shipped configs, checkpoint loading, the loop's chunk metrics and degeneracy
monitor, the ratio loss entering the training loss but not validation bpb, and GRPO rollouts with an H-Net policy."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from aegir.config import load_group, section_object, validate
from aegir.errors import InputError
from aegir.loops.lm import (ByteLMModule, DegeneracyMonitor, chunk_metrics, degeneracy_message, evaluate_windows,
                            lm_logits, next_byte_loss, pool_stage_stats)
from aegir.models.build import build_model, count_parameters
from aegir.models.hnet import HNetLM, StageStats
from aegir.models.lm import ByteLM
from tests.conftest import ROOT

HNET_CONFIGS = ("hnet_nano", "hnet_tiny", "hnet_small", "hnet_base")
pytestmark = pytest.mark.usefixtures("one_thread")  # every model here is tiny: op overhead, not FLOPs


def _model_cfg(compose, name: str, *overrides: str) -> Any:
    return section_object("model", validate(compose([f"model={name}", *overrides], fast=False)).model)


def _stats(frac: float, prob: float, degenerate: bool = False, ratio: float = 1.0) -> StageStats:
    return StageStats(frac, prob, 1 / frac if frac else math.inf, torch.tensor(ratio), degenerate)


def _small_hnet(seed: int = 0) -> HNetLM:
    torch.manual_seed(seed)
    model = HNetLM(300, [32, 64, 64], ["w1", ["w1", ["w1"], "w1"], "w1"], head_size=32, target_compression=[2.0, 3.0])
    with torch.no_grad():  # noise on every weight so that routing is non-trivial
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


# ----------------------------------------------------------------------------------------------------------------------
# Configs and building
# ----------------------------------------------------------------------------------------------------------------------


def test_every_hnet_model_file_is_an_hnet_config() -> None:
    shipped = {p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")}
    assert set(HNET_CONFIGS) <= shipped
    assert {"rwkv7_nano", "rwkv7_tiny", "rwkv7_small"} <= shipped  # the isotropic configs stay


@pytest.mark.parametrize("name", HNET_CONFIGS)
def test_hnet_configs_validate_and_build(compose, name: str) -> None:
    cfg = _model_cfg(compose, name)
    assert cfg.arch == "hnet" and cfg.name == name and cfg.vocab_size == 512
    assert len(cfg.target_compression) == len(cfg.d_model) - 1
    with torch.device("meta"):  # shapes only: base would allocate 1.3 GB
        model = build_model(cfg)
    assert isinstance(model, HNetLM)
    assert model.target_compression == list(cfg.target_compression)
    assert model.ratio_loss_weight == cfg.ratio_loss_weight
    assert count_parameters(model) == model.num_parameters()


@pytest.mark.parametrize(("name", "expected"), [("hnet_tiny", 13.5e6), ("hnet_small", 56e6)])
def test_shipped_tiny_and_small_match_the_issue_parameter_counts(compose, name: str, expected: float) -> None:
    cfg = _model_cfg(compose, name, "model.vocab_size=65536")
    with torch.device("meta"):
        n = count_parameters(build_model(cfg))
    assert abs(n / expected - 1) < 0.03, n


def test_nano_is_a_two_stage_hierarchy_of_about_rwkv7_nano_size(compose) -> None:
    with torch.device("meta"):
        nano = build_model(_model_cfg(compose, "hnet_nano"))
        iso = build_model(_model_cfg(compose, "rwkv7_nano"))
    assert nano.spec.depth == 3  # two routed stages, as tiny / small / base
    assert abs(count_parameters(nano) / count_parameters(iso) - 1) < 0.1


@pytest.mark.parametrize(("override", "key", "fragment"), [
    ("model.arch_layout=[w1,[w1,[m2],w1],w1]", "model.arch_layout", "unknown layer letter 'm'"),
    ("model.arch_layout=[w1,[w1,[w2],x1],w1]", "model.arch_layout", "unknown layer letter 'x'"),
    ("model.arch_layout=[w1,[w2],w1]", "model.d_model", "3 widths but arch_layout has 2 stages"),
    ("model.arch_layout=[w2] model.d_model=[64] model.target_compression=[]", "model.arch_layout",
     "at least one [encoder, inner, decoder]"),
    ("model.target_compression=[2.0]", "model.target_compression", "needs 2 value(s) > 1"),
    ("model.target_compression=[2.0,1.0]", "model.target_compression", "needs 2 value(s) > 1"),
    ("model.d_model=[64,80,128]", "model.d_model", "d_model[1] = 80 is not divisible by model.head_size 32"),
    ("model.d_model=[96,64,128]", "model.d_model", "narrower"),
    ("model.ratio_loss_weight=-1", "model.ratio_loss_weight", "must be >= 0"),
])
def test_bad_hnet_configs_are_one_line_input_errors(compose, override: str, key: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:  # the schema's ranges fail in validate, the layout checks in the builder
        build_model(_model_cfg(compose, "hnet_nano", *override.split()))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"config error: {key}:"), message
    assert fragment in message, message


def test_schema_rejects_rwkv7_keys_and_scalar_widths_on_an_hnet(compose) -> None:
    with pytest.raises(InputError, match=r"^config error: model.n_layers: unknown key"):
        validate(compose(["model=hnet_nano", "+model.n_layers=2"], fast=False))
    with pytest.raises(InputError, match=r"^config error: model.d_model:"):
        validate(compose(["model=hnet_nano", "model.d_model=64"], fast=False))


def test_load_pretrained_from_a_lightning_style_hnet_checkpoint(compose, tmp_path: Path) -> None:
    small = "model.d_model=[32,32,64]"  # nano's layout at small widths: the same loading path, built in a blink
    source = build_model(_model_cfg(compose, "hnet_nano", small))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "hnet.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = build_model(_model_cfg(compose, "hnet_nano", small, f"model.pretrained={path}"))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(InputError, match="does not fit this model"):
        build_model(_model_cfg(compose, "hnet_nano", "model.d_model=[32,64,64]", f"model.pretrained={path}"))


# ----------------------------------------------------------------------------------------------------------------------
# Pure helpers of the loop
# ----------------------------------------------------------------------------------------------------------------------


def test_chunk_metrics_names_and_values() -> None:
    metrics = chunk_metrics([_stats(0.25, 0.3, ratio=1.5), _stats(0.5, 0.45, degenerate=True, ratio=1.0)])
    assert metrics == pytest.approx({
        "chunk/stage0/boundary_frac": 0.25, "chunk/stage0/mean_prob": 0.3, "chunk/stage0/compression": 4.0,
        "chunk/stage0/ratio_loss": 1.5, "chunk/stage0/degenerate": 0.0,
        "chunk/stage1/boundary_frac": 0.5, "chunk/stage1/mean_prob": 0.45, "chunk/stage1/compression": 2.0,
        "chunk/stage1/ratio_loss": 1.0, "chunk/stage1/degenerate": 1.0})


def test_pool_stage_stats_weights_inner_stages_by_their_own_positions() -> None:
    # batch 1: 100 bytes, 40 boundaries -> stage 1 sees 40 positions, 10 boundaries
    # batch 2: 50 bytes, 10 boundaries -> stage 1 sees 10 positions, 10 boundaries
    pooled = pool_stage_stats([(100, [_stats(0.4, 0.5), _stats(0.25, 0.2)]),
                               (50, [_stats(0.2, 0.35), _stats(1.0, 0.9)])])
    assert pooled[0] == pytest.approx(((40 + 10) / 150, (50 + 17.5) / 150))
    assert pooled[1] == pytest.approx(((10 + 10) / 50, (8 + 9) / 50))
    assert pool_stage_stats([]) == []


def test_degeneracy_monitor_reports_each_stage_once() -> None:
    monitor = DegeneracyMonitor()
    healthy, collapsed = _stats(0.3, 0.3), _stats(1.0, 0.9, degenerate=True)
    assert monitor.newly_degenerate([healthy, healthy]) == []
    assert monitor.newly_degenerate([healthy, collapsed]) == [1]
    assert monitor.newly_degenerate([healthy, collapsed]) == []  # no repeat on later steps
    assert monitor.newly_degenerate([collapsed, collapsed]) == [0]
    assert "every position is a boundary" in degeneracy_message(1, collapsed, 7)
    none = _stats(1 / 64, 0.2, degenerate=True)
    message = degeneracy_message(0, none, 3)
    assert "stage 0" in message and "step 3" in message and "no boundaries" in message and "average" not in message
    # rows of ~1 position (the stage above passed on ~1 chunk per row): F is high, the message says why
    short_rows = _stats(16 / 17, 0.96, degenerate=True)
    assert "average 1.06 positions" in degeneracy_message(1, short_rows, 6)


def test_lm_logits_skips_the_hnet_state_but_keeps_the_logits() -> None:
    model = _small_hnet().eval()
    ids = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(1))
    calls: list[Any] = []
    hook = model.register_forward_hook(lambda _m, args, kwargs, out: calls.append((kwargs, out[1])), with_kwargs=True)
    with torch.no_grad():
        fast = lm_logits(model, ids)
        full, state = model(ids)
    hook.remove()
    assert calls[0][0] == {"with_state": False} and calls[0][1] is None and state is not None
    assert torch.equal(fast, full)
    iso = ByteLM(300, 32, 1, 32)
    assert lm_logits(iso, ids).shape == (3, 24, 300)


# ----------------------------------------------------------------------------------------------------------------------
# The pretraining loop with an H-Net
# ----------------------------------------------------------------------------------------------------------------------


def _module(model: torch.nn.Module, windows: torch.Tensor) -> tuple[ByteLMModule, dict[str, Any]]:
    task = load_group("task", "pretrain", seq_len=windows.shape[1] - 1, batch_size=4, val_batch_size=3)
    algo = load_group("algo", "lm", lr=1e-3, min_lr_ratio=0.1, warmup_steps=1, weight_decay=0.0, beta1=0.9,
                      beta2=0.99, eps=1e-8, w0_lr_mult=1.0)
    module = ByteLMModule(model, windows.flatten(), windows, task=task, algo=algo, seed=0, total_steps=10)
    logged: dict[str, Any] = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, value)  # type: ignore[method-assign]
    module.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign]
    module.optimizers = lambda: SimpleNamespace(param_groups=[{"lr": 1e-3}])  # type: ignore[method-assign]
    return module, logged


def test_training_loss_adds_the_ratio_loss_and_logs_chunk_metrics(caplog: pytest.LogCaptureFixture) -> None:
    model = _small_hnet()
    windows = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(2))
    module, logged = _module(model, windows)
    total = module.training_step(windows, 0)
    aux = model.last_aux.loss.detach()
    with torch.no_grad():
        logits, _ = model(windows[:, :-1])
    lm = next_byte_loss(logits, windows[:, 1:])
    assert float(logged["train/loss"].detach()) == pytest.approx(float(lm), rel=1e-6)  # the LM loss alone
    assert float(logged["train/ratio_loss"].detach()) == pytest.approx(float(aux))
    assert float(aux) == pytest.approx(0.03 * sum(float(s.ratio_loss) for s in model.last_aux.stages))
    assert float(total.detach()) == pytest.approx(float(lm) + float(aux), rel=1e-6)
    for stage in (0, 1):
        for name in ("boundary_frac", "mean_prob", "compression", "ratio_loss", "degenerate"):
            assert f"chunk/stage{stage}/{name}" in logged
    total.backward()  # the ratio loss reaches the outer router (through G)
    assert model.hnet.routing.q_proj.weight.grad is not None

    model.hnet.routing.q_proj.weight.data.zero_()  # p = 0.5 everywhere: only the forced first boundaries
    with caplog.at_level(logging.WARNING, logger="aegir"):
        module.training_step(windows, 1)
        module.training_step(windows, 2)
    warnings = [r.getMessage() for r in caplog.records if "degenerated" in r.getMessage()]
    # stage 0 keeps one boundary per row; stage 1 then sees one position per row, all boundaries: both collapse,
    # and each is reported once although both steps are degenerate
    assert len(warnings) == 2 and "stage 0" in warnings[0] and "stage 1" in warnings[1], warnings
    assert "no boundaries" in warnings[0] and "every position" in warnings[1]
    assert logged["chunk/stage0/degenerate"] == logged["chunk/stage1/degenerate"] == 1.0


def test_validation_bpb_uses_the_lm_loss_only_and_reports_compression() -> None:
    model = _small_hnet()
    windows = torch.randint(0, 256, (7, 33), generator=torch.Generator().manual_seed(3))
    module, _ = _module(model, windows)
    metrics, stats = module.final_metrics()
    with torch.no_grad():
        logits, _ = model.eval()(windows[:, :-1])
    per_window = next_byte_loss(logits, windows[:, 1:], reduction="none").mean(dim=1) / math.log(2)
    assert metrics["val/bpb"] == pytest.approx(float(per_window.mean()), rel=1e-5)
    assert stats["val/bpb"]["n"] == 7
    collected: list[Any] = []
    evaluate_windows(model, windows, 3, collected)
    assert [n for n, _ in collected] == [3 * 32, 3 * 32, 32]  # batches of 3, 3 and 1 windows
    pooled = pool_stage_stats(collected)
    for stage, (frac, prob) in enumerate(pooled):
        assert metrics[f"chunk/stage{stage}/boundary_frac"] == pytest.approx(frac)
        assert metrics[f"chunk/stage{stage}/mean_prob"] == pytest.approx(prob)
        assert metrics[f"chunk/stage{stage}/compression"] == pytest.approx(1 / frac)
    assert 0 < pooled[1][0] <= 1


def test_isotropic_model_has_no_chunk_metrics() -> None:
    torch.manual_seed(0)
    windows = torch.randint(0, 256, (4, 17), generator=torch.Generator().manual_seed(4))
    module, logged = _module(ByteLM(300, 32, 1, 32), windows)
    total = module.training_step(windows, 0)
    assert float(total.detach()) == pytest.approx(float(logged["train/loss"].detach()))
    assert not any(k.startswith("chunk/") for k in logged) and "train/ratio_loss" not in logged
    metrics, _ = module.final_metrics()
    assert set(metrics) == {"val/bpb", "val/loss"}


# ----------------------------------------------------------------------------------------------------------------------
# SFT and GRPO with an H-Net policy
# ----------------------------------------------------------------------------------------------------------------------


def test_sft_step_adds_the_ratio_loss() -> None:
    from aegir.loops.sft import SFTModule, collate_pairs

    model = _small_hnet()
    records = [{"prompt": "2+3=", "reference": "5"}, {"prompt": "what is seven?", "reference": "a number"}]
    module = SFTModule(model, records, records, load_group("algo", "sft", batch_size=2, max_len=64), seed=0,
                       total_steps=4)
    logged: dict[str, Any] = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, value)  # type: ignore[method-assign]
    module.optimizers = lambda: SimpleNamespace(param_groups=[{"lr": 1e-3}])  # type: ignore[method-assign]
    total = module.training_step(records, 0)
    lm, ratio = float(logged["train/loss"].detach()), float(logged["train/ratio_loss"].detach())
    assert float(total.detach()) == pytest.approx(lm + ratio, rel=1e-6) and ratio > 0
    ids, _ = collate_pairs(records, 64)
    assert ids.shape[0] == 2


def test_grpo_rollouts_with_an_hnet_policy_are_on_policy() -> None:
    """Prefill + batched steps (sampling) and one teacher-forced forward (scoring) must give the same log-probs,
    so an H-Net policy starts GRPO with importance ratio 1 like the isotropic one."""
    from aegir.rl.rollout import allowed_mask, completion_logprobs, sample_groups

    model = _small_hnet(seed=5).eval()
    allowed = allowed_mask(300, None)
    prompts = [list(b"12+7="), list(b"the cat sat on"), list(b"3*4=")]
    batch = sample_groups(model, prompts, 3, 12, temperature=1.0, allowed=allowed,
                          generator=torch.Generator().manual_seed(0))
    assert batch.completion_ids.shape[0] == 9
    with torch.no_grad():
        logp, _ = completion_logprobs(model, batch, temperature=1.0, allowed=allowed)
    assert torch.allclose(logp, batch.sampler_logp, atol=1e-4), (logp - batch.sampler_logp).abs().max()
    import copy

    model(torch.randint(0, 256, (2, 8)))  # a forward with grad leaves graph tensors in last_aux
    reference = copy.deepcopy(model)  # what GRPO does for its KL reference
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_the_typed_hnet_nano_section_matches_the_composed_yaml(compose) -> None:
    from dataclasses import asdict

    defaults = asdict(load_group("model", "hnet_nano"))
    yaml = asdict(_model_cfg(compose, "hnet_nano"))
    assert defaults == yaml


# ----------------------------------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------------------------------


def test_matched_rwkv7_picks_the_closest_layer_count() -> None:
    from aegir.bench import matched_rwkv7

    with torch.device("meta"):
        counts = {n: ByteLM(512, 128, n, 32).num_parameters() for n in range(1, 9)}
    for target in (counts[3], counts[5] + 1000, (counts[6] + counts[7]) // 2 + 10):
        model = matched_rwkv7(target, 512, 128, 32)
        best = min(counts, key=lambda n: abs(counts[n] - target))
        assert len(model.body.blocks) == best


def test_hnet_bench_prints_both_architectures_and_their_ratio(capsys) -> None:
    from aegir.bench import main

    main(["hnet", "--models", "hnet_nano", "--T", "32", "--repeats", "1", "--prompt-len", "4", "--gen-tokens", "3"])
    lines = [dict(kv.split("=", 1) for kv in line.split()) for line in capsys.readouterr().out.splitlines()]
    rows = {(r.get("arch"), r.get("path")): r for r in lines if r.get("pair") == "hnet_nano" and "arch" in r}
    assert set(rows) == {("hnet", "train"), ("hnet", "generate"), ("rwkv7", "train"), ("rwkv7", "generate")}
    assert float(rows[("hnet", "train")]["train_bytes_per_s"]) > 0 and "boundary_frac_stage1" in rows[("hnet", "train")]
    assert float(rows[("rwkv7", "generate")]["gen_bytes_per_s"]) > 0
    ratio = next(r for r in lines if "ratio_train_hnet_vs_rwkv7" in r)
    train = {a: float(rows[(a, "train")]["train_bytes_per_s"]) for a in ("hnet", "rwkv7")}
    expected = train["hnet"] / train["rwkv7"]
    assert float(ratio["ratio_train_hnet_vs_rwkv7"]) == pytest.approx(expected, rel=5e-3)  # fields have 4 digits
    params = {a: int(rows[(a, "train")]["params"]) for a in ("hnet", "rwkv7")}
    assert abs(params["hnet"] / params["rwkv7"] - 1) < 0.15

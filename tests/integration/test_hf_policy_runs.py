"""Runs with a Hugging Face policy (the tiny local Qwen3 model + LoRA) as a user starts them: GRPO and SFT -> GRPO
end to end, the real `v42` without its weights (one line, exit 2) and with a local model, LoRA checkpoints and the
PEFT export, exact resume after SIGKILL, and two DDP processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aegir.rundir import read_history, read_json
from tests.conftest import run_cli, run_cli_and_kill


def hf_grpo(model_dir: Path, *extra: str) -> list[str]:
    """A seconds-long commerce GRPO run on the tiny model with a LoRA adapter."""
    return [
        "task=commerce", "algo=grpo", "reward=v42", "model=hf_tiny", f"model.name_or_path={model_dir}",
        "model.create_tiny=false", "task.data.scale=tiny",
        "task.data.n_per_task={extraction: 24, sql_qa: 24, insights: 24, push: 24}",
        "task.eval_minimums={extraction: 2, sql_qa: 2, insights: 2, push: 2}",
        "algo.group_size=4", "algo.prompts_per_step=2", "algo.max_completion_length=12", "algo.lr=1e-3",
        "algo.warmup_steps=1", "algo.eval_batch_size=8", "trainer.max_steps=6", "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "trainer.num_threads=1",
        "objective.metric=eval/reward", "objective.mode=max", *extra]


@pytest.mark.slow
def test_hf_lora_grpo_run_end_to_end(tmp_path: Path, hf_tiny_dir: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli([*hf_grpo(hf_tiny_dir), f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "finished"
    for task in ("extraction", "sql_qa", "insights", "push", "all"):
        stats = summary["metric_stats"][task]
        assert stats["n"] == (8 if task == "all" else 2) and "ci95" in stats
    history = read_history(run_dir / "history.jsonl")
    assert len(history["grpo/reward/mean"]) == 6
    assert len(history["eval/reward"]) == 3 and history["eval/reward"][0][0] == 0  # step 0, then every 3 steps
    # LoRA checkpoints: the adapter (+ optimizer state), not the base weights
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state and all(".lora_A." in k or ".lora_B." in k for k in state)
    base_bytes = (hf_tiny_dir / "model.safetensors").stat().st_size
    assert (run_dir / "checkpoints" / "best.ckpt").stat().st_size < base_bytes / 2
    # best/ is a standard PEFT adapter directory
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = run_dir / "checkpoints" / "best"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer.json").is_file()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf_tiny_dir), adapter)
    lora = {k for k in model.state_dict() if "lora_" in k}
    assert lora and all(torch.isfinite(v).all() for k, v in model.state_dict().items() if k in lora)
    samples = sorted((run_dir / "samples").glob("eval_step*.jsonl"))
    assert [p.name for p in samples] == ["eval_step000000.jsonl", "eval_step000003.jsonl", "eval_step000006.jsonl"]
    first = samples[0].read_text(encoding="utf-8").splitlines()[0]
    assert '"completion"' in first and '"reward"' in first


@pytest.mark.slow
def test_export_cli_adapter_and_merged_model_agree(tmp_path: Path, hf_tiny_dir: Path) -> None:
    """A LoRA SFT run (every step has a gradient, unlike GRPO on groups of equal rewards) exported both ways."""
    run_dir = tmp_path / "run"
    result = run_cli(["task=commerce", "algo=sft", "model=hf_tiny", f"model.name_or_path={hf_tiny_dir}",
                      "task.data.scale=tiny", "task.data.n_per_task={extraction: 24, sql_qa: 24, insights: 24, push: 24}",
                      "task.eval_minimums={extraction: 2, sql_qa: 2, insights: 2, push: 2}", "algo.lr=5e-3",
                      "algo.batch_size=4", "algo.max_len=256", "algo.warmup_steps=0", "trainer.max_steps=3",
                      "trainer.val_check_interval=3", "trainer.enable_progress_bar=false", "trainer.num_threads=1",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for flag, out in (([], tmp_path / "adapter"), (["--merge"], tmp_path / "merged")):
        done = subprocess.run([sys.executable, "-m", "aegir.export", str(run_dir), str(out), *flag],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    ids = tokenizer("Qual o total do pedido 42?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf_tiny_dir), tmp_path / "adapter")
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
        base = AutoModelForCausalLM.from_pretrained(hf_tiny_dir)
        a, m, b = (net.eval()(input_ids=ids).logits for net in (adapted, merged, base))
    assert float((a - m).abs().max()) <= 1e-4
    assert float((a - b).abs().max()) > 1e-4  # the adapter trained: it changes the model
    bad = subprocess.run([sys.executable, "-m", "aegir.export", str(tmp_path), str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_v42_without_weights_is_one_line_and_leaves_no_run(tmp_path: Path) -> None:
    result = run_cli(["+experiment=v42", "seed=123", f"paths.output_root={tmp_path / 'out'}"], cwd=tmp_path,
                     timeout=300, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("aegir:")]
    assert len(lines) == 1 and "model.name_or_path" in lines[0] and "Polygl0t/Tucano2-qwen-0.5B-Instruct" in lines[0]
    assert not list((tmp_path / "out").rglob("metadata.json"))


@pytest.mark.slow
def test_v42_composes_and_starts_on_a_local_model(tmp_path: Path, hf_tiny_dir: Path) -> None:
    """The real recipe (GPU, bf16, 1500 steps) pointed at the tiny model and cut to two CPU steps."""
    run_dir = tmp_path / "v42"
    result = run_cli(["+experiment=v42", "seed=123", f"model.name_or_path={hf_tiny_dir}", "trainer=cpu",
                      "model.dtype=float32", "task.data.scale=tiny", "trainer.enable_progress_bar=false",
                      "++stages.grpo.set.trainer.max_steps=2", "++stages.grpo.set.trainer.val_check_interval=2",
                      "++stages.grpo.set.algo.max_completion_length=8", f"hydra.run.dir={run_dir}"],
                     cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stage = run_dir / "stages" / "1_grpo"
    config = read_json(stage / "metadata.json")["config"]
    assert config["model"]["lora"] == {"enabled": True, "r": 16, "alpha": 32.0, "dropout": 0.0,
                                       "target_modules": "all-linear", "bias": "none"}
    assert config["algo"]["group_size"] == 16 and config["algo"]["prompts_per_step"] == 2
    assert config["algo"]["lr"] == 5e-6 and config["algo"]["scale_rewards"] == "none"
    assert config["algo"]["task_sampler"] == "improvement" and config["algo"]["kl_coef"] == 0.0
    assert read_json(run_dir / "summary.json")["metric_stats"]["all"]["n"] == 65


@pytest.mark.slow
def test_v42_hf_tiny_sft_then_lora_grpo(tmp_path: Path, hf_tiny_dir: Path) -> None:
    run_dir = tmp_path / "tiny"
    result = run_cli(["+experiment=v42_hf_tiny", f"model.name_or_path={hf_tiny_dir}", "model.create_tiny=false",
                      "trainer.enable_progress_bar=false", "trainer.num_threads=1",
                      "++stages.sft.set.trainer.max_steps=20", "++stages.sft.set.trainer.val_check_interval=10",
                      "++stages.grpo.set.trainer.max_steps=4", "++stages.grpo.set.trainer.val_check_interval=2",
                      "++stages.grpo.set.algo.max_completion_length=24", f"hydra.run.dir={run_dir}"],
                     cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    sft, grpo = run_dir / "stages" / "1_sft", run_dir / "stages" / "2_grpo"
    sft_state = torch.load(sft / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert not any("lora_" in k for k in sft_state)  # full fine-tuning of the tiny model
    assert read_json(sft / "summary.json")["metrics"]["val/bpb"] > 0
    assert (sft / "checkpoints" / "best" / "model.safetensors").is_file()
    assert read_json(grpo / "metadata.json")["parent"]["stage"] == "sft"
    adapter_cfg = read_json(grpo / "checkpoints" / "best" / "adapter_config.json")
    assert adapter_cfg["base_model_name_or_path"] == str((sft / "checkpoints" / "best").resolve())
    summary = read_json(run_dir / "summary.json")
    assert summary["metric_stats"]["all"]["n"] == 65 and summary["objective"]["metric"] == "eval/reward"


@pytest.mark.slow
def test_hf_lora_run_killed_mid_way_resumes_exactly(tmp_path: Path, hf_tiny_dir: Path) -> None:
    args = hf_grpo(hf_tiny_dir, "trainer.max_steps=12", "trainer.val_check_interval=3")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_cli([*args, f"hydra.run.dir={straight}"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    status = run_cli_and_kill(args, killed, "grpo/reward/mean", 7, cwd=tmp_path)
    assert status == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run([sys.executable, "-m", "aegir.resume", str(killed)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = read_history(straight / "history.jsonl"), read_history(killed / "history.jsonl")
    for name in ("grpo/reward/mean", "train/loss", "eval/reward", "grpo/completion_len/mean"):
        assert a[name] == b[name], name
    assert read_json(straight / "summary.json")["metrics"] == read_json(killed / "summary.json")["metrics"]


@pytest.mark.slow
def test_hf_lora_under_ddp_sim_stays_in_sync(tmp_path: Path, hf_tiny_dir: Path) -> None:
    run_dir = tmp_path / "ddp"
    result = run_cli([*hf_grpo(hf_tiny_dir, "trainer.max_steps=3", "trainer.val_check_interval=3"), "trainer=ddp_sim",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    history = read_history(run_dir / "history.jsonl")
    assert history["ddp/param_max_abs_diff"] == [(3, 0.0)]  # identical parameters on both ranks at the end
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(".lora_" in k for k in state["state_dict"])
    # the optimizer holds exactly the LoRA parameters
    n_opt = sum(len(g["params"]) for g in state["optimizer_states"][0]["param_groups"])
    assert n_opt == len(state["state_dict"])

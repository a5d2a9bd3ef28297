"""`python -m aegir.tb` (issue 16): TensorBoard run names that put what distinguishes runs first -- configuration
and seed, study trial and parameters, seed aggregate, stage -- while the run directories keep their contract. Read
back as TensorBoard reads them: its --logdir_spec parser and its event multiplexer."""

from __future__ import annotations

import json
from pathlib import Path

from tensorboard.backend.event_processing.data_ingester import _parse_event_files_spec
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from torch.utils.tensorboard import SummaryWriter

from aegir.tb import logdir_spec, main, run_names


def _run(path: Path, *, name: str, seed: int, overrides: list[str], trial: dict | None = None,
         stages: list[dict] | None = None, kl: float = 0.0) -> Path:
    path.mkdir(parents=True)
    config = {"name": name, "seed": seed, "task": {"name": "toy_arith"}, "algo": {"kl_coef": kl},
              "objective": {"metric": "eval/reward", "mode": "max"}}
    (path / "metadata.json").write_text(json.dumps({
        "status": "finished", "seed": seed, "config": config, "overrides": overrides, "trial": trial,
        "started_at": "2026-12-05T08:06:14+00:00", **({"kind": "multi_stage", "stages": stages} if stages else {})}))
    with SummaryWriter(log_dir=str(path / "tb")) as writer:
        writer.add_scalar("eval/reward", 0.5, 0)
    return path


def test_runs_are_named_by_what_sets_them_apart(tmp_path: Path, capsys) -> None:
    multirun = tmp_path / "multiruns" / "2026-12-05" / "08-06-14.123390-3c58fec1_grpo_toy"
    for i, (seed, kl) in enumerate([(42, 0.0), (123, 0.0), (42, 0.02)]):
        _run(multirun / f"{i}_grpo_toy_seed{seed}", name="grpo_toy", seed=seed, kl=kl,
             overrides=["+experiment=grpo_toy", f"seed={seed}", f"algo.kl_coef={kl}"])
    (multirun / "aggregate_tb" / "grpo_toy_kl_coef=0.0").mkdir(parents=True)
    with SummaryWriter(log_dir=str(multirun / "aggregate_tb" / "grpo_toy_kl_coef=0.0")) as writer:
        writer.add_scalar("eval/reward", 0.5, 0)
    _run(tmp_path / "sweeps" / "toy_grid" / "trials" / "0003_toy_grid", name="grpo_toy", seed=42,
         overrides=["algo.group_size=8", "algo.kl_coef=0.0"],
         trial={"study": "toy_grid", "number": 3, "params": {"algo.group_size": 8, "algo.kl_coef": 0.0}})
    chain = tmp_path / "runs" / "2026-12-05" / "09-00-00.1-ab_v42_seed42"
    stage = chain / "stages" / "2_grpo"
    _run(chain, name="v42", seed=42, overrides=[], stages=[{"index": 2, "name": "grpo", "dir": str(stage)}])
    _run(stage, name="v42", seed=42, overrides=[])

    names = run_names([tmp_path])
    assert names[multirun / "0_grpo_toy_seed42" / "tb"] == "grpo_toy kl_coef=0.0/seed42"
    assert names[multirun / "1_grpo_toy_seed123" / "tb"] == "grpo_toy kl_coef=0.0/seed123"
    assert names[multirun / "2_grpo_toy_seed42" / "tb"] == "grpo_toy kl_coef=0.02/seed42"
    assert names[multirun / "aggregate_tb" / "grpo_toy_kl_coef=0.0"] == "grpo_toy_kl_coef=0.0/mean over seeds"
    assert names[tmp_path / "sweeps" / "toy_grid" / "trials" / "0003_toy_grid" / "tb"] == \
        "toy_grid/t3 group_size=8 kl_coef=0.0"
    assert names[chain / "tb"] == "v42/seed42" and names[stage / "tb"] == "v42/seed42/2_grpo"
    assert len(set(names.values())) == len(names)

    spec = logdir_spec(names)
    parsed = _parse_event_files_spec(spec)  # TensorBoard's own parser gives every path its name back
    assert {Path(p): n for p, n in parsed.items()} == {p.resolve(): n for p, n in names.items()}
    multiplexer = EventMultiplexer()
    for path, name in parsed.items():
        multiplexer.AddRunsFromDirectory(path, name)
    assert "toy_grid/t3 group_size=8 kl_coef=0.0/." in multiplexer.Runs()

    assert main([str(tmp_path), "--print", "--port", "6123"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tensorboard --logdir_spec ") and out.strip().endswith("--port 6123")
    assert main([str(tmp_path / "nope")]) == 2

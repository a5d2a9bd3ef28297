"""Optuna sweeps: a grid completes, resumes without repeats, prunes bad trials. (Several workers sharing one study,
one of them killed: tests/integration/test_sweep_workers_lost.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from aegir.errors import InputError
from aegir.rundir import read_history, read_json
from aegir.sweep import load_spec, preflight, run_sweep
from tests.conftest import FAST, ROOT


def _spec(tmp_path: Path, name: str, **fields) -> Path:
    spec = {"study_name": name, "base": [*FAST, "logger=none"], "n_trials": 4, "output_dir": str(tmp_path / name),
            "objective": {"metric": "val/bpb", "direction": "minimize"}, "sampler": {"name": "grid"},
            "params": {"algo.lr": {"type": "categorical", "choices": [1.0e-9, 0.003]},
                       "seed": {"type": "categorical", "choices": [1, 2]}}, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_grid_sweep_completes_resumes_and_prunes(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, "grid"))
    study = run_sweep(spec)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert {(t.params["algo.lr"], t.params["seed"]) for t in trials} == {(1.0e-9, 1), (1.0e-9, 2), (0.003, 1),
                                                                        (0.003, 2)}
    for trial in trials:
        meta = read_json(Path(trial.user_attrs["run_dir"]) / "metadata.json")
        assert meta["trial"]["number"] == trial.number and meta["trial"]["study"] == "grid"
        assert meta["status"] == "finished"
        # one step axis: Optuna's intermediate values sit at the steps of history.jsonl (and TensorBoard)
        history = read_history(Path(trial.user_attrs["run_dir"]) / "history.jsonl")
        assert sorted(trial.intermediate_values) == [s for s, _ in history["val/bpb"]] == [4, 8, 12]
    dirs = sorted((tmp_path / "grid" / "trials").iterdir())
    again = run_sweep(load_spec(_spec(tmp_path, "grid")))  # resume: nothing left to do
    assert len(again.get_trials()) == 4 and sorted((tmp_path / "grid" / "trials").iterdir()) == dirs
    best = again.best_trial
    assert best.params["algo.lr"] == 0.003  # learning beats lr ~ 0 (1e-9: algo.lr must be > 0)

    # lr ~ 0 stays at the uniform ~9 bits/byte: a threshold pruner stops exactly those trials at the first report
    pruned = run_sweep(load_spec(_spec(tmp_path, "prune", pruner={"name": "threshold", "upper": 8.5},
                                       base=[*FAST, "logger=none", "trainer.val_check_interval=8"])))
    states = {(t.params["algo.lr"], t.params["seed"]): t.state for t in pruned.get_trials()}
    assert states[(1.0e-9, 1)] == states[(1.0e-9, 2)] == optuna.trial.TrialState.PRUNED
    assert states[(0.003, 1)] == states[(0.003, 2)] == optuna.trial.TrialState.COMPLETE
    pruned_run = next(t for t in pruned.get_trials() if t.state == optuna.trial.TrialState.PRUNED)
    assert read_json(Path(pruned_run.user_attrs["run_dir"]) / "metadata.json")["status"] == "pruned"


def test_bad_specs_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such sweep spec"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match=r"params\.algo\.lr: the grid sampler needs categorical"):
        load_spec(_spec(tmp_path, "bad", params={"algo.lr": {"type": "float", "low": 0.1, "high": 1.0}}))
    with pytest.raises(InputError, match="samplr: unknown key"):
        load_spec(_spec(tmp_path, "bad2", samplr={"name": "tpe"}))


@pytest.mark.parametrize("fields,match", [
    ({"params": {"algo.lr": {"type": "float", "low": 0.1, "high": 0.01}}}, r"params\.algo\.lr: low 0.1 is above high"),
    ({"params": {"algo.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
     r"params\.algo\.lr\.low: a log range needs low > 0"),
    ({"params": {"algo.lr": {"type": "float", "low": "a", "high": 0.1}}}, "must be finite numbers"),
    ({"params": {"seed": {"type": "int", "low": 1, "high": 9, "step": 0}}}, r"params\.seed\.step: must be"),
    ({"storage": "postgres//nobody"}, "storage: not a database URL"),
    ({"storage": "journal:"}, "journal: needs a file path"),
])
def test_a_spec_optuna_would_refuse_later_is_one_line_before_the_study(tmp_path: Path, fields: dict,
                                                                        match: str) -> None:
    with pytest.raises(InputError, match=match):
        load_spec(_spec(tmp_path, "bad", sampler={"name": "tpe"}, **fields))
    assert not (tmp_path / "bad" / "study.db").exists()


def test_every_sweep_spec_in_the_repo_loads_and_composes(tmp_path: Path) -> None:
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        preflight(load_spec(path))  # composes and validates the first point of the space, as a sweep does first


def test_command_line_sets_spec_keys_and_run_overrides(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, "cli"), ["trainer.max_steps=3", f"sweep.output_dir={tmp_path / 'elsewhere'}",
                                              "sweep.n_trials=2", "sweep.storage=journal:/tmp/x.journal"])
    assert spec.extra_overrides == ["trainer.max_steps=3"]
    assert spec.output_dir == tmp_path / "elsewhere" and spec.n_trials == 2 and spec.storage == "journal:/tmp/x.journal"
    with pytest.raises(InputError, match=r"sweep\.sampler=grid: expected sweep\.KEY=VALUE"):
        load_spec(_spec(tmp_path, "cli2"), ["sweep.sampler=grid"])


@pytest.mark.slow
def test_a_wrong_override_stops_the_sweep_before_any_trial(tmp_path: Path) -> None:
    path = _spec(tmp_path, "wrong")
    with pytest.raises(InputError, match="trainer.max_stepz"):
        run_sweep(load_spec(path, ["trainer.max_stepz=3"]))
    assert not (tmp_path / "wrong" / "study.db").exists()  # nothing created, no trial recorded as failed
    result = subprocess.run([sys.executable, "-m", "aegir.sweep", str(path), "trainer.max_stepz=3"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "trainer.max_stepz" in result.stderr

"""What optuna-dashboard and the console show of a sweep (issue 16): the objective's name instead of "Objective
0", the spec / objective / command as study attributes, a pruned trial that says where its run is, and no
ExperimentalWarning opening every sweep. Trials are stubbed: no training runs here."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import yaml

import aegir.sweep as sweep
from tests.conftest import FAST


def test_study_names_its_metric_and_a_pruned_trial_prints_its_run_dir(tmp_path: Path, monkeypatch, capsys) -> None:
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump({
        "study_name": "tiny", "base": [*FAST, "logger=none"], "n_trials": 2, "output_dir": str(tmp_path / "tiny"),
        "objective": {"metric": "val/bpb", "direction": "minimize"}, "sampler": {"name": "grid"},
        "params": {"algo.lr": {"type": "categorical", "choices": [1.0e-9, 0.003]}}}))

    def fake_run(cfg, overrides, *, run_dir, callbacks, extra_metadata):
        if extra_metadata["trial"]["params"]["algo.lr"] == 1.0e-9:
            raise optuna.TrialPruned("pruned at step 8: val/bpb=9")
        return 2.5

    monkeypatch.setattr(sweep, "run", fake_run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = sweep.run_sweep(sweep.load_spec(spec_path))
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    assert study.metric_names == ["val/bpb"]
    attrs = study.user_attrs
    assert attrs["spec"] == str(spec_path) and attrs["objective"] == "minimize val/bpb"
    assert attrs["command"] == f"python -m aegir.sweep {spec_path}" and attrs["params"] == "algo.lr"
    pruned = next(t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    out = capsys.readouterr().out
    assert f"trial {pruned.number} pruned at step 8: val/bpb=9; run directory: {pruned.user_attrs['run_dir']}" in out

"""A 2-seed multirun ends with a seed aggregate whose statistics match SciPy's."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aegir.observe.aggregate import find_runs, main as aggregate_main
from aegir.rundir import read_json
from tests.conftest import FAST, run_cli


@pytest.mark.slow
def test_two_seed_multirun_writes_the_seed_table(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "seed=1,2", *FAST, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"seed aggregate: {sweep / 'aggregate.md'}" in result.stdout
    runs = find_runs([sweep])
    assert sorted(r.seed for r in runs) == [1, 2] and all(r.status == "finished" for r in runs)
    bpb = [read_json(r.path / "summary.json")["metrics"]["val/bpb"] for r in sorted(runs, key=lambda r: r.seed)]

    table = (sweep / "aggregate.md").read_text()
    assert "| Metric | Seed 1 | Seed 2 | Mean ± 95% CI |" in table
    low, high = stats.t.interval(0.95, df=1, loc=np.mean(bpb), scale=stats.sem(bpb))
    assert f"| val/bpb | {bpb[0]:.4f} | {bpb[1]:.4f} | {np.mean(bpb):.4f} ± {(high - low) / 2:.4f} |" in table

    rows = {row["metric"]: row for row in csv.DictReader((sweep / "aggregate.csv").open())}
    assert int(rows["val/bpb"]["n"]) == 2
    assert float(rows["val/bpb"]["mean"]) == pytest.approx(np.mean(bpb))
    assert float(rows["val/bpb"]["std"]) == pytest.approx(np.std(bpb, ddof=1))
    assert float(rows["val/bpb"]["ci95"]) == pytest.approx((high - low) / 2)

    (run,) = (sweep / "aggregate_tb").iterdir()  # one configuration: one TensorBoard run, named by its label
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "val/bpb" in tags and "seed_band/val/bpb/upper" in tags  # the runs' own tag: the mean overlays them
    assert events.PluginTagToContent("custom_scalars")

    # by hand, on the same directory, with a failed run added: it is listed, not averaged
    failed = sweep / "9_failed"
    failed.mkdir()
    (failed / "metadata.json").write_text('{"status": "failed", "seed": 9, "config": {}}')
    assert aggregate_main([str(sweep)]) == 0
    assert "seed 9: **failed**" in (sweep / "aggregate.md").read_text()


def test_aggregate_cli_rejects_a_directory_without_runs(tmp_path: Path) -> None:
    assert aggregate_main([str(tmp_path)]) == 2
    assert aggregate_main([str(tmp_path / "missing")]) == 2

"""The observatory page's data layer against hand-computed oracles and SciPy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from aegir.dashboard import data as d
from aegir.eval.stats import mean_ci
from aegir.observe.aggregate import RunRecord
from aegir.report import config_diff as report_config_diff


def _run(tmp: Path, name: str, *, seed: int, arm: str = "full", config: dict | None = None,
         history: dict | None = None, metrics: dict | None = None, status: str = "finished") -> d.RunData:
    config = {"name": "exp", "seed": seed, "arm": {"name": arm}, "algo": {"lr": 0.1}, "paths": {"x": name},
              "objective": {"metric": "val/bpb", "mode": "min"}, **(config or {})}
    summary = {"status": "finished", "objective": {"metric": "val/bpb", "mode": "min",
                                                   "value": (metrics or {}).get("val/bpb")},
               "metrics": metrics or {}} if status == "finished" else None
    record = RunRecord(tmp / name, {"status": status, "seed": seed, "arm": arm, "config": config}, summary)
    return d.RunData(record, history or {}, name)


def test_downsampling_keeps_every_buckets_extremes_and_the_ends() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=10_000)
    values[1234], values[8765] = 50.0, -50.0  # single-point spikes a stride would drop
    steps = list(range(0, 20_000, 2))
    xs, ys = d.downsample_minmax(steps, values.tolist(), 500)
    assert len(xs) <= 502 and xs == sorted(xs) and xs[0] == 0 and xs[-1] == 19_998
    assert 50.0 in ys and -50.0 in ys
    edges = np.linspace(0, 10_000, 251).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):  # every bucket's min and max are kept, at their own steps
        chunk = values[lo:hi]
        assert steps[lo + int(chunk.argmax())] in xs and steps[lo + int(chunk.argmin())] in xs
    assert dict(zip(xs, ys)) == {s: float(values[s // 2]) for s in xs}
    assert d.downsample_minmax([1, 2, 3], [0.5, 0.1, 0.9], 10) == ([1, 2, 3], [0.5, 0.1, 0.9])


def test_seed_band_is_scipys_student_t_interval_on_the_shared_steps() -> None:
    a = [(0, 1.0), (10, 2.0), (20, 4.0)]
    b = [(0, 2.0), (10, 2.5), (20, 3.0), (30, 9.0)]  # step 30: one seed only, left out
    c = [(0, 1.5), (10, 4.0), (20, 2.0)]
    band = d.seed_band([a, b, c])
    assert band["steps"] == [0, 10, 20] and band["n"] == 3
    for i, step in enumerate(band["steps"]):
        values = [dict(s)[step] for s in (a, b, c)]
        low, high = stats.t.interval(0.95, df=2, loc=np.mean(values), scale=stats.sem(values))
        assert band["mean"][i] == pytest.approx(np.mean(values))
        assert (band["lower"][i], band["upper"][i]) == (pytest.approx(low), pytest.approx(high))
    assert d.seed_band([a]) is None and d.seed_band([a, []]) is None
    matrix = np.array([[1.0, 2.0], [3.0, 7.0], [2.0, 2.0], [0.5, 1.0]])
    means, halves = d.mean_ci_columns(matrix)
    for j in range(2):
        stat = mean_ci(matrix[:, j])
        assert means[j] == pytest.approx(stat.mean) and halves[j] == pytest.approx(stat.ci95)


def test_paired_difference_by_seed_hand_computed() -> None:
    # differences 1, 2, 1 (seed 4 has no partner): mean 4/3, sd sqrt(1/3), se 1/3, t = 4, df = 2
    diff = d.paired_difference({1: 3.0, 2: 5.0, 3: 4.0}, {1: 2.0, 2: 3.0, 3: 3.0, 4: 9.0}, ("full", "no_schema"))
    t975 = 4.302652729911275
    assert diff.seeds == (1, 2, 3) and diff.n == 3
    assert diff.mean == pytest.approx(4 / 3)
    assert (diff.lower, diff.upper) == (pytest.approx(4 / 3 - t975 / 3), pytest.approx(4 / 3 + t975 / 3))
    assert diff.p == pytest.approx(1 - 4 / (18 ** 0.5), rel=1e-9)  # two-sided p for t=4, df=2: 1 - t/sqrt(2+t^2)
    one = d.paired_difference({1: 3.0}, {1: 1.0}, ("full", "x"))
    assert one.n == 1 and one.mean == 2.0 and np.isnan(one.lower) and np.isnan(one.p)


def test_arm_comparison_pools_seeds_and_pairs_them(tmp_path: Path) -> None:
    finals = {"full": [2.0, 2.2, 2.1], "no_ontology": [2.5, 2.4, 2.9]}
    runs = [_run(tmp_path, f"{arm}_{seed}", seed=seed, arm=arm, metrics={"val/bpb": v, "val/bpb/n": 8.0},
                 history={"val/bpb": [(0, 8.0), (10, v)]})
            for arm, values in finals.items() for seed, v in zip((1, 2, 3), values)]
    runs.append(_run(tmp_path, "other", seed=1, config={"algo": {"lr": 0.5}}, metrics={"val/bpb": 1.0}))
    (cmp,) = d.arm_comparisons(runs)  # the lr=0.5 run is another configuration: no comparison of its own
    assert cmp["arms"] == ["full", "no_ontology"] and cmp["reference"] == "full"
    (entry,) = cmp["metrics"]  # val/bpb/n is a companion, not a metric
    assert entry["metric"] == "val/bpb"
    (diff,) = entry["diffs"]
    ref = stats.ttest_rel(finals["full"], finals["no_ontology"])
    assert diff.mean == pytest.approx(np.mean(np.subtract(finals["full"], finals["no_ontology"])))
    assert diff.p == pytest.approx(ref.pvalue)
    assert entry["finals"]["no_ontology"]["mean"] == pytest.approx(np.mean(finals["no_ontology"]))
    assert entry["bands"]["full"]["mean"] == pytest.approx([8.0, np.mean(finals["full"])])
    for run in runs:  # the instrument is the same bytes for every arm, the corpus is not
        run.record.metadata["data"] = {"instrument": {"sha256": "aaa"}, "corpus": {"sha256": run.arm}}
    assert d.data_hashes(runs[:6]) == {"corpus": ["full", "no_ontology"], "instrument": ["aaa"]}


def test_config_diff_matches_the_reports(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", seed=1, config={"algo": {"lr": 0.1, "kl": 0.0}, "model": {"d": 64}})
    b = _run(tmp_path, "b", seed=2, config={"algo": {"lr": 0.3, "kl": 0.0}, "model": {"d": 64, "extra": 1}})
    table = d.config_table([a, b])
    assert set(table["a"]) == {"algo.lr", "model.extra"}  # seed and paths are run-local, algo.kl is shared
    diff = d.config_diff(table, "a", "b")
    assert diff == [("algo.lr", 0.1, 0.3), ("model.extra", "<absent>", 1)]
    expected = [row for row in report_config_diff(a.record, b.record) if not row[0].startswith(("seed", "paths"))]
    assert diff == expected


def test_collapse_periods_and_reward_decomposition() -> None:
    flags = [(0, 0.0), (5, 1.0), (10, 1.0), (15, 0.0), (20, 1.0)]
    assert d.on_periods(flags) == [(5, 10), (20, 20)]
    assert d.on_periods([]) == []
    history = {"grpo/reward/exact/mean": [(0, 0.5), (1, 1.0)], "grpo/reward/fmt/mean": [(0, 1.0), (1, 1.0)],
               "grpo/reward/gate/mean": [(0, 0.5), (1, 1.0)], "grpo/reward/mean": [(0, 0.3), (1, 1.2)]}
    cfg = {"components": {"exact": {"weight": 1.0}, "fmt": {"weight": 0.25}, "gate": {"weight": 1.0}}, "gate": "gate"}
    out = d.reward_decomposition(history, cfg)
    assert out["parts"] == {"exact": [(0, 0.25), (1, 1.0)], "fmt": [(0, 0.125), (1, 0.25)]}
    assert out["gate_rate"] == [(0, 0.5), (1, 1.0)]
    ungated = d.reward_decomposition(history, {"components": cfg["components"], "gate": None})
    assert ungated["parts"]["exact"] == [(0, 0.5), (1, 1.0)] and "gate" in ungated["parts"]


def test_load_shows_torn_lines_running_runs_and_non_runs(tmp_path: Path) -> None:
    run = tmp_path / "sweep" / "0_run"
    run.mkdir(parents=True)
    (run / "metadata.json").write_text(json.dumps({"status": "running", "seed": 3, "config": {
        "gates": {"learns": {"metric": "eval/reward", "op": ">", "value": 0.3}}}}))
    (run / "history.jsonl").write_text('{"step": 0, "eval/reward": 0.1}\n{"step": 5, "eval/reward": 0.4}\n'
                                       '{"step": 10, "ev')
    empty = tmp_path / "empty"
    empty.mkdir()
    collection = d.load([tmp_path / "sweep", empty])
    (loaded,) = collection.runs
    assert loaded.history["eval/reward"] == [(0, 0.1), (5, 0.4)] and loaded.record.status == "running"
    assert d.gate_cells(loaded)["learns"]["verdict"] == "pending"
    assert d.objective_ci(loaded) == ("—", None, None)  # no objective declared, none reached
    assert any("1 unreadable line" in n for n in collection.notices)
    assert any(str(empty) in n and "not a run directory" in n for n in collection.notices)
    torn = tmp_path / "other" / "1_torn"
    torn.mkdir(parents=True)
    (torn / "metadata.json").write_text('{"status": "runn')  # being written
    (bad,) = d.load([tmp_path / "other"]).runs  # listed, saying why, not dropped
    assert bad.record.status.startswith("unreadable: metadata.json is not valid JSON")
    assert d.gate_cells(bad) == {} and d.provenance(bad) == {}


def test_point_budget_keeps_large_pages_small() -> None:
    assert d.point_budget(10) == 1000
    assert d.point_budget(50 * 80) == 225  # 50 runs x 80 metrics: 900k points in all
    assert d.point_budget(10**6) == 100


def test_aggregate_gate_verdicts_are_read_from_the_multiruns_arms_json(tmp_path: Path) -> None:
    (tmp_path / "arms.json").write_text(json.dumps([{"label": "arms_relational", "gates": {
        "M1": {"name": "M1", "metric": "paired/full-no_ontology/eval/bpb/ontology", "op": "<", "threshold": 0.0,
               "observed": -0.12, "passed": True, "reason": "..."},
        "final": {"name": "final", "metric": "x", "op": ">", "threshold": 1.0, "observed": None, "passed": False}}}]))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "arms.json").write_text("not json")  # being written: skipped
    (entry,) = d.aggregate_gates([tmp_path])
    assert entry["label"] == "arms_relational"
    assert entry["gates"]["M1"] == {"verdict": "pass", "observed": -0.12, "op": "<", "threshold": 0.0,
                                    "metric": "paired/full-no_ontology/eval/bpb/ontology"}
    assert entry["gates"]["final"]["verdict"] == "fail"


def test_a_multi_stage_run_shows_its_stages_curves_and_lineage(tmp_path: Path) -> None:
    root = tmp_path / "run"
    stages = []
    for index, name in enumerate(("pretrain", "cta"), 1):
        stage = root / "stages" / f"{index}_{name}"
        stage.mkdir(parents=True)
        parent = {"stage": "pretrain", "checkpoint": "x/best.ckpt"} if name == "cta" else None
        (stage / "metadata.json").write_text(json.dumps({"status": "finished", "parent": parent,
                                                         "data": {name: {"sha256": name * 2}}}))
        (stage / "history.jsonl").write_text(json.dumps({"step": 4, "train/loss": float(index)}) + "\n")
        stages.append({"index": index, "name": name, "dir": str(stage)})
    (root / "metadata.json").write_text(json.dumps({"kind": "multi_stage", "status": "finished", "stages": stages}))
    (run,) = d.load([tmp_path]).runs  # the stages are not runs of their own
    assert run.history == {"pretrain:train/loss": [(4, 1.0)], "cta:train/loss": [(4, 2.0)]}
    lineage = d.provenance(run)["stages"]
    assert lineage["cta"]["parent"]["checkpoint"] == "x/best.ckpt" and lineage["pretrain"]["data"] == {
        "pretrain": {"sha256": "pretrainpretrain"}}


def test_sweep_points_add_the_trials_only_the_study_storage_knows(tmp_path: Path) -> None:
    import optuna

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize")
    for lr, state, value in ((0.1, optuna.trial.TrialState.COMPLETE, 0.5), (0.2, optuna.trial.TrialState.FAIL, None),
                             (0.3, optuna.trial.TrialState.COMPLETE, 0.7)):
        study.add_trial(optuna.trial.create_trial(params={"algo.lr": lr}, state=state, value=value,
                                                  distributions={"algo.lr": optuna.distributions.FloatDistribution(
                                                      0.0, 1.0)}))
    runs = []
    for number, lr, value in ((0, 0.1, 0.5), (2, 0.3, 0.7)):  # trial 1 failed before writing a run directory
        run = _run(tmp_path, f"t{number}", seed=1, config={"algo": {"lr": lr}}, metrics={"val/bpb": value})
        run.record.metadata["trial"] = {"study": "s", "number": number, "params": {"algo.lr": lr}}
        run.record.summary["objective"] = {"metric": "eval/reward", "mode": "max", "value": value}
        runs.append(run)
    trials = d.study_trials([tmp_path])
    assert [t["status"] for t in trials["s"]] == ["finished", "failed", "finished"]
    points = d.add_storage_only_trials(d.sweep_points(runs), trials["s"])
    assert [(p["trial"], p["status"], p["params"]["algo.lr"]) for p in points["points"]] == [
        (0, "finished", 0.1), (1, "failed", 0.2), (2, "finished", 0.3)]
    assert [h["best"] for h in points["history"]] == [0.5, 0.5, 0.7]

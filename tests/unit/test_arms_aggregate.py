"""The arm comparison of the seed aggregate (issue 17): paired differences by seed with a paired t CI and p, and
`aggregate_gates` verdicts, from hand-made run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from aegir.observe.aggregate import aggregate
from aegir.observe.arms import arm_metrics, paired_difference

GATES = {
    "final": {"metric": "paired/full-no_ontology/eval/relational/mean/lower", "op": ">", "value": 0.0},
    "alive": {"metric": "arm/no_ontology/eval/bpb/common", "op": "<", "value": 3.0},
    "missing": {"metric": "arm/full/eval/relational/never_logged", "op": ">", "value": 0.0},
}


def test_paired_difference_hand_computed() -> None:
    # differences 0.5, 1, 2: mean 7/6, variance 7/12, t = mean / (s / sqrt 3) = sqrt 7 exactly; with 2 degrees of
    # freedom the two-sided p is 1 - t / sqrt(2 + t^2) = 1 - sqrt(7) / 3, and the half-width t_.975,2 * s / sqrt 3.
    pair = paired_difference({42: 1.0, 123: 2.0, 456: 4.0, 7: 9.0}, {42: 0.5, 123: 1.0, 456: 2.0})
    assert pair.n == 3
    assert pair.mean == pytest.approx(7 / 6)
    assert pair.p == pytest.approx(1 - math.sqrt(7) / 3)
    half = 4.302652729911275 * math.sqrt(7 / 12) / math.sqrt(3)
    assert (pair.lower, pair.upper) == pytest.approx((7 / 6 - half, 7 / 6 + half))


def test_paired_difference_degenerate_cases() -> None:
    one = paired_difference({1: 2.0}, {1: 1.0})
    assert one.mean == 1.0 and one.lower == -math.inf and math.isnan(one.p)
    same = paired_difference({1: 2.0, 2: 3.0}, {1: 1.0, 2: 2.0})  # identical differences: a sure difference
    assert (same.lower, same.upper, same.p) == (1.0, 1.0, 0.0)


def test_arm_metrics_names() -> None:
    by_arm = {"full": {1: {"eval/relational/mean": 0.6, "eval/relational/mean/n": 120.0, "train/loss": 1.0},
                       2: {"eval/relational/mean": 0.7}},
              "no_ontology": {1: {"eval/relational/mean": 0.5}, 2: {"eval/relational/mean": 0.5}}}
    metrics = arm_metrics(by_arm)
    assert metrics["arm/full/eval/relational/mean"] == pytest.approx(0.65)
    assert metrics["paired/full-no_ontology/eval/relational/mean"] == pytest.approx(0.15)
    assert metrics["paired/full-no_ontology/eval/relational/mean/n"] == 2.0
    assert not any("train/loss" in k or "/mean/n/" in k for k in metrics)  # only instrument metrics, no companions


def _run(root: Path, arm: str, seed: int, relational: float, common: float, eval_sha: str = "abc") -> None:
    path = root / f"{arm}_seed{seed}"
    path.mkdir(parents=True)
    config = {"name": "arms", "seed": seed, "arm": {"name": arm}, "task": {"name": "pretrain"},
              "objective": {"metric": "val/bpb", "mode": "min"}, "aggregate_gates": GATES}
    metadata = {"status": "finished", "seed": seed, "arm": arm, "config": config,
                "data": {"eval_windows": {"sha256": eval_sha}, "eval_windows_heldout": {"sha256": "fed"},
                         "probes": {"sha256": "def"}}}
    (path / "metadata.json").write_text(json.dumps(metadata))
    metrics = {"val/bpb": common + 0.5, "eval/bpb/common": common, "eval/bpb_heldout/common": common + 1.0,
               "eval/relational/mean": relational, "eval/relational/mean/lower": relational - 0.1}
    (path / "summary.json").write_text(json.dumps({"status": "finished", "metrics": metrics,
                                                   "objective": {"metric": "val/bpb", "mode": "min"}}))


def test_aggregate_reports_paired_arms_and_gate_verdicts(tmp_path: Path) -> None:
    full = {42: 0.70, 123: 0.60, 456: 0.65}
    no_ontology = {42: 0.50, 123: 0.45, 456: 0.40}
    for seed in full:
        _run(tmp_path, "full", seed, full[seed], 2.0)
        _run(tmp_path, "no_ontology", seed, no_ontology[seed], 2.5)
    paths = aggregate(tmp_path)
    report = json.loads(paths["arms"].read_text())
    assert len(report) == 1
    comparison = report[0]
    assert comparison["arms"] == {"full": [123, 42, 456], "no_ontology": [123, 42, 456]}
    assert comparison["instrument_hashes"] == {"eval_windows": ["abc"], "eval_windows_heldout": ["fed"],
                                               "probes": ["def"]}
    assert comparison["metrics"]["arm/full/eval/bpb_heldout/common"] == pytest.approx(3.0)
    assert comparison["metrics"]["paired/full-no_ontology/eval/bpb_heldout/common"] == pytest.approx(-0.5)
    expected = paired_difference(full, no_ontology)
    assert comparison["metrics"]["paired/full-no_ontology/eval/relational/mean"] == pytest.approx(0.2)
    assert comparison["metrics"]["paired/full-no_ontology/eval/relational/mean/lower"] == pytest.approx(expected.lower)
    gates = comparison["gates"]
    assert expected.lower == pytest.approx(0.2 - 4.302652729911275 * 0.05 / math.sqrt(3))  # differences .2 .15 .25
    assert gates["final"]["passed"] is True
    assert gates["alive"]["passed"] is True and gates["alive"]["observed"] == pytest.approx(2.5)
    assert gates["missing"]["passed"] is False  # a metric nobody produced fails its gate
    markdown = paths["markdown"].read_text()
    assert "## Arms: arms" in markdown and "| eval/relational/mean |" in markdown
    assert "| eval/bpb_heldout/common |" in markdown
    assert "| final | PASS |" in markdown and "| missing | FAIL |" in markdown
    assert (paths["tensorboard"] / "arms").is_dir()


def test_runs_that_do_not_differ_by_arm_get_no_arm_section(tmp_path: Path) -> None:
    for seed in (1, 2):
        _run(tmp_path, "full", seed, 0.5, 2.0)
    paths = aggregate(tmp_path)
    assert "arms" not in paths and not (tmp_path / "arms.json").exists()
    assert "## Arms" not in paths["markdown"].read_text()

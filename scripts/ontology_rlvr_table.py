"""The seed table of experiments/ontology_rlvr.md from ontology_rlvr run directories.

    python scripts/ontology_rlvr_table.py RUN_DIR [RUN_DIR ...]

RUN_DIR: an ontology_rlvr run directory (its stages/2_grpo is read) or a GRPO run directory itself.

For each run (one seed), from its GRPO stage: the fixed eval set scored at the SFT start (the GRPO stage's step-0
eval, i.e. the SFT stage's best.ckpt) and at the best GRPO checkpoint (the eval with the highest eval/reward after
step 0, the earliest on ties, which is what best.ckpt holds; checked against summary.json's objective), per component (R, R_A..R_D) and pass rate
(structural R_A = 1, consistent R_B = 1, coverage_close R_D >= 0.9), read from samples/eval_step*.jsonl. Then
mean ± 95% CI (Student t over seeds) at both points and of the paired difference (best - start).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from scipy.stats import t as student_t

COLUMNS = {
    "R (total)": lambda r: r["reward"],
    "R_A structural": lambda r: r["reward/onto_structural"],
    "R_B consistency": lambda r: r["reward/onto_consistency"],
    "R_C parsimony": lambda r: r["reward/onto_parsimony"],
    "R_D coverage": lambda r: r["reward/onto_coverage"],
    "pass structural (R_A=1)": lambda r: float(r["reward/onto_structural"] >= 1.0),
    "pass consistent (R_B=1)": lambda r: float(r["reward/onto_consistency"] >= 1.0),
    "pass coverage_close (R_D>=0.9)": lambda r: float(r["reward/onto_coverage"] >= 0.9),
}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _ci(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = _mean(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def seed_point(run: Path) -> tuple[str, dict[str, float], dict[str, float], int]:
    # a two-stage run directory, or a GRPO run started from an SFT checkpoint (model.pretrained)
    grpo = next((run / "stages").glob("*_grpo")) if (run / "stages").is_dir() else run
    meta = json.loads((run / "metadata.json").read_text())
    seed = str(meta.get("seed", run.name))
    samples = grpo / "samples"
    # eval_step<k>.jsonl: the eval after training step k (k = 0: before any GRPO step, i.e. the SFT start)
    evals = {int(p.stem.removeprefix("eval_step")): _rows(p) for p in sorted(samples.glob("eval_step*.jsonl"))}
    start = evals[0]
    scores = {step: _mean([r["reward"] for r in rows]) for step, rows in evals.items() if step > 0}
    best_step = min(step for step, score in scores.items() if score == max(scores.values()))
    best = evals[best_step]
    summary = json.loads((grpo / "summary.json").read_text())
    assert abs(summary["objective"]["value"] - scores[best_step]) < 1e-6, (run, summary["objective"], scores)
    return (seed, {k: _mean([f(r) for r in start]) for k, f in COLUMNS.items()},
            {k: _mean([f(r) for r in best]) for k, f in COLUMNS.items()}, best_step)


def diagnostics(run: Path) -> str:
    """GRPO-stage training signal: share of zero-variance groups, the first step the collapse canary fired, the
    share of sampled completions that passed R_A."""
    grpo = next((run / "stages").glob("*_grpo")) if (run / "stages").is_dir() else run
    history = [json.loads(line) for line in (grpo / "history.jsonl").read_text().splitlines() if line.strip()]
    steps = [h for h in history if "grpo/frac_zero_std" in h]
    zero = _mean([h["grpo/frac_zero_std"] for h in steps])
    fired = [h["step"] for h in steps if h.get("grpo/collapse") == 1.0]
    passed = _mean([h.get("grpo/reward/onto_structural/mean", 0.0) for h in steps])
    return (f"{len(steps)} GRPO steps, zero-variance groups {zero:.2f}, collapse canary first at step "
            f"{fired[0] if fired else 'never'}, sampled completions passing R_A {passed:.3f}")


def main(runs: list[str]) -> None:
    for run in runs:
        print(f"{Path(run).name}: {diagnostics(Path(run))}")
    points = [seed_point(Path(r)) for r in runs]
    seeds = [p[0] for p in points]
    print(f"seeds: {', '.join(seeds)}; best GRPO eval step per seed: {', '.join(str(p[3]) for p in points)}\n")
    print("| metric | " + " | ".join(f"seed {s}: start -> best" for s in seeds)
          + " | SFT start (mean ± 95% CI) | best GRPO (mean ± 95% CI) | paired diff (mean ± 95% CI) |")
    print("|---|" + "---|" * (len(seeds) + 3))
    for key in COLUMNS:
        start = [p[1][key] for p in points]
        best = [p[2][key] for p in points]
        diff = [b - a for a, b in zip(start, best)]
        cells = [f"{a:.3f} -> {b:.3f}" for a, b in zip(start, best)]
        print(f"| {key} | " + " | ".join(cells) + f" | {_mean(start):.3f} ± {_ci(start):.3f} | "
              f"{_mean(best):.3f} ± {_ci(best):.3f} | {_mean(diff):+.3f} ± {_ci(diff):.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Re-score the relational probes of finished pretraining runs on their best.ckpt with the current instrument code,
and print per-run accuracy / log-odds and the paired differences by seed between arms (full − other).

    python scripts/rescore_probes.py SWEEP_DIR [PROBE ...]

Used when the probes change after an experiment ran (experiments/arms_relational.md: join_row calibrated).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from aegir.config import section_object
from aegir.eval.instrument import PROBE_MAX_BYTES, choice_outcomes
from aegir.eval.stats import mean_ci
from aegir.loops.lm import candidate_scores
from aegir.models.build import build_model
from aegir.observe.arms import paired_difference
from aegir.rundir import read_json
from aegir.tasks.ontology.catalog import catalog_for
from aegir.tasks.pretrain.instrument import build_probes


def main(root: Path, names: list[str]) -> None:
    torch.set_num_threads(1)
    results: dict[str, dict[str, dict[int, float]]] = {}
    for run in sorted(p.parent for p in root.glob("*/metadata.json")):
        meta = read_json(run / "metadata.json")
        config = meta["config"]
        model = build_model(section_object("model", config["model"]))
        state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
        task = config["task"]
        probes = build_probes(meta["data_seed"], catalog_for(task["catalog"]), task["probe_items"],
                              task.get("heldout_classes", 0))  # runs from before held-out classes have none
        for name in names or list(probes):
            items = probes[name]
            answers = np.array([item.answer for item in items])
            scores = candidate_scores(model, items, min(task["seq_len"] + 1, PROBE_MAX_BYTES), task["val_batch_size"])
            accuracy, log_odds = choice_outcomes(scores, answers)
            for metric, values in ((name, accuracy), (f"{name}/log_odds", log_odds)):
                stat = mean_ci(values)
                results.setdefault(metric, {}).setdefault(meta["arm"], {})[meta["seed"]] = stat.mean
                print(f"{run.name} {metric} {stat.mean:.4f} ± {stat.ci95:.4f} (n={stat.n})", flush=True)
    for metric, by_arm in results.items():
        for arm in by_arm:
            if arm != "full" and "full" in by_arm:
                pair = paired_difference(by_arm["full"], by_arm[arm])
                print(f"paired full-{arm} {metric}: {pair.mean:+.4f} [{pair.lower:+.4f}, {pair.upper:+.4f}] "
                      f"p={pair.p:.3f} n={pair.n}")
        for arm, seeds in by_arm.items():
            stat = mean_ci(list(seeds.values()))
            print(f"arm {arm} {metric}: {stat.mean:.4f} ± {stat.ci95:.4f} (n={stat.n})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])

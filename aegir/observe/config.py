"""The schema of `callbacks.observatory` (conf/callbacks/default.yaml holds every default and what each key means;
conf/callbacks/observatory.yaml switches the instruments on). Types here, values in YAML: fields carry no Python
defaults (MISSING), so the YAML files are the one place a default lives. `observatory_problems` is the one range
check of these keys; `aegir.config.validate` runs it before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class ProbeSetConfig:
    n: int = MISSING
    file: Optional[str] = MISSING
    window_bytes: int = MISSING
    answer_tokens: int = MISSING
    batch_size: int = MISSING


@dataclass
class HistoryPartConfig:
    enabled: bool = MISSING
    every_n_evals: int = MISSING
    weight_explode: float = MISSING
    grad_explode: float = MISSING
    grad_vanish: float = MISSING
    dead_after: int = MISSING
    dead_tol: float = MISSING


@dataclass
class GeometryPartConfig:
    enabled: bool = MISSING
    every_n_evals: int = MISSING
    projector: bool = MISSING
    map: str = MISSING


@dataclass
class PartConfig:
    enabled: bool = MISSING
    every_n_evals: int = MISSING


@dataclass
class CalibrationPartConfig:
    enabled: bool = MISSING
    every_n_evals: int = MISSING
    bins: int = MISSING
    overconfidence: float = MISSING
    high_entropy: float = MISSING


@dataclass
class HardExamplesPartConfig:
    enabled: bool = MISSING
    every_n_evals: int = MISSING
    file: Optional[str] = MISSING
    max_new_tokens: int = MISSING


@dataclass
class RadarPartConfig:
    enabled: bool = MISSING
    every_n_evals: int = MISSING
    gif: bool = MISSING


@dataclass
class ObservatoryConfig:
    enabled: bool = MISSING
    figures_every_n_evals: int = MISSING
    probes: ProbeSetConfig = MISSING
    history: HistoryPartConfig = MISSING
    geometry: GeometryPartConfig = MISSING
    trajectories: PartConfig = MISSING
    calibration: CalibrationPartConfig = MISSING
    hard_examples: HardExamplesPartConfig = MISSING
    radar: RadarPartConfig = MISSING


PARTS = ("history", "geometry", "trajectories", "calibration", "hard_examples", "radar")
MAPS = ("pca", "umap")


def observatory_problems(obs: Any) -> list[tuple[str, str]]:
    """(key under callbacks.observatory, what is wrong) for every out-of-range value; [] when all are fine."""
    problems: list[tuple[str, str]] = []

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            problems.append((key, message))

    probes = obs["probes"]
    need(int(probes["n"]) >= 3, "probes.n", f"must be >= 3 (RSA compares probe pairs), got {probes['n']}")
    need(int(probes["window_bytes"]) >= 8, "probes.window_bytes", f"must be >= 8, got {probes['window_bytes']}")
    need(1 <= int(probes["answer_tokens"]) < int(probes["window_bytes"]), "probes.answer_tokens",
         f"must be in [1, probes.window_bytes), got {probes['answer_tokens']}")
    need(int(probes["batch_size"]) >= 1, "probes.batch_size", f"must be >= 1, got {probes['batch_size']}")
    need(int(obs["figures_every_n_evals"]) >= 1, "figures_every_n_evals",
         f"must be >= 1, got {obs['figures_every_n_evals']}")
    for part in PARTS:
        need(int(obs[part]["every_n_evals"]) >= 1, f"{part}.every_n_evals",
             f"must be >= 1, got {obs[part]['every_n_evals']}")
    history = obs["history"]
    need(float(history["weight_explode"]) > 1, "history.weight_explode", "must be > 1 (a factor)")
    need(float(history["grad_explode"]) > 1, "history.grad_explode", "must be > 1 (a factor)")
    need(float(history["grad_vanish"]) >= 0, "history.grad_vanish", "must be >= 0")
    need(int(history["dead_after"]) >= 1, "history.dead_after", "must be >= 1 (snapshots)")
    need(float(history["dead_tol"]) >= 0, "history.dead_tol", "must be >= 0")
    need(str(obs["geometry"]["map"]) in MAPS, "geometry.map", f"'{obs['geometry']['map']}' is not one of: "
                                                              f"{', '.join(MAPS)}")
    calibration = obs["calibration"]
    need(int(calibration["bins"]) >= 1, "calibration.bins", f"must be >= 1, got {calibration['bins']}")
    need(0 <= float(calibration["overconfidence"]) <= 1, "calibration.overconfidence", "must be in [0, 1]")
    need(0 <= float(calibration["high_entropy"]) <= 1, "calibration.high_entropy",
         "must be in [0, 1] (a fraction of the maximal entropy)")
    need(int(obs["hard_examples"]["max_new_tokens"]) >= 1, "hard_examples.max_new_tokens", "must be >= 1")
    return problems

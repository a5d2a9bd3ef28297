"""The schema of `callbacks.observatory`: types and allowed values (aegir/schema.py's `key`), no defaults --
conf/callbacks/default.yaml holds every default and what each key means, conf/callbacks/observatory.yaml switches
the instruments on. The observatory receives an `ObservatoryConfig` instance (`section_object("callbacks", ...)`
.observatory), never the mapping. `observatory_problems` holds the one check that spans two keys;
aegir.config.validate runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from aegir.schema import key

MAPS = ("pca", "umap")


@dataclass
class ProbeSetConfig:
    n: int = key(ge=3)
    file: Optional[str]
    window_bytes: int = key(ge=8)
    answer_tokens: int = key(ge=1)
    batch_size: int = key(ge=1)


@dataclass
class HistoryPartConfig:
    enabled: bool
    every_n_evals: int = key(ge=1)
    weight_explode: float = key(gt=1.0)
    grad_explode: float = key(gt=1.0)
    grad_vanish: float = key(ge=0.0)
    dead_after: int = key(ge=1)
    dead_tol: float = key(ge=0.0)


@dataclass
class GeometryPartConfig:
    enabled: bool
    every_n_evals: int = key(ge=1)
    projector: bool
    map: str = key(choices=MAPS)


@dataclass
class PartConfig:
    enabled: bool
    every_n_evals: int = key(ge=1)


@dataclass
class CalibrationPartConfig:
    enabled: bool
    every_n_evals: int = key(ge=1)
    bins: int = key(ge=1)
    overconfidence: float = key(ge=0.0, le=1.0)
    high_entropy: float = key(ge=0.0, le=1.0)


@dataclass
class HardExamplesPartConfig:
    enabled: bool
    every_n_evals: int = key(ge=1)
    file: Optional[str]
    max_new_tokens: int = key(ge=1)


@dataclass
class RadarPartConfig:
    enabled: bool
    every_n_evals: int = key(ge=1)
    gif: bool


@dataclass
class ObservatoryConfig:
    enabled: bool
    figures_every_n_evals: int = key(ge=1)
    probes: ProbeSetConfig
    history: HistoryPartConfig
    geometry: GeometryPartConfig
    trajectories: PartConfig
    calibration: CalibrationPartConfig
    hard_examples: HardExamplesPartConfig
    radar: RadarPartConfig


PARTS = ("history", "geometry", "trajectories", "calibration", "hard_examples", "radar")


def observatory_problems(obs: ObservatoryConfig) -> list[tuple[str, str]]:
    """(key under callbacks.observatory, what is wrong) for the checks that span keys; single-key ranges are
    declared above."""
    probes = obs.probes
    if not probes.answer_tokens < probes.window_bytes:
        return [("probes.answer_tokens", f"must be < probes.window_bytes = {probes.window_bytes}, got "
                                         f"{probes.answer_tokens}")]
    return []

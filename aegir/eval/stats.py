"""Summary statistics with confidence intervals, used for every "mean over n" number a run reports."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values with its 95% confidence half-width (Student t; normal for large n gives the same)."""

    mean: float
    std: float
    n: int
    ci95: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MeanCI:
    """Mean, sample std (ddof=1) and the t-based CI half-width t_{(1+c)/2, n-1} * std / sqrt(n).

    Student t rather than 1.96 because seed tables have n = 3, where 1.96 understates the interval by ~2x.
    n = 1 gives an infinite half-width (NaN std): one number carries no spread information.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    n = int(arr.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0, math.nan)
    mean = float(arr.mean())
    if n == 1:
        return MeanCI(mean, math.nan, 1, math.inf)
    std = float(arr.std(ddof=1))
    t = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1))
    return MeanCI(mean, std, n, t * std / math.sqrt(n))

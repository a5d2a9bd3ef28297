"""Declarative pass/fail gates: named checks of a metric against a threshold, declared in config.

    gates:
      bpb_below_3: {metric: val/bpb, op: "<", value: 3.0}
      required: true        # a failed gate makes the run exit with status 3 after everything is saved
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}


@dataclass(frozen=True)
class GateVerdict:
    name: str
    metric: str
    op: str
    threshold: float
    observed: float | None
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_gates(gates: Mapping[str, Any], metrics: Mapping[str, float]) -> dict[str, GateVerdict]:
    """Verdict of every gate (the `required` flag is skipped). A missing or non-finite metric fails its gate:
    a check that could not be made must not pass silently."""
    verdicts: dict[str, GateVerdict] = {}
    for name, spec in gates.items():
        if name == "required":
            continue
        metric, op, threshold = str(spec["metric"]), str(spec["op"]), float(spec["value"])
        observed = metrics.get(metric)
        if observed is None or not math.isfinite(float(observed)):
            verdicts[name] = GateVerdict(name, metric, op, threshold, None, False,
                                         f"metric {metric} was not produced by this run")
            continue
        passed = OPS[op](float(observed), threshold)
        verdicts[name] = GateVerdict(name, metric, op, threshold, float(observed), passed,
                                     f"{metric} = {float(observed):.6g} {op} {threshold:g} is {passed}")
    return verdicts


def gate_metrics(verdicts: Mapping[str, GateVerdict]) -> dict[str, float]:
    """`gate/<name>` scalars: 1.0 pass, 0.0 fail (docs/metrics.md, gate/*)."""
    return {f"gate/{name}": float(v.passed) for name, v in verdicts.items()}

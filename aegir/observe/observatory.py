"""The observatory: learning-dynamics instruments on a fixed probe set (docs/observatory.md).

`Observatory` does the work of one snapshot -- read the weights and the probes, append the records under
`<run dir>/observe/`, send scalars / images / text / projector embeddings to TensorBoard -- and is driven either by
`ObservatoryCallback` during training (a snapshot at the start and at every validation where a part is due) or by
`python -m aegir.observe RUN_DIR` after the fact. The arithmetic is in aegir/observe/dynamics_math.py, the model
read-out in aegir/observe/readout.py, the pictures in aegir/observe/figures.py.

Records are append-only JSON lines; a resumed run reads back the rows up to its checkpoint's step and appends after
them (a reader keeps the last row of a step, as for history.jsonl).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aegir.errors import InputError
from aegir.observe import dynamics_math as dm
from aegir.observe import figures
from aegir.observe.config import ObservatoryConfig
from aegir.observe.hard_examples import column_board, judge_board
from aegir.observe.probes import (board_path, build_probe_set, check_board_task, load_board, probe_lines,
                                  probe_set_sha256)
from aegir.observe.readout import Readout, is_classifier, read_probes, tracked_parameters
from aegir.rundir import _finite, sha256_file, update_json

log = logging.getLogger("aegir")

OBSERVE_DIR = "observe"
ALARMS = ("nonfinite", "exploding_weights", "vanishing_weights", "exploding_gradients", "vanishing_gradients",
          "dead_layers")
FILES = {"history": "learning_history.jsonl", "geometry": "geometry.jsonl", "trajectories": "trajectories.jsonl",
         "calibration": "calibration.jsonl", "hard_examples": "hard_examples.jsonl", "radar": "skills.jsonl",
         "alarms": "alarms.jsonl", "probes": "probe_set.jsonl", "learned_order": "learned_order.json",
         "init": "init_weights.pt"}
HEADLINE_PREFIXES = ("val/", "eval/", "live/", "train/loss", "test/")


def read_rows(path: Path, max_step: int | None = None) -> list[dict[str, Any]]:
    """The rows of an observe/*.jsonl file (torn lines skipped), the last row of each step kept, in step order."""
    if not path.is_file():
        return []
    by_step: dict[tuple[int, str], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict) or "step" not in row:
                continue
            if max_step is not None and int(row["step"]) > max_step:
                continue
            by_step[(int(row["step"]), str(row.get("id", "")))] = row
    return [by_step[k] for k in sorted(by_step, key=lambda k: (k[0], k[1]))]


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one JSON line (one write, flushed; a torn last line is closed first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.exists() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(("\n" if torn else "") + json.dumps(_finite(dict(row)), ensure_ascii=False) + "\n")


class Sink:
    """Where a snapshot's numbers go: the trainer's loggers (history.jsonl + TensorBoard) during training, or a
    HistoryWriter and a SummaryWriter of the run's tb/ after the fact."""

    def __init__(self, loggers: Sequence[Any] = (), writer: Any = None, history: Any = None) -> None:
        self.loggers, self.writer, self.history = list(loggers), writer, history

    def scalars(self, metrics: Mapping[str, float], step: int) -> None:
        metrics = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        if not metrics:
            return
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)
        if self.history is not None:
            self.history.write(step, metrics)
        if self.writer is not None and not self.loggers:
            for name, value in metrics.items():
                self.writer.add_scalar(name, value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()


def headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The loop's own metrics worth keeping next to the instruments (val/*, eval/*, live/*, train/loss)."""
    out = {}
    for name, value in metrics.items():
        if not name.startswith(HEADLINE_PREFIXES) or name.endswith(("/n", "/lower", "/upper")):
            continue
        try:
            out[name] = float(value.item() if isinstance(value, Tensor) else value)
        except (TypeError, ValueError):
            continue
    return dict(sorted(out.items()))


def _round(values: Mapping[str, float], digits: int = 8) -> dict[str, float | None]:
    return {k: (None if v is None or not math.isfinite(v) else float(f"{v:.{digits}g}")) for k, v in values.items()}


class Observatory:
    """The instruments of one run directory (or one stage's)."""

    def __init__(self, obs: ObservatoryConfig, root: Path, task: Any, data_seed: int, module: Any) -> None:
        """`obs`: the typed `callbacks.observatory` section; `task`: the typed `task` section."""
        self.cfg = obs
        self.root = Path(root)
        self.dir = self.root / OBSERVE_DIR
        self.figures = self.dir / "figures"
        self.task_name = str(task.name)
        self.probes, self.probe_source = build_probe_set(task, data_seed, obs.probes, module)
        self.probe_sha = probe_set_sha256(self.probes)
        self.board: list[dict[str, Any]] = []
        self.board_file: Path | None = None
        if obs.hard_examples.enabled:
            self.board_file = board_path(self.task_name, obs.hard_examples.file)
            self.board = load_board(self.board_file) if self.board_file is not None else []
        if self.board and self.task_name == "ontology" and task.catalog and not obs.hard_examples.file:
            log.warning("observatory: the shipped ontology board is written against the shipped catalog, not "
                        "task.catalog=%s; pass your own with callbacks.observatory.hard_examples.file", task.catalog)
            self.board, self.board_file = [], None
        if self.board:
            check_board_task(self.board, self.board_file, self.task_name)
        if self.board and is_classifier(module):
            self.board = column_board(self.board, task.data.budget(), module.labels, self.board_file,
                                      shipped=not obs.hard_examples.file)
        self.init_weights: dict[str, Tensor] | None = None
        self.init_step = 0
        self.prev_weights: dict[str, Tensor] | None = None
        self.prev_step: int | None = None
        self.first_emb: np.ndarray | None = None
        self.first_emb_step: int | None = None
        self.prev_emb: dict[str, np.ndarray] | None = None
        self.prev_emb_step: int | None = None
        self.history_rows: list[dict[str, Any]] = []
        self.trajectory_rows: list[dict[str, Any]] = []
        self.skill_rows: list[dict[str, Any]] = []
        self.hard_rows: list[dict[str, Any]] = []
        self.warned: set[str] = set()
        self.radar_frames: list[Path] = []
        self.suffix = ""
        self._pending: dict[str, tuple[int, Any]] = {}

    # ------------------------------------------------------------------ setup
    def due(self, part: str, eval_index: int) -> bool:
        """Part `part` runs at the baseline (eval_index 0) and at every `every_n_evals`-th validation."""
        spec = getattr(self.cfg, part)
        return bool(spec.enabled) and eval_index % spec.every_n_evals == 0

    def prepare(self, module: Any, step: int, metadata: Path | None) -> None:
        """Write (or check) the probe set and the initial weights, read back what earlier snapshots recorded (up to
        `step`), and record the probe set's hash in metadata.json."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / FILES["probes"]
        if path.is_file():
            existing = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if probe_set_sha256(existing) != self.probe_sha:
                raise InputError(f"{path}: this run directory's probe set differs from the one this config builds "
                                 "(a different probe file or data_seed); instruments would not compare")
        else:
            path.write_text("".join(line + "\n" for line in probe_lines(self.probes)), encoding="utf-8")
        init = self.dir / FILES["init"]
        if init.is_file():
            saved = torch.load(init, map_location="cpu", weights_only=True)
            self.init_weights, self.init_step = saved["weights"], int(saved["step"])
        elif self.cfg.history.enabled:
            self.init_weights, self.init_step = self._copy_weights(module), step
            torch.save({"step": step, "weights": self.init_weights}, init)
        self._restore(step, module)
        if metadata is not None and metadata.is_file():
            info = {"probe_set_sha256": self.probe_sha, "n_probes": len(self.probes), "probe_source":
                    self.probe_source, "skills": sorted({str(p["skill"]) for p in self.probes})}
            if self.board_file is not None:
                info["hard_examples"] = {"file": str(self.board_file), "sha256": sha256_file(self.board_file),
                                         "n": len(self.board)}
            update_json(metadata, observe=info)

    def _restore(self, step: int, module: Any) -> None:
        self.history_rows = read_rows(self.dir / FILES["history"], step)
        self.trajectory_rows = read_rows(self.dir / FILES["trajectories"], step)
        self.skill_rows = read_rows(self.dir / FILES["radar"], step)
        self.hard_rows = read_rows(self.dir / FILES["hard_examples"], step)
        self.warned = {str(r["alarm"]) for r in read_rows(self.dir / FILES["alarms"], step)}
        if self.history_rows:  # resumed: the checkpoint's weights are the previous snapshot's
            self.prev_weights, self.prev_step = self._copy_weights(module), step
        geometry = read_rows(self.dir / FILES["geometry"], step)
        if geometry:
            first, last = geometry[0], geometry[-1]
            self.first_emb, self.first_emb_step = self._load_emb(first)["last"], int(first["step"])
            self.prev_emb, self.prev_emb_step = self._load_emb(last), int(last["step"])
        self.radar_frames = [self.figures / str(r["figure"]) for r in self.skill_rows
                             if r.get("figure") and (self.figures / str(r["figure"])).is_file()]

    def _load_emb(self, row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        with np.load(self.dir / str(row["file"])) as data:
            return {"last": data["last"], "middle": data["middle"]}

    @staticmethod
    def _copy_weights(module: Any) -> dict[str, Tensor]:
        return {n: p.detach().to("cpu", torch.float32, copy=True) for n, p in tracked_parameters(module).items()}

    # ------------------------------------------------------------------ one snapshot
    def snapshot(self, module: Any, step: int, eval_index: int, metrics: Mapping[str, Any], sink: Sink, *,
                 grad_norms: Mapping[str, float] | None = None, update_ratio: Mapping[str, float] | None = None,
                 source: str = "train") -> dict[str, float]:
        """Run every part due at `eval_index`; return the scalars it logged."""
        started, started_cpu = time.perf_counter(), time.process_time()
        # Files of an after-the-fact snapshot carry its source, so they never replace a training snapshot's.
        self.suffix = "" if source == "train" else "_" + "".join(c if c.isalnum() else "-" for c in source)
        parts = [p for p in ("history", "geometry", "trajectories", "calibration", "hard_examples", "radar")
                 if self.due(p, eval_index)]
        if not parts:
            return {}
        readout = None
        if {"geometry", "trajectories", "calibration", "radar"} & set(parts):
            readout = read_probes(module, self.probes, batch_size=self.cfg.probes.batch_size,
                                  answer_tokens=self.cfg.probes.answer_tokens)
        skills = readout.skill_accuracy(self.probes) if readout is not None else {}
        head = headline(metrics)
        scalars: dict[str, float] = {}
        base = {"step": int(step), "source": source}
        if "hard_examples" in parts and self.board:
            scalars.update(self._hard_examples(module, base, sink))
        if "history" in parts:
            scalars.update(self._history(module, base, head, skills, grad_norms, update_ratio, sink))
        if readout is not None and "geometry" in parts:
            scalars.update(self._geometry(readout, base, sink))
        if readout is not None and "trajectories" in parts:
            scalars.update(self._trajectories(readout, base, sink))
        if readout is not None and "calibration" in parts:
            scalars.update(self._calibration(readout, base, sink))
        if readout is not None and "radar" in parts:
            self._radar(skills, head, base, sink)
        if eval_index % self.cfg.figures_every_n_evals == 0:
            self.draw_figures(sink)
        scalars["observe/seconds"] = time.perf_counter() - started
        scalars["observe/cpu_seconds"] = time.process_time() - started_cpu
        sink.scalars(scalars, int(step))
        sink.flush()
        return scalars

    # ------------------------------------------------------------------ pictures
    def _figure(self, tag: str, step: int, draw: Any) -> None:
        """Queue a picture; the latest one of each tag is drawn at the next snapshot due for pictures
        (`figures_every_n_evals`) or when training ends, so the final state is always drawn."""
        self._pending[tag] = (step, draw)

    def draw_figures(self, sink: Sink) -> None:
        for tag, (step, draw) in sorted(self._pending.items()):
            sink.image(tag, draw(), step)
        self._pending = {}

    # ------------------------------------------------------------------ 1. learning history
    def _history(self, module: Any, base: dict[str, Any], head: Mapping[str, float], skills: Mapping[str, float],
                 grad_norms: Mapping[str, float] | None, update_ratio: Mapping[str, float] | None,
                 sink: Sink) -> dict[str, float]:
        step = int(base["step"])
        weights = self._copy_weights(module)
        groups = dm.group_by_layer(weights)
        norms = dm.layer_norms(weights, groups)
        drift_init = (dm.relative_drift(weights, self.init_weights, groups) if self.init_weights is not None
                      else {k: math.nan for k in groups})
        drift_prev = (dm.relative_drift(weights, self.prev_weights, groups) if self.prev_weights is not None
                      else {k: math.nan for k in groups})
        row = {**base, "init_step": self.init_step, "prev_step": self.prev_step, "layers": list(groups),
               "drift_init": _round(drift_init), "drift_prev": _round(drift_prev), "weight_norm": _round(norms),
               "grad_norm": _round(dict(grad_norms)) if grad_norms else None,
               "update_ratio": _round(dict(update_ratio)) if update_ratio else None,
               "metrics": _round(dict(head)), "skills": _round(dict(skills)), "alarms": {}}
        rows = [*self.history_rows, row]
        h = self.cfg.history
        alarms = dm.stability_alarms(rows, weight_explode=h.weight_explode, grad_explode=h.grad_explode,
                                     grad_vanish=h.grad_vanish, dead_after=h.dead_after, dead_tol=h.dead_tol)
        row["alarms"] = alarms
        append_row(self.dir / FILES["history"], row)
        self.history_rows.append(row)
        self.prev_weights, self.prev_step = weights, step
        for alarm, layers in alarms.items():
            if alarm not in self.warned:
                self.warned.add(alarm)
                log.warning("stability alarm %s at step %d: %s (observe/%s)", alarm, step, ", ".join(layers),
                            FILES["history"])
                append_row(self.dir / FILES["alarms"], {"step": step, "alarm": alarm, "layers": layers})
        scalars = {f"stability/{a}": float(a in alarms) for a in ALARMS}
        for layer in groups:
            scalars[f"drift/init/{layer}"] = drift_init[layer]
            scalars[f"drift/prev/{layer}"] = drift_prev[layer]
        if grad_norms:
            scalars["grad/norm"] = dm.total_norm(grad_norms)
        if update_ratio:
            finite = [v for v in update_ratio.values() if math.isfinite(v)]
            if finite:
                scalars["update_ratio/max"] = max(finite)
        scalars["weight/norm"] = dm.total_norm(norms)
        layers = list(groups)
        steps = [int(r["step"]) for r in self.history_rows]
        values = np.array([[(r["drift_init"] or {}).get(layer) if (r["drift_init"] or {}).get(layer) is not None
                             else math.nan for r in self.history_rows] for layer in layers], dtype=float)
        path = self.figures / f"drift_heatmap_step{step:06d}{self.suffix}.png"
        self._figure("observe/drift_heatmap", step, lambda: figures.drift_heatmap(steps, layers, values, path))
        return scalars

    # ------------------------------------------------------------------ 3. geometry
    def _geometry(self, readout: Readout, base: dict[str, Any], sink: Sink) -> dict[str, float]:
        step = int(base["step"])
        emb_dir = self.dir / "embeddings"
        emb_dir.mkdir(parents=True, exist_ok=True)
        ids = np.array([str(p["id"]) for p in self.probes])
        skill_list = [str(p["skill"]) for p in self.probes]
        emb_name = f"step_{step:06d}{self.suffix}.npz"
        np.savez(emb_dir / emb_name, last=readout.last.astype(np.float32),
                 middle=readout.middle.astype(np.float32), ids=ids, skills=np.array(skill_list))
        drift_prev = drift_first = drift_prev_middle = math.nan
        if self.prev_emb is not None:
            drift_prev = dm.rsa_drift(self.prev_emb["last"], readout.last)
            drift_prev_middle = dm.rsa_drift(self.prev_emb["middle"], readout.middle)
        if self.first_emb is not None:
            drift_first = dm.rsa_drift(self.first_emb, readout.last)
        else:
            self.first_emb, self.first_emb_step = readout.last, step
        row = {**base, "prev_step": self.prev_emb_step, "first_step": self.first_emb_step,
               "layers": readout.layers, "drift": drift_prev, "drift_first": drift_first,
               "drift_middle": drift_prev_middle, "file": f"embeddings/{emb_name}"}
        append_row(self.dir / FILES["geometry"], row)
        self.prev_emb, self.prev_emb_step = {"last": readout.last, "middle": readout.middle}, step
        last, layer_name = readout.last, readout.layers["last"]
        path = self.figures / f"geometry_step{step:06d}{self.suffix}.png"

        def geometry_map() -> np.ndarray:
            method = self.cfg.geometry.map
            points = _umap_2d(last) if method == "umap" else None
            if points is None:
                method, points = "pca", dm.pca_2d(last)
            title = f"probes ({layer_name}), {method.upper()}, step {step}"
            return figures.scatter_map(points, skill_list, path, title)

        self._figure("observe/geometry_map", step, geometry_map)
        if self.cfg.geometry.projector and sink.writer is not None:
            metadata = [[str(p["id"]), str(p["skill"])] for p in self.probes]
            for layer in ("last", "middle"):
                sink.writer.add_embedding(torch.from_numpy(getattr(readout, layer).astype(np.float32)),
                                          metadata=metadata, metadata_header=["id", "skill"], global_step=step,
                                          tag=f"probes_{layer}{self.suffix}")
        return {"geometry/drift": drift_prev, "geometry/drift_first": drift_first,
                "geometry/drift_middle": drift_prev_middle}

    # ------------------------------------------------------------------ 4. trajectories
    def _trajectories(self, readout: Readout, base: dict[str, Any], sink: Sink) -> dict[str, float]:
        step = int(base["step"])
        if not readout.answer_logprobs:
            return {}
        wrong = [pos for pos in readout.divergence.values() if pos is not None]
        width = max((len(v) for v in readout.answer_logprobs.values()), default=1)
        row = {**base, "logprobs": readout.answer_logprobs, "first_divergence": readout.divergence,
               "divergence_histogram": dm.histogram(wrong, width)}
        append_row(self.dir / FILES["trajectories"], row)
        self.trajectory_rows.append(row)
        if sink.writer is not None and wrong:
            sink.writer.add_histogram("errors/first_divergence", np.array(wrong, dtype=float), step,
                                      bins=np.arange(width + 1, dtype=float) - 0.5)
        n = len(readout.divergence)
        return {"errors/wrong_frac": len(wrong) / n if n else math.nan,
                "errors/first_divergence_mean": float(np.mean(wrong)) if wrong else math.nan}

    def trajectory_figures(self, sink: Sink) -> None:
        """Per probe group, the answer-token x snapshot heatmap of mean log-probs over every snapshot so far."""
        if not self.trajectory_rows:
            return
        step = int(self.trajectory_rows[-1]["step"])
        skill_of = {str(p["id"]): str(p["skill"]) for p in self.probes}
        steps = [int(r["step"]) for r in self.trajectory_rows]
        width = max((len(v) for r in self.trajectory_rows for v in r["logprobs"].values()), default=1)
        for skill in sorted(set(skill_of.get(i, "?") for r in self.trajectory_rows for i in r["logprobs"])):
            grid = np.full((len(steps), width), math.nan)
            for s, r in enumerate(self.trajectory_rows):
                values = [v for k, v in r["logprobs"].items() if skill_of.get(k) == skill]
                for t in range(width):
                    column = [v[t] for v in values if t < len(v) and v[t] is not None]
                    if column:
                        grid[s, t] = float(np.mean(column))
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in skill)
            path = self.figures / f"trajectories_{safe}_step{step:06d}{self.suffix}.png"
            image = figures.trajectory_heatmap(steps, grid, path, f"answer log-probs, {skill}")
            sink.image(f"observe/trajectories/{safe}", image, step)

    def learned_order(self) -> dict[str, Any]:
        """Per probe, the first step at which each answer token's log-prob crossed log 0.5; per skill, the median
        of those steps at each token position (tokens never learned are left out of the median)."""
        steps = [int(r["step"]) for r in self.trajectory_rows]
        per_probe: dict[str, list[int | None]] = {}
        for probe in self.probes:
            key = str(probe["id"])
            series = [r["logprobs"].get(key) for r in self.trajectory_rows]
            if any(s is not None for s in series):
                kept = [(st, s) for st, s in zip(steps, series) if s is not None]
                per_probe[key] = dm.learned_order([k for k, _ in kept], [s for _, s in kept])
        by_skill: dict[str, list[float | None]] = {}
        skill_of = {str(p["id"]): str(p["skill"]) for p in self.probes}
        for skill in sorted(set(skill_of[k] for k in per_probe)):
            orders = [v for k, v in per_probe.items() if skill_of[k] == skill]
            width = max(len(v) for v in orders)
            medians: list[float | None] = []
            for t in range(width):
                column = [v[t] for v in orders if t < len(v) and v[t] is not None]
                medians.append(float(np.median(column)) if column else None)
            by_skill[skill] = medians
        return {"threshold": "log 0.5", "steps": steps, "by_skill_median_step": by_skill, "by_probe": per_probe}

    # ------------------------------------------------------------------ 5. calibration
    def _calibration(self, readout: Readout, base: dict[str, Any], sink: Sink) -> dict[str, float]:
        step = int(base["step"])
        c = self.cfg.calibration
        n_bins = c.bins
        ece, mce, bins = dm.expected_calibration_error(readout.conf, readout.correct, n_bins)
        adaptive = dm.adaptive_calibration_error(readout.conf, readout.correct, n_bins)
        conf_mean = float(readout.conf.mean()) if readout.conf.size else math.nan
        acc = float(readout.correct.mean()) if readout.correct.size else math.nan
        entropy_mean = float(readout.entropy.mean()) if readout.entropy.size else math.nan
        high = c.high_entropy * readout.max_entropy
        high_frac = float((readout.entropy > high).mean()) if readout.entropy.size else math.nan
        width = int(readout.position.max()) + 1 if readout.position.size else 0
        profile = dm.position_profile(readout.entropy.tolist(), readout.position.tolist(), width)
        over = conf_mean - acc
        flags = {"overconfident": bool(over > c.overconfidence),
                 "high_uncertainty": bool(high_frac > 0.5)}
        by_skill: dict[str, dict[str, float]] = {}
        skills = np.array([str(self.probes[i]["skill"]) for i in readout.probe.tolist()])
        for skill in sorted(set(skills.tolist())):
            sel = skills == skill
            e, m, _ = dm.expected_calibration_error(readout.conf[sel], readout.correct[sel], n_bins)
            by_skill[skill] = {"ece": e, "accuracy": float(readout.correct[sel].mean()),
                               "entropy": float(readout.entropy[sel].mean())}
        row = {**base, "n": int(readout.conf.size), "ece": ece, "ece_adaptive": adaptive, "mce": mce,
               "confidence": conf_mean, "accuracy": acc, "bins": bins, "entropy_mean": entropy_mean,
               "entropy_max": readout.max_entropy, "entropy_high_frac": high_frac, "entropy_by_position": profile,
               "flags": flags, "by_skill": by_skill}
        append_row(self.dir / FILES["calibration"], row)
        path = self.figures / f"reliability_step{step:06d}{self.suffix}.png"
        self._figure("observe/reliability", step,
                     lambda: figures.reliability_diagram(bins, ece, mce, path, f"probes, step {step}"))
        return {"calib/ece": ece, "calib/ece_adaptive": adaptive, "calib/mce": mce, "calib/confidence": conf_mean,
                "calib/accuracy": acc, "calib/overconfidence": over, "entropy/mean": entropy_mean,
                "entropy/high_frac": high_frac, "calib/flag_overconfident": float(flags["overconfident"]),
                "entropy/flag_high_uncertainty": float(flags["high_uncertainty"])}

    # ------------------------------------------------------------------ 6. hard examples
    def _hard_examples(self, module: Any, base: dict[str, Any], sink: Sink) -> dict[str, float]:
        step = int(base["step"])
        # The board may ask for longer completions than the default (ontology compositions).
        limit = max([self.cfg.hard_examples.max_new_tokens, *(int(i.get("max_new_tokens", 0)) for i in self.board)])
        loop_limit = getattr(getattr(module, "algo", None), "max_completion_length", None)
        if loop_limit:  # GRPO: never longer than the loop's own completions
            limit = min(limit, loop_limit)
        results = judge_board(module, self.board, limit)
        previous: dict[str, bool] = {}
        if self.hard_rows:
            last_step = max(int(r["step"]) for r in self.hard_rows)
            previous = {str(r["id"]): bool(r["ok"]) for r in self.hard_rows if int(r["step"]) == last_step}
        lines = ["| | id | category | error | completion |", "|---|---|---|---|---|"]
        flips = []
        for item, result in zip(self.board, results):
            key = str(item["id"])
            flip = None
            if key in previous and previous[key] != result["ok"]:
                flip = "fixed" if result["ok"] else "broke"
                flips.append(f"{key}: {flip}")
            row = {**base, "id": key, "category": item["category"], "ok": result["ok"], "error": result["error"],
                   "flip": flip, "completion": result["completion"], "score": result.get("score")}
            append_row(self.dir / FILES["hard_examples"], row)
            self.hard_rows.append(row)
            shown = result["completion"].replace("|", "\\|").replace("\n", " ")[:60]
            lines.append(f"| {'✓' if result['ok'] else '✗'} | {key} | {item['category']} | "
                         f"{result['error'] or ''} | `{shown}` |")
        lines.append("")
        lines.append("flipped since the last checkpoint: " + (", ".join(flips) if flips else "none"))
        sink.text("observe/hard_examples", "\n".join(lines), step)
        passed = sum(1 for r in results if r["ok"])
        return {"hard/pass_rate": passed / len(results) if results else math.nan, "hard/flips": float(len(flips))}

    # ------------------------------------------------------------------ 7. radar
    def _radar(self, skills: Mapping[str, float], head: Mapping[str, float], base: dict[str, Any],
               sink: Sink) -> None:
        step = int(base["step"])
        scores = {f"probe:{k}": v for k, v in skills.items()}
        for name, value in head.items():
            if name.startswith("eval/") and name.endswith("/reward") and name.count("/") == 2:
                scores[f"eval:{name.split('/')[1]}"] = value
            if name.startswith("val/f1/"):
                scores[f"f1:{name[len('val/f1/'):]}"] = value
        path = self.figures / f"radar_step{step:06d}{self.suffix}.png"
        row = {**base, "scores": _round(scores), "figure": path.name}
        append_row(self.dir / FILES["radar"], row)
        self.skill_rows.append(row)
        axes = sorted({k for r in self.skill_rows for k in r["scores"]})
        first = self.skill_rows[0]["scores"] if len(self.skill_rows) > 1 else None
        scores_now = row["scores"]

        def radar() -> np.ndarray:
            self.radar_frames.append(path)
            return figures.radar(axes, scores_now, first, path, f"skills, step {step}")

        self._figure("observe/radar", step, radar)

    # ------------------------------------------------------------------ the end
    def finish(self, sink: Sink | None = None) -> dict[str, Any]:
        """Write what summarises the whole run: the trajectory heatmaps, learned_order.json and the radar GIF.
        Returns the alarms raised."""
        self.draw_figures(sink or Sink())
        if self.trajectory_rows:
            self.trajectory_figures(sink or Sink())
            order = self.learned_order()
            path = self.dir / FILES["learned_order"]
            path.write_text(json.dumps(_finite(order), indent=1) + "\n", encoding="utf-8")
            if sink is not None:
                lines = ["| skill | median step at which answer token t first exceeded p = 0.5 (t = 0, 1, ...) |",
                         "|---|---|"]
                for skill, steps in order["by_skill_median_step"].items():
                    shown = ", ".join("never" if v is None else f"{v:g}" for v in steps)
                    lines.append(f"| {skill} | {shown} |")
                sink.text("observe/learned_order", "\n".join(lines), int(self.trajectory_rows[-1]["step"]))
                sink.flush()
        if self.cfg.radar.enabled and self.cfg.radar.gif and self.radar_frames:
            figures.gif([p for p in self.radar_frames if p.is_file()], self.figures / "radar.gif")
        return stability_summary(self.dir)


def stability_summary(observe_dir: Path) -> dict[str, Any]:
    """{alarm: {step, layers}} of every alarm a run raised (first time), from observe/alarms.jsonl."""
    out: dict[str, Any] = {}
    for row in read_rows(observe_dir / FILES["alarms"]):
        out.setdefault(str(row["alarm"]), {"step": int(row["step"]), "layers": row.get("layers", [])})
    return out


def _umap_2d(x: np.ndarray) -> np.ndarray | None:
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        return None
    return umap.UMAP(n_components=2, random_state=0).fit_transform(x)


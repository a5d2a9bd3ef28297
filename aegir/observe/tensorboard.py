"""TensorBoard as its users expect it: no clutter, and an HParams record per run.

* One step axis, no `epoch` scalar (aegir.observe.history_logger; docs/metrics.md, Steps).
* Eval curves that read at TensorBoard's default settings: every loop puts its evaluation metric in a Custom
  Scalars band chart (`add_band_charts`, category EVAL_BANDS) -- the mean between `<metric>/lower` and `/upper`.
  TensorBoard draws margin charts unsmoothed, so a curve of a few evaluations is not flattened by the 0.6
  smoothing, and the band widens the y range that "ignore outliers" keeps (a curve at 0 for most evaluations that
  jumps at the last ones can still be clipped).
* HParams: each run's session lives in the sub-run `tb/final/`: the session start (the hyperparameters that
  matter -- identity, the swept parameters, the command-line overrides -- and a `group_name` shared by the seeds of
  one configuration) is written when training starts, the end status (success, or failure for a pruned or failed
  run) when it ends, and the final values of the headline metrics (scored on best.ckpt) at the last step. No
  experiment summary is written: TensorBoard then builds the HParams table from every run's session, so columns
  cover every run under `--logdir` (pretraining's `val/bpb`, CTA's `val/macro_f1`, GRPO's `eval/reward`), the
  hyperparameters that differ between runs come first, and the metric columns are the few tags of `final/`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from aegir.observe.aggregate import short_key
from aegir.rundir import replicate_key

FINAL_RUN = "final"  # the sub-run of tb/ that holds the HParams session and the final metric values
# Final metrics that become HParams metric columns (when the run has them), besides the run's objective.
HEADLINE_FINAL_METRICS = ("eval/reward", "val/bpb", "val/macro_f1", "val/loss", "test/macro_f1")
# Always-shown hyperparameters (when the config has them): who the run is and the knobs a reader asks about first.
IDENTITY_HPARAMS = ("name", "task.name", "model.name", "arm.name", "seed", "algo.name", "algo.lr",
                    "algo.group_size", "algo.kl_coef", "trainer.max_steps")
# Overrides that say where or how a run ran, not what it computes.
_LOCAL_OVERRIDES = ("paths.", "hydra.", "resume", "trainer.enable_progress_bar", "callbacks.progress_bar",
                    "logger.", "notes", "tags")


EVAL_BANDS = "eval curves (mean, 95% CI band)"  # the Custom Scalars category of every loop's evaluation metric


def band(metric: str) -> list[str]:
    """The three tags of a margin chart: the metric, then its `/lower` and `/upper` bounds."""
    return [metric, f"{metric}/lower", f"{metric}/upper"]


def band_bounds(metric: str, mean: float, half_width: float) -> dict[str, float]:
    """`<metric>/lower`, `/upper` = mean -/+ half_width; nothing when the width is not finite (one sample)."""
    if not math.isfinite(half_width):
        return {}
    return {f"{metric}/lower": mean - half_width, f"{metric}/upper": mean + half_width}


def add_band_charts(loggers: Sequence[Any], layout: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
    """Custom Scalars categories of margin (band) charts, {category: {chart title: band(metric)}}, in every
    TensorBoard logger. TensorBoard merges the layouts of all runs under `--logdir`, keeping one chart per title."""
    from lightning.pytorch.loggers import TensorBoardLogger

    charts = {category: {title: ["Margin", list(series)] for title, series in items.items()}
              for category, items in layout.items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(charts)


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars only, `/`-joined keys (as Lightning's logger does); lists and None become strings."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                flat.update(flat_hparams(value, f"{name}/"))
        else:
            flat[name] = _hparam_value(value)
    return flat


def _hparam_value(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()  # TensorBoard would treat a bool as a number
    if isinstance(value, (int, float, str)):
        return value
    return json.dumps(value, default=str)


def replicate_group(config: Mapping[str, Any], overrides: Sequence[str] = (),
                    swept: Mapping[str, Any] | None = None) -> str:
    """The HParams row of a run (its session group, the table's "Trial ID"), the same for every seed of one
    configuration: what sets the configuration apart, readable -- its name, then its swept parameters, or else its
    command-line overrides other than the seed and experiment (`grpo_toy group_size=8 kl_coef=0.02`) -- and then
    the configuration's hash, which keeps apart two configurations that read alike."""
    if swept:
        parts = [(str(k), v) for k, v in swept.items()]
    else:
        parts = []
        for text in overrides:
            key, sep, value = str(text).lstrip("+~").partition("=")
            if sep and key not in ("seed", "experiment") and not key.startswith(_LOCAL_OVERRIDES):
                parts.append((key, value))
    keys = [k for k, _ in parts]
    readable = [f"{short_key(k, keys)}={v}" for k, v in parts]
    return " ".join([str(config.get("name") or "run"), *readable, "#" + replicate_key(dict(config))[:8]])


def _select(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def key_hparams(config: Mapping[str, Any], overrides: Sequence[str] = (),
                swept: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The hyperparameters that matter, `/`-joined: identity (IDENTITY_HPARAMS), every swept parameter, and every
    command-line override (`+experiment=v42` as `experiment`), with the resolved config's value where it has one."""
    keys: list[str] = [k for k in IDENTITY_HPARAMS if _select(config, k) is not None]
    raw: dict[str, Any] = {}
    for text in overrides:
        key, sep, value = str(text).lstrip("+~").partition("=")
        if sep and not key.startswith(_LOCAL_OVERRIDES) and key not in keys:
            keys.append(key)
            raw[key] = value
    for key, value in (swept or {}).items():
        if key not in keys:
            keys.append(str(key))
        raw[str(key)] = value
    out: dict[str, Any] = {}
    for key in keys:
        value = _select(config, key)
        if value is None or isinstance(value, Mapping):
            value = raw.get(key)
        if value is None:
            continue
        out[key.replace(".", "/")] = _hparam_value(value)
    return out


def _plugin_summary(tag: str, field: str, message: Any) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = HParamsPluginData(version=0, **{field: message})
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams",
                                                                       content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


def start_session(tb_dir: Path, hparams: Mapping[str, Any], group_name: str) -> None:
    """The HParams session start, written when training starts (a killed run still has its row)."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo
    from torch.utils.tensorboard import SummaryWriter

    info = SessionStartInfo(group_name=group_name, start_time_secs=time.time())
    for key, value in hparams.items():
        if isinstance(value, str):
            info.hparams[key].string_value = value
        else:
            info.hparams[key].number_value = float(value)
    with SummaryWriter(log_dir=str(Path(tb_dir) / FINAL_RUN)) as writer:
        writer._get_file_writer().add_summary(_plugin_summary("_hparams_/session_start_info",
                                                              "session_start_info", info))


def end_session(tb_dir: Path, status: str, metrics: Mapping[str, float] | None = None, step: int = 0,
                objective: str | None = None) -> None:
    """The HParams session end (`finished` -> success; `pruned`, `failed` -> failure) and, for a finished run,
    the final values of the objective and the headline metrics at the last step, under their own names."""
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo
    from torch.utils.tensorboard import SummaryWriter

    names = [n for n in dict.fromkeys((*(objective and [objective] or []), *HEADLINE_FINAL_METRICS))]
    values = {n: float(metrics[n]) for n in names if metrics and isinstance(metrics.get(n), (int, float))
              and not isinstance(metrics.get(n), bool) and math.isfinite(float(metrics[n]))}
    code = Status.Value("STATUS_SUCCESS" if status == "finished" else "STATUS_FAILURE")
    with SummaryWriter(log_dir=str(Path(tb_dir) / FINAL_RUN)) as writer:
        for name, value in values.items():
            writer.add_scalar(name, value, step)
        writer._get_file_writer().add_summary(_plugin_summary(
            "_hparams_/session_end_info", "session_end_info",
            SessionEndInfo(status=code, end_time_secs=time.time())))


def samples_table(rows: Sequence[Mapping[str, Any]], limit: int = 16, width: int = 300) -> str:
    """Eval completions as a markdown table (TensorBoard's text tab renders it): prompt, completion, reward and each
    reward component, as TRL's completions table shows them. The first `limit` rows, texts cut at `width`."""
    components = sorted({k for row in rows for k in row if k.startswith("reward/")})

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.3f}"
        text = str(value).replace("\n", "⏎").replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    header = ["task", "prompt", "completion", "reward", *(c.split("/", 1)[1] for c in components)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in list(rows)[:limit]:
        lines.append("| " + " | ".join(cell(row.get(k)) for k in ("task", "prompt", "completion", "reward",
                                                                   *components)) + " |")
    more = len(rows) - limit
    return "\n".join(lines) + (f"\n\n({more} more in the run's samples/ directory)" if more > 0 else "")


def log_samples_table(loggers: Sequence[Any], rows: Sequence[Mapping[str, Any]], step: int,
                      tag: str = "eval/completions") -> None:
    """`samples_table` as a TensorBoard text entry at `step` in every TensorBoard logger."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(tag, samples_table(rows), global_step=step)

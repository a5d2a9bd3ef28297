"""TensorBoard HParams records: every run writes its flattened hyperparameters with its final metrics, so the
HParams view compares all runs of a sweep; replicates of one configuration share a `group_name` (the config hash
without the seed), so TensorBoard groups seeds and can show their mean / min / max.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from aegir.rundir import replicate_key


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars only, `/`-joined keys (as Lightning's logger does); lists and None become strings."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                flat.update(flat_hparams(value, f"{name}/"))
        elif isinstance(value, bool):
            flat[name] = str(value).lower()  # TensorBoard would treat a bool as a number
        elif isinstance(value, (int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def replicate_group(config: Mapping[str, Any]) -> str:
    """The same string for every seed of one configuration."""
    return "config-" + replicate_key(dict(config))


def write_hparams(tb_dir: Path, config: Mapping[str, Any], metrics: Mapping[str, float], group_name: str) -> None:
    """Write the HParams experiment / session-start (with group_name) / session-end summaries into `tb_dir`."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    finite = {f"final/{k}": float(v) for k, v in metrics.items()
              if isinstance(v, (int, float)) and math.isfinite(float(v))}
    experiment, session_start, session_end = hparams(flat_hparams(config), finite)
    plugin = session_start.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(plugin.content)
    data.session_start_info.group_name = group_name
    plugin.content = data.SerializeToString()
    with SummaryWriter(log_dir=str(tb_dir)) as writer:
        file_writer = writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        for name, value in finite.items():
            writer.add_scalar(name, value, 0)

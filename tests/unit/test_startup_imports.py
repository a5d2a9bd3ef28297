"""Start-up stays fast (issue 21, item 5): answering `run.py --help` or a config error must not import torch,
pandas or Lightning (together ~3 s on a 2-core machine); they load only once a run starts."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("torch", "pandas", "pandera", "lightning", "transformers")


def test_the_config_check_imports_no_heavy_library() -> None:
    code = ("import sys; import aegir.cli, aegir.config, aegir.config.validate, aegir.config.explain; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", f"imported at start-up: {loaded.stdout.strip()}"

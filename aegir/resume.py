"""`python -m aegir.resume RUN_DIR [key=value ...]`: continue a killed run from its last checkpoint.

Re-launches run.py with the run's original overrides (from RUN_DIR/.hydra/overrides.yaml), in the same directory,
with `resume=true`; the run continues from checkpoints/last.ckpt (or, for a multi-stage run, skips finished stages
and continues the interrupted one) and ends with the metrics an uninterrupted run would have had.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from aegir.exit_status import FINISHED, INPUT_ERROR

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"


def resume_command(run_dir: Path, extra: list[str]) -> list[str]:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        raise FileNotFoundError(f"{overrides_file}: not a run directory (no .hydra/overrides.yaml)")
    overrides = [o for o in (yaml.safe_load(overrides_file.read_text()) or []) if not o.startswith("resume=")]
    return [sys.executable, str(RUN_PY), *overrides, *extra, "resume=true", f"hydra.run.dir={run_dir}"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return FINISHED if args else INPUT_ERROR
    try:
        command = resume_command(Path(args[0]), args[1:])
    except FileNotFoundError as err:
        print(f"aegir.resume: {err}", file=sys.stderr)
        return INPUT_ERROR
    print("resuming:", " ".join(command), flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())

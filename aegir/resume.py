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

from aegir.config import validate
from aegir.errors import InputError
from aegir.cli import format_config_error
from aegir.exit_status import CONFIG_ERRORS, FINISHED, INPUT_ERROR
from aegir.run.checkpoints import check_resumable
from aegir.run.compose import compose_config

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"


def resume_command(run_dir: Path, extra: list[str]) -> list[str]:
    """The run.py command that resumes `run_dir`, after checking (without touching the directory) that the run
    started and that its config with `extra` is valid: Hydra rewrites `.hydra/` as soon as run.py starts, so a
    command that would be refused must be refused here."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        raise InputError(f"{overrides_file}: not a run directory (no .hydra/overrides.yaml)")
    if not (run_dir / "metadata.json").is_file():
        raise InputError(f"{run_dir}: the run never started (no metadata.json); nothing to resume, start it anew")
    overrides = [o for o in (yaml.safe_load(overrides_file.read_text()) or []) if not o.startswith("resume=")]
    validate(compose_config([*overrides, *extra, "resume=true"]))
    for checkpoint in sorted(run_dir.glob("**/checkpoints/last.ckpt")):
        check_resumable(checkpoint)
    return [sys.executable, str(RUN_PY), *overrides, *extra, "resume=true", f"hydra.run.dir={run_dir}"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return FINISHED if args else INPUT_ERROR
    try:
        command = resume_command(Path(args[0]), args[1:])
    except InputError as err:
        print(f"aegir.resume: {err}", file=sys.stderr)
        return INPUT_ERROR
    except CONFIG_ERRORS as err:  # Hydra's composition errors (unknown key, no such option)
        print(f"aegir.resume: {format_config_error(err)}", file=sys.stderr)
        return INPUT_ERROR
    print("resuming:", " ".join(command), flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m aegir.export RUN_DIR OUT [--merge] [--checkpoint best|last]`: a Hugging Face policy's trained weights as
a standard directory other tools load.

Without `--merge`, a LoRA run gives a PEFT adapter directory (`PeftModel.from_pretrained(base, OUT)`) and a fully
fine-tuned run the whole model (`AutoModelForCausalLM.from_pretrained(OUT)`); with `--merge`, the adapter is folded
into the base weights (`merge_and_unload`) and OUT is a plain model directory. The tokenizer (with its chat template)
is written alongside in every case. A multi-stage run exports its last stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from aegir.errors import InputError
from aegir.exit_status import FINISHED, exit_status


def stage_dir(run_dir: Path) -> Path:
    """The directory whose checkpoints are exported: the run itself, or the last stage of a multi-stage run."""
    from aegir.rundir import read_json

    metadata = run_dir / "metadata.json"
    if not metadata.is_file():
        raise InputError(f"{run_dir}: not a run directory (no metadata.json)")
    meta = read_json(metadata)
    if meta.get("kind") == "multi_stage":
        stages = meta.get("stages") or []
        if not stages:
            raise InputError(f"{metadata}: a multi-stage run without stages")
        return Path(stages[-1]["dir"])
    return run_dir


def load_trained_policy(run_dir: Path, checkpoint: str = "best") -> Any:
    """The run's HF policy with the weights of its `best` or `last` checkpoint."""
    from aegir.config import load_group
    from aegir.models.hf_policy import load_checkpoint_weights, load_hf_policy
    from aegir.rundir import read_json

    source = stage_dir(run_dir)
    config = read_json(source / "metadata.json").get("config") or {}
    model = config.get("model") or {}
    if model.get("arch") != "hf":
        raise InputError(f"{source}: model.arch is {model.get('arch')!r}; export writes Hugging Face policies "
                         "(model=hf and its presets) only")
    ckpt = source / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise InputError(f"{ckpt}: no such checkpoint")
    policy = load_hf_policy(load_group("model", "hf", **{**model, "create_tiny": False}))
    load_checkpoint_weights(policy, ckpt)
    return policy


def export(run_dir: Path, out: Path, *, merge: bool = False, checkpoint: str = "best") -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty directory")
    policy = load_trained_policy(run_dir, checkpoint)
    if merge and policy.lora:
        merged = policy.model.merge_and_unload()
        out.mkdir(parents=True, exist_ok=True)
        merged.save_pretrained(str(out))
        policy.tokenizer.save_pretrained(str(out))
    else:
        policy.save_pretrained(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegir.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory of a model=hf run")
    parser.add_argument("out", type=Path, help="the directory to write (new or empty)")
    parser.add_argument("--merge", action="store_true", help="fold the LoRA adapter into the base weights")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint (best)")
    args = parser.parse_args(argv)
    try:
        out = export(args.run_dir, args.out, merge=args.merge, checkpoint=args.checkpoint)
    except InputError as err:
        print(f"aegir.export: {err}", file=sys.stderr)
        return exit_status(err)
    kind = "merged model" if args.merge else "adapter" if (out / "adapter_config.json").is_file() else "model"
    print(f"exported {kind} to {out}")
    return FINISHED


if __name__ == "__main__":
    sys.exit(main())

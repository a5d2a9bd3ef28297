"""Benchmarks: `python -m aegir.bench <name> [options]`, one argparse subcommand per benchmark.

Each prints machine-readable `key=value` lines and compares against a baseline measured in the same process, so
ratios survive noisy machines (DESIGN.md §7).

rwkv7: training throughput (forward + backward, bytes/s) of the chunked WKV vs the per-byte recurrent loop on the
same model, their ratio, and recurrent-state generation throughput (`ByteLM.generate`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from aegir.models.lm import ByteLM
from aegir.models.rwkv7 import use_wkv_impl

# The lead's model configs: rwkv7_nano and rwkv7_tiny.
RWKV7_MODELS: dict[str, dict[str, int]] = {
    "nano": {"vocab_size": 512, "d_model": 128, "n_layers": 4, "head_size": 32},
    "tiny": {"vocab_size": 512, "d_model": 192, "n_layers": 8, "head_size": 64},
}


def time_best(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best wall time of `repeats` calls after `warmup` untimed ones (best-of filters out scheduler noise)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def emit(**fields: object) -> None:
    """One machine-readable line: key=value pairs separated by spaces; floats with 4 significant digits."""
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()), flush=True)


def _train_step(model: ByteLM, ids: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    logits, _ = model(ids[:, :-1])
    F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()


def bench_rwkv7(args: argparse.Namespace) -> None:
    """Chunked vs per-byte-loop training throughput, and generation throughput, for each requested model."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    emit(bench="rwkv7", torch=torch.__version__, device="cpu", threads=torch.get_num_threads())
    for name in args.models:
        config = RWKV7_MODELS[name]
        model = ByteLM(**config)
        common = {"bench": "rwkv7", "model": name, "params": model.num_parameters(), "T": args.T, "batch": args.batch}
        ids = torch.randint(0, config["vocab_size"], (args.batch, args.T + 1))
        n_bytes = args.batch * args.T

        model.train()
        throughput = {}
        for path, impl in (("chunked", "auto"), ("loop", "recurrent")):
            with use_wkv_impl(impl):
                seconds = time_best(lambda: _train_step(model, ids), args.repeats)
            throughput[path] = n_bytes / seconds
            emit(**common, path=path, train_s=seconds, train_bytes_per_s=throughput[path])
        emit(bench="rwkv7", model=name, ratio_chunked_vs_loop=throughput["chunked"] / throughput["loop"])

        model.eval()
        prompt = ids[:, : args.prompt_len]
        gen = torch.Generator().manual_seed(args.seed)
        seconds = time_best(
            lambda: model.generate(prompt, args.gen_tokens, temperature=1.0, generator=gen), args.repeats
        )
        emit(
            **common,
            path="generate",
            prompt_len=args.prompt_len,
            new_tokens=args.gen_tokens,
            gen_s=seconds,
            gen_bytes_per_s=args.batch * args.gen_tokens / seconds,
        )


def _rwkv7_models(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in RWKV7_MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {sorted(RWKV7_MODELS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aegir.bench", description=__doc__.splitlines()[0])
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")

    rwkv7 = benches.add_parser("rwkv7", help="RWKV-7 chunked vs loop training and generation throughput")
    rwkv7.add_argument("--T", type=int, default=512, help="training sequence length (bytes)")
    rwkv7.add_argument("--batch", type=int, default=2, help="sequences per batch")
    rwkv7.add_argument("--repeats", type=int, default=2, help="timed repeats per measurement (best is reported)")
    rwkv7.add_argument(
        "--models", type=_rwkv7_models, default="nano,tiny", help=f"comma-separated, from {sorted(RWKV7_MODELS)}"
    )
    rwkv7.add_argument("--prompt-len", type=int, default=16, help="generation prompt length")
    rwkv7.add_argument("--gen-tokens", type=int, default=64, help="new tokens per generation run")
    rwkv7.add_argument("--seed", type=int, default=0)
    rwkv7.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    rwkv7.set_defaults(func=bench_rwkv7)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

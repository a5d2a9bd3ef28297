"""Benchmarks: `python -m aegir.bench <name> [options]`, one argparse subcommand per benchmark.

Each prints machine-readable `key=value` lines and compares against a baseline measured in the same process, so
ratios survive noisy machines (DESIGN.md §7).

rwkv7: training throughput (forward + backward, bytes/s) of the chunked WKV vs the per-byte recurrent loop on the
same model, their ratio, and recurrent-state generation throughput (`ByteLM.generate`).

hnet: training (forward + backward, ratio loss included) and generation bytes/s of the H-Net nano and tiny
configs (conf/model/) next to an isotropic RWKV-7 of the rwkv7 config's width with the layer count that best matches
the H-Net's parameter count, on the same bytes; the ratios H-Net / RWKV-7; each H-Net stage's boundary fraction on
those bytes (it sets how much work the inner stages get).

logprob: the GRPO policy term (teacher-forced completion log-probs, forward + backward) of `completion_logprobs`,
which runs each distinct prompt once and continues its G rows from the shared state, against the one right-padded
pass over every prompt + completion it replaced (`one_pass_logprobs`, kept here as the baseline), on V4.2-shaped
batches: long prompts of unequal length, short completions.

grpo: one GRPO step of the nano policy split by phase (generate / score / logprob / update, the functions the
GRPO loop runs) and generated tokens/s, for each group size and completion length. EOS is excluded from the
sampling vocabulary so every completion has exactly the requested length.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from aegir.models.lm import ByteLM
from aegir.models.rwkv7 import use_wkv_impl
from aegir.rl.rollout import RolloutBatch

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


def _train_step(model: torch.nn.Module, ids: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    logits, _ = model(ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    aux = getattr(model, "last_aux", None)  # HNetLM: the ratio loss is part of every training step
    (loss if aux is None else loss + aux.loss).backward()


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


# H-Net config name -> the rwkv7 config whose width and head size its isotropic baseline uses.
HNET_BASELINES: dict[str, str] = {"nano": "nano", "tiny": "tiny"}


def matched_rwkv7(n_params: int, vocab_size: int, d_model: int, head_size: int) -> ByteLM:
    """The isotropic ByteLM of the given width whose layer count brings its parameter count closest to n_params."""
    with torch.device("meta"):  # shapes only
        one = ByteLM(vocab_size, d_model, 1, head_size).num_parameters()
        per_layer = ByteLM(vocab_size, d_model, 2, head_size).num_parameters() - one
    n_layers = max(1, round((n_params - (one - per_layer)) / per_layer))
    return ByteLM(vocab_size, d_model, n_layers, head_size)


def bench_text(n_bytes: int, seed: int) -> torch.Tensor:
    """Bytes of the synthetic pretraining corpus (a few documents, generated in-process), cycled to n_bytes. The
    H-Net's cost depends on where its routers put boundaries, so it is measured on text, not on uniform noise."""
    from aegir.tasks.pretrain.corpus import document_text, generate_documents

    data = "\n".join(document_text(doc) for doc in generate_documents(seed, 8)).encode("utf-8")
    reps = -(-n_bytes // len(data))
    return torch.tensor(list((data * reps)[:n_bytes]), dtype=torch.long)


def bench_hnet(args: argparse.Namespace) -> None:
    """H-Net vs a parameter-matched isotropic RWKV-7: training and generation bytes/s, in this process."""
    from aegir.main import compose_config
    from aegir.models.build import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    emit(bench="hnet", torch=torch.__version__, device="cpu", threads=torch.get_num_threads())
    text = bench_text(args.batch * (args.T + 1), args.seed)
    ids = text.view(args.batch, args.T + 1)
    n_bytes = args.batch * args.T
    prompt = ids[:, : args.prompt_len]
    for name in args.models:
        cfg = compose_config([f"model={name}"]).model
        hnet = build_model(cfg)
        base = RWKV7_MODELS[HNET_BASELINES[name]]
        iso = matched_rwkv7(hnet.num_parameters(), int(cfg.vocab_size), base["d_model"], base["head_size"])
        results: dict[str, dict[str, float]] = {}
        for label, model in (("hnet", hnet), ("rwkv7", iso)):
            common = {"bench": "hnet", "pair": name, "arch": label, "params": model.num_parameters(),
                      "T": args.T, "batch": args.batch}
            model.train()
            train_s = time_best(lambda: _train_step(model, ids), args.repeats)
            extra: dict[str, object] = {}
            if label == "hnet":
                extra = {f"boundary_frac_stage{i}": s.boundary_frac for i, s in enumerate(model.last_aux.stages)}
            else:
                extra = {"n_layers": len(model.body.blocks), "d_model": base["d_model"]}
            emit(**common, path="train", train_s=train_s, train_bytes_per_s=n_bytes / train_s, **extra)
            model.eval()
            gen = torch.Generator().manual_seed(args.seed)
            gen_s = time_best(lambda: model.generate(prompt, args.gen_tokens, temperature=1.0, generator=gen),
                              args.repeats)
            emit(**common, path="generate", prompt_len=args.prompt_len, new_tokens=args.gen_tokens, gen_s=gen_s,
                 gen_bytes_per_s=args.batch * args.gen_tokens / gen_s)
            results[label] = {"train": n_bytes / train_s, "gen": args.batch * args.gen_tokens / gen_s}
        emit(bench="hnet", pair=name, ratio_train_hnet_vs_rwkv7=results["hnet"]["train"] / results["rwkv7"]["train"],
             ratio_gen_hnet_vs_rwkv7=results["hnet"]["gen"] / results["rwkv7"]["gen"])


def bench_grpo(args: argparse.Namespace) -> None:
    """Phase timings of a GRPO step: rollout, reward scoring, reference/old log-probs, policy update."""
    from aegir.rl.advantages import compute_advantages
    from aegir.rl.losses import policy_loss
    from aegir.rl.rewards import RewardComposer
    from aegir.rl.rollout import allowed_mask, completion_logprobs, sample_groups
    from aegir.tasks.toy import generate_toy_records
    from aegir.tokenizer import ByteTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    emit(bench="grpo", torch=torch.__version__, device="cpu", threads=torch.get_num_threads())
    tokenizer = ByteTokenizer()
    model = ByteLM(**RWKV7_MODELS["nano"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    allowed = allowed_mask(RWKV7_MODELS["nano"]["vocab_size"], list(range(48, 58)))  # digits, no EOS
    records = generate_toy_records(args.seed, args.prompts, max_operand=99, ops="+")
    prompts = [tokenizer.encode(r["prompt"]) for r in records]
    composer = RewardComposer({"components": {"toy_exact": {"weight": 1.0}, "toy_partial": {"weight": 0.5}}})
    for group in args.group_sizes:
        for length in args.lengths:
            timings = {"generate": 0.0, "score": 0.0, "logprob": 0.0, "update": 0.0}
            for repeat in range(args.repeats + 1):  # the first step warms up and is not counted
                phase: dict[str, float] = {}
                start = time.perf_counter()
                model.eval()
                batch = sample_groups(model, prompts, group, length, allowed=allowed,
                                      generator=torch.Generator().manual_seed(repeat))
                phase["generate"] = time.perf_counter() - start
                start = time.perf_counter()
                texts = [tokenizer.decode(row.tolist()) for row in batch.completion_ids]
                scored = composer.score([r for r in records for _ in range(group)], texts)
                advantages = compute_advantages("grpo", scored.total.view(-1, group)).reshape(-1)
                phase["score"] = time.perf_counter() - start
                start = time.perf_counter()
                with torch.no_grad():
                    old_logp, _ = completion_logprobs(model, batch, temperature=1.0, allowed=allowed)
                phase["logprob"] = time.perf_counter() - start
                start = time.perf_counter()
                model.train()
                optimizer.zero_grad(set_to_none=True)
                for rows in torch.arange(batch.size).split(args.micro_batch):
                    part = batch.select(rows)
                    logp, _ = completion_logprobs(model, part, temperature=1.0, allowed=allowed)
                    loss, _ = policy_loss(logp, old_logp[rows], advantages[rows], part.mask, loss_type="dapo",
                                          global_token_count=batch.mask.sum())
                    loss.backward()
                optimizer.step()
                phase["update"] = time.perf_counter() - start
                if repeat:
                    for key, value in phase.items():
                        timings[key] += value / args.repeats
            total = sum(timings.values())
            tokens = args.prompts * group * length
            emit(bench="grpo", model="nano", prompts=args.prompts, group_size=group, completion_len=length,
                 **{f"time_{k}_s": v for k, v in timings.items()}, step_s=total, tokens_per_s=tokens / total,
                 generate_tokens_per_s=tokens / timings["generate"])
    composer.close()


def one_pass_logprobs(model: torch.nn.Module, batch: RolloutBatch, temperature: float,
                      allowed: torch.Tensor) -> torch.Tensor:
    """Baseline scorer: every row as one right-padded sequence prompt + completion, one forward over the longest
    prompt + completion (the implementation `completion_logprobs` replaced; also the oracle of its parity tests)."""
    from aegir.rl.rollout import score_completion_logits
    from aegir.tokenizer import PAD_ID

    n, length = batch.completion_ids.shape
    prompt_lengths = torch.tensor([p.numel() for p in batch.prompt_ids])
    full = torch.full((n, int(prompt_lengths.max()) + length), PAD_ID, dtype=torch.long)
    for i, prompt in enumerate(batch.prompt_ids):
        full[i, : prompt.numel()] = prompt
        full[i, prompt.numel(): prompt.numel() + length] = batch.completion_ids[i]
    logits, _ = model(full[:, :-1])
    # completion token j of row i sits at position P_i + j and is predicted by the logits at P_i + j - 1
    positions = prompt_lengths[:, None] + torch.arange(length)[None, :] - 1
    picked = logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))
    return score_completion_logits(picked, batch, temperature=temperature, allowed=allowed)[0]


def bench_logprob(args: argparse.Namespace) -> None:
    """Forward + backward of the policy term: shared-prompt scoring vs the one-pass padded baseline."""
    from aegir.rl.rollout import allowed_mask, completion_logprobs
    from aegir.tokenizer import EOS_ID, PAD_ID

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    emit(bench="logprob", torch=torch.__version__, device="cpu", threads=torch.get_num_threads())
    model = ByteLM(**RWKV7_MODELS[args.model]).train()
    allowed = allowed_mask(RWKV7_MODELS[args.model]["vocab_size"], None)
    gen = torch.Generator().manual_seed(args.seed)
    prompts = [torch.randint(0, 256, (n,), generator=gen) for n in args.prompt_lens]
    n = len(prompts) * args.group_size
    lengths = torch.randint(args.completion_len // 4, args.completion_len + 1, (n,), generator=gen)
    completion = torch.randint(0, 256, (n, args.completion_len), generator=gen)
    mask = (torch.arange(args.completion_len)[None, :] < lengths[:, None]).float()
    completion = completion.masked_fill(mask == 0, PAD_ID)
    completion[torch.arange(n), lengths - 1] = EOS_ID
    batch = RolloutBatch([p for p in prompts for _ in range(args.group_size)], completion, mask, lengths,
                         torch.zeros(n, dtype=torch.bool), torch.zeros(n, args.completion_len))
    scorers = {"shared_prompt": lambda: completion_logprobs(model, batch, temperature=1.0, allowed=allowed)[0],
               "one_pass_padded": lambda: one_pass_logprobs(model, batch, 1.0, allowed)}
    seconds = {}
    for name, scorer in scorers.items():
        def step() -> None:
            model.zero_grad(set_to_none=True)
            scorer().sum().backward()

        seconds[name] = time_best(step, args.repeats)
        emit(bench="logprob", scorer=name, model=args.model, rows=n, prompt_lens=",".join(map(str, args.prompt_lens)),
             completion_len=args.completion_len, fwd_bwd_s=seconds[name],
             completion_tokens_per_s=float(mask.sum()) / seconds[name])
    emit(bench="logprob", speedup_shared_vs_one_pass=seconds["one_pass_padded"] / seconds["shared_prompt"])


def _rwkv7_models(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in RWKV7_MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {sorted(RWKV7_MODELS)}")
    return names


def _hnet_models(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in HNET_BASELINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {sorted(HNET_BASELINES)}")
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

    hnet = benches.add_parser("hnet", help="H-Net vs parameter-matched RWKV-7: training and generation bytes/s")
    hnet.add_argument("--T", type=int, default=512, help="training sequence length (bytes)")
    hnet.add_argument("--batch", type=int, default=2, help="sequences per batch")
    hnet.add_argument("--repeats", type=int, default=2, help="timed repeats per measurement (best is reported)")
    hnet.add_argument("--models", type=_hnet_models, default="nano,tiny",
                      help=f"comma-separated H-Net configs, from {sorted(HNET_BASELINES)}")
    hnet.add_argument("--prompt-len", type=int, default=16, help="generation prompt length")
    hnet.add_argument("--gen-tokens", type=int, default=64, help="new tokens per generation run")
    hnet.add_argument("--seed", type=int, default=0)
    hnet.add_argument("--threads", type=int, default=1,
                      help="torch intra-op threads (0: torch's default); 1 keeps small-model timings stable when "
                           "other processes share the cores")
    hnet.set_defaults(func=bench_hnet)

    logprob = benches.add_parser("logprob", help="GRPO policy term: shared-prompt scoring vs one padded pass")
    logprob.add_argument("--model", choices=sorted(RWKV7_MODELS), default="nano")
    logprob.add_argument("--prompt-lens", type=lambda t: [int(x) for x in t.split(",")], default="420,650,800,1500",
                         help="comma-separated prompt lengths (bytes), one group each (V4.2 prompts: mean ~700)")
    logprob.add_argument("--group-size", type=int, default=8, help="rows per prompt (G)")
    logprob.add_argument("--completion-len", type=int, default=256, help="longest completion (tokens)")
    logprob.add_argument("--repeats", type=int, default=2, help="timed repeats (best is reported)")
    logprob.add_argument("--seed", type=int, default=0)
    logprob.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    logprob.set_defaults(func=bench_logprob)

    grpo = benches.add_parser("grpo", help="GRPO step time by phase and tokens/s (nano policy)")
    grpo.add_argument("--group-sizes", type=lambda t: [int(x) for x in t.split(",")], default="8,16",
                      help="comma-separated group sizes G")
    grpo.add_argument("--lengths", type=lambda t: [int(x) for x in t.split(",")], default="64,256",
                      help="comma-separated completion lengths (tokens)")
    grpo.add_argument("--prompts", type=int, default=4, help="prompts per step (completions = prompts x G)")
    grpo.add_argument("--micro-batch", type=int, default=32, help="completions per forward/backward in the update")
    grpo.add_argument("--repeats", type=int, default=1, help="timed steps per setting, after one warm-up step")
    grpo.add_argument("--seed", type=int, default=0)
    grpo.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    grpo.set_defaults(func=bench_grpo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

"""Benchmarks: `python -m aegir.bench <name> [options]`, one argparse subcommand per benchmark.

Each prints machine-readable `key=value` lines and compares against a baseline measured in the same process, so
ratios survive noisy machines: the two sides of a ratio run alternately (A B A B ..., after a warm-up round), and
every timing is reported as the median of the repeats (`*_s`, ratios use it), their minimum (`*_min_s`) and their
relative spread ((max - min) / median, `*_spread`): a figure whose spread is large is not a figure.

rwkv7: training throughput (forward + backward, bytes/s) of the chunked WKV vs the per-byte recurrent loop on the
same model, their ratio, and recurrent-state generation throughput (`ByteLM.generate`) at each of --gen-batches;
with --compile-step also through `model.compile_step` (the torch.compile'd decoding step) beside the eager one. On
CUDA the training rows add model TFLOP/s and MFU against the GPU's fp32 peak.

hnet: training (forward + backward, ratio loss included) and generation bytes/s of the H-Net presets hnet_nano and
hnet_tiny (conf/model/) next to an isotropic RWKV-7 of the rwkv7 config's width with the layer count that best matches
the H-Net's parameter count, on the same bytes; the ratios H-Net / RWKV-7; each H-Net stage's boundary fraction on
those bytes (it sets how much work the inner stages get).

logprob: the GRPO policy term (teacher-forced completion log-probs, forward + backward) of `completion_logprobs`,
which runs each distinct prompt once and continues its G rows from the shared state, against the one right-padded
pass over every prompt + completion it replaced (`one_pass_logprobs`, kept here as the baseline), on V4.2-shaped
batches: long prompts of unequal length, short completions.

grpo: one GRPO step of the nano policy split by phase (generate / score / logprob / update, the functions the
GRPO loop runs) and generated tokens/s, for each group size and completion length. Like the loop, the old-policy
log-prob pass runs only when --num-iterations > 1 (at 1 the old log-probs are the new ones, detached). EOS is
excluded from the sampling vocabulary so every completion has exactly the requested length.

grpo_hf: one GRPO configuration (the tiny local Qwen3 of aegir.models.hf_tiny, LoRA, fp32, PT-BR commerce prompts,
the same reward function) through Aegir's loop (GRPOModule under Lightning) and through TRL's GRPOTrainer, one
after the other in this process: per-phase times, completion tokens/s, and TRL time / Aegir time. Needs the
`compare` extra (`pip install -e ".[compare]"`); without it, one line saying so and exit code 2.

observe: the observatory's overhead (docs/observatory.md): each experiment (`default` = `make run`, `grpo_toy` =
`+experiment=grpo_toy`) runs as `python run.py` twice, without and with `callbacks=observatory`, alternating; printed
are the wall and CPU times (user + system of the run's process, much less sensitive to other load on the machine
than wall time), their ratios (the budget is 1.10) and the share of the observed run spent in snapshots (the sums of
its `observe/cpu_seconds` and `observe/seconds`). With --in-process: one process, one thread, the CPU time of a few
training steps and one validation of the run's loop against a snapshot with and without pictures, extrapolated to
the run's step count and cadence (startup, checkpoints and logging left out of the denominator: an upper bound).

overhead, startup: the framework's own cost against a bare PyTorch loop, and `run.py`'s start-up
(aegir/bench_overhead.py).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aegir.bench_stats import emit, measure, spread, timing_fields
from aegir.exit_status import INPUT_ERROR
from aegir.models.lm import ByteLM
from aegir.models.rwkv7 import use_wkv_impl
from aegir.rl.rollout import RolloutBatch

# The lead's model configs: rwkv7_nano and rwkv7_tiny.
RWKV7_MODELS: dict[str, dict[str, int]] = {
    "nano": {"vocab_size": 512, "d_model": 128, "n_layers": 4, "head_size": 32},
    "tiny": {"vocab_size": 512, "d_model": 192, "n_layers": 8, "head_size": 64},
}


def _train_step(model: torch.nn.Module, ids: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    logits, _ = model(ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    aux = getattr(model, "last_aux", None)  # HNetLM: the ratio loss is part of every training step
    (loss if aux is None else loss + aux.loss).backward()


def bench_rwkv7(args: argparse.Namespace) -> None:
    """Chunked vs per-byte-loop training throughput (interleaved), and generation throughput at each batch size
    (eager, and with --compile-step the torch.compile'd step beside it, interleaved)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    emit(bench="rwkv7", torch=torch.__version__, device=device.type, threads=torch.get_num_threads())
    for name in args.models:
        config = RWKV7_MODELS[name]
        model = ByteLM(**config).to(device)
        common = {"bench": "rwkv7", "model": name, "params": model.num_parameters(), "T": args.T, "batch": args.batch}
        ids = torch.randint(0, config["vocab_size"], (args.batch, args.T + 1), device=device)
        n_bytes = args.batch * args.T

        model.train()
        paths = {"chunked": "auto", "loop": "recurrent"}

        def train(impl: str) -> Callable[[], None]:
            def run() -> None:
                with use_wkv_impl(impl):
                    _train_step(model, ids)
                _synchronize(device)
            return run

        stats = measure({path: train(impl) for path, impl in paths.items()}, args.repeats)
        for path in paths:
            throughput = n_bytes / stats[path]["median"]
            emit(**common, path=path, **timing_fields("train", stats[path]), train_bytes_per_s=throughput,
                 **model_flops_utilisation(model, throughput, device))
        emit(bench="rwkv7", model=name, ratio_chunked_vs_loop=stats["loop"]["median"] / stats["chunked"]["median"],
             ratio_chunked_vs_loop_min=stats["loop"]["min"] / stats["chunked"]["min"])

        model.eval()
        compiled = ByteLM(**config, compile_step=True).to(device).eval() if args.compile_step else None
        if compiled is not None:
            compiled.load_state_dict(model.state_dict())
        for batch in args.gen_batches:
            prompt = torch.randint(0, 256, (batch, args.prompt_len), device=device)
            sides = {"eager": model} if compiled is None else {"eager": model, "compiled": compiled}

            def generate(lm: ByteLM) -> Callable[[], None]:
                def run() -> None:
                    lm.generate(prompt, args.gen_tokens, temperature=1.0,
                                generator=torch.Generator(device=device).manual_seed(args.seed))
                    _synchronize(device)
                return run

            stats = measure({step: generate(lm) for step, lm in sides.items()}, args.repeats)
            for step in sides:
                emit(bench="rwkv7", model=name, path="generate", step=step, gen_batch=batch,
                     prompt_len=args.prompt_len, new_tokens=args.gen_tokens, **timing_fields("gen", stats[step]),
                     gen_bytes_per_s=batch * args.gen_tokens / stats[step]["median"])
            if compiled is not None:
                emit(bench="rwkv7", model=name, gen_batch=batch,
                     ratio_gen_compiled_vs_eager=stats["eager"]["median"] / stats["compiled"]["median"])


def _synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so a wall time covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Dense fp32 peak of the GPUs users train on (vendor datasheets), for MFU: the benchmark trains in fp32, so the fp32
# peak, not the tensor cores' bf16 one, is the honest denominator.
GPU_PEAK_FP32_TFLOPS: dict[str, float] = {"H100": 67.0, "H200": 67.0, "A100": 19.5, "RTX 4090": 82.6,
                                          "RTX 3090": 35.6, "L4": 30.3, "A10": 31.2}


def training_flops_per_byte(model: ByteLM) -> float:
    """Forward + backward FLOPs per trained byte of a ByteLM: 6 x the parameters used as matmul weights (each is a
    multiply-add per byte forward, twice that backward), the tied embedding counted once as the head. The WKV
    recurrence is O(head_size) per channel and left out, as MFU conventions do for attention at short context."""
    return 6.0 * model.num_parameters()


def model_flops_utilisation(model: ByteLM, bytes_per_s: float, device: torch.device) -> dict[str, float]:
    """{"mfu": achieved / peak} on a GPU whose fp32 peak is known; {} on CPU (no meaningful datasheet peak)."""
    if device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    peak = next((tflops for key, tflops in GPU_PEAK_FP32_TFLOPS.items() if key in name), None)
    achieved = training_flops_per_byte(model) * bytes_per_s
    fields = {"model_tflops": achieved / 1e12}
    return fields if peak is None else {**fields, "mfu": achieved / (peak * 1e12)}


# H-Net config name -> the rwkv7 config whose width and head size its isotropic baseline uses.
HNET_BASELINES: dict[str, str] = {"hnet_nano": "nano", "hnet_tiny": "tiny"}


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
    from aegir.config import section_object
    from aegir.models.build import build_model
    from aegir.run.compose import compose_config

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    emit(bench="hnet", torch=torch.__version__, device="cpu", threads=torch.get_num_threads())
    text = bench_text(args.batch * (args.T + 1), args.seed)
    ids = text.view(args.batch, args.T + 1)
    n_bytes = args.batch * args.T
    prompt = ids[:, : args.prompt_len]
    for name in args.models:
        cfg = section_object("model", compose_config([f"model={name}"]).model)
        hnet = build_model(cfg)
        base = RWKV7_MODELS[HNET_BASELINES[name]]
        iso = matched_rwkv7(hnet.num_parameters(), int(cfg.vocab_size), base["d_model"], base["head_size"])
        hnet.compile_step = iso.compile_step = args.compile_step
        models = {"hnet": hnet, "rwkv7": iso}
        for model in models.values():
            model.train()
        train = measure({label: functools.partial(_train_step, model, ids) for label, model in models.items()},
                        args.repeats)
        boundary_fracs = {f"boundary_frac_stage{i}": s.boundary_frac for i, s in enumerate(hnet.last_aux.stages)}
        for model in models.values():
            model.eval()
        gen = measure({label: functools.partial(model.generate, prompt, args.gen_tokens, temperature=1.0,
                                                generator=torch.Generator().manual_seed(args.seed))
                       for label, model in models.items()}, args.repeats)
        for label, model in models.items():
            common = {"bench": "hnet", "pair": name, "arch": label, "params": model.num_parameters(),
                      "T": args.T, "batch": args.batch}
            extra = boundary_fracs if label == "hnet" else {"n_layers": len(model.body.blocks),
                                                            "d_model": base["d_model"]}
            emit(**common, path="train", **timing_fields("train", train[label]),
                 train_bytes_per_s=n_bytes / train[label]["median"], **extra)
            emit(**common, path="generate", prompt_len=args.prompt_len, new_tokens=args.gen_tokens,
                 **timing_fields("gen", gen[label]),
                 gen_bytes_per_s=args.batch * args.gen_tokens / gen[label]["median"])
        emit(bench="hnet", pair=name, compile_step=args.compile_step,
             ratio_train_hnet_vs_rwkv7=train["rwkv7"]["median"] / train["hnet"]["median"],
             ratio_gen_hnet_vs_rwkv7=gen["rwkv7"]["median"] / gen["hnet"]["median"])


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
    model = ByteLM(**RWKV7_MODELS["nano"], compile_step=args.compile_step)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    allowed = allowed_mask(RWKV7_MODELS["nano"]["vocab_size"], list(range(48, 58)))  # digits, no EOS
    records = generate_toy_records(args.seed, args.prompts, max_operand=99, ops="+")
    prompts = [tokenizer.encode(r["prompt"]) for r in records]
    composer = RewardComposer({"components": {"toy_exact": {"weight": 1.0}, "toy_partial": {"weight": 0.5}}})
    for group in args.group_sizes:
        for length in args.lengths:
            phases: dict[str, list[float]] = {"generate": [], "score": [], "logprob": [], "update": []}
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
                old_logp = None
                if args.num_iterations > 1:  # like the loop: the old policy's pass only when it differs from the new
                    with torch.no_grad():
                        old_logp, _ = completion_logprobs(model, batch, temperature=1.0, allowed=allowed)
                phase["logprob"] = time.perf_counter() - start
                start = time.perf_counter()
                model.train()
                for _ in range(args.num_iterations):
                    optimizer.zero_grad(set_to_none=True)
                    for rows in torch.arange(batch.size).split(args.micro_batch):
                        part = batch.select(rows)
                        logp, _ = completion_logprobs(model, part, temperature=1.0, allowed=allowed)
                        old = logp.detach() if old_logp is None else old_logp[rows]
                        loss, _ = policy_loss(logp, old, advantages[rows], part.mask, loss_type="dapo",
                                              global_token_count=batch.mask.sum())
                        loss.backward()
                    optimizer.step()
                phase["update"] = time.perf_counter() - start
                if repeat:
                    for key, value in phase.items():
                        phases[key].append(value)
            steps = [sum(parts) for parts in zip(*phases.values())]
            step, generate = spread(steps), spread(phases["generate"])
            tokens = args.prompts * group * length
            emit(bench="grpo", model="nano", prompts=args.prompts, group_size=group, completion_len=length,
                 num_iterations=args.num_iterations, compile_step=args.compile_step,
                 **{f"time_{k}_s": spread(v)["median"] for k, v in phases.items()}, **timing_fields("step", step),
                 tokens_per_s=tokens / step["median"], generate_tokens_per_s=tokens / generate["median"])
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
    def fwd_bwd(scorer: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            model.zero_grad(set_to_none=True)
            scorer().sum().backward()
        return step

    stats = measure({name: fwd_bwd(scorer) for name, scorer in scorers.items()}, args.repeats)
    for name in scorers:
        emit(bench="logprob", scorer=name, model=args.model, rows=n, prompt_lens=",".join(map(str, args.prompt_lens)),
             completion_len=args.completion_len, **timing_fields("fwd_bwd", stats[name]),
             completion_tokens_per_s=float(mask.sum()) / stats[name]["median"])
    emit(bench="logprob",
         ratio_shared_vs_one_pass=stats["one_pass_padded"]["median"] / stats["shared_prompt"]["median"])


# ---------------------------------------------------------------------------------------------------------- grpo_hf
COMPARE_HINT = 'grpo_hf needs TRL: pip install -e ".[compare]" (trl, datasets, accelerate)'

GRPO_HF_PHASES: dict[str, str] = {
    "generate": "rollout: prompts through the chat template, sampling with the KV cache, decoding. Aegir: "
                "GRPOModule._rollout (HFPolicy.sample). TRL: GRPOTrainer._generate (model.generate)",
    "sampler": "of which the sampling loop itself. Aegir: HFPolicy.sample. TRL: the PEFT model's generate()",
    "reward": "the reward function on the decoded completions. Aegir: GRPOModule._score (RewardComposer, "
              "in-process). TRL: GRPOTrainer._calculate_rewards",
    "logprob": "no-grad log-prob passes before the update (old policy when num_iterations > 1, reference when "
               "beta > 0): 0 in both with this bench's settings, each framework skips them. Aegir: "
               "HFPolicy.completion_logprobs / reference_logprobs under no_grad. TRL: "
               "_get_per_token_logps_and_entropies under no_grad",
    "update": "forward with grad + loss + backward + grad-norm clip + AdamW step + LR scheduler + zero_grad. "
              "Aegir: GRPOModule._update. TRL: the step time less _prepare_inputs (training_step's forward/"
              "backward, then the Trainer's clip, optimizer.step, scheduler.step, zero_grad)",
    "fwd": "of which the scoring forward with grad (log-probs + entropy of every completion token). Aegir: "
           "HFPolicy.completion_logprobs (LM head on the completion positions only). TRL: "
           "_get_per_token_logps_and_entropies (fused chunked LM head; on CPU every prompt + completion position "
           "goes through it)",
    "other": "the step's remainder: advantages, padding and masks, metrics. Aegir: also its per-step log_dict. "
             "TRL: the rest of _generate_and_score_completions",
    "step": "one optimizer step, wall time. Aegir: Lightning's on_train_batch_start -> on_train_batch_end around "
            "GRPOModule.training_step. TRL: the Trainer's on_step_begin -> on_step_end (training_step, clip, "
            "optimizer, scheduler). Both exclude fetching the prompts and TRL's logging after on_step_end",
}


def _bench_reward(record: Mapping[str, Any], completion: str) -> float:
    """The benchmark's reward, for both frameworks: how close the completion is to 200 characters, in [0, 1]
    (deterministic and microseconds cheap, so the reward phase measures each framework's plumbing)."""
    return max(0.0, 1.0 - abs(len(completion) - 200) / 200)


# Registered under a name of its module's, so `python -m aegir.bench` (module __main__) and an import of aegir.bench
# in the same process never register two functions under one name.
BENCH_REWARD_NAME = "grpo_hf_length" if __name__ == "aegir.bench" else f"grpo_hf_length_{__name__.strip('_')}"


def _trl_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """`_bench_reward` with TRL's reward signature (conversational completions are lists of messages)."""
    return [_bench_reward({}, c[-1]["content"] if isinstance(c, list) else str(c)) for c in completions]


class _PhaseClock:
    """Per-step phase times, accumulated by wrappers around the frameworks' own methods (instance attributes)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self._started = 0.0

    def add(self, key: str, value: float) -> None:
        self.current[key] = self.current.get(key, 0.0) + value

    def wrap(self, owner: Any, name: str, key: Callable[[], str] | str,
             count: Callable[[Any], float] | None = None) -> None:
        """Replace `owner.name` with a timed call of the original; `key()` picks the phase at call time and
        `count(result)` adds completion tokens."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            phase = key() if callable(key) else key
            start = time.perf_counter()
            result = original(*args, **kwargs)
            self.add(phase, time.perf_counter() - start)
            if count is not None:
                self.add("tokens", float(count(result)))
            return result

        setattr(owner, name, timed)

    def start_step(self) -> None:
        self.current = {"threads": float(torch.get_num_threads())}
        self._started = time.perf_counter()

    def end_step(self) -> None:
        self.current["step"] = time.perf_counter() - self._started
        self.steps.append(self.current)
        self.current = {}


def _logprob_phase() -> str:
    return "fwd" if torch.is_grad_enabled() else "logprob"


def grpo_hf_records(task: str, prompts: int, seed: int) -> list[dict[str, Any]]:
    """`prompts` commerce records of one task (PT-BR chat prompts), built in-process from a small world."""
    from aegir.tasks.commerce.pairs import build_pairs
    from aegir.tasks.commerce.world import build_world

    with tempfile.TemporaryDirectory(prefix="aegir-bench-world-") as tmp:
        world = build_world(seed, Path(tmp) / "world.sqlite", scale="small")
        return build_pairs(seed, world, {task: prompts})[:prompts]


def run_aegir_grpo(model_dir: Path, records: Sequence[Mapping[str, Any]], args: argparse.Namespace
                   ) -> list[dict[str, float]]:
    """`args.warmup + args.steps` GRPO steps of Aegir's loop (GRPOModule under a Lightning Trainer, as `aegir.main`
    runs it) on `records` every step; per step: the phase times (s), completion tokens and threads."""
    import logging
    import warnings

    import lightning as L

    from aegir.config import load_group
    from aegir.loops.grpo import GRPOModule
    from aegir.loops.record_batches import record_loader
    from aegir.models.hf_policy import load_hf_policy
    from aegir.rl.rewards import RewardSpec, register_reward

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    register_reward(BENCH_REWARD_NAME)(_bench_reward)
    group, n_steps = args.group_size, args.warmup + args.steps
    model_cfg = load_group("model", "hf", name_or_path=str(model_dir), dtype="float32", gradient_checkpointing=False,
                           lora={"enabled": True, "r": args.lora_r, "alpha": args.lora_alpha, "dropout": 0.0,
                                 "target_modules": "all-linear"})
    policy = load_hf_policy(model_cfg)
    algo = load_group("algo", "grpo", group_size=group, prompts_per_step=len(records),
                      micro_batch_size=group * len(records), num_iterations=1, temperature=1.0, top_p=1.0,
                      max_completion_length=args.max_completion_length, loss_type="dapo", kl_coef=0.0,
                      entropy_coef=0.0, lr=args.lr, warmup_steps=0, grad_clip=1.0, mask_truncated_completions=False)
    clock = _PhaseClock()

    class StepClock(L.Callback):
        def on_train_batch_start(self, *_: Any) -> None:
            clock.start_step()

        def on_train_batch_end(self, *_: Any) -> None:
            clock.end_step()

    with tempfile.TemporaryDirectory(prefix="aegir-bench-grpo-") as tmp:
        module = GRPOModule(policy, records, list(records)[:1], RewardSpec.from_config(
            {"components": {BENCH_REWARD_NAME: {"weight": 1.0}}}), algo,
            seed=args.seed, total_steps=n_steps, samples_dir=Path(tmp) / "samples")
        # The same prompts every step (the loop's own loader draws with replacement)
        module.train_dataloader = lambda: record_loader([list(records)] * n_steps)  # type: ignore[method-assign]
        clock.wrap(module, "_rollout", "generate")
        clock.wrap(module, "_score", "reward")
        clock.wrap(module, "_update", "update")
        clock.wrap(policy, "sample", "sampler", count=lambda batch: float(batch.lengths.sum()))
        clock.wrap(policy, "completion_logprobs", _logprob_phase)
        clock.wrap(policy, "reference_logprobs", "logprob")
        quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero")]
        levels = [logger.level for logger in quiet]
        for logger in quiet:  # the accelerator banner and tips
            logger.setLevel(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=n_steps,
                                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                    enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                                    use_distributed_sampler=False, callbacks=[StepClock()], default_root_dir=tmp)
                trainer.fit(module)
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
    return clock.steps


def run_trl_grpo(model_dir: Path, records: Sequence[Mapping[str, Any]], args: argparse.Namespace
                 ) -> list[dict[str, float]]:
    """The same configuration through TRL's GRPOTrainer; per step: the phase times (s), completion tokens,
    threads, and TRL's own `step_time` (training_step wall time, without the optimizer step) as `trl_step_time`."""
    import logging
    import warnings

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    group, n_steps = args.group_size, args.warmup + args.steps
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa")
    dataset = Dataset.from_list([{"prompt": [dict(m) for m in r["prompt"]]} for r in records])
    clock = _PhaseClock()

    class StepClock(TrainerCallback):
        def on_step_begin(self, *_: Any, **__: Any) -> None:
            clock.start_step()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            clock.end_step()

    with tempfile.TemporaryDirectory(prefix="aegir-bench-trl-") as tmp:
        # transformers 5 deprecates gradient_checkpointing (activation_checkpointing), which TRL still reads
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            config = GRPOConfig(
                output_dir=tmp, use_cpu=True, bf16=False, report_to="none", logging_steps=1, save_strategy="no",
                max_steps=n_steps, per_device_train_batch_size=group * len(records), num_generations=group,
                max_completion_length=args.max_completion_length, temperature=1.0, top_p=1.0, top_k=0, beta=0.0,
                loss_type="dapo", learning_rate=args.lr, max_grad_norm=1.0, gradient_checkpointing=False,
                disable_dropout=True, seed=args.seed, disable_tqdm=True, dataloader_num_workers=0)
            trainer = GRPOTrainer(
                model=model, reward_funcs=_trl_reward, args=config, train_dataset=dataset, processing_class=tokenizer,
                peft_config=LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                                       target_modules="all-linear", bias="none", task_type="CAUSAL_LM"),
                callbacks=[StepClock()])
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
        clock.wrap(trainer, "_prepare_inputs", "prepare")
        clock.wrap(trainer, "_generate", "generate", count=lambda out: float(sum(len(ids) for ids in out[1])))
        clock.wrap(trainer, "_calculate_rewards", "reward")
        clock.wrap(trainer, "_get_per_token_logps_and_entropies", _logprob_phase)
        clock.wrap(trainer.model, "generate", "sampler")
        torch.set_num_threads(args.threads)
        quiet = logging.getLogger("transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.train()
        finally:
            quiet.setLevel(level)
    logged = [float(h["step_time"]) for h in trainer.state.log_history if "step_time" in h]
    for step, step_time in zip(clock.steps, logged):
        step["trl_step_time"] = step_time
    for step in clock.steps:  # TRL's update is what the step spends outside _prepare_inputs
        step["update"] = step["step"] - step.get("prepare", 0.0)
    return clock.steps


def summarize_steps(steps: Sequence[Mapping[str, float]], warmup: int) -> dict[str, float]:
    """Mean per-step phase times over the timed steps (the first `warmup` are dropped), the remainder `other`,
    the fastest step, completion tokens per step and tokens/s."""
    timed = list(steps[warmup:]) or list(steps)
    keys = ("generate", "sampler", "reward", "logprob", "update", "fwd", "step", "tokens")
    mean = {k: sum(s.get(k, 0.0) for s in timed) / len(timed) for k in keys}
    mean["other"] = mean["step"] - mean["generate"] - mean["reward"] - mean["logprob"] - mean["update"]
    mean["best_step"] = min(s["step"] for s in timed)
    mean["tokens_per_s"] = mean["tokens"] / mean["step"]
    mean["gen_tokens_per_s"] = mean["tokens"] / mean["sampler"] if mean["sampler"] else 0.0
    mean["threads"] = max(s.get("threads", 0.0) for s in timed)
    mean["steps"] = float(len(timed))
    if any("trl_step_time" in s for s in timed):
        mean["trl_step_time"] = sum(s.get("trl_step_time", 0.0) for s in timed) / len(timed)
    return mean


def _trl_available() -> bool:
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def bench_grpo_hf(args: argparse.Namespace) -> None:
    """One GRPO configuration through Aegir's loop and TRL's GRPOTrainer, in this process: phase times, tokens/s,
    and TRL time / Aegir time per phase (> 1: Aegir is faster)."""
    import importlib.metadata as metadata

    from aegir.models.hf_tiny import ensure_tiny_model

    frameworks = args.frameworks
    if "trl" in frameworks and not _trl_available():
        print(COMPARE_HINT, file=sys.stderr, flush=True)
        raise SystemExit(INPUT_ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    model_dir = ensure_tiny_model(args.model_dir or Path(tempfile.gettempdir()) / "aegir-bench" / "hf-tiny-qwen3")
    records = grpo_hf_records(args.task, args.prompts, args.seed)
    versions = {name: metadata.version(name) for name in ("transformers", "peft", "trl") if
                name != "trl" or "trl" in frameworks}
    emit(bench="grpo_hf", torch=torch.__version__, **versions, device="cpu", threads=torch.get_num_threads(),
         model=str(model_dir), task=args.task, prompts=len(records), group_size=args.group_size,
         max_completion_length=args.max_completion_length, steps=args.steps, warmup=args.warmup,
         lora=f"r{args.lora_r}/a{args.lora_alpha:g}/all-linear", loss_type="dapo", beta=0.0, num_iterations=1)
    runners = {"aegir": run_aegir_grpo, "trl": run_trl_grpo}
    results: dict[str, dict[str, float]] = {}
    for name in frameworks:
        torch.set_num_threads(args.threads)
        results[name] = summarize_steps(runners[name](model_dir, records, args), args.warmup)
        r = results[name]
        emit(bench="grpo_hf", framework=name, **{f"time_{k}_s": r[k] for k in
             ("generate", "sampler", "reward", "logprob", "update", "fwd", "other", "step", "best_step")},
             tokens_per_step=r["tokens"], tokens_per_s=r["tokens_per_s"], gen_tokens_per_s=r["gen_tokens_per_s"],
             threads=int(r["threads"]), timed_steps=int(r["steps"]),
             **({"trl_logged_step_time_s": r["trl_step_time"]} if "trl_step_time" in r else {}))
    print(format_grpo_hf_table(results), flush=True)
    if "aegir" in results and "trl" in results:
        a, t = results["aegir"], results["trl"]
        emit(bench="grpo_hf", **{f"speedup_{k}_trl_over_aegir": t[k] / a[k] for k in
                                 ("generate", "sampler", "reward", "update", "fwd", "step") if a[k] > 0},
             tokens_per_s_aegir_over_trl=a["tokens_per_s"] / t["tokens_per_s"])


def format_grpo_hf_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """The human-readable table: one row per framework (mean per timed step, ms), the speed-up row, the column key."""
    columns = ("generate", "sampler", "reward", "logprob", "update", "fwd", "other", "step", "best_step")
    head = f"{'':<18}" + "".join(f"{c:>10}" for c in columns) + f"{'tok/step':>10}{'tok/s':>9}{'gen tok/s':>10}"
    lines = ["", "GRPO step, mean of the timed steps, milliseconds (sampler is part of generate, fwd of update)", head]
    for name, r in results.items():
        lines.append(f"{name:<18}" + "".join(f"{1000 * r[c]:>10.1f}" for c in columns)
                     + f"{r['tokens']:>10.0f}{r['tokens_per_s']:>9.0f}{r['gen_tokens_per_s']:>10.0f}")
    if "aegir" in results and "trl" in results:
        a, t = results["aegir"], results["trl"]
        cells = "".join(f"{t[c] / a[c]:>9.2f}x" if a[c] > 1e-9 and t[c] > 1e-9 else f"{'-':>10}" for c in columns)
        lines.append(f"{'speed-up TRL/Aegir':<18}" + cells
                     + f"{'':>10}{a['tokens_per_s'] / t['tokens_per_s']:>8.2f}x"
                     + f"{a['gen_tokens_per_s'] / max(t['gen_tokens_per_s'], 1e-9):>9.2f}x")
        lines.append("speed-up = TRL time / Aegir time (tok/s: Aegir / TRL); > 1 means Aegir is faster")
        if "trl_step_time" in t:
            lines.append(f"TRL's own log_history step_time (training_step only, no optimizer step): "
                         f"{1000 * t['trl_step_time']:.1f} ms")
    lines.append("")
    lines.extend(f"  {name:<9} {text}" for name, text in GRPO_HF_PHASES.items())
    lines.append("  best_step the fastest timed step; tok/step: completion tokens generated (EOS included); tok/s: "
                 "tok/step / step; gen tok/s: tok/step / sampler")
    return "\n".join(lines)


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


def _grpo_hf_frameworks(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in ("aegir", "trl")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown framework(s) {unknown}; choose from aegir, trl")
    return names

def _observe_experiments(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in OBSERVE_EXPERIMENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown experiment(s) {unknown}; choose from {sorted(OBSERVE_EXPERIMENTS)}")
    return names


# The runs whose wall time the observatory may stretch by at most 10% with its default cadence.
OBSERVE_EXPERIMENTS: dict[str, list[str]] = {"default": [], "grpo_toy": ["+experiment=grpo_toy"]}


def _timed_run(overrides: Sequence[str], out: Path) -> dict[str, float]:
    """`python run.py OVERRIDES`: its wall seconds, its CPU seconds (user + system, from wait4: far less sensitive
    than wall time to other load on the machine) and what its snapshots took (the sum of observe/seconds and
    observe/cpu_seconds over its history)."""
    import subprocess

    from aegir.rundir import read_history

    root = Path(__file__).resolve().parents[1]
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(root / "run.py"), *overrides, f"paths.output_root={out}",
                             "trainer.enable_progress_bar=false"], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 3):  # 3: a required gate failed; the timing stands
        raise RuntimeError(f"run.py {' '.join(overrides)} failed:\n{stderr[-2000:]}")
    histories = [read_history(h) for h in out.rglob("history.jsonl")]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "observe_wall": sum(v for h in histories for _, v in h.get("observe/seconds", [])),
            "observe_cpu": sum(v for h in histories for _, v in h.get("observe/cpu_seconds", []))}


def observe_in_process(name: str, overrides: Sequence[str], steps: int) -> None:
    """The load-robust estimate: in one process on one thread, the CPU time of `steps` training steps of the run's
    loop (Lightning's own step, without the Trainer) against one snapshot with pictures and one without; the
    observatory's share of the run follows from the run's step count and its default cadence."""
    import lightning as L

    from aegir.config import validate
    from aegir.config.validate import section_object
    from aegir.loops.factory import build_stage
    from aegir.observe.observatory import Observatory, Sink
    from aegir.run.compose import compose_config
    from aegir.rundir import RunPaths

    torch.set_num_threads(1)
    cfg = validate(compose_config([*OBSERVE_EXPERIMENTS[name], "callbacks=observatory", *overrides]))
    with tempfile.TemporaryDirectory(prefix="aegir-bench-observe-") as tmp:
        L.seed_everything(int(cfg.seed), verbose=False)
        module = build_stage(cfg, RunPaths(Path(tmp))).module
        trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                            accelerator="cpu", devices=1)
        started = time.process_time()
        trainer.fit(module)
        fit_cpu = time.process_time() - started
        started = time.process_time()
        L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                  devices=1).validate(module, verbose=False)
        val_cpu = time.process_time() - started
        if hasattr(module, "evaluate_all"):  # GRPO scores the eval set once more, at step 0, inside fit
            fit_cpu -= val_cpu
        step_cpu = fit_cpu / max(int(trainer.global_step), 1)
        obs_cfg = section_object("callbacks", cfg.callbacks).observatory
        observatory = Observatory(obs_cfg, Path(tmp), section_object("task", cfg.task), int(cfg.data_seed), module)
        observatory.prepare(module, 0, None)
        sink = Sink()
        observatory.snapshot(module, 0, 0, {}, sink)  # warm-up: imports, first pictures
        started = time.process_time()
        observatory.snapshot(module, 1, 0, {}, sink)
        with_figures = time.process_time() - started
        started = time.process_time()
        observatory.snapshot(module, 2, 1, {}, sink)
        without_figures = time.process_time() - started
    total_steps, interval = int(cfg.trainer.max_steps), int(cfg.trainer.val_check_interval)
    evals = total_steps // interval
    every = obs_cfg.figures_every_n_evals
    drawn = 1 + evals // every + (1 if evals % every else 0)
    observe_cpu = drawn * with_figures + (evals + 1 - drawn) * without_figures
    run_cpu = total_steps * step_cpu + evals * val_cpu  # startup and the final evaluation left out: an upper bound
    emit(bench="observe_in_process", experiment=name, step_cpu_s=round(step_cpu, 4), val_cpu_s=round(val_cpu, 4),
         snapshot_cpu_s=round(without_figures, 4), snapshot_with_figures_cpu_s=round(with_figures, 4),
         steps=total_steps, snapshots=evals + 1, estimated_ratio=round(1 + observe_cpu / run_cpu, 4))


def bench_observe(args: argparse.Namespace) -> None:
    if args.in_process:
        for name in args.experiments:
            observe_in_process(name, args.overrides, args.train_steps)
        return
    extra = [f"trainer.max_steps={args.steps}"] if args.steps else []
    with tempfile.TemporaryDirectory(prefix="aegir-bench-observe-") as tmp:
        for name in args.experiments:
            base = [*OBSERVE_EXPERIMENTS[name], *extra, *args.overrides]
            runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
            for repeat in range(args.repeats):
                for mode in ("off", "on"):
                    overrides = [*base, "callbacks=observatory"] if mode == "on" else base
                    runs[mode].append(_timed_run(overrides, Path(tmp) / f"{name}_{mode}_{repeat}"))
            off = {key: min(r[key] for r in runs["off"]) for key in ("wall", "cpu")}
            on = min(runs["on"], key=lambda r: r["cpu"])
            emit(bench="observe", experiment=name, wall_off_s=round(off["wall"], 2),
                 wall_on_s=round(min(r["wall"] for r in runs["on"]), 2),
                 wall_ratio=round(min(r["wall"] for r in runs["on"]) / off["wall"], 4),
                 cpu_off_s=round(off["cpu"], 2), cpu_on_s=round(on["cpu"], 2),
                 cpu_ratio=round(on["cpu"] / off["cpu"], 4),
                 snapshot_cpu_share=round(on["observe_cpu"] / on["cpu"], 4),
                 snapshot_wall_share=round(on["observe_wall"] / on["wall"], 4), repeats=args.repeats,
                 within_budget=on["cpu"] / off["cpu"] <= 1.10)


REPEATS_HELP = "timed repeats per measurement, the sides interleaved (median, min and spread are reported)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aegir.bench", description=__doc__.splitlines()[0])
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")

    rwkv7 = benches.add_parser("rwkv7", help="RWKV-7 chunked vs loop training and generation throughput")
    rwkv7.add_argument("--T", type=int, default=512, help="training sequence length (bytes)")
    rwkv7.add_argument("--batch", type=int, default=2, help="sequences per batch")
    rwkv7.add_argument("--repeats", type=int, default=2, help=REPEATS_HELP)
    rwkv7.add_argument(
        "--models", type=_rwkv7_models, default="nano,tiny", help=f"comma-separated, from {sorted(RWKV7_MODELS)}"
    )
    rwkv7.add_argument("--prompt-len", type=int, default=16, help="generation prompt length")
    rwkv7.add_argument("--gen-tokens", type=int, default=64, help="new tokens per generation run")
    rwkv7.add_argument("--gen-batches", type=lambda t: [int(x) for x in t.split(",")], default="2,16,64",
                       help="comma-separated generation batch sizes")
    rwkv7.add_argument("--compile-step", action="store_true",
                       help="also generate with model.compile_step (torch.compile'd step), interleaved with eager")
    rwkv7.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                       help="cpu or cuda (on cuda the training rows also give model TFLOP/s and MFU)")
    rwkv7.add_argument("--seed", type=int, default=0)
    rwkv7.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    rwkv7.set_defaults(func=bench_rwkv7)

    hnet = benches.add_parser("hnet", help="H-Net vs parameter-matched RWKV-7: training and generation bytes/s")
    hnet.add_argument("--T", type=int, default=512, help="training sequence length (bytes)")
    hnet.add_argument("--batch", type=int, default=2, help="sequences per batch")
    hnet.add_argument("--repeats", type=int, default=2, help=REPEATS_HELP)
    hnet.add_argument("--models", type=_hnet_models, default="hnet_nano,hnet_tiny",
                      help=f"comma-separated H-Net configs, from {sorted(HNET_BASELINES)}")
    hnet.add_argument("--prompt-len", type=int, default=16, help="generation prompt length")
    hnet.add_argument("--gen-tokens", type=int, default=64, help="new tokens per generation run")
    hnet.add_argument("--seed", type=int, default=0)
    hnet.add_argument("--threads", type=int, default=1,
                      help="torch intra-op threads (0: torch's default); 1 keeps small-model timings stable when "
                           "other processes share the cores")
    hnet.add_argument("--compile-step", action="store_true",
                      help="both models decode through model.compile_step (torch.compile'd step)")
    hnet.set_defaults(func=bench_hnet)

    logprob = benches.add_parser("logprob", help="GRPO policy term: shared-prompt scoring vs one padded pass")
    logprob.add_argument("--model", choices=sorted(RWKV7_MODELS), default="nano")
    logprob.add_argument("--prompt-lens", type=lambda t: [int(x) for x in t.split(",")], default="420,650,800,1500",
                         help="comma-separated prompt lengths (bytes), one group each (V4.2 prompts: mean ~700)")
    logprob.add_argument("--group-size", type=int, default=8, help="rows per prompt (G)")
    logprob.add_argument("--completion-len", type=int, default=256, help="longest completion (tokens)")
    logprob.add_argument("--repeats", type=int, default=2, help=REPEATS_HELP)
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
    grpo.add_argument("--num-iterations", type=int, default=1,
                      help="optimizer steps per generation batch (algo.num_iterations); > 1 adds the old-policy pass")
    grpo.add_argument("--compile-step", action="store_true",
                      help="the policy decodes through model.compile_step (compiled in the warm-up step)")
    grpo.add_argument("--seed", type=int, default=0)
    grpo.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    grpo.set_defaults(func=bench_grpo)

    grpo_hf = benches.add_parser("grpo_hf", help="one GRPO configuration through Aegir's loop and TRL's GRPOTrainer "
                                                 "(tiny local Qwen3 + LoRA): phase times and speed-up")
    grpo_hf.add_argument("--prompts", type=int, default=2, help="prompts per step (completions = prompts x G)")
    grpo_hf.add_argument("--group-size", type=int, default=8, help="completions per prompt (G)")
    grpo_hf.add_argument("--max-completion-length", type=int, default=64, help="max new tokens per completion")
    grpo_hf.add_argument("--steps", type=int, default=5, help="timed steps, after the warm-up ones")
    grpo_hf.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    grpo_hf.add_argument("--lr", type=float, default=1e-5, help="learning rate (both frameworks)")
    grpo_hf.add_argument("--lora-r", type=int, default=16)
    grpo_hf.add_argument("--lora-alpha", type=float, default=32.0)
    grpo_hf.add_argument("--task", choices=("extraction", "sql_qa", "insights", "push"), default="extraction",
                         help="commerce task the PT-BR chat prompts come from")
    grpo_hf.add_argument("--frameworks", type=_grpo_hf_frameworks, default="aegir,trl",
                         help="comma-separated, run in this order, from aegir,trl")
    grpo_hf.add_argument("--model-dir", type=Path, default=None,
                         help="where the tiny model is built once (default: <tmp>/aegir-bench/hf-tiny-qwen3)")
    grpo_hf.add_argument("--seed", type=int, default=0)
    grpo_hf.add_argument("--threads", type=int, default=1, help="torch intra-op threads, set for both frameworks")
    grpo_hf.set_defaults(func=bench_grpo_hf)

    observe = benches.add_parser("observe", help="observatory overhead: wall time with / without callbacks=observatory")
    observe.add_argument("--experiments", type=_observe_experiments, default="default,grpo_toy",
                         help=f"comma-separated, from {sorted(OBSERVE_EXPERIMENTS)}")
    observe.add_argument("--repeats", type=int, default=1, help="pairs of runs per experiment (the fastest counts)")
    observe.add_argument("--steps", type=int, default=0,
                         help="trainer.max_steps for a shorter bench (0: as configured)")
    observe.add_argument("--in-process", action="store_true",
                         help="estimate from CPU times in one process (training steps vs snapshots) instead of "
                              "timing whole runs: far less sensitive to other load on the machine")
    observe.add_argument("--train-steps", type=int, default=10, help="--in-process: training steps timed")
    observe.add_argument("overrides", nargs="*", help="extra run.py overrides for every run")
    observe.set_defaults(func=bench_observe)
    from aegir.bench_overhead import add_parsers  # overhead, startup

    add_parsers(benches)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

"""The benchmark table's plumbing (issue 21, items 6-7): parsing the benchmarks' lines, the spread statistics,
interleaving of the two sides of a ratio, and the markdown table. (Speed itself is measured by `make bench`.)"""

from __future__ import annotations

from aegir.bench_stats import interleaved, spread
from aegir.bench_suite import markdown, parse_records


def test_parse_records_reads_key_value_lines_only() -> None:
    text = "noise\nbench=rwkv7 model=nano ratio_chunked_vs_loop=8.1 params=162368\n[INFO] x=1\nbench=startup n=5\n"
    assert parse_records(text) == [{"bench": "rwkv7", "model": "nano", "ratio_chunked_vs_loop": 8.1,
                                    "params": 162368}, {"bench": "startup", "n": 5}]


def test_spread_oracle() -> None:
    assert spread([2.0, 1.0, 4.0]) == {"median": 2.0, "min": 1.0, "max": 4.0, "spread": 1.5, "n": 3.0}


def test_interleaved_alternates_the_sides() -> None:
    order: list[str] = []
    times = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] * 4
    assert [len(times["a"]), len(times["b"])] == [3, 3]


def test_markdown_puts_ratios_in_their_own_table() -> None:
    results = {"rwkv7": {"wall_s": 3.0, "peak_rss_mib": 100.0, "exit": 0, "records": [
        {"bench": "rwkv7", "model": "nano", "train_s": 0.5}, {"bench": "rwkv7", "model": "nano", "ratio_x": 2.0}]}}
    text = markdown({"cpu": "test"}, results)
    assert "| model | ratio_x |\n|---|---|\n| nano | 2 |" in text
    assert "| model | train_s |\n|---|---|\n| nano | 0.5 |" in text
    assert "peak RSS 100 MiB" in text


def _records(capsys) -> list[dict]:
    return parse_records(capsys.readouterr().out)


def test_rwkv7_bench_reports_median_min_spread_and_the_ratio_of_medians(capsys) -> None:
    from aegir.bench import main

    main(["rwkv7", "--models", "nano", "--T", "16", "--repeats", "2", "--gen-tokens", "2", "--gen-batches", "2,3",
          "--threads", "1", "--device", "cpu"])
    records = _records(capsys)
    train = {r["path"]: r for r in records if r.get("path") in ("chunked", "loop")}
    assert set(train) == {"chunked", "loop"}
    for row in train.values():
        assert row["train_min_s"] <= row["train_s"] and row["train_spread"] >= 0 and "mfu" not in row
    ratio = next(r for r in records if "ratio_chunked_vs_loop" in r)["ratio_chunked_vs_loop"]
    assert abs(ratio - train["loop"]["train_s"] / train["chunked"]["train_s"]) <= 0.01 * ratio  # printed to 4 digits
    assert sorted(r["gen_batch"] for r in records if r.get("path") == "generate") == [2, 3]


def test_grpo_bench_runs_the_old_policy_pass_only_with_several_iterations(capsys) -> None:
    from aegir.bench import main

    args = ["grpo", "--group-sizes", "2", "--lengths", "4", "--prompts", "2", "--repeats", "1", "--threads", "1"]
    main(args)
    main([*args, "--num-iterations", "2"])
    one, two = [r for r in _records(capsys) if "step_s" in r]
    assert one["num_iterations"] == 1 and one["time_logprob_s"] < 1e-3
    assert two["num_iterations"] == 2 and two["time_logprob_s"] > 0


def test_training_flops_count_every_parameter_six_times() -> None:
    import torch

    from aegir.bench import model_flops_utilisation, training_flops_per_byte
    from aegir.models.lm import ByteLM

    model = ByteLM(vocab_size=16, d_model=8, n_layers=1, head_size=4)
    assert training_flops_per_byte(model) == 6.0 * sum(p.numel() for p in model.parameters())
    assert model_flops_utilisation(model, 1000.0, torch.device("cpu")) == {}

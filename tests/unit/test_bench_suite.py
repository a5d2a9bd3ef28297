"""The benchmark table's plumbing (issue 21, items 6-7): parsing the benchmarks' lines, the spread statistics,
interleaving of the two sides of a ratio, and the markdown table. (Speed itself is measured by `make bench`.)"""

from __future__ import annotations

import json

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


def test_markdown_gives_each_kind_of_record_its_table_ratios_first() -> None:
    results = {"rwkv7": {"wall_s": 3.0, "peak_rss_mib": 100.0, "exit": 0, "records": [
        {"bench": "rwkv7", "model": "nano", "train_s": 0.5}, {"bench": "rwkv7", "model": "nano", "gen_s": 0.25},
        {"bench": "rwkv7", "model": "tiny", "train_s": 1.5}, {"bench": "rwkv7", "model": "nano", "ratio_x": 2.0}]}}
    text = markdown({"cpu": "test"}, results)
    ratio = text.index("| model | ratio_x |\n|---|---|\n| nano | 2 |\n")
    train = text.index("| model | train_s |\n|---|---|\n| nano | 0.5 |\n| tiny | 1.5 |\n")
    gen = text.index("| model | gen_s |\n|---|---|\n| nano | 0.25 |\n")
    assert ratio < train < gen
    assert "peak RSS 100 MiB" in text


def test_render_rewrites_bench_md_from_bench_json(tmp_path) -> None:
    from aegir.bench_suite import main

    saved = {"machine": {"cpu": "test"}, "results": {"startup": {"wall_s": 1.0, "peak_rss_mib": 5.0, "exit": 0,
                                                                 "records": [{"bench": "startup", "median_s": 0.5}]}}}
    (tmp_path / "bench.json").write_text(json.dumps(saved))
    assert main(["--render", str(tmp_path / "bench.json"), "--out", str(tmp_path / "md")]) == 0
    assert "| median_s |\n|---|\n| 0.5 |" in (tmp_path / "md" / "bench.md").read_text()
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["--render", str(tmp_path / "bad.json"), "--out", str(tmp_path / "md")]) == 2


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

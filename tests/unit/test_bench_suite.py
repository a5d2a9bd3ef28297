"""The benchmark table's plumbing (issue 21, items 6-7): parsing the benchmarks' lines, the spread statistics,
interleaving of the two sides of a ratio, and the markdown table. (Speed itself is measured by `make bench`.)"""

from __future__ import annotations

from aegir.bench_overhead import interleaved, spread
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

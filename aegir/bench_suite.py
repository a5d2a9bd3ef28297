"""`make bench` = `python -m aegir.bench_suite [--out DIR] [--only NAME,...]`: every benchmark, one table.

Each benchmark of `python -m aegir.bench` runs in its own process (so one's memory does not inflate the next's),
its `key=value` lines are collected, and its peak RSS is read from the kernel's accounting of that child
(`os.wait4`). Written: `bench.json` (machine header + every record) and `bench.md` (the header -- CPU, cores, torch
threads, torch version, load average before and after -- and one markdown table per benchmark, ratios first). Each
ratio is measured inside one benchmark process against its own baseline; the suite only gathers them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

# name -> the arguments `make bench` runs it with (sizes that finish in minutes on a 2-core CPU).
SUITE: dict[str, list[str]] = {
    "startup": ["startup", "--repeats", "5"],
    "rwkv7": ["rwkv7", "--repeats", "3", "--threads", "1", "--compile-step"],
    "hnet": ["hnet", "--repeats", "3"],
    "hnet_compiled": ["hnet", "--repeats", "3", "--compile-step"],
    "logprob": ["logprob", "--repeats", "3"],
    "grpo": ["grpo", "--group-sizes", "16", "--lengths", "256", "--repeats", "3", "--threads", "1"],
    "grpo_compiled": ["grpo", "--group-sizes", "16", "--lengths", "256", "--repeats", "3", "--threads", "1",
                      "--compile-step"],
    "overhead": ["overhead", "--steps", "120", "--repeats", "2"],
}


def parse_records(text: str) -> list[dict[str, Any]]:
    """The `key=value key=value` lines a benchmark printed (other lines are ignored); numbers become numbers."""
    records = []
    for line in text.splitlines():
        if not line.startswith("bench="):
            continue
        record: dict[str, Any] = {}
        for field in line.split():
            key, _, value = field.partition("=")
            try:
                record[key] = int(value) if value.lstrip("-").isdigit() else float(value)
            except ValueError:
                record[key] = value
        records.append(record)
    return records


def run_one(args: Sequence[str]) -> tuple[list[dict[str, Any]], float, float, int, str]:
    """(records, wall seconds, peak RSS in MiB, exit status, the tail of its output) of one benchmark process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "aegir.bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (parse_records(output), time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode,
            output[-2000:])


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_before": os.getloadavg()[0]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def markdown(header: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    lines = ["# Aegir benchmarks", "",
             "| machine | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in header.items()], ""]
    for name, result in results.items():
        lines += [f"## {name}", "", f"wall {result['wall_s']:.1f} s · peak RSS {result['peak_rss_mib']:.0f} MiB · "
                  f"exit {result['exit']}", ""]
        records = [{k: v for k, v in r.items() if k != "bench"} for r in result["records"]]
        if not records:
            lines += ["(no figures: see bench.json for the output)", ""]
            continue
        # One table per kind of record (records printing the same keys), ratios first.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault(tuple(record), []).append(record)
        for keys in sorted(groups, key=lambda ks: not any(k.startswith("ratio") for k in ks)):
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in groups[keys]]
            lines.append("")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegir.bench_suite", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="where bench.md and bench.json go")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SUITE)}")
    parser.add_argument("--render", type=Path, default=None, metavar="BENCH_JSON",
                        help="only rewrite bench.md (in --out) from an earlier run's bench.json")
    args = parser.parse_args(argv)
    if args.render is not None:
        try:
            saved = json.loads(args.render.read_text())
            text = markdown(saved["machine"], saved["results"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"aegir.bench_suite: --render {args.render}: not a bench.json ({err})", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.md").write_text(text + "\n")
        print(f"wrote {args.out / 'bench.md'}")
        return 0
    names = [n for n in args.only.split(",") if n] or list(SUITE)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        print(f"aegir.bench_suite: --only: unknown benchmark {unknown[0]!r} (one of: {', '.join(SUITE)})",
              file=sys.stderr)
        return 2
    header = machine()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"bench {name} ...", flush=True)
        records, wall, rss, status, tail = run_one(SUITE[name])
        results[name] = {"args": SUITE[name], "records": records, "wall_s": wall, "peak_rss_mib": rss,
                         "exit": status, **({"output_tail": tail} if status else {})}
    header["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({"machine": header, "results": results}, indent=1) + "\n")
    (args.out / "bench.md").write_text(markdown(header, results) + "\n")
    print(f"wrote {args.out / 'bench.md'} and {args.out / 'bench.json'}")
    return max((r["exit"] for r in results.values()), default=0)


if __name__ == "__main__":
    sys.exit(main())

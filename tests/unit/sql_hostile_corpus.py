"""The SQL sandbox's resource-exhaustion corpus (issue 19 items 1-2): queries that cost time or memory in places the
sandbox's per-instruction checks do not reach, each run in a fresh process that reports its wall time and peak RSS.

Used by tests/unit/test_sql_sandbox_bounds.py (a budget and loose bounds) and runnable on its own for the figures
of the closing note::

    python -m tests.unit.sql_hostile_corpus            # every case at the sql_exec budget (1 s): time, peak RSS
    python -m tests.unit.sql_hostile_corpus --timeout 0.5 --only cte_exists_10

Before the bounded sandbox: ``cte_exists_10`` and ``cte_join_11`` spent 18-47 s preparing the statement (the progress
handler is never called during preparation), ``instr_100k``-style calls overran a 1 s budget by 10-30 s (one C call
per row, the handler every 1000 instructions) and ``order_big_rows`` wrote ~0.4 GB of temp files per second.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path


def _cte_chain(levels: int, body: str) -> str:
    """WITH a0 AS NOT MATERIALIZED (...), a1 ... each level reading the previous one as `body` says."""
    parts = ["a0(x) AS NOT MATERIALIZED (SELECT id FROM orders)"]
    for level in range(1, levels):
        parts.append(f"a{level}(x) AS NOT MATERIALIZED ({body.format(p=f'a{level - 1}')})")
    return "WITH " + ", ".join(parts) + f" SELECT count(*) FROM a{levels - 1}"


_BIG = "replace(hex(zeroblob({half})), '0', 'a')"  # a string of 2*half 'a's

CASES: dict[str, str] = {
    # Preparation bombs: CTEs inlined into every reader, 3 readers per level (issue 19 item 1).
    "cte_exists_10": _cte_chain(10, "SELECT x FROM {p} WHERE EXISTS (SELECT 1 FROM {p} b WHERE b.x = {p}.x) "
                                    "AND EXISTS (SELECT 1 FROM {p} c WHERE c.x = {p}.x)"),
    "cte_join_11": _cte_chain(11, "SELECT q.x FROM {p} q JOIN {p} r USING (x) JOIN {p} s USING (x)"),
    "cte_in_11": _cte_chain(11, "SELECT x FROM {p} WHERE x IN (SELECT x FROM {p}) AND x IN (SELECT x FROM {p})"),
    "cte_scalar_11": _cte_chain(11, "SELECT (SELECT max(x) FROM {p}) + (SELECT min(x) FROM {p}) "
                                    "+ (SELECT count(x) FROM {p}) AS x"),
    "cte_union_11": _cte_chain(11, "SELECT * FROM {p} UNION ALL SELECT * FROM {p} UNION ALL SELECT * FROM {p}"),
    "cte_quoted_names": _cte_chain(10, 'SELECT x FROM "{p}" WHERE EXISTS (SELECT 1 FROM [{p}] b WHERE b.x = x) '
                                       "AND EXISTS (SELECT 1 FROM `{p}` c WHERE c.x = x)"),
    # Long C loops per row (item 2): the biggest strings the length limit allows, one call per joined row.
    "instr_big": "SELECT sum(instr(h, substr(h, 1, length(h) / 2) || 'b')) FROM (SELECT "
                 + _BIG.format(half=9_900) + " h), orders a, orders b",
    "replace_big": "SELECT sum(length(replace(h, substr(h, 1, length(h) / 2) || 'b', 'x'))) FROM (SELECT "
                   + _BIG.format(half=9_900) + " h), orders a, orders b",
    "like_big": "SELECT sum(h LIKE '%' || substr(h, 1, 190) || 'b') FROM (SELECT "
                + _BIG.format(half=9_900) + " h), orders a, orders b",
    "glob_big": "SELECT sum(h GLOB '*' || substr(h, 1, 190) || 'b') FROM (SELECT "
                + _BIG.format(half=9_900) + " h), orders a, orders b",
    "instr_100k": "SELECT sum(instr(h, substr(h, 1, 49000) || 'b')) FROM (SELECT "
                  + _BIG.format(half=49_000) + " h), orders a, orders b",
    # Temp storage (item 2): sorting and materialising large rows.
    "order_big_rows": "SELECT a.id FROM orders a, orders b, orders c "
                      "ORDER BY hex(zeroblob(9000)) || a.id || b.id || c.id",
    "materialized_big_rows": "WITH m AS MATERIALIZED (SELECT hex(zeroblob(9000)) || a.id || b.id x "
                             "FROM orders a, orders b, orders c) SELECT count(*) FROM m",
    "distinct_big_rows": "SELECT count(*) FROM (SELECT DISTINCT hex(zeroblob(9000)) || a.id || b.id || c.id "
                         "FROM orders a, orders b, orders c)",
    "group_concat_big": "SELECT length(group_concat(hex(zeroblob(4000)))) FROM orders a, orders b",
    # The text gate's own cost: it must stay linear in the statement (each was 7-10 s of quadratic scanning).
    "gate_nested_calls": "SELECT " + "a(" * 6000 + ")" * 6000,
    "gate_unclosed_calls": "SELECT " + "a(" * 9000,
    "gate_many_ctes": "WITH " + ", ".join(f"a{i} AS (SELECT 1)" for i in range(900)) + " SELECT 1",
    # The classics, for the record.
    "recursive_count": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
    "recursive_sort": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c "
                      "ORDER BY x DESC",
    "cross_join_6": "SELECT count(*) FROM orders a, orders b, orders c, orders d, orders e, orders f",
}


def build_db(path: Path) -> Path:
    """The small shop database of the sandbox tests (30 customers, 60 orders, one view)."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, state TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL, status TEXT);
        CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
    """)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                     [(i, f"Cliente {i}", ["SP", "RJ", "MG"][i % 3]) for i in range(1, 31)])
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                     [(i, 1 + i % 30, 10.0 * i, "entregue" if i % 4 else "cancelado") for i in range(1, 61)])
    conn.commit()
    conn.close()
    return path


_CHILD = """
import json, os, resource, sys, time
from aegir.tasks.commerce import sandbox
from aegir.tasks.commerce.sandbox import run_query
db, sql, timeout_s = sys.argv[1], sys.stdin.read(), float(sys.argv[2])
if sys.argv[3] == "no-cte-gate":
    sandbox.MAX_EXPANDED_TOKENS = 10**12
before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
result = run_query(db, sql, timeout_s=timeout_s)
elapsed = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"elapsed_s": elapsed, "peak_rss_mb": usage.ru_maxrss / 1024,
                  "rss_growth_mb": (usage.ru_maxrss - before_kb) / 1024, "written_mb": usage.ru_oublock * 512 / 2**20,
                  "ok": result.ok, "error": result.error}))
"""


def measure(db: Path, sql: str, timeout_s: float, *, wall_limit_s: float = 120.0,
            cte_gate: bool = True) -> dict[str, object]:
    """Run one query through run_query in a fresh interpreter; its time, peak RSS and blocks written.
    ``cte_gate=False`` switches the text gate's CTE-expansion check off (to measure the defences behind it)."""
    repo = str(Path(__file__).resolve().parents[2])  # this checkout's aegir, whatever the caller's directory
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run([sys.executable, "-c", _CHILD, str(db), str(timeout_s),
                                "cte-gate" if cte_gate else "no-cte-gate"], input=sql, text=True,
                               capture_output=True, timeout=wall_limit_s, check=False, cwd=repo, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"child failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1.0, help="run_query's timeout_s (sql_exec uses 1.0)")
    parser.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    parser.add_argument("--no-cte-gate", action="store_true",
                        help="switch the text gate's CTE-expansion check off (measures the defences behind it)")
    args = parser.parse_args(argv)
    names = args.only or list(CASES)
    worst: tuple[float, str] = (0.0, "")
    worst_rss: tuple[float, str] = (0.0, "")
    with tempfile.TemporaryDirectory() as tmp:
        db = build_db(Path(tmp) / "shop.db")
        print(f"{'case':24} {'time_s':>7} {'peak_rss_mb':>11} {'growth_mb':>9} {'written_mb':>10}  outcome")
        for name in names:
            row = measure(db, CASES[name], args.timeout, cte_gate=not args.no_cte_gate)
            outcome = "ok" if row["ok"] else str(row["error"])[:60]
            print(f"{name:24} {row['elapsed_s']:7.2f} {row['peak_rss_mb']:11.1f} {row['rss_growth_mb']:9.1f} "
                  f"{row['written_mb']:10.1f}  {outcome}", flush=True)
            worst = max(worst, (float(row["elapsed_s"]), name))
            worst_rss = max(worst_rss, (float(row["peak_rss_mb"]), name))
    print(f"worst time: {worst[0]:.2f} s ({worst[1]}), budget {args.timeout} s; "
          f"worst peak RSS: {worst_rss[0]:.1f} MB ({worst_rss[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

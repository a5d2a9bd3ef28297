"""The observatory page from real runs, as a person sees it: built by the CLI, opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from aegir.dashboard.__main__ import main
from aegir.dashboard.data import load
from aegir.dashboard.render import build_payload
from aegir.rundir import read_json, write_json_atomic
from tests.browser import CHROMIUM, render
from tests.conftest import ROOT, run_cli

PANELS = ("notices", "runs", "gates", "curves", "arms", "grpo", "provenance", "sweeps", "dynamics", "samples")


@pytest.fixture(scope="session")
def multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2 arms x 2 seeds grpo_toy multirun with the observatory on, plus what live and broken runs leave:
    a copy still running, a copy that failed, a copy with a torn history line."""
    root = tmp_path_factory.mktemp("dashboard")
    sweep = root / "multirun"
    result = run_cli(["-m", "+experiment=grpo_toy", "seed=1,2", "arm=full,no_schema", "trainer.max_steps=6",
                      "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
                      "trainer.enable_progress_bar=false",
                      "algo.group_size=4", "algo.prompts_per_step=4", "task.n_eval=8", "callbacks=observatory",
                      "logger=none", f"hydra.sweep.dir={sweep}"], cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    first = sorted(p for p in sweep.iterdir() if (p / "metadata.json").is_file())[0]
    for name, status in (("9_running", "running"), ("9_failed", "failed"), ("9_torn", "finished")):
        copy = sweep.parent / "extra" / name
        shutil.copytree(first, copy, ignore=shutil.ignore_patterns("checkpoints", "observe"))
        meta = read_json(copy / "metadata.json")
        meta.update(status=status, seed=90 + len(name), reason="RuntimeError: boom" if status == "failed" else None)
        write_json_atomic(copy / "metadata.json", meta)
        if status != "finished":
            (copy / "summary.json").unlink()
    with open(sweep.parent / "extra" / "9_torn" / "history.jsonl", "a") as fh:
        fh.write('{"step": 99, "grpo/rew')
    (root / "not_a_run").mkdir()
    return root


@pytest.mark.slow
def test_payload_from_real_runs_has_every_panel(multirun: Path) -> None:
    payload = build_payload(load([multirun / "multirun", multirun / "extra", multirun / "not_a_run"]))
    status = {r["id"]: r["status"] for r in payload["runs"]}
    assert status["9_running"] == "running" and status["9_failed"] == "failed"
    assert any("not a run directory" in n for n in payload["notices"])
    assert any("9_torn" in n and "unreadable line" in n for n in payload["notices"])
    (cmp,) = payload["arms"]  # the 4 multirun runs: 2 arms x 2 seeds, same configuration otherwise
    assert cmp["arms"] == ["full", "no_schema"]
    reward = next(m for m in cmp["metrics"] if m["metric"] == "eval/reward")
    assert reward["diffs"][0]["n"] == 2 and set(reward["bands"]) == {"full", "no_schema"}
    assert payload["runs"][0]["gates"]["learns"]["verdict"] in ("pass", "fail")
    assert next(r for r in payload["runs"] if r["id"] == "9_running")["gates"]["learns"]["verdict"] == "pending"
    assert payload["grpo"] and payload["dynamics"] and payload["samples"] and payload["sweeps"]
    bands = {label: bands["eval/reward"] for label, bands in payload["bands"].items()}
    # one band per configuration: no_schema's 2 seeds; full's 2 seeds, the running and the torn copy (not the failed)
    assert sorted(b["n"] for b in bands.values()) == [2, 4] and all(len(b["steps"]) == 3 for b in bands.values())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Debian's `chromium` package")
def test_page_renders_in_headless_chromium(multirun: Path, tmp_path: Path) -> None:
    page, shot = tmp_path / "dashboard.html", tmp_path / "dashboard.png"
    assert main([str(multirun / "multirun"), str(multirun / "extra"), str(multirun / "not_a_run"),
                 "--out", str(page)]) == 0
    assert "cdn.plot.ly" not in page.read_text()[:2000] and page.stat().st_size < 20e6
    dom, errors = render(page, shot, height=5000)
    assert errors == []
    sections = re.findall(r'<section class="panel" id="(\w+)"', dom)
    assert set(PANELS) <= set(sections), sections
    figures = re.findall(r'<div class="fig[^"]*" id="fig\d+" data-fig="1"([^>]*)>', dom)
    assert len(figures) >= 20 and all("data-drawn" in f for f in figures)
    assert dom.count('class="main-svg"') >= len(figures)  # plotly drew an svg in each
    assert "9_failed" in dom and "RuntimeError: boom" in dom and "pending" in dom
    assert shot.stat().st_size > 50_000


def test_a_path_that_does_not_exist_is_one_line_and_status_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"aegir.dashboard: {tmp_path / 'missing'}: no such directory"]
    assert not (tmp_path / "x.html").exists()


@pytest.mark.slow
def test_serve_rebuilds_when_a_run_changes(multirun: Path, tmp_path: Path) -> None:
    run = multirun / "extra" / "9_running"
    proc = subprocess.Popen([sys.executable, "-m", "aegir.dashboard", str(run), "--out", str(tmp_path / "d.html"),
                             "--serve", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))
        get = lambda path: urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=30).read()  # noqa: E731
        assert b"AEGIR_LIVE=true" in get("") and get("version") == b"0"
        with open(run / "history.jsonl", "a") as fh:
            fh.write(json.dumps({"step": 500, "eval/reward": 0.9}) + "\n")
        deadline = time.time() + 60
        while get("version") == b"0" and time.time() < deadline:
            time.sleep(0.5)
        assert get("version") == b"1" and b"500" in get("")
    finally:
        proc.terminate()
        proc.wait(timeout=30)

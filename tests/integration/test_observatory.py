"""The observatory end to end: `callbacks=observatory` on pretraining and GRPO writes every observe/ file and every
TensorBoard view (read back with EventAccumulator), leaves the training metrics untouched, is deterministic, and
`python -m aegir.observe` adds after-the-fact snapshots; bad input is one line and exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aegir.main import run
from aegir.observe.__main__ import main as observe_main
from aegir.observe.probes import BOARDS_DIR, load_board
from aegir.tasks.tables.labels import load_label_map
from aegir.rundir import read_history, read_json
from tests.conftest import run_cli

OBS = ["callbacks=observatory", "callbacks.observatory.probes.n=24", "callbacks.observatory.probes.batch_size=12"]
PRETRAIN = ["trainer.max_steps=8", "trainer.val_check_interval=4"]
GRPO = ["+experiment=grpo_toy", "trainer.enable_progress_bar=false", "algo.group_size=4", "algo.prompts_per_step=4",
        "task.n_eval=8", "trainer.max_steps=6", "trainer.val_check_interval=3", "model.d_model=32",
        "model.head_size=16", "model.n_layers=1", *OBS]


def _run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("metadata.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "tensors": 0, "scalars": 0,
                                                                "histograms": 0})
    acc.Reload()
    return acc


def _instrument_rows(run_dir: Path) -> dict[str, list[dict]]:
    return {name: _rows(run_dir / "observe" / name) for name in
            ("learning_history.jsonl", "geometry.jsonl", "calibration.jsonl", "trajectories.jsonl", "skills.jsonl",
             "hard_examples.jsonl", "probe_set.jsonl")}


@pytest.mark.slow
def test_pretraining_observatory_files_tensorboard_determinism_and_no_interference(compose, tmp_path: Path,
                                                                                    one_thread: None) -> None:
    first = compose([*PRETRAIN, *OBS, f"paths.output_root={tmp_path / 'a'}"])
    run(first)
    run_dir = _run_dir(tmp_path / "a")
    observe = run_dir / "observe"

    history = _rows(observe / "learning_history.jsonl")
    assert [r["step"] for r in history] == [0, 4, 8]
    assert history[0]["layers"] == ["emb", "body.blocks.0", "body.blocks.1", "ln_out"]
    assert history[1]["grad_norm"]["body.blocks.0"] > 0 and history[1]["update_ratio"]["emb"] > 0
    assert history[2]["drift_init"]["body.blocks.1"] > 0 and history[2]["prev_step"] == 4
    assert "val/bpb" in history[1]["metrics"] and set(history[1]["skills"]) == {"ontology", "ddl", "rows", "prose"}
    probes = _rows(observe / "probe_set.jsonl")
    metadata = read_json(run_dir / "metadata.json")
    assert len(probes) == 24 and metadata["observe"]["n_probes"] == 24
    assert len(metadata["observe"]["probe_set_sha256"]) == 64 and metadata["observe"]["hard_examples"]["n"] >= 5
    for step in (0, 4, 8):
        with np.load(observe / "embeddings" / f"step_{step:06d}.npz") as emb:
            assert emb["last"].shape == (24, 64) and emb["middle"].shape == (24, 64)
            assert emb["ids"].tolist() == [p["id"] for p in probes]
    geometry = _rows(observe / "geometry.jsonl")
    assert geometry[0]["drift"] is None and 0 < geometry[2]["drift"] < 2 and geometry[2]["drift_first"] > 0
    calibration = _rows(observe / "calibration.jsonl")
    assert len(calibration[1]["bins"]) == 15 and 0 <= calibration[1]["ece"] <= 1
    assert calibration[1]["mce"] >= calibration[1]["ece"] and len(calibration[1]["entropy_by_position"]) > 1
    trajectories = _rows(observe / "trajectories.jsonl")
    assert all(len(v) == 16 for v in trajectories[1]["logprobs"].values())
    order = json.loads((observe / "learned_order.json").read_text())
    assert order["steps"] == [0, 4, 8] and set(order["by_skill_median_step"]) == {"ontology", "ddl", "rows", "prose"}
    hard = _rows(observe / "hard_examples.jsonl")
    assert {r["step"] for r in hard} == {0, 4, 8} and all(r["ok"] or r["error"] for r in hard)
    figures = observe / "figures"
    for name in ("drift_heatmap_step000008.png", "geometry_step000008.png", "reliability_step000008.png",
                 "radar_step000008.png", "trajectories_ddl_step000008.png", "radar.gif"):
        assert (figures / name).stat().st_size > 1000, name
    summary = read_json(run_dir / "summary.json")
    assert "stability" in summary

    events = _events(run_dir)
    tags = events.Tags()
    for name in ("calib/ece", "calib/mce", "calib/ece_adaptive", "entropy/mean", "geometry/drift",
                 "geometry/drift_first", "stability/exploding_gradients", "stability/dead_layers",
                 "drift/init/body.blocks.0", "drift/prev/emb", "errors/wrong_frac"):
        assert name in tags["scalars"], name
    assert [e.step for e in events.Scalars("calib/ece")] == [0, 4, 8]
    for name in ("observe/drift_heatmap", "observe/geometry_map", "observe/reliability", "observe/radar",
                 "observe/trajectories/ddl"):
        assert name in tags["images"], name
    assert "observe/hard_examples/text_summary" in tags["tensors"]
    assert "observe/learned_order/text_summary" in tags["tensors"]
    assert "errors/first_divergence" in tags["histograms"]
    projector = (run_dir / "tb" / "projector_config.pbtxt").read_text()
    assert projector.count("embeddings {") == 6 and "probes_last" in projector and "probes_middle" in projector
    assert "id\tskill" in (run_dir / "tb" / "00008" / "probes_last" / "metadata.tsv").read_text()

    # The same run again: identical instrument records; without the observatory: identical training metrics.
    run(compose([*PRETRAIN, *OBS, f"paths.output_root={tmp_path / 'b'}"]))
    again = _run_dir(tmp_path / "b")
    assert _instrument_rows(again) == _instrument_rows(run_dir)
    with np.load(again / "observe/embeddings/step_000008.npz") as x, \
            np.load(observe / "embeddings/step_000008.npz") as y:
        assert np.array_equal(x["last"], y["last"]) and np.array_equal(x["middle"], y["middle"])
    run(compose([*PRETRAIN, f"paths.output_root={tmp_path / 'c'}"]))
    plain = read_history(_run_dir(tmp_path / "c") / "history.jsonl")
    observed = read_history(run_dir / "history.jsonl")
    for name in ("train/loss", "val/bpb"):
        assert observed[name] == plain[name], name
    assert not (_run_dir(tmp_path / "c") / "observe").exists()


@pytest.mark.slow
def test_grpo_toy_observatory_board_and_after_the_fact_command(compose, tmp_path: Path, one_thread: None,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run(compose([*GRPO, f"paths.output_root={tmp_path / 'out'}"], fast=False))
    run_dir = _run_dir(tmp_path / "out")
    observe = run_dir / "observe"
    assert len(_rows(observe / "probe_set.jsonl")) == 24
    hard = _rows(observe / "hard_examples.jsonl")
    assert {r["step"] for r in hard} == {0, 3, 6}
    assert {r["error"] for r in hard} <= {None, "wrong answer", "format error", "truncated", "reward error"}
    assert all("flip" in r for r in hard)
    skills = _rows(observe / "skills.jsonl")
    assert "eval:toy_arith" in skills[0]["scores"] and "probe:hard" in skills[-1]["scores"]
    trajectories = _rows(observe / "trajectories.jsonl")
    assert set(trajectories[0]["first_divergence"]) == set(trajectories[0]["logprobs"])
    events = _events(run_dir)
    assert "observe/hard_examples/text_summary" in events.Tags()["tensors"]
    table = events.Tensors("observe/hard_examples/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| | id | category | error | completion |") and ("✓" in table or "✗" in table)
    assert "flipped since the last checkpoint:" in table
    assert [e.step for e in events.Scalars("calib/ece")] == [0, 3, 6]

    before = len(_rows(observe / "learning_history.jsonl"))
    assert observe_main([str(run_dir), "--checkpoint", "last", "best"]) == 0
    rows = _rows(observe / "learning_history.jsonl")
    assert len(rows) == before + 2 and [r["source"] for r in rows[-2:]] == ["posthoc:last", "posthoc:best"]
    assert rows[-2]["drift_init"]["body.blocks.0"] == pytest.approx(rows[before - 1]["drift_init"]["body.blocks.0"])
    assert (observe / "embeddings" / "step_000006_posthoc-last.npz").is_file()
    assert (observe / "embeddings" / "step_000006.npz").is_file()
    capsys.readouterr()
    assert observe_main([str(run_dir), "--checkpoint", "nope.ckpt"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and err.startswith("aegir.observe: --checkpoint nope.ckpt: no checkpoint")


@pytest.mark.slow
def test_bad_probe_file_is_one_line_and_exit_2_without_a_run_directory(tmp_path: Path) -> None:
    probes = tmp_path / "probes.jsonl"
    probes.write_text('{"id": "a", "skill": "s", "text": "x"}\n{"id": "a", "skill": "s", "text": "y"}\n')
    done = run_cli(["callbacks=observatory", f"callbacks.observatory.probes.file={probes}",
                    f"paths.output_root={tmp_path / 'out'}"], cwd=tmp_path, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == f"aegir: observatory probe file {probes}, line 2: duplicate id 'a'"
    assert not list((tmp_path / "out").rglob("metadata.json"))


@pytest.mark.slow
def test_a_killed_run_resumes_its_instruments_append_only(tmp_path: Path) -> None:
    """Kill after the step-4 checkpoint, resume: the records (last row per step) equal an uninterrupted run's, and
    the rows already written are never rewritten."""
    from aegir.observe.observatory import read_rows
    from tests.conftest import FAST, run_cli_and_kill

    common = [*FAST, *OBS, "trainer.max_steps=12", "trainer.num_threads=1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_cli([*common, f"hydra.run.dir={straight}"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    status = run_cli_and_kill(common, killed, "val/bpb", 4, cwd=tmp_path)
    assert status != 0, "the run finished before it could be killed"
    written = (killed / "observe" / "learning_history.jsonl").read_text()
    resumed = subprocess.run([sys.executable, "-m", "aegir.resume", str(killed)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (killed / "observe" / "learning_history.jsonl").read_text().startswith(written)
    for name in ("learning_history.jsonl", "geometry.jsonl", "calibration.jsonl", "skills.jsonl",
                 "trajectories.jsonl"):
        a, b = read_rows(straight / "observe" / name), read_rows(killed / "observe" / name)
        assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 4, 8, 12], name
        assert a == b, name


TABLES = ["task.data.n_tables=60", "task.data.total_bytes=96", "task.data.target_bytes=64",
          "task.data.per_column_bytes=24", "algo.batch_size=8", "algo.warmup_steps=1", "trainer.max_steps=4",
          "trainer.val_check_interval=2"]
TINY = ["trainer.enable_progress_bar=false", "model.d_model=32", "model.n_layers=1", "model.head_size=32"]


def _stage_set(stage: str, overrides: list[str]) -> list[str]:
    return [f"++stages.{stage}.set.{o}" for o in overrides]


@pytest.mark.slow
def test_multi_stage_run_judges_the_cta_board_and_is_observed_after_the_fact_per_stage(
        compose, tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]) -> None:
    """+experiment=pretrain_then_cta with the observatory: each stage has its own records (the CTA stage judges the
    shipped CTA board); then `python -m aegir.observe RUN_DIR` observes each stage's own checkpoint, also after the
    run directory was moved."""
    overrides = ["+experiment=pretrain_then_cta", *TINY, *OBS, "gates.required=false",
                 f"paths.output_root={tmp_path / 'ms'}",
                 *_stage_set("pretrain", ["trainer.max_steps=4", "trainer.val_check_interval=2",
                                          "task.data.n_documents=60", "task.seq_len=64", "task.batch_size=4",
                                          "task.val_windows=8"]),
                 *_stage_set("cta", TABLES)]
    run(compose(overrides, fast=False), overrides)
    run_dir = _run_dir_multi(tmp_path / "ms")
    pretrain, cta = run_dir / "stages" / "1_pretrain" / "observe", run_dir / "stages" / "2_cta" / "observe"
    assert not (run_dir / "observe").exists()

    windows = _rows(pretrain / "probe_set.jsonl")  # serialized tables: windows keep their [CLS] / [SEP] ids
    assert len(windows) == 8 and any(max(p["ids"]) >= 256 for p in windows if "ids" in p)
    assert [r["step"] for r in _rows(pretrain / "learning_history.jsonl")] == [0, 2, 4]

    history = _rows(cta / "learning_history.jsonl")
    assert [r["step"] for r in history] == [0, 2, 4] and "head" in history[0]["layers"]
    calibration = _rows(cta / "calibration.jsonl")
    assert calibration[0]["n"] == 24 and calibration[0]["entropy_max"] > 0  # one softmax over the labels per probe
    assert _rows(cta / "geometry.jsonl")[0]["layers"]["last"] == "pooled features"
    board = load_board(BOARDS_DIR / "cta.yaml")
    hard = _rows(cta / "hard_examples.jsonl")
    assert len(hard) == 3 * len(board) and {r["step"] for r in hard} == {0, 2, 4}
    labels = set(load_label_map().cta_labels)
    assert all(r["completion"] in labels and 0 <= r["score"] <= 1 for r in hard)
    assert all(r["ok"] == (r["completion"] == item["expected"]) for r, item in zip(hard, board))
    assert {r["error"] for r in hard} <= {None, "wrong label"}
    metadata = read_json(run_dir / "stages" / "2_cta" / "metadata.json")
    assert metadata["observe"]["hard_examples"]["file"].endswith("boards/cta.yaml")

    # After the fact, on the run directory moved elsewhere (stage 2 finds stage 1's checkpoint again under it).
    moved = tmp_path / "moved"
    shutil.move(run_dir, moved)
    pretrain, cta = moved / "stages" / "1_pretrain" / "observe", moved / "stages" / "2_cta" / "observe"
    capsys.readouterr()
    assert observe_main([str(moved), "--checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    assert "stage pretrain:" in printed and "stage cta:" in printed
    for stage, steps in ((pretrain, 4), (cta, 4)):
        rows = _rows(stage / "learning_history.jsonl")
        assert rows[-1]["source"] == "posthoc:last" and rows[-1]["step"] == steps
        assert rows[-1]["drift_init"] == pytest.approx(rows[-2]["drift_init"])  # the same weights as at step 4
        with np.load(stage / "embeddings" / f"step_{steps:06d}_posthoc-last.npz") as emb:
            assert emb["last"].shape[0] == len(_rows(stage / "probe_set.jsonl"))
        assert (stage / "figures" / f"radar_step{steps:06d}_posthoc-last.png").stat().st_size > 1000
    posthoc = [r for r in _rows(cta / "hard_examples.jsonl") if r["source"] == "posthoc:last"]
    trained = [r for r in hard if r["step"] == 4]
    assert [(r["id"], r["completion"]) for r in posthoc] == [(r["id"], r["completion"]) for r in trained]


def _run_dir_multi(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("metadata.json") if p.parent.parent.name != "stages"]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.mark.slow
def test_cpa_and_ontology_boards_are_judged_in_short_runs(compose, tmp_path: Path, one_thread: None) -> None:
    run(compose(["+experiment=cta_from_scratch", "task=cpa", *TINY, *TABLES, *OBS, "task.data.total_bytes=128",
                 "task.data.target_bytes=48", f"paths.output_root={tmp_path / 'cpa'}"], fast=False))
    cpa = _run_dir(tmp_path / "cpa") / "observe"
    board = load_board(BOARDS_DIR / "cpa.yaml")
    hard = _rows(cpa / "hard_examples.jsonl")
    assert len(hard) == 3 * len(board) and [r["id"] for r in hard[:len(board)]] == [i["id"] for i in board]
    assert all(r["completion"] in load_label_map().cpa_labels for r in hard)

    run(compose(["task=ontology", "algo=grpo", "reward=ontology", "objective.metric=eval/reward",
                 "objective.mode=max", *TINY, *OBS, "task.n_records=80", "task.n_eval=4", "algo.group_size=2",
                 "algo.prompts_per_step=2", "algo.max_completion_length=48", "algo.warmup_steps=0",
                 "trainer.max_steps=2", "trainer.val_check_interval=2", f"paths.output_root={tmp_path / 'onto'}"],
                fast=False))
    onto = _run_dir(tmp_path / "onto") / "observe"
    board = load_board(BOARDS_DIR / "ontology.yaml")
    hard = _rows(onto / "hard_examples.jsonl")
    assert len(hard) == 2 * len(board) and {r["category"] for r in hard} == {i["category"] for i in board}
    # The GRPO loop's completion limit (48 bytes) caps the board's own 320: every random-init answer is cut short.
    assert all(len(r["completion"].encode()) <= 48 and r["score"] is not None for r in hard)
    assert {r["error"] for r in hard} <= {"truncated", "format error", "wrong answer", "reward error"}


@pytest.mark.slow
def test_observatory_on_an_hnet_and_an_hf_policy(compose, tmp_path: Path, one_thread: None,
                                                 hf_tiny_dir: Path) -> None:
    run(compose(["model=hnet_nano", "model.d_model=[32,64,64]", "task.data.n_documents=120", "task.seq_len=64",
                 "task.batch_size=4", "task.val_windows=8", "task.val_batch_size=8", "algo.warmup_steps=2",
                 "trainer.enable_progress_bar=false", *PRETRAIN, *OBS, f"paths.output_root={tmp_path / 'hnet'}"],
                fast=False))
    hnet = _run_dir(tmp_path / "hnet") / "observe"
    geometry = _rows(hnet / "geometry.jsonl")
    assert geometry[0]["layers"] == {"last": "ln_out", "middle": "hnet.encoder.stack.blocks.0"}
    assert geometry[-1]["drift"] is not None

    run(compose(["task=commerce", "algo=sft", "model=hf_tiny", f"model.name_or_path={hf_tiny_dir}",
                 "model.create_tiny=false", "task.data.scale=tiny",
                 "task.data.n_per_task={extraction: 24, sql_qa: 24, insights: 24, push: 24}",
                 "task.eval_minimums={extraction: 2, sql_qa: 2, insights: 2, push: 2}", "algo.lr=5e-3",
                 "algo.batch_size=4", "algo.max_len=256", "algo.warmup_steps=0", "trainer.max_steps=2",
                 "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
                 "callbacks.observatory.hard_examples.max_new_tokens=4", *OBS,
                 f"paths.output_root={tmp_path / 'hf'}"], fast=False))
    hf = _run_dir(tmp_path / "hf") / "observe"
    history = _rows(hf / "learning_history.jsonl")
    assert history[0]["layers"][0] == "model.layers.0" and history[1]["drift_init"]["model.layers.0"] > 0
    geometry = _rows(hf / "geometry.jsonl")
    assert geometry[0]["layers"]["last"].endswith("model.norm") and [r["step"] for r in geometry] == [0, 2]
    probes = _rows(hf / "probe_set.jsonl")
    assert {r["skill"] for r in probes} == {"extraction", "sql_qa", "insights", "push"}
    width = json.loads((hf_tiny_dir / "config.json").read_text())["hidden_size"]
    for row in geometry:  # the probes' pooled hidden states at the final norm and a middle layer of the HF model
        with np.load(hf / row["file"]) as emb:
            assert emb["last"].shape == emb["middle"].shape == (len(probes), width)
            assert emb["ids"].tolist() == [p["id"] for p in probes] and np.isfinite(emb["last"]).all()
    assert len(_rows(hf / "hard_examples.jsonl")) == 2 * 7  # the commerce board at steps 0 and 2
    assert all(len(v) > 1 for v in _rows(hf / "trajectories.jsonl")[0]["logprobs"].values())

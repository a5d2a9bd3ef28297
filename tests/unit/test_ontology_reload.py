"""Catalog hot-reload (reward.catalog_reload=true): a valid edit changes the rewards of the next GRPO step in every
reward worker; a malformed edit keeps the previous catalog, warns once and is counted; every version is copied into
the run directory; a checkpoint restores the version in force."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import pytest
import torch
import yaml

from aegir.config import load_group
from aegir.loops.grpo import GRPOModule
from aegir.models.lm import ByteLM
from aegir.models.policy import BytePolicy
from aegir.rl.rewards import RewardSpec, register_reward
from aegir.tasks.ontology.catalog import DEFAULT_CATALOG
from aegir.tasks.ontology.reload import CatalogWatcher, version_number
from aegir.tasks.ontology.rewards import record_catalog
from aegir.tokenizer import VOCAB_SIZE


@register_reward("test_catalog_probe")
def catalog_probe(record: Mapping[str, Any], completion: str) -> float | None:
    """The number of classes of the catalog the record is scored against: moves only when the catalog does."""
    return float(len(record_catalog(record).classes))


def _edited(extra_class: str) -> bytes:
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text())
    raw["classes"][extra_class] = {"parent": "Product", "comment": "an edit", "properties": []}
    return yaml.safe_dump(raw, sort_keys=False).encode()


MALFORMED = b"format: 1\nroot: Thing\nclasses: {Thing: {comment: x}, Person: {parent: Nobody, comment: y}}\n"


def test_watcher_checks_once_per_step_and_keeps_the_previous_catalog(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(DEFAULT_CATALOG.read_bytes())
    watcher = CatalogWatcher(path, tmp_path / "run", reload=True)
    first = watcher.version
    assert (tmp_path / "run" / "catalogs" / f"{first}.yaml").read_bytes() == path.read_bytes()
    assert watcher.before_step(0) == {"reward/catalog_version": version_number(first), "reward/catalog_errors": 0.0}

    path.write_bytes(_edited("Gadget"))
    watcher.before_step(0)  # the same step: not checked again
    assert watcher.version == first
    watcher.before_step(1)
    second = watcher.version
    assert second != first and (tmp_path / "run" / "catalogs" / f"{second}.yaml").is_file()
    assert len(watcher.catalog.classes) == 22

    with caplog.at_level(logging.WARNING, logger="aegir"):
        path.write_bytes(MALFORMED)
        metrics = watcher.before_step(2)
        watcher.before_step(3)
        watcher.before_step(4)
    assert watcher.version == second and metrics["reward/catalog_errors"] == 1.0
    assert len([r for r in caplog.records if "catalog edit rejected" in r.message]) == 1
    assert "classes.Person.parent" in caplog.records[0].message

    state = watcher.state_dict()
    path.write_bytes(DEFAULT_CATALOG.read_bytes())  # the file moves on after the checkpoint
    frozen = CatalogWatcher(path, tmp_path / "run", reload=False)
    frozen.load_state_dict(state)
    assert frozen.version == second and len(frozen.catalog.classes) == 22
    frozen.before_step(9)  # reload off: the restored version stays in force
    assert frozen.version == second
    rows = frozen.annotate([{"id": 1}])
    assert rows[0]["catalog_sha256"] == frozen.catalog.sha256 and Path(rows[0]["catalog_file"]).is_file()


class _EditAfter(L.Callback):
    """After training step k, write edits[k] to the catalog; record each step's reward mean and catalog metrics."""

    def __init__(self, path: Path, edits: dict[int, bytes]) -> None:
        self.path, self.edits = path, edits
        self.seen: list[tuple[float, float, float]] = []
        self.passed: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        metrics = trainer.callback_metrics
        self.seen.append((float(metrics["grpo/reward/mean"]), float(metrics["reward/catalog_version"]),
                          float(metrics["reward/catalog_errors"])))
        self.passed.append(float(metrics["grpo/pass/edited"]))
        step = trainer.global_step - 1
        if step in self.edits:
            self.path.write_bytes(self.edits[step])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_an_edit_during_grpo_changes_the_next_step_and_a_malformed_one_does_not(tmp_path: Path, workers: int) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(DEFAULT_CATALOG.read_bytes())
    watcher = CatalogWatcher(path, tmp_path / "run", reload=True)
    records = [{"id": i, "prompt": "CREATE TABLE t (id INT);", "task": "ontology"} for i in range(4)]
    settings = load_group("algo", "grpo", group_size=2, prompts_per_step=2, max_completion_length=4,
                          eval_batch_size=4)
    torch.manual_seed(0)
    policy = BytePolicy(ByteLM(vocab_size=VOCAB_SIZE, d_model=32, n_layers=1, head_size=32))
    spec = RewardSpec(components={"test_catalog_probe": 1.0}, workers=workers, timeout_s=30.0, catalog_reload=True,
                      pass_rates={"edited": ("test_catalog_probe", 22.0)})
    module = GRPOModule(policy, records, records, spec, settings, seed=0, total_steps=4, samples_dir=tmp_path / "s",
                        reward_context=watcher)
    edit = _EditAfter(path, {0: _edited("Gadget"), 1: MALFORMED})
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[edit])
    trainer.fit(module)
    rewards = [r for r, _, _ in edit.seen]
    assert rewards == [21.0, 22.0, 22.0, 22.0]          # the valid edit at step 1; the malformed one never
    assert [e for _, _, e in edit.seen] == [0.0, 0.0, 1.0, 1.0]
    assert edit.passed == [0.0, 1.0, 1.0, 1.0]  # grpo/pass/NAME: the share of rows with the component >= 22
    versions = [v for _, v, _ in edit.seen]
    assert versions[0] != versions[1] == versions[2] == versions[3]
    assert len(list((tmp_path / "run" / "catalogs").glob("*.yaml"))) == 2

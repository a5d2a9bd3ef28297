"""The `commerce` task of a run: the world database and the prompt/reference records it trains and evaluates on.

The generated world is cached under `<paths.output_root>/cache/commerce/` by (data_seed, scale) — generation is
deterministic, so a cached file is reused only when its hash matches a fresh build's recorded hash — or the user
points `task.data.db` / `task.data.pairs` at their own SQLite file and chat-style JSONL records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aegir.config.schema import CommerceTaskConfig
from aegir.errors import InputError
from aegir.rundir import sha256_file
from aegir.tasks.commerce.pairs import TASKS, build_pairs, split_pairs, stratified_eval_set
from aegir.tasks.commerce.user_data import check_user_db, read_user_pairs
from aegir.tasks.commerce.world import WorldInfo, build_world


@dataclass
class CommerceData:
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    provenance: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """Record id -> where it came from ("pairs.jsonl:12"; generated records: "generated record <id>")."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """Every record of the selected tasks, including held-out ones the fixed eval set does not use (what the
    loader checks against the reward configuration)."""

    def where(self, index: int, record: Mapping[str, Any]) -> str:
        """Where `record` came from, for error messages (see sources)."""
        record_id = str(record.get("id"))
        return self.sources.get(record_id, f"generated record {record_id}")


def _world(data_seed: int, scale: str, cache_dir: Path) -> WorldInfo:
    path = cache_dir / "commerce" / f"world_seed{data_seed}_{scale}.sqlite"
    stamp = path.with_suffix(".json")
    if path.is_file() and stamp.is_file():
        recorded = json.loads(stamp.read_text())
        if recorded.get("sha256") == sha256_file(path):
            return WorldInfo(path=path, sha256=recorded["sha256"], data_seed=data_seed, scale=scale,
                             row_counts=recorded["row_counts"])
    path.parent.mkdir(parents=True, exist_ok=True)
    info = build_world(data_seed, path, scale=scale)
    stamp.write_text(json.dumps({"sha256": info.sha256, "row_counts": info.row_counts}))
    return info


def prepare_commerce(task: CommerceTaskConfig, data_seed: int, cache_dir: Path) -> CommerceData:
    data, tasks = task.data, list(task.tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise InputError(f"config error: task.tasks: unknown task(s) {', '.join(unknown)}; allowed: {', '.join(TASKS)}")
    if data.db:
        db_path = Path(data.db).resolve()
        row_counts = check_user_db(db_path)  # before hashing: a missing file or a directory is one line, exit 2
        world = WorldInfo(path=db_path, sha256=sha256_file(db_path), data_seed=data_seed, scale="user",
                          row_counts=row_counts)
    else:
        world = _world(data_seed, data.scale, cache_dir)
    sources: dict[str, str] = {}
    if data.pairs:
        records, lines = read_user_pairs(data.pairs, require_task_fields=True)
        sources = {str(record["id"]): f"{data.pairs}:{line}" for record, line in zip(records, lines)}
        for record in records:
            if record["task"] == "sql_qa" and not record.get("db_path"):
                record["db_path"] = str(world.path)
    else:
        counts = {t: data.n_per_task[t] for t in tasks}
        records = build_pairs(data_seed, world, counts)
    records = [r for r in records if r["task"] in tasks]
    train, held_out = split_pairs(records, data_seed, data.eval_fraction)
    minimums = {t: task.eval_minimums[t] for t in tasks}
    eval_records, eval_hash = stratified_eval_set(held_out, minimums, data_seed=data_seed)
    provenance = {"commerce": {"world": str(world.path), "world_sha256": world.sha256, "scale": world.scale,
                               "pairs": str(data.pairs or "generated"), "n_train": len(train),
                               "n_eval": len(eval_records), "eval_sha256": eval_hash, "tasks": tasks}}
    return CommerceData(train, eval_records, provenance, sources, records)

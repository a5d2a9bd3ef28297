"""The fixed probe set and the hard-example boards of the observatory (docs/observatory.md, Probe set).

A probe set is built from `data_seed` only, so every seed and every arm of an experiment sees the same probes and
their instruments compare. One probe is a JSON object with an `id` (unique), a `skill` (its category) and one of:

- `text`: a window of text (pretraining): hidden states pool over it, calibration and entropy score every
  next-token prediction in it, and its last `probes.answer_tokens` tokens are its "answer" for the trajectories;
- `prompt` (a string, or chat messages) and optionally `answer`: a record (SFT / GRPO tasks): hidden states pool
  over prompt + answer, calibration, entropy and trajectories score the answer tokens under teacher forcing;
- `ids` and `label` (classification): a serialized column and its label name.

A user probe file (`callbacks.observatory.probes.file`) holds such objects one per line (`text` or `prompt`; `label`
with `text` for classifiers) and is checked line by line: a bad line is one InputError naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aegir.errors import InputError
from aegir.observe.config import ObservatoryConfig, ProbeSetConfig

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
PRETRAIN_KINDS = ("ontology", "ddl", "rows", "prose")
MATCHES = ("exact", "prefix", "contains", "number", "composition")  # aegir/observe/hard_examples.py
# Documents of the synthetic corpus the pretraining probes come from: far beyond any corpus size, so the probes are
# never training text, and independent of `task.data.n_documents` and of the arm.
PROBE_DOCUMENT_OFFSET = 1_000_000


# --------------------------------------------------------------------------------------------------- hashing / io
def probe_lines(probes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The canonical JSON line of every probe (sorted keys, UTF-8): what is written and hashed."""
    return [json.dumps(p, sort_keys=True, ensure_ascii=False) for p in probes]


def probe_set_sha256(probes: Sequence[Mapping[str, Any]]) -> str:
    return hashlib.sha256(("\n".join(probe_lines(probes)) + "\n").encode("utf-8")).hexdigest()


def _bad(path: Path, line: int, message: str) -> InputError:
    return InputError(f"observatory probe file {path}, line {line}: {message}")


def load_probe_file(path: str | Path) -> list[dict[str, Any]]:
    """A user's probe set (jsonl), validated line by line (InputError naming the file and line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"callbacks.observatory.probes.file: {path} does not exist")
    probes: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except json.JSONDecodeError as err:
                raise _bad(path, number, f"not valid JSON ({err.msg})") from None
            if not isinstance(item, dict):
                raise _bad(path, number, "each line must be a JSON object")
            for key in ("id", "skill"):
                if not isinstance(item.get(key), str) or not item[key]:
                    raise _bad(path, number, f"'{key}' must be a non-empty string")
            if item["id"] in seen:
                raise _bad(path, number, f"duplicate id '{item['id']}'")
            seen.add(item["id"])
            has_text, has_prompt = "text" in item, "prompt" in item
            if has_text == has_prompt:
                raise _bad(path, number, "give exactly one of 'text' or 'prompt'")
            if has_text and (not isinstance(item["text"], str) or not item["text"]):
                raise _bad(path, number, "'text' must be a non-empty string")
            if has_prompt and not (isinstance(item["prompt"], str) or _is_chat(item["prompt"])):
                raise _bad(path, number, "'prompt' must be a string or a list of {role, content} messages")
            if "answer" in item and not isinstance(item["answer"], str):
                raise _bad(path, number, "'answer' must be a string")
            if "label" in item and not isinstance(item["label"], str):
                raise _bad(path, number, "'label' must be a string")
            unknown = sorted(set(item) - {"id", "skill", "text", "prompt", "answer", "label"})
            if unknown:
                raise _bad(path, number, f"unknown key(s) {', '.join(unknown)}; allowed: id, skill, text, prompt, "
                                         "answer, label")
            probes.append(item)
    if len(probes) < 3:
        raise InputError(f"observatory probe file {path}: needs at least 3 probes, found {len(probes)}")
    return probes


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)


def load_board(path: str | Path) -> list[dict[str, Any]]:
    """A hard-example board: YAML {max_new_tokens?, examples: [{id, category, prompt | columns, expected, match?,
    format?, record?}]} (aegir/observe/hard_examples.py); the prompt is a string or chat messages, `columns` a
    table for the column classifier. InputError naming the file and the entry. A board-wide `max_new_tokens` is
    copied onto every example."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"callbacks.observatory.hard_examples.file: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"hard-example board {path}{line}: not valid YAML") from None
    examples = (data or {}).get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise InputError(f"hard-example board {path}: needs a non-empty 'examples' list")
    unknown = sorted(set(data) - {"examples", "max_new_tokens"})
    if unknown:
        raise InputError(f"hard-example board {path}: unknown top-level key(s) {', '.join(unknown)}; allowed: "
                         "examples, max_new_tokens")
    limit = data.get("max_new_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InputError(f"hard-example board {path}: 'max_new_tokens' must be an integer >= 1, got {limit!r}")
    seen: set[str] = set()
    for index, item in enumerate(examples, start=1):
        where = f"hard-example board {path}, example {index}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: must be a mapping with id, category, prompt (or columns), expected")
        for key in ("id", "category", "expected"):
            if not isinstance(item.get(key), (str, int, float)) or str(item.get(key)) == "":
                raise InputError(f"{where}: '{key}' is missing or empty")
        if ("prompt" in item) == ("columns" in item):
            raise InputError(f"{where}: give exactly one of 'prompt' (generating tasks) or 'columns' (CTA / CPA)")
        if "prompt" in item and not (isinstance(item["prompt"], str) and item["prompt"]) \
                and not _is_chat(item["prompt"]):
            raise InputError(f"{where}: 'prompt' must be a non-empty string or a list of {{role, content}} messages")
        if "columns" in item:
            problem = _columns_problem(item["columns"])
            if problem:
                raise InputError(f"{where}: 'columns' {problem}")
        if str(item.get("match", "exact")) not in MATCHES:
            raise InputError(f"{where}: 'match' must be one of {', '.join(MATCHES)}")
        if item.get("match") == "composition" and not isinstance((item.get("record") or {}).get("footprint"), dict):
            raise InputError(f"{where}: 'match: composition' needs the footprint the verifier checks, as "
                             "'record: {footprint: {tables: [...]}}'")
        if str(item["id"]) in seen:
            raise InputError(f"{where}: duplicate id '{item['id']}'")
        seen.add(str(item["id"]))
    out = [{k: (str(v) if k in ("id", "category", "expected") else v) for k, v in item.items()} for item in examples]
    return [{**item, "max_new_tokens": limit} for item in out] if limit is not None else out


def _columns_problem(columns: Any) -> str | None:
    """What is wrong with a classifier example's table, or None: {target: [values], main?: [values],
    context?: [[values], ...]}, every value a scalar."""
    def values_ok(column: Any) -> bool:
        return isinstance(column, list) and bool(column) and all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v) != "" for v in column)

    if not isinstance(columns, dict):
        return "must be a mapping {target, main (CPA), context}"
    unknown = sorted(set(columns) - {"target", "main", "context"})
    if unknown:
        return f"has unknown key(s) {', '.join(map(str, unknown))}; allowed: target, main, context"
    for role in ("target", "main"):
        if (role == "target" or role in columns) and not values_ok(columns.get(role)):
            return f"'{role}' must be a non-empty list of values"
    context = columns.get("context", [])
    if not isinstance(context, list) or not all(values_ok(c) for c in context):
        return "'context' must be a list of non-empty lists of values"
    return None


def board_path(task_name: str, file: str | None) -> Path | None:
    """The board a run uses: the user's file, or the one shipped for the task (None when there is none)."""
    if file:
        return Path(file)
    shipped = BOARDS_DIR / f"{task_name}.yaml"
    return shipped if shipped.is_file() else None


def check_board_task(board: Sequence[Mapping[str, Any]], path: Any, task_name: str) -> None:
    """A board fits its task: the column classifier's examples give `columns` (with `main` for cpa, without for
    cta), every other task's a `prompt` (InputError naming the example)."""
    classifier = task_name in ("cta", "cpa")
    for item in board:
        where = f"hard-example board {path}, example '{item['id']}'"
        if not classifier and "prompt" not in item:
            raise InputError(f"{where}: task={task_name} generates text: give a 'prompt' ('columns' are for cta, "
                             "cpa)")
        if classifier and "columns" not in item:
            raise InputError(f"{where}: task={task_name} classifies columns: give 'columns' {{target, main, "
                             "context}}, not a prompt")
        if classifier and (task_name == "cpa") != ("main" in item["columns"]):
            raise InputError(f"{where}: 'columns.main' is " + ("required for cpa" if task_name == "cpa" else
                                                               "only for cpa (the pair's subject column)"))


def check_user_files(obs: ObservatoryConfig, task_name: str) -> None:
    """Validate the user's probe file and board (also against the task) before any work (called by
    aegir.config.validate)."""
    if obs.probes.file:
        load_probe_file(obs.probes.file)
    if obs.hard_examples.enabled and obs.hard_examples.file:
        check_board_task(load_board(obs.hard_examples.file), obs.hard_examples.file, task_name)


# --------------------------------------------------------------------------------------------------- built sets
def _balanced(by_skill: Mapping[str, Sequence[dict[str, Any]]], n: int) -> list[dict[str, Any]]:
    """Round-robin over the skills (in the given order) until n probes are taken or every skill is exhausted."""
    out: list[dict[str, Any]] = []
    queues = {skill: list(items) for skill, items in by_skill.items()}
    while len(out) < n and any(queues.values()):
        for skill in list(queues):
            if queues[skill] and len(out) < n:
                out.append(queues[skill].pop(0))
    return out


def _cut(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in max_bytes."""
    data = text.encode("utf-8")[:max_bytes]
    return data.decode("utf-8", errors="ignore")


def pretrain_probes(data_seed: int, n: int, window_bytes: int) -> list[dict[str, Any]]:
    """Windows of the synthetic corpus per segment kind (ontology / DDL / rows / prose), from documents no run
    trains on (`PROBE_DOCUMENT_OFFSET`), the same for every arm."""
    from aegir.tasks.pretrain.corpus import generate_document

    per_kind = -(-n // len(PRETRAIN_KINDS))
    by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in PRETRAIN_KINDS}
    index = PROBE_DOCUMENT_OFFSET
    while any(len(v) < per_kind for v in by_kind.values()) and index < PROBE_DOCUMENT_OFFSET + 50 * n:
        for seg_no, segment in enumerate(generate_document(data_seed, index)):
            items = by_kind.get(segment.kind)
            if items is None or len(items) >= per_kind:
                continue
            text = _cut(segment.text, window_bytes)
            if len(text.encode("utf-8")) >= window_bytes // 2:
                items.append({"id": f"pretrain/{segment.kind}/{index}.{seg_no}", "skill": segment.kind, "text": text})
        index += 1
    return _balanced(by_kind, n)


def toy_difficulty(a: int, op: str, b: int, answer: int) -> str:
    """easy: one-digit operands under 5 and a one-digit answer; hard: the answer needs two characters or more (a
    carry, a sign); medium: the rest."""
    if len(str(answer)) >= 2:
        return "hard"
    return "easy" if a < 5 and b < 5 else "medium"


def toy_probes(data_seed: int, n: int, max_operand: int, ops: str) -> list[dict[str, Any]]:
    """Toy arithmetic problems by difficulty (easy / medium / hard), drawn from the whole problem space."""
    from aegir.tasks.toy import make_toy_record

    by_skill: dict[str, list[dict[str, Any]]] = {"easy": [], "medium": [], "hard": []}
    problems = [(a, op, b) for op in ops for a in range(max_operand + 1) for b in range(max_operand + 1)]
    rng = random.Random(f"observatory/toy/{data_seed}")
    rng.shuffle(problems)
    for a, op, b in problems:
        record = make_toy_record(f"probe/{a}{op}{b}", a, op, b)
        skill = toy_difficulty(a, op, b, int(record["answer"]))
        by_skill[skill].append({"id": record["id"], "skill": skill, "prompt": record["prompt"],
                                "answer": str(record["answer"])})
    return _balanced(by_skill, n)


def record_probes(records: Sequence[Mapping[str, Any]], data_seed: int, n: int) -> list[dict[str, Any]]:
    """Prompt / reference records (commerce) per task, in a data_seed-fixed order."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: str(r.get("id"))):
        answer = record.get("reference", record.get("answer"))
        item = {"id": str(record.get("id")), "skill": str(record.get("task", "default")), "prompt": record["prompt"]}
        if answer is not None:
            item["answer"] = str(answer)
        by_task.setdefault(item["skill"], []).append(item)
    rng = random.Random(f"observatory/records/{data_seed}")
    for items in by_task.values():
        rng.shuffle(items)
    return _balanced(dict(sorted(by_task.items())), n)


def label_family(label: str) -> str:
    """The family of a Schema.org label: its part before the first '/' (e.g. `Product/name` -> `Product`)."""
    return label.split("/", 1)[0]


def column_probes(examples: Sequence[Any], labels: Sequence[str], data_seed: int, n: int) -> list[dict[str, Any]]:
    """Validation columns per label family (CTA / CPA)."""
    by_family: dict[str, list[dict[str, Any]]] = {}
    for index, example in enumerate(examples):
        label = labels[int(example.label)]
        by_family.setdefault(label_family(label), []).append(
            {"id": f"col/{example.table}/{example.column}/{index}", "skill": label_family(label), "label": label,
             "ids": [int(i) for i in example.ids]})
    rng = random.Random(f"observatory/columns/{data_seed}")
    for items in by_family.values():
        rng.shuffle(items)
    return _balanced(dict(sorted(by_family.items())), n)


def build_probe_set(task: Any, data_seed: int, probes_cfg: ProbeSetConfig, module: Any
                    ) -> tuple[list[dict[str, Any]], str]:
    """(probes, source) for a run (`task`: the typed task section): the user's file, or the set built for the task
    from data_seed."""
    n = probes_cfg.n
    if probes_cfg.file:
        return load_probe_file(probes_cfg.file), str(probes_cfg.file)
    name = str(task.name)
    if name == "pretrain":
        source = str(task.data.source)
        if source == "synthetic":
            return pretrain_probes(data_seed, n, probes_cfg.window_bytes), "built:pretrain"
        return window_probes(module.val_windows[:n]), "built:val_windows"
    if name == "toy_arith":
        return toy_probes(data_seed, n, int(task.max_operand), str(task.ops)), "built:toy_arith"
    if name in ("cta", "cpa"):
        return column_probes(module.val_examples, module.labels, data_seed, n), f"built:{name}"
    records = getattr(module, "eval_records", None) or []
    return record_probes(records, data_seed, n), f"built:{name}"


def window_probes(windows: Sequence[Any]) -> list[dict[str, Any]]:
    """The first validation windows of a pretraining run on files or serialized tables. A window holding special
    tokens (the [CLS] / [SEP] of serialized tables, which no text can spell) keeps its token `ids`, with `text` its
    readable form; the others are plain `text`."""
    from aegir.tokenizer import ByteTokenizer

    tokenizer = ByteTokenizer()
    out: list[dict[str, Any]] = []
    for i, window in enumerate(windows):
        ids = [int(t) for t in window.tolist()]
        if all(t < 256 for t in ids):
            out.append({"id": f"val/{i}", "skill": "val", "text": bytes(ids).decode("utf-8", errors="replace")})
        else:
            out.append({"id": f"val/{i}", "skill": "val", "ids": ids,
                        "text": tokenizer.decode(ids, skip_special=False)})
    return out

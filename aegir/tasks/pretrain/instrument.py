"""The fixed cross-arm eval instrument of the `pretrain` task: per-segment-kind eval windows and relational probes.

Why: the corpus arms (full / no_ontology / no_schema) validate on their *own* held-out text, so `val/bpb` compares
different bytes across arms. The instrument is built from `data_seed`, the catalog and ``task.heldout_classes``
only -- never from the arm, `task.data.n_documents` or `val_fraction` -- so every arm of a multirun is scored on
byte-identical sets (one SHA-256 each in every arm's metadata.json):

* **eval windows**: documents ``EVAL_FIRST_DOCUMENT + j`` of the synthetic corpus (document i depends only on
  (data_seed, i), and no run trains on a million documents, so these are unseen rows of the catalog's tables),
  always in their *full* form (every segment kind), with the kind of every byte, so bpb is reported per kind
  (``eval/bpb/<kind>``). They are about the classes the corpus trains on: new rows of seen tables, and ontology
  and DDL segments restating what the catalog says about classes every arm may have seen.
* **held-out-class eval windows** (``task.heldout_classes`` = k > 0): the corpus never draws k classes of the
  catalog (``heldout_class_names``: leaves no other class references, chosen from data_seed and the catalog, so
  no training byte names them); the same number of windows, cut the same way from documents about those classes
  only (``generate_heldout_document``, numbered in their own stream), is scored as ``eval/bpb_heldout/<kind>``:
  tables, DDL, ontology statements and prose the model has never seen, about classes whose parents and referenced
  tables it has.
* **relational probes**: multiple-choice items scored by the model's log-likelihood of each candidate (no
  generation). The reference answer of every item comes from the catalog (tests/unit/test_instrument.py checks it
  against the catalog and the generator). Probes are written in DDL, SQL and row formats, never in ontology
  format: the question is whether *stating* the ontology helps a model learn relations that the other segment
  kinds also show, not whether a model recognises a format it was trained on. With held-out classes (k > 0) the
  probes are about the seen classes only (``seen_class_names``): every item's table, answer and distractors are
  classes the corpus trains on, and no held-out class or table is named in a context, candidate or baseline -- a
  never-seen distractor would be rejected for being unfamiliar, not for being relationally wrong. With k = 0 the
  items are those of before held-out classes existed. Seen classes too few to give a foreign key three unrelated
  distractors are one config error line, not a fallback to held-out names.

  - ``ddl_references``: a CREATE TABLE cut just before the table a foreign key references; candidates are the
    referenced table and other tables (issue 17's "DDL completion").
  - ``join_target``: a CREATE VIEW joining a table to what one of its keys references, cut at the joined table
    ("join consistency": the join that respects the key vs joins that violate it).
  - ``join_row``: a row of such a join view, cut at the joined name: the name of a row of the referenced class vs
    names of rows of unrelated classes (the names come from the corpus generator itself). Scored against the same
    names after a cue-free context (``ProbeItem.baseline``): names differ in how predictable they are on their own.
  - ``column_type``: a table's rows (JSON lines, so the column comes with its values), then its CREATE TABLE cut at
    one column's type; candidates are SQL types ("column <-> property range").

  A foreign-key *value* cloze (the key value of a row that matches a row of the referenced table) cannot be built:
  the corpus draws key values independently of the referenced rows, so no value is more correct than another.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Callable

import torch

from aegir.errors import InputError
from aegir.tasks.ontology.catalog import SQL_TYPES, Catalog, Column, Table
from aegir.tasks.pretrain.corpus import (DOCUMENT_SEPARATOR, SEGMENT_KINDS, SEGMENT_SEPARATOR, Segment,
                                         _generate_rows, _json_value, _random_style, generate_document,
                                         generate_heldout_document, heldout_class_names, seen_class_names)

EVAL_FIRST_DOCUMENT = 1_000_000  # eval documents are numbered from here; training uses documents 0 .. n-1
SEPARATOR_KIND = -1  # the kind code of separator bytes (scored in no per-kind metric)
KIND_CODES: dict[str, int] = {kind: code for code, kind in enumerate(SEGMENT_KINDS)}
N_CANDIDATES = 4  # candidates per probe item: the answer and three distractors (chance = 1/4)
# join_row's cue-free context: any row's name. Without it, per-byte likelihood prefers formulaic names ("Order
# ORD-2023-00134") to free-form ones (person names) whatever the key (experiments/arms_relational.md).
JOIN_ROW_BASELINE = '{"name": "'


@dataclass(frozen=True)
class EvalWindows:
    """[n, seq_len + 1] byte windows and the segment kind code of every byte (SEPARATOR_KIND for separators)."""

    windows: torch.Tensor
    kinds: torch.Tensor
    sha256: str
    bytes_per_kind: dict[str, int]


@dataclass(frozen=True)
class ProbeItem:
    """One multiple-choice item: the model scores each candidate's bytes after the context."""

    context: str
    candidates: tuple[str, ...]
    answer: int  # index of the reference answer in `candidates`
    meta: dict[str, str] = field(default_factory=dict)  # what the answer was derived from (for tests and audits)
    # A context without the relational cue; when set, a candidate's score is its log-likelihood after `context`
    # minus that after `baseline`, so how predictable a candidate is on its own cancels out.
    baseline: str = ""


def _labelled_document(segments: list[Segment]) -> tuple[bytes, list[int]]:
    """A document's full text (every segment kind) as bytes, with one kind code per byte."""
    data, kinds = bytearray(), []
    separator = SEGMENT_SEPARATOR.encode("utf-8")
    for position, segment in enumerate(segments):
        if position:
            data += separator
            kinds += [SEPARATOR_KIND] * len(separator)
        encoded = segment.text.encode("utf-8")
        data += encoded
        kinds += [KIND_CODES[segment.kind]] * len(encoded)
    return bytes(data), kinds


def build_eval_windows(data_seed: int, catalog: Catalog, seq_len: int, n_windows: int, heldout_classes: int = 0,
                       about_heldout: bool = False) -> EvalWindows:
    """Window j: `seq_len + 1` bytes of eval document j (full form, continued by document j + 1 when it ends) from
    an offset drawn from (data_seed, j), with the kind of every byte. One document per window spreads the set over
    many classes and every segment position. The documents are the corpus's from EVAL_FIRST_DOCUMENT on (about
    the classes it trains on), or with `about_heldout` the held-out classes' own documents from 0 on."""
    if about_heldout:
        def document(j: int) -> list[Segment]:
            return generate_heldout_document(data_seed, j, catalog, heldout_classes)
        offset_key = "aegir-eval-window-heldout"
    else:
        def document(j: int) -> list[Segment]:
            return generate_document(data_seed, EVAL_FIRST_DOCUMENT + j, catalog, heldout_classes)
        offset_key = "aegir-eval-window"
    width = seq_len + 1
    windows, kinds = [], []
    separator = list(DOCUMENT_SEPARATOR)
    for j in range(n_windows):
        text, labels = _labelled_document(document(j))
        first = len(text)
        following = j + 1
        while len(text) < first + width:  # long enough for any offset inside document j
            more, more_labels = _labelled_document(document(following))
            text, labels = text + DOCUMENT_SEPARATOR + more, labels + [SEPARATOR_KIND] * len(separator) + more_labels
            following += 1
        offset = random.Random(f"{offset_key}:{data_seed}:{j}").randrange(first)
        windows.append(list(text[offset:offset + width]))
        kinds.append(labels[offset:offset + width])
    window_tensor = torch.tensor(windows, dtype=torch.long)
    kind_codes = torch.tensor(kinds, dtype=torch.int8)
    digest = hashlib.sha256(window_tensor.to(torch.uint8).numpy().tobytes())
    digest.update(kind_codes.numpy().tobytes())
    counts = {kind: int((kind_codes[:, 1:] == code).sum()) for kind, code in KIND_CODES.items()}
    return EvalWindows(window_tensor, kind_codes, digest.hexdigest(), counts)


# --------------------------------------------------------------------------------------------------------------
# Relational probes
# --------------------------------------------------------------------------------------------------------------

def _related(catalog: Catalog, a: str, b: str) -> bool:
    """True when one class is the other or one of its ancestors (a key to either is not wrong)."""
    return a == b or a in catalog.ancestors(b) or b in catalog.ancestors(a)


def _foreign_keys(catalog: Catalog, seen: tuple[str, ...]) -> list[tuple[Table, Column]]:
    """The foreign keys of the seen tables (they reference seen classes only: a held-out class is referenced by
    no other class, ``holdable_classes``)."""
    return [(catalog.table_for(cls), col) for cls in seen for col in catalog.table_for(cls).columns if col.references]


def _distractor_pool(catalog: Catalog, seen: tuple[str, ...], target: str) -> list[str]:
    """Seen classes a key to `target` would wrongly point at (neither it nor an ancestor or descendant)."""
    return [c for c in seen if not _related(catalog, c, target)]


def _distractor_classes(catalog: Catalog, seen: tuple[str, ...], target: str, rng: random.Random, k: int
                        ) -> list[str]:
    return rng.sample(_distractor_pool(catalog, seen, target), k)


def _shuffled(answer: str, distractors: list[str], rng: random.Random) -> tuple[tuple[str, ...], int]:
    candidates = [answer, *distractors]
    rng.shuffle(candidates)
    return tuple(candidates), candidates.index(answer)


def _ddl_references(catalog: Catalog, seen: tuple[str, ...], rng: random.Random) -> ProbeItem:
    table, fk = rng.choice(_foreign_keys(catalog, seen))
    inline = rng.random() < 0.5
    ddl = catalog.render_create_table(table, rng.random() < 0.3, inline)
    marker = (f"  {fk.name} INTEGER REFERENCES " if inline else f"  FOREIGN KEY ({fk.name}) REFERENCES ")
    cut = ddl.index(marker) + len(marker)
    target = fk.references or ""
    distractors = [catalog.table_name(c) for c in _distractor_classes(catalog, seen, target, rng, N_CANDIDATES - 1)]
    candidates, answer = _shuffled(catalog.table_name(target), distractors, rng)
    return ProbeItem(ddl[:cut], tuple(f"{c}(id)" for c in candidates), answer,
                     {"table": table.name, "column": fk.name, "references": target})


def _join_target(catalog: Catalog, seen: tuple[str, ...], rng: random.Random) -> ProbeItem:
    table, fk = rng.choice(_foreign_keys(catalog, seen))
    target = fk.references or ""
    view = next(v for v in catalog.views_for(table.class_name) if v.name == f"{table.name}_with_{fk.prop}")
    marker = "\nJOIN "
    cut = view.sql.index(marker) + len(marker)
    distractors = [catalog.table_name(c) for c in _distractor_classes(catalog, seen, target, rng, N_CANDIDATES - 1)]
    candidates, answer = _shuffled(catalog.table_name(target), distractors, rng)
    return ProbeItem(view.sql[:cut], tuple(f"{c} AS r ON t.{fk.name} = r.id;" for c in candidates), answer,
                     {"table": table.name, "column": fk.name, "references": target})


def _row_names(catalog: Catalog, cls: str, rng: random.Random) -> str:
    return str(_generate_rows(catalog, catalog.table_for(cls), 1, rng)[0]["name"])


def _join_row(catalog: Catalog, seen: tuple[str, ...], rng: random.Random) -> ProbeItem:
    table, fk = rng.choice(_foreign_keys(catalog, seen))
    target = fk.references or ""
    row = _generate_rows(catalog, table, 1, rng)[0]
    head = json.dumps({"id": row["id"], "name": row["name"]}, ensure_ascii=False)[:-1]
    context = f"{table.name}_with_{fk.prop}.jsonl\n{head}, \"{fk.prop}_name\": \""
    pairs = [(cls, _row_names(catalog, cls, rng))
             for cls in (target, *_distractor_classes(catalog, seen, target, rng, N_CANDIDATES - 1))]
    rng.shuffle(pairs)
    answer = next(i for i, (cls, _) in enumerate(pairs) if cls == target)
    return ProbeItem(context, tuple(json.dumps(name, ensure_ascii=False)[1:] + "}" for _, name in pairs), answer,
                     {"table": table.name, "column": fk.name, "references": target,
                      "candidate_classes": ",".join(cls for cls, _ in pairs)}, baseline=JOIN_ROW_BASELINE)


def _column_type(catalog: Catalog, seen: tuple[str, ...], rng: random.Random) -> ProbeItem:
    cls = rng.choice(seen)
    table = catalog.table_for(cls)
    column = rng.choice([c for c in table.columns if c.name != "id" and not c.references])
    rows = _generate_rows(catalog, table, 2, rng)
    style = _random_style(rng)
    lines = [json.dumps({c: _json_value(c, v, style) for c, v in row.items()}, ensure_ascii=False) for row in rows]
    ddl = catalog.render_create_table(table, False, rng.random() < 0.5)
    marker = f"\n  {column.name} "
    cut = ddl.index(marker) + len(marker)
    answer_type = SQL_TYPES[column.datatype]
    others = sorted(set(SQL_TYPES.values()) - {answer_type})
    after = ddl[cut + len(answer_type)]  # "," or the newline before ");": scored with every candidate
    candidates, answer = _shuffled(answer_type, rng.sample(others, N_CANDIDATES - 1), rng)
    context = f"{table.name}.jsonl\n" + "\n".join(lines) + "\n\n" + ddl[:cut]
    return ProbeItem(context, tuple(c + after for c in candidates), answer,
                     {"table": table.name, "column": column.name, "datatype": column.datatype})


# A probe item from the catalog, the classes it may name (``seen_class_names``) and the item's own random stream.
PROBES: dict[str, Callable[[Catalog, tuple[str, ...], random.Random], ProbeItem]] = {
    "ddl_references": _ddl_references,
    "join_target": _join_target,
    "join_row": _join_row,
    "column_type": _column_type,
}


def _check_probe_classes(catalog: Catalog, seen: tuple[str, ...], held_out: tuple[str, ...]) -> None:
    """One config error line when the seen classes cannot give every probe item its answer and distractors,
    raised before any item is drawn, so whether a run fails does not depend on task.probe_items. No fallback to
    held-out classes: a never-seen distractor is rejected for being unfamiliar, not for being relationally wrong."""
    key = "task.heldout_classes" if held_out else "task.probe_items"
    where = f"the catalog {catalog.source}" + (f" without the held-out {', '.join(held_out)}" if held_out else "")
    foreign_keys = _foreign_keys(catalog, seen)
    if not foreign_keys:
        raise InputError(f"config error: {key}: {where} has no foreign key among the seen tables, so no relational "
                         f"probe item can be built; hold out fewer classes or set task.probe_items=0")
    for table, fk in foreign_keys:
        pool = _distractor_pool(catalog, seen, fk.references or "")
        if len(pool) < N_CANDIDATES - 1:
            raise InputError(f"config error: {key}: {where} leaves {len(pool)} seen classes unrelated to "
                             f"{fk.references} (referenced by {table.name}.{fk.name}), fewer than the "
                             f"{N_CANDIDATES - 1} distractors a probe item needs; hold out fewer classes or set "
                             f"task.probe_items=0")


def build_probes(data_seed: int, catalog: Catalog, n_items: int, heldout_classes: int = 0
                 ) -> dict[str, list[ProbeItem]]:
    """`n_items` items of every probe; item i of a probe depends only on (data_seed, probe, i), the catalog and
    `heldout_classes` (never the arm). Items, answers and distractors name seen classes only
    (``seen_class_names``); with heldout_classes 0 that is every class, and the items are those of before."""
    seen = seen_class_names(catalog, data_seed, heldout_classes)
    _check_probe_classes(catalog, seen, heldout_class_names(catalog, data_seed, heldout_classes))
    return {name: [make(catalog, seen, random.Random(f"aegir-probe:{data_seed}:{name}:{i}")) for i in range(n_items)]
            for name, make in PROBES.items()}


def probes_sha256(probes: dict[str, list[ProbeItem]]) -> str:
    """Hash of every item's context, candidates and answer: equal hashes mean the same questions."""
    payload = {name: [[item.context, list(item.candidates), item.answer, item.baseline] for item in items]
               for name, items in probes.items()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Instrument:
    """Everything the loop scores at the end of a run, and its provenance for metadata.json."""

    eval_windows: EvalWindows | None
    probes: dict[str, list[ProbeItem]]
    provenance: dict[str, object]
    heldout_windows: EvalWindows | None = None  # windows of held-out-class documents (task.heldout_classes > 0)


def _windows_provenance(windows: EvalWindows, seq_len: int, catalog: Catalog, first_document: int
                        ) -> dict[str, object]:
    return {"n": int(windows.windows.shape[0]), "seq_len": seq_len, "sha256": windows.sha256,
            "bytes_per_kind": windows.bytes_per_kind, "first_document": first_document,
            "catalog_sha256": catalog.sha256}


def build_instrument(data_seed: int, catalog: Catalog, seq_len: int, n_windows: int, n_items: int,
                     heldout_classes: int = 0) -> Instrument:
    """The eval windows (n_windows > 0) and probes (n_items > 0) of a data_seed and catalog; with heldout_classes
    > 0 also n_windows windows of documents about the held-out classes."""
    windows = build_eval_windows(data_seed, catalog, seq_len, n_windows, heldout_classes) if n_windows else None
    heldout = (build_eval_windows(data_seed, catalog, seq_len, n_windows, heldout_classes, about_heldout=True)
               if n_windows and heldout_classes else None)
    probes = build_probes(data_seed, catalog, n_items, heldout_classes) if n_items else {}
    provenance: dict[str, object] = {}
    if windows is not None:
        provenance["eval_windows"] = _windows_provenance(windows, seq_len, catalog, EVAL_FIRST_DOCUMENT)
    if heldout is not None:
        provenance["eval_windows_heldout"] = {**_windows_provenance(heldout, seq_len, catalog, 0),
                                              "classes": list(heldout_class_names(catalog, data_seed,
                                                                                  heldout_classes))}
    if probes:
        probe_provenance: dict[str, object] = {"items_per_probe": n_items, "candidates": N_CANDIDATES,
                                               "sha256": probes_sha256(probes), "names": list(probes)}
        if heldout_classes:  # the classes no probe names
            probe_provenance["heldout_classes"] = list(heldout_class_names(catalog, data_seed, heldout_classes))
        provenance["probes"] = probe_provenance
    return Instrument(windows, probes, provenance, heldout)

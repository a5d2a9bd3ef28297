"""Synthetic data-product corpus (determinism, arms, split) and user corpus loading (happy paths, input errors)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from aegir.errors import InputError
from aegir.tasks.pretrain.corpus import (
    ARMS,
    DOCUMENT_SEPARATOR,
    SEGMENT_KINDS,
    Segment,
    apply_arm,
    build_corpus,
    document_text,
    generate_documents,
    load_user_corpus,
)
from aegir.tasks.pretrain.ontology import (
    CLASSES,
    DATATYPES,
    TABLE_CLASSES,
    render_create_table,
    table_for,
    table_name,
    views_for,
)

SEED, N_DOCS, VAL_FRACTION = 11, 120, 0.2
ONTOLOGY_MARKERS = ("subclass of", "subClassOf", "has property", "rangeIncludes", "domainIncludes")
DDL_MARKERS = ("CREATE TABLE", "CREATE VIEW", "PRIMARY KEY", "FOREIGN KEY")


@pytest.fixture(scope="module")
def documents() -> list[list[Segment]]:
    return generate_documents(SEED, N_DOCS)


@pytest.fixture(scope="module")
def corpora() -> dict[str, object]:
    return {arm: build_corpus(SEED, N_DOCS, arm, VAL_FRACTION) for arm in ARMS}


# ---------------------------------------------------------------------------------------------------- ontology


def test_ontology_is_consistent() -> None:
    assert 15 <= len(CLASSES) <= 25
    for cls in CLASSES.values():
        assert cls.parent is None or cls.parent in CLASSES
        for prop in cls.properties:
            assert prop.range in DATATYPES or prop.range in CLASSES
    for name in TABLE_CLASSES:
        table = table_for(name)
        assert table.columns[0].name == "id"
        assert len({c.name for c in table.columns}) == len(table.columns)
        for col in table.columns:
            assert col.references is None or col.references in TABLE_CLASSES
        for view in views_for(name):
            assert view.sql.startswith(f"CREATE VIEW {view.name} AS") and f"FROM {table.name}" in view.sql


def test_table_names_are_snake_case() -> None:
    assert table_name("PostalAddress") == "postal_address"
    assert table_name("Product") == "product"


# ---------------------------------------------------------------------------------------------------- generation


def test_same_seed_gives_identical_corpus(corpora: dict) -> None:
    again = build_corpus(SEED, N_DOCS, "full", VAL_FRACTION)
    assert again.train == corpora["full"].train and again.val == corpora["full"].val
    assert again.sha256 == corpora["full"].sha256


def test_different_seed_gives_different_corpus(corpora: dict) -> None:
    other = build_corpus(SEED + 1, N_DOCS, "full", VAL_FRACTION)
    assert other.train != corpora["full"].train
    assert other.sha256 != corpora["full"].sha256


def test_document_depends_only_on_seed_and_index(documents: list[list[Segment]]) -> None:
    assert generate_documents(SEED, 10) == documents[:10]


def test_segments_are_clean(documents: list[list[Segment]]) -> None:
    for doc in documents:
        assert any(s.kind == "rows" for s in doc)
        for seg in doc:
            assert seg.kind in SEGMENT_KINDS
            assert seg.text.strip() and "\n\n" not in seg.text
            assert DOCUMENT_SEPARATOR.decode() not in seg.text


def test_no_segment_leaks_another_kind(documents: list[list[Segment]]) -> None:
    for doc in documents:
        for seg in doc:
            has_ontology = any(m in seg.text for m in ONTOLOGY_MARKERS)
            has_ddl = any(m in seg.text for m in DDL_MARKERS)
            assert has_ontology == (seg.kind == "ontology"), seg
            assert has_ddl == (seg.kind == "ddl"), seg


def test_mix_and_order_vary(documents: list[list[Segment]]) -> None:
    orders = {tuple(s.kind for s in doc) for doc in documents}
    assert len(orders) >= 10
    formats = {doc_kind for doc in documents for s in doc if s.kind == "rows"
               for doc_kind in ("INSERT INTO", "| id |", '{"id"', "id,", "id;") if doc_kind in s.text}
    assert len(formats) >= 4


# ---------------------------------------------------------------------------------------------------- arms


@pytest.mark.parametrize(("arm", "dropped"), [("no_ontology", "ontology"), ("no_schema", "ddl")])
def test_arm_removes_exactly_one_kind(documents: list[list[Segment]], arm: str, dropped: str) -> None:
    full = apply_arm(documents, "full")
    ablated = apply_arm(documents, arm)
    n_with_dropped = 0
    for doc, full_text, ablated_text in zip(documents, full, ablated, strict=True):
        assert full_text == document_text(doc)
        assert ablated_text == "\n\n".join(s.text for s in doc if s.kind != dropped)
        n_with_dropped += any(s.kind == dropped for s in doc)
    assert n_with_dropped >= 0.7 * len(documents)


def test_corpus_level_markers(corpora: dict) -> None:
    def text(arm: str) -> bytes:
        return corpora[arm].train + corpora[arm].val

    assert b"CREATE TABLE" in text("full") and b"CREATE TABLE" in text("no_ontology")
    assert b"CREATE TABLE" not in text("no_schema")
    assert b"subclass of" in text("full") and b"subclass of" in text("no_schema")
    assert b"subclass of" not in text("no_ontology") and b"subClassOf" not in text("no_ontology")
    assert len({c.sha256 for c in corpora.values()}) == len(ARMS)


def test_unknown_arm_is_an_input_error(documents: list[list[Segment]]) -> None:
    with pytest.raises(InputError, match="no_rows.*full, no_ontology, no_schema"):
        apply_arm(documents, "no_rows")
    with pytest.raises(InputError, match="no_rows"):
        build_corpus(SEED, 5, "no_rows", 0.1)


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0, 1.5])
def test_bad_val_fraction_is_an_input_error(val_fraction: float) -> None:
    with pytest.raises(InputError, match="val_fraction"):
        build_corpus(SEED, 5, "full", val_fraction)


# ---------------------------------------------------------------------------------------------------- split


def test_val_documents_are_the_same_across_arms(documents: list[list[Segment]], corpora: dict) -> None:
    indices = corpora["full"].val_indices
    assert len(indices) == round(N_DOCS * VAL_FRACTION)
    for arm, corpus in corpora.items():
        assert corpus.val_indices == indices
        texts = apply_arm(documents, arm)
        assert corpus.val_documents == tuple(texts[i].encode() for i in indices)
        train_indices = [i for i in range(N_DOCS) if i not in set(indices)]
        assert corpus.train_documents == tuple(texts[i].encode() for i in train_indices)
        assert corpus.n_documents == N_DOCS


def test_streams_are_separator_joined_documents(corpora: dict) -> None:
    corpus = corpora["full"]
    assert tuple(corpus.train.split(DOCUMENT_SEPARATOR)) == corpus.train_documents
    assert tuple(corpus.val.split(DOCUMENT_SEPARATOR)) == corpus.val_documents
    corpus.val.decode("utf-8")


def test_no_validation_split() -> None:
    corpus = build_corpus(SEED, 4, "full", 0.0)
    assert corpus.val == b"" and corpus.val_indices == () and len(corpus.train_documents) == 4


# ---------------------------------------------------------------------------------------------------- user corpus


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_txt_documents_are_separated_by_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "first doc\nsecond line\n\n  \nsecond doc\n\n\nthird doc\n")
    corpus = load_user_corpus(path, val_fraction=0.0, seed=0)
    assert corpus.train_documents == (b"first doc\nsecond line", b"second doc", b"third doc")


def test_jsonl_and_directory(tmp_path: Path) -> None:
    _write(tmp_path / "b.jsonl", "\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate("xyz")) + "\n\n")
    _write(tmp_path / "a.txt", "alpha\n\nbeta")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / ".hidden", "ignored")
    corpus = load_user_corpus(tmp_path, val_fraction=0.0, seed=0)
    assert corpus.train_documents == (b"alpha", b"beta", b"x", b"y", b"z")


def test_user_split_is_seeded(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", "\n".join(json.dumps({"text": f"doc {i}"}) for i in range(20)))
    first = load_user_corpus(path, val_fraction=0.25, seed=3)
    assert first == load_user_corpus(path, val_fraction=0.25, seed=3)
    assert len(first.val_documents) == 5 and first.n_documents == 20
    assert load_user_corpus(path, val_fraction=0.25, seed=4).val_indices != first.val_indices


@pytest.mark.parametrize(
    ("name", "content", "line", "what"),
    [
        ("empty.txt", "", 1, "empty"),
        ("blank.jsonl", "\n  \n", 1, "empty"),
        ("bad.jsonl", '{"text": "ok"}\n\n{"text": oops}\n', 3, "not valid JSON"),
        ("notext.jsonl", '{"text": "ok"}\n{"body": "x"}\n', 2, "missing field 'text'"),
        ("number.jsonl", '{"text": 5}\n', 1, "must be a string"),
        ("emptytext.jsonl", '{"text": "ok"}\n{"text": "  "}\n', 2, "is empty"),
        ("array.jsonl", '["text"]\n', 1, "JSON object"),
        ("latin1.txt", "ok\nok\ncaf\xe9\n".encode("latin-1"), 3, "UTF-8"),
    ],
)
def test_bad_user_file_names_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, line: int, what: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(InputError) as info:
        load_user_corpus(path, val_fraction=0.0, seed=0)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ") and what in message
    assert "\n" not in message


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_user_corpus(tmp_path / "nope.txt", 0.0, 0)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.json", '{"text": "x"}')
    with pytest.raises(InputError, match=r"data\.json.*unsupported file extension"):
        load_user_corpus(path, 0.0, 0)
    _write(tmp_path / "ok.txt", "fine")
    with pytest.raises(InputError, match=r"data\.json.*unsupported"):
        load_user_corpus(tmp_path, 0.0, 0)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no .txt or .jsonl files"):
        load_user_corpus(tmp_path, 0.0, 0)


def test_single_document_cannot_be_split(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.txt", "only one document\n")
    with pytest.raises(InputError, match="one.txt.*at least 2"):
        load_user_corpus(path, 0.1, 0)


def test_no_table_is_named_after_a_reserved_word() -> None:
    reserved = {"order", "group", "select", "table", "user", "from", "where"}
    assert not reserved & {table_name(c) for c in TABLE_CLASSES}


@pytest.mark.parametrize("inline", [False, True])
def test_ddl_and_inserts_execute_in_sqlite(documents: list[list[Segment]], inline: bool) -> None:
    connection = sqlite3.connect(":memory:")
    for name in TABLE_CLASSES:
        connection.execute(render_create_table(table_for(name), if_not_exists=inline, inline_references=inline))
    for name in TABLE_CLASSES:
        for view in views_for(name):
            connection.execute(view.sql)
    inserts = [s.text for doc in documents for s in doc if s.kind == "rows" and s.text.startswith("INSERT INTO")]
    assert inserts
    for script in inserts:
        connection.executescript(script.replace("INSERT INTO", "INSERT OR REPLACE INTO"))
    for view in views_for("Offer"):
        connection.execute(f"SELECT * FROM {view.name}").fetchall()

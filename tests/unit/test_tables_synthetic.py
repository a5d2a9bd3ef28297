"""The synthetic web-table generator: determinism, label coverage, realistic and varied formats, consistency."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from aegir.tasks.tables.labels import load_label_map
from aegir.tasks.tables.synthetic import GENERATORS, generate_corpus, generate_table
from aegir.tasks.tables.table import TableCorpus, normalize_cell

N_TABLES = 700


@pytest.fixture(scope="module")
def corpus() -> TableCorpus:
    return generate_corpus(N_TABLES, 3)


def _cells(corpus: TableCorpus, kind: str = "cta") -> dict[str, list[str]]:
    """Non-missing cells per CTA label."""
    out: dict[str, list[str]] = defaultdict(list)
    for annotation in corpus.cta:
        out[annotation.label] += [c for c in corpus.tables[annotation.table].columns[annotation.column] if c]
    return out


def test_same_seed_same_corpus_other_seed_other_corpus_and_prefix_stability() -> None:
    first, again = generate_corpus(25, 11), generate_corpus(25, 11)
    assert first.sha256 == again.sha256 and first.tables == again.tables and first.cta == again.cta
    assert generate_corpus(25, 12).sha256 != first.sha256
    shorter = generate_corpus(10, 11)
    assert all(first.tables[name] == table for name, table in shorter.tables.items())  # table i depends on (seed, i)


def test_label_map_is_consistent_and_drawn_from_the_sotab_vocabulary() -> None:
    label_map = load_label_map()
    assert {spec.gen for entity in label_map.entities.values() for spec in (entity.main, *entity.columns)} \
        <= set(GENERATORS)
    assert len(label_map.cta_labels) >= 80
    assert set(label_map.cta_labels) <= set(label_map.sotab_cta_vocabulary_v1)
    assert set(label_map.cta_labels) | set(label_map.not_generated) == set(label_map.sotab_cta_vocabulary_v1)
    assert len(label_map.cpa_labels) >= 100
    for name, entity in label_map.entities.items():
        assert entity.main.label == f"{name}/name"


def test_every_label_of_the_map_is_generated(corpus: TableCorpus) -> None:
    label_map = load_label_map()
    assert {a.label for a in corpus.cta} == set(label_map.cta_labels)
    assert {a.label for a in corpus.cpa} == set(label_map.cpa_labels)
    assert {table.topic for table in corpus.tables.values()} == set(label_map.entities)


def test_ground_truth_is_consistent_with_the_tables(corpus: TableCorpus) -> None:
    mains = {}
    for annotation in corpus.cta:
        table = corpus.tables[annotation.table]
        assert 0 <= annotation.column < table.n_columns
        if annotation.label == f"{table.topic}/name":
            mains[table.name] = annotation.column
    assert set(mains) == set(corpus.tables)  # every table has exactly its main column labelled <Topic>/name
    for pair in corpus.cpa:
        assert pair.main_column == mains[pair.table] and pair.column != pair.main_column
    positions = Counter(column == 0 for column in mains.values())
    assert positions[True] > 0.7 * len(mains) and positions[False] > 0  # usually, not always, the first column
    assert any(len(table.columns) > len([a for a in corpus.cta if a.table == name]) for name, table in
               list(corpus.tables.items())[:100])  # some columns are unlabelled (context only)


def test_cells_are_normalised_and_missing_values_occur(corpus: TableCorpus) -> None:
    cells = [cell for table in corpus.tables.values() for column in table.columns for cell in column]
    assert all(cell is None or normalize_cell(cell) == cell for cell in cells)
    missing = sum(cell is None for cell in cells) / len(cells)
    assert 0.01 < missing < 0.2
    for table in corpus.tables.values():  # the main column is never missing
        main = next(a.column for a in corpus.cta if a.table == table.name and a.label.endswith("/name"))
        assert None not in table.columns[main]


EMAIL = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")


def test_emails_parse(corpus: TableCorpus) -> None:
    emails = _cells(corpus)["email"]
    assert len(emails) > 100
    stripped = [e.removeprefix("mailto:") for e in emails]
    assert all(EMAIL.match(e) for e in stripped), [e for e in stripped if not EMAIL.match(e)][:5]
    assert any(e.startswith("mailto:") for e in emails) and any(not e.startswith("mailto:") for e in emails)


DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%Y", "%B %d, %Y", "%d %B %Y", "%d %b %Y", "%Y/%m/%d")


def _date_format(value: str) -> str | None:
    for fmt in DATE_FORMATS:
        try:
            datetime.strptime(value, fmt)
            return fmt
        except ValueError:
            continue
    return None


def test_dates_parse_in_many_formats_and_tables_mix_formats(corpus: TableCorpus) -> None:
    formats = Counter()
    mixed_columns = 0
    for annotation in corpus.cta:
        if annotation.label != "Date":
            continue
        column = [c for c in corpus.tables[annotation.table].columns[annotation.column] if c]
        found = [_date_format(value) for value in column]
        assert None not in found, [v for v, f in zip(column, found) if f is None][:3]
        formats.update(found)
        # 12/05/2021 parses as both m/d and d/m: count a column as mixed only on distinct unambiguous families
        families = {f for f in found if f not in ("%m/%d/%Y", "%d/%m/%Y")}
        mixed_columns += len(families) > 1
    assert len(formats) >= 6
    assert mixed_columns > 0  # format heterogeneity inside a column


def test_other_value_families_look_real(corpus: TableCorpus) -> None:
    cells = _cells(corpus)
    assert all(sum(ch.isdigit() for ch in v) >= 7 for v in cells["telephone"])
    assert all(re.match(r"^https?://", v) for v in cells["URL"] + cells["Photograph"])
    assert all(re.search(r"\d", v) for v in cells["price"])
    assert {v for v in cells["currency"]} & {"EUR", "USD", "GBP"}
    durations = cells["Duration"]
    assert any(v.startswith("PT") for v in durations) and any("min" in v for v in durations)
    assert all(re.search(r"\d", v) for v in durations)
    datetimes = cells["DateTime"]
    assert all(re.search(r"\d{1,2}:\d{2}", v) for v in datetimes)  # a DateTime always carries a time
    assert any("schema.org/" in v for v in cells["ItemAvailability"]) and "InStock" in cells["ItemAvailability"]
    assert all(re.fullmatch(r"-?\d+[.,]\d{4,6}", v) for v in cells["CoordinateAT"])
    gtins = [v for v in cells["IdentifierAT"] if re.fullmatch(r"\d{13}", v)]
    assert gtins and all(sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(g)) % 10 == 0 for g in gtins)


def test_rows_are_internally_consistent(corpus: TableCorpus) -> None:
    checked = 0
    for name, table in corpus.tables.items():
        headers = table.headers or ()
        if table.topic == "SportsEvent" and "homeTeam" in headers and "awayTeam" in headers:
            name_col = table.columns[headers.index("name")]
            home, away = table.columns[headers.index("homeTeam")], table.columns[headers.index("awayTeam")]
            for match, h, a in zip(name_col, home, away):
                if h and a:
                    assert h in match and a in match
                    checked += 1
    assert checked > 10


def test_generate_table_returns_labels_for_its_own_table() -> None:
    table, cta, cpa = generate_table(5, 0)
    assert {a.table for a in cta} == {table.name} and {p.table for p in cpa} <= {table.name}
    assert table.headers is not None and len(table.headers) == table.n_columns

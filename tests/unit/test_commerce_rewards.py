"""Commerce verifiers: hand-scored completions for every tier and rule, PT-BR parsing, and hostile output."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegir.rl.rewards import get_reward
from aegir.tasks.commerce.rewards import (
    _gold_result_cached,
    extract_ptbr_numbers,
    extract_sql,
    extraction_fields,
    insights_match,
    length_factor,
    normalize_date,
    parse_json_object,
    parse_ptbr_number,
    push_rules,
    same_rows,
    sql_exec,
    sql_keyword,
)

# ---------------------------------------------------------------------------------------------------------------
# PT-BR numbers and dates
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("1.234,56", 1234.56), ("R$ 1.234,56", 1234.56), ("R$1.234,56", 1234.56), ("1234,5", 1234.5),
    ("1,234.56", 1234.56), ("12%", 12.0), ("12,5 %", 12.5), ("-R$ 10,00", -10.0), ("R$ -10,5", -10.5),
    ("\u22123", -3.0), ("+7", 7.0), ("42", 42.0), ("0,99", 0.99), ("1.234", 1234.0), ("1.234.567", 1234567.0),
    ("1.234.567,8", 1234567.8), ("0.125", 0.125), ("3.14159", 3.14159), ("1,234", 1.234), ("1234.5", 1234.5),
    (" 1\u00a0234 ", None), ("1.23.4", None), ("1.234,5.6", None), ("12.34,5", None), ("abc", None), ("", None),
    ("1,2,3", None), (".5", None), ("5.", None), ("--5", None), ("9" * 100, None),
])
def test_parse_ptbr_number(text: str, expected: float | None) -> None:
    value = parse_ptbr_number(text)
    assert value == (pytest.approx(expected) if expected is not None else None)


def test_extract_numbers_from_running_text() -> None:
    text = "Em 2023-03-12 vendemos R$ 1.234,56 (alta de 12,5%), itens 1,2,3; saldo -5 e modelo x-5."
    assert extract_ptbr_numbers(text) == pytest.approx([2023, 3, 12, 1234.56, 12.5, 1, 2, 3, -5, 5])
    assert extract_ptbr_numbers("1 " * 10_000) == [1.0] * 500  # capped


@pytest.mark.parametrize("text, expected", [
    ("2023-03-12", "2023-03-12"), ("12/03/2023", "2023-03-12"), ("12-03-2023", "2023-03-12"),
    ("12.03.23", "2023-03-12"), ("2023/3/12", "2023-03-12"), ("12 de março de 2023", "2023-03-12"),
    ("12 mar 2023", "2023-03-12"), ("2023-03-12T10:00:00Z", "2023-03-12"), ("31/02/2023", None),
    ("03/2023", None), ("ontem", None), (20230312, None),
])
def test_normalize_date(text: Any, expected: str | None) -> None:
    assert normalize_date(text) == expected


# ---------------------------------------------------------------------------------------------------------------
# extraction_fields
# ---------------------------------------------------------------------------------------------------------------

EXTRACTION = {"id": "e1", "task": "extraction",
              "fields": {"valor_total": 1234.56, "data": "2023-03-12", "cidade": "São Paulo", "parcelas": 3.0}}


@pytest.mark.parametrize("completion, expected", [
    ('{"valor_total": 1234.56, "data": "2023-03-12", "cidade": "São Paulo", "parcelas": 3}', 1.0),
    ('Claro!\n```json\n{"Valor Total": "R$ 1.234,56", "data": "12/03/2023", "CIDADE": " sao  paulo ",'
     ' "parcelas": "3"}\n```\nQualquer dúvida, estou aqui. {"x": 1}', 1.0),
    ("{'valor_total': 1234.56, 'data': '12 de março de 2023', cidade: 'São Paulo', 'parcelas': 3,}", 1.0),
    ('{"valor_total": 1234.56, "data": "2023-03-12", "cidade": "São Pa', 0.5),  # cut off: repaired, 2 of 4
    ('{"valor_total": 1238.0, "data": "2023-12-03", "cidade": "Rio", "parcelas": 3}', 0.5),  # within 0.5 %
    ('{"valor_total": 1240.0}', 0.25),  # |1240 - 1234.56| = 5.44 <= 0.5 % of 1234.56; other 3 missing
    ('{"valor_total": 1241.0}', 0.0),   # 6.44 > 6.17
    ('{"valor_total": 1234.56, "extra": 1, "extra2": 2}', 0.25),
    ("não sei", 0.0), ("[1, 2, 3]", 0.0), ('"just a string"', 0.0), ("", 0.0),
    ('{"valor_total": true, "data": null, "cidade": ["São Paulo"], "parcelas": {"n": 3}}', 0.0),
])
def test_extraction_fields_hand_cases(completion: str, expected: float) -> None:
    assert extraction_fields(EXTRACTION, completion) == pytest.approx(expected)


def test_extraction_numeric_tolerance_edges() -> None:
    record = {"task": "extraction", "fields": {"preco": 100.0, "frete": 0.0}}
    assert extraction_fields(record, '{"preco": 100.49, "frete": 0.01}') == 1.0
    assert extraction_fields(record, '{"preco": 100.51, "frete": 0.02}') == 0.0


def test_parse_json_object_guards() -> None:
    assert parse_json_object("{" * 100_000) is None  # too deep: refused before json-repair recurses
    assert parse_json_object('{"a": "' + "x" * 100_000) is None  # over MAX_JSON_CHARS
    assert parse_json_object('{"a": 1}' + "y" * 1_000_000) == {"a": 1}
    assert parse_json_object('texto {"a": "}"} fim') == {"a": "}"}


def test_extraction_not_applicable_and_malformed_record() -> None:
    assert extraction_fields({"task": "push"}, "{}") is None
    with pytest.raises(ValueError):
        extraction_fields({"task": "extraction", "fields": {}}, "{}")


# ---------------------------------------------------------------------------------------------------------------
# sql_qa: a tiny database and hand-computed tiers
# ---------------------------------------------------------------------------------------------------------------


def build_shop(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, state TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL, status TEXT,
                             purchase_date TEXT);
        INSERT INTO customers VALUES (1, 'Ana', 'São Paulo', 'SP'), (2, 'Bruno', 'Rio de Janeiro', 'RJ'),
                                     (3, 'Carla', 'São Paulo', 'SP'), (4, 'Davi', 'Belo Horizonte', 'MG');
        INSERT INTO orders VALUES (1, 1, 100.0, 'entregue', '2023-01-10'), (2, 1, 50.5, 'entregue', '2023-02-11'),
                                  (3, 2, 200.0, 'cancelado', '2023-02-12'), (4, 3, 10.25, 'entregue', '2023-03-01'),
                                  (5, 4, 99.9, 'entregue', '2024-01-05'), (6, 3, 1000.0, 'entregue', '2024-02-07');
    """)
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop(tmp_path_factory.mktemp("shop") / "shop.db")


def sql_record(shop: Path, gold_sql: str, answer: Any) -> dict[str, Any]:
    return {"id": "q", "task": "sql_qa", "gold_sql": gold_sql, "answer": answer, "db_path": str(shop)}


COUNT_SQL = "SELECT COUNT(*) FROM orders WHERE status = 'entregue';"  # 5
SP_SQL = ("SELECT ROUND(SUM(o.total), 2) FROM orders o JOIN customers c ON c.id = o.customer_id "
          "WHERE c.state = 'SP';")  # 1160.75
CITY_SQL = "SELECT city FROM customers GROUP BY city ORDER BY COUNT(*) DESC LIMIT 1;"  # São Paulo
STATES_SQL = "SELECT state, COUNT(*) FROM customers GROUP BY state ORDER BY state;"


def fenced(sql: str, answer: str | None = None) -> str:
    return f"```sql\n{sql}\n```" + (f"\nResposta: {answer}" if answer is not None else "")


@pytest.mark.parametrize("completion, expected", [
    (fenced(COUNT_SQL, "5"), 1.0),                                                      # every tier
    (fenced(COUNT_SQL, "4"), 0.7),                                                      # wrong answer
    (fenced(COUNT_SQL), 0.7),                                                           # no answer at all
    (fenced("SELECT COUNT(id) * 1.0 FROM orders o WHERE o.status IN ('entregue')", "5 pedidos"), 1.0),  # 5.0 == 5
    ("A consulta é SELECT COUNT(*) FROM orders WHERE status = 'entregue'\nResposta: 5", 1.0),  # free text
    (fenced("SELECT COUNT(*) FROM orders", "6"), 0.3),                                  # runs, right table, wrong
    (fenced("SELECT 5", "5"), 0.4),                                                     # guessed: no result tier
    (fenced("SELECT COUNT(*) FROM customers"), 0.1),                                    # wrong table
    (fenced("SELEC COUNT(*) FROM orders", "5"), 0.3),                                   # no SQL, right answer
    (fenced("SELECT COUNT(*) FROM nope", "5"), 0.3),                                    # does not execute
    (fenced(COUNT_SQL + " DROP TABLE orders", "5"), 0.3),                               # injection: refused
    (fenced("SELECT COUNT(*) FROM orders WHERE status = 'entregue'; DROP TABLE orders", "5"), 0.3),
    ("SELECT COUNT(*) FROM orders WHERE status = 'entregue'; DELETE FROM orders\nResposta: 5", 0.3),
    (fenced("WITH a AS (SELECT 1) DELETE FROM orders", "5"), 0.3),
    ("Não sei.", 0.0),
    ("O total é 5.", 0.3),                                                              # last number fallback
    ("", 0.0),
])
def test_sql_exec_tiers_by_hand(shop: Path, completion: str, expected: float) -> None:
    before = hashlib.sha256(shop.read_bytes()).hexdigest()
    assert sql_exec(sql_record(shop, COUNT_SQL, 5), completion) == pytest.approx(expected)
    assert hashlib.sha256(shop.read_bytes()).hexdigest() == before


def test_sql_exec_join_tables_and_numeric_answer(shop: Path) -> None:
    record = sql_record(shop, SP_SQL, 1160.75)
    comma_join = ("SELECT SUM(o.total) FROM orders o, customers c WHERE c.id = o.customer_id "
                  "AND c.state = 'SP'")
    assert sql_exec(record, fenced(comma_join, "R$ 1.160,75")) == pytest.approx(1.0)
    assert sql_exec(record, fenced(comma_join, "1160")) == pytest.approx(1.0)  # within 0.5 %
    assert sql_exec(record, fenced(comma_join, "1100")) == pytest.approx(0.7)
    # Same number, but without reading customers: the tables tier (and so the result tier) is missed.
    only_orders = "SELECT SUM(total) FROM orders WHERE customer_id IN (1, 3)"
    assert sql_exec(record, fenced(only_orders, "1.160,75")) == pytest.approx(0.1 + 0.3)


def test_sql_exec_text_answer_and_row_order(shop: Path) -> None:
    record = sql_record(shop, CITY_SQL, "São Paulo")
    assert sql_exec(record, fenced("SELECT city FROM customers WHERE state = 'SP' LIMIT 1", "sao paulo.")) \
        == pytest.approx(1.0)
    assert sql_exec(record, fenced("SELECT name FROM customers LIMIT 1", "Rio de Janeiro")) == pytest.approx(0.3)
    states = sql_record(shop, STATES_SQL, "MG, RJ, SP")
    reordered = "SELECT state, COUNT(*) FROM customers GROUP BY state ORDER BY COUNT(*) DESC, state DESC"
    assert sql_exec(states, fenced(reordered, "MG, RJ, SP")) == pytest.approx(1.0)
    swapped = "SELECT COUNT(*), state FROM customers GROUP BY state"
    assert sql_exec(states, fenced(swapped)) == pytest.approx(0.3)  # column order matters


def test_sql_exec_bomb_is_cut_off(shop: Path) -> None:
    bomb = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    start = time.monotonic()
    assert sql_exec(sql_record(shop, COUNT_SQL, 5), fenced(bomb)) == 0.0
    assert time.monotonic() - start < 5 * 1.0 + 1.0


def test_same_rows_multiset_semantics() -> None:
    assert same_rows([(1, "a"), (2, "b")], [(2.0, "b"), (1, "a")])
    assert same_rows([(0.1 + 0.2,)], [(0.3,)])
    assert not same_rows([(1,), (1,)], [(1,), (2,)])
    assert not same_rows([(1,)], [(1,), (1,)])
    assert not same_rows([("1",)], [(1,)])
    assert not same_rows([(1, 2)], [(1,)])
    assert same_rows([], [])
    assert same_rows([(None, b"x", math.inf)], [(None, b"x", math.inf)])


def test_gold_results_are_cached_per_db_version(tmp_path: Path) -> None:
    db = build_shop(tmp_path / "cache.db")
    record = sql_record(db, COUNT_SQL, 5)
    _gold_result_cached.cache_clear()
    sql_exec(record, "x")
    sql_exec(record, "y")
    info = _gold_result_cached.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE orders SET status = 'entregue'")
    conn.commit()
    conn.close()
    record = sql_record(db, COUNT_SQL, 6)
    assert sql_exec(record, fenced(COUNT_SQL, "6")) == pytest.approx(1.0)  # new file version, new gold result


def test_sql_exec_malformed_records_raise(shop: Path) -> None:
    assert sql_exec({"task": "insights"}, "SELECT 1") is None
    with pytest.raises(ValueError, match="gold SQL fails"):
        sql_exec(sql_record(shop, "DELETE FROM orders", 1), "x")
    with pytest.raises(ValueError):
        sql_exec({"task": "sql_qa", "gold_sql": COUNT_SQL, "answer": 5}, "x")  # no db_path


def test_extract_sql() -> None:
    assert extract_sql("```SQL\nSELECT 1\n```") == "SELECT 1"
    assert extract_sql("with care I wrote\nSELECT a FROM t\n\nResposta: 1") == "SELECT a FROM t"
    assert extract_sql("WITH x AS (SELECT 1) SELECT * FROM x\nResposta: 1") == "WITH x AS (SELECT 1) SELECT * FROM x"
    assert extract_sql("```\nSELECT 2\n```") == "SELECT 2"
    assert extract_sql("```sql\nSELECT 3") == "SELECT 3"  # cut off by the length limit
    assert extract_sql("nada aqui") is None


# ---------------------------------------------------------------------------------------------------------------
# sql_keyword (V4.1)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("completion, expected", [
    (fenced(COUNT_SQL, "5"), 1.0),
    (fenced("SELECT COUNT(*) FROM orders WHERE status = 'entregue' AND"), 0.7),  # does not run: V4.1 can't tell
    (fenced("SELECT COUNT(*) FROM orders"), 0.1 + 0.2 + 0.4 / 2),
    (fenced("SELECT name FROM customers"), 0.1),
    ("1 2 3 4 5 6 7", 0.3),  # number spam finds the answer: the weakness V4.2 fixes
    ("Não sei.", 0.0),
])
def test_sql_keyword_tiers_by_hand(shop: Path, completion: str, expected: float) -> None:
    assert sql_keyword(sql_record(shop, COUNT_SQL, 5), completion) == pytest.approx(expected)


def test_sql_keyword_gold_without_keywords(shop: Path) -> None:
    record = sql_record(shop, "SELECT name FROM customers", "Ana")
    assert sql_keyword(record, fenced("SELECT name FROM customers", "Ana")) == pytest.approx(1.0)
    assert sql_keyword({"task": "extraction"}, "x") is None


# ---------------------------------------------------------------------------------------------------------------
# insights_match
# ---------------------------------------------------------------------------------------------------------------

INSIGHTS = {"id": "i", "task": "insights", "entities": ["São Paulo", "Eletrônicos"], "numbers": [1234.56, 12.5],
            "tolerance": 0.01}
PERFECT_INSIGHT = "Em Sao Paulo, ELETRONICOS faturou R$ 1.234,56, alta de 12,5% no trimestre."


@pytest.mark.parametrize("completion, expected", [
    (PERFECT_INSIGHT, 1.0),
    ("São Paulo vendeu R$ 1.234,56.", 0.5),                 # 1 of 2 entities, 1 of 2 numbers
    ("São Paulo e Eletrônicos: 1240 e 12,6%.", 1.0),        # both within 1 %
    ("São Paulo e Eletrônicos: 1250 e 13%.", 0.5),          # both outside 1 %
    ("Paulo e eletro: nada.", 0.0),                         # partial words do not count
    ("", 0.0), ("   ", 0.0),
])
def test_insights_match_hand_cases(completion: str, expected: float) -> None:
    assert insights_match(INSIGHTS, completion) == pytest.approx(expected)


def test_insights_length_penalty() -> None:
    assert length_factor(600) == 1.0 and length_factor(900) == 0.5 and length_factor(1200) == 0.0
    padded = PERFECT_INSIGHT + " " + "x" * (900 - len(PERFECT_INSIGHT) - 1)
    assert insights_match(INSIGHTS, padded) == pytest.approx(0.5)
    assert insights_match(INSIGHTS, PERFECT_INSIGHT + "x" * 2000) == 0.0


def test_insights_whole_words_and_single_list() -> None:
    record = {"task": "insights", "entities": ["SP"], "numbers": [], "tolerance": 0.0}
    assert insights_match(record, "Vendas em SP.") == 1.0
    assert insights_match(record, "Em espera.") == 0.0
    numbers_only = {"task": "insights", "entities": [], "numbers": [10.0, 20.0], "tolerance": 0.0}
    assert insights_match(numbers_only, "Foram 10 e 21.") == 0.5
    with pytest.raises(ValueError):
        insights_match({"task": "insights", "entities": [], "numbers": [], "tolerance": 0.1}, "x")
    assert insights_match({"task": "sql_qa"}, "x") is None


# ---------------------------------------------------------------------------------------------------------------
# push_rules
# ---------------------------------------------------------------------------------------------------------------

PUSH = {"id": "p", "task": "push", "constraints": {"max_chars": 80, "must_mention": ["frete grátis", "Black Friday"],
                                                    "discount_pct": 30, "cta": True}}


@pytest.mark.parametrize("completion, expected", [
    ("Black Friday: 30% OFF e frete grátis! Aproveite.", 1.0),
    ("BLACK FRIDAY: 30% off e FRETE GRATIS. Garanta o seu!", 1.0),  # case/accent-insensitive
    ("Black Friday: 30% OFF e frete grátis.", 0.8),                 # no call to action
    ("Black Friday: 20% OFF e frete grátis! Compre já.", 0.8),      # wrong discount
    ("Black Friday: 30% e mais 10% com frete grátis! Confira.", 0.8),  # a second discount is not allowed
    ("Black Friday: 30 por cento e frete grátis! Acesse.", 1.0),
    ("Black Friday: 30% OFF e frete grátis! Aproveite." + " ." * 40, 0.8),  # too long
    ("Promoção! Aproveite.", 0.4),                                  # length + cta only
    ("", 0.0), (" \n\t ", 0.0),
])
def test_push_rules_hand_cases(completion: str, expected: float) -> None:
    assert push_rules(PUSH, completion) == pytest.approx(expected)


def test_push_rules_without_discount_or_cta() -> None:
    record = {"task": "push", "constraints": {"max_chars": 20, "must_mention": ["Pix"], "discount_pct": None,
                                              "cta": False}}
    assert push_rules(record, "Pague com Pix hoje") == 1.0      # 2 rules: length, mention
    assert push_rules(record, "Pague no cartão hoje") == 0.5   # 20 characters: length ok, no mention
    assert push_rules({"task": "extraction"}, "x") is None
    with pytest.raises(ValueError):
        push_rules({"task": "push", "constraints": {"max_chars": "80"}}, "x")


# ---------------------------------------------------------------------------------------------------------------
# Registry and hostile output
# ---------------------------------------------------------------------------------------------------------------


def test_verifiers_are_registered() -> None:
    for name, fn in [("extraction_fields", extraction_fields), ("sql_exec", sql_exec), ("sql_keyword", sql_keyword),
                     ("insights_match", insights_match), ("push_rules", push_rules)]:
        assert get_reward(name) is fn


def all_records(shop: Path) -> list[dict[str, Any]]:
    return [EXTRACTION, sql_record(shop, COUNT_SQL, 5), sql_record(shop, CITY_SQL, "São Paulo"), INSIGHTS, PUSH]


VERIFIERS = [extraction_fields, sql_exec, sql_keyword, insights_match, push_rules]

HOSTILE = [
    "9" * 1_000_000,
    "SELECT " * 200_000,
    "{" * 1_000_000,
    "[" * 100_000 + "]" * 100_000,
    '{"valor_total": "' + "1." * 300_000,
    "R$ 1.234,56 " * 100_000,
    "```sql\n" + "SELECT 1 UNION ALL " * 5_000 + "SELECT 1\n```",
    "```sql\nSELECT 1; DROP TABLE orders; ATTACH DATABASE 'x.db' AS x\n```\nResposta: 5",
    "Resposta: " + "5 " * 100_000,
    "\x00" * 10_000 + "\ud800\udfff" * 1000,
    "é" * 500_000,
    "%" * 100_000 + "30%",
]


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_completions_are_bounded(shop: Path, index: int) -> None:
    before = hashlib.sha256(shop.read_bytes()).hexdigest()
    for record in all_records(shop):
        for verifier in VERIFIERS:
            start = time.monotonic()
            value = verifier(record, HOSTILE[index])
            assert value is None or 0.0 <= value <= 1.0
            assert time.monotonic() - start < 3.0, (verifier.__name__, index)
    assert hashlib.sha256(shop.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in shop.parent.iterdir()) == ["shop.db"]


# Any code point (lone surrogates, NUL), plus fragments that reach the parsers' interesting paths.
ANY_TEXT = st.lists(st.one_of(
    st.characters(), st.integers(0xD800, 0xDFFF).map(chr),
    st.sampled_from(["```sql\n", "```json\n", "```", "SELECT ", "COUNT(*) ", "FROM ", "orders ", "; DROP TABLE x",
                     "Resposta: ", "{", "}", '"valor_total": ', "'", "R$ ", "1.234,56", "12%", "30%", "\n\n",
                     "São Paulo", "Aproveite", "frete grátis", "12/03/2023", "WITH x AS (", ")", "\x00"]),
), max_size=60).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(completion=ANY_TEXT)
def test_verifiers_never_raise_and_stay_in_range(shop: Path, completion: str) -> None:
    records = all_records(shop)
    for verifier in VERIFIERS:
        applicable = 0
        for record in records:
            value = verifier(record, completion)
            if value is not None:
                applicable += 1
                assert isinstance(value, float) and 0.0 <= value <= 1.0, (verifier.__name__, value)
        assert applicable >= 1

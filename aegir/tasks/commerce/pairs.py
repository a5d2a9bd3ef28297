"""Prompt/reference records for the four commerce tasks, generated from a world (V4.2), with prompts in Portuguese.

Every record is chat-style::

    {"id": "sql_qa/7/12", "task": "sql_qa", "template": "count_method_year",
     "prompt": [{"role": "system", "content": ...}, {"role": "user", "content": ...}],
     "reference": "<a correct completion, used for the SFT warm start>", ...task fields}

Task fields (what the rewards verify):

* ``extraction`` -- ``fields``: ``{name: value}`` with canonical values (numbers as float, dates ISO
  ``YYYY-MM-DD``, identifiers and names as str). The user text writes them the Brazilian way (``R$ 1.234,56``,
  ``12/03/2023``, ``12 de março de 2023``); the reference is ``json.dumps(fields)``.
* ``sql_qa`` -- ``gold_sql``, ``answer`` (int, float or str: the result of executing ``gold_sql`` on the world, see
  :func:`run_gold_sql`), ``db_path``. The reference is the SQL in a ```sql block and a last line
  ``Resposta: <answer>`` written by :func:`format_answer` (dot decimal, no thousands separator).
* ``insights`` -- ``entities`` (names the answer must state), ``numbers`` (floats it must state), ``tolerance``
  (relative). The reference is a short PT-BR text writing numbers the Brazilian way (``R$ 12.345,67``, ``41,2%``).
* ``push`` -- ``constraints``: ``{"max_chars", "must_mention", "discount_pct", "cta"}`` and ``segment`` /
  ``segment_size`` (customers in the segment). The reference satisfies :func:`push_violations`.

Determinism: record ``i`` of a task uses its own ``random.Random`` seeded from ``(data_seed, task, i)``; a draw
that repeats an earlier question (same SQL, same order, same prompt) is redrawn, so the first ``n`` records do not
change when ``n`` grows. Ranking questions are redrawn when the answer is tied, so every question has one answer.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aegir.errors import InputError
from aegir.tasks.commerce.world import PAYMENT_METHODS, SCHEMA, YEARS, WorldInfo, open_readonly

TASKS: tuple[str, ...] = ("extraction", "sql_qa", "insights", "push")
DEFAULT_EVAL_MINIMUMS: dict[str, int] = {"extraction": 20, "sql_qa": 15, "insights": 15, "push": 15}
CTA_PHRASES: tuple[str, ...] = ("compre agora", "aproveite", "confira", "garanta já", "peça já", "toque e veja")
"""A push text has a call to action when it contains one of these (case-insensitive)."""

_MAX_DRAWS = 400  # redraws per record before concluding the question space is exhausted
MONTHS_PT: tuple[str, ...] = ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto",
                              "setembro", "outubro", "novembro", "dezembro")

Answer = int | float | str


# ----------------------------------------------------------------------------------------------------------------
# Formatting and SQL helpers
# ----------------------------------------------------------------------------------------------------------------


def format_number_pt(value: float, decimals: int = 2) -> str:
    """``1234.5`` -> ``"1.234,50"``: the Brazilian thousands and decimal separators."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "_").replace(".", ",").replace("_", ".")


def format_brl(value: float) -> str:
    """``1234.5`` -> ``"R$ 1.234,50"``."""
    return f"R$ {format_number_pt(value, 2)}"


def format_answer(answer: Answer) -> str:
    """How a ``Resposta:`` line writes an answer: integers plain, floats with a dot and at most 2 decimals."""
    if isinstance(answer, float):
        if answer.is_integer():
            return str(int(answer))
        return f"{answer:.2f}".rstrip("0").rstrip(".")
    return str(answer)


def run_gold_sql(db_path: Path | str, sql: str) -> Answer | None:
    """Execute `sql` read-only: one cell -> that value; several rows -> their first column joined by ", ".

    None when there is no row or the cell is NULL (such a question is never emitted).
    """
    connection = open_readonly(db_path)
    try:
        return _answer_of(connection.execute(sql).fetchall())
    finally:
        connection.close()


def _answer_of(rows: list[tuple]) -> Answer | None:
    if not rows:
        return None
    if len(rows) == 1:
        return rows[0][0]
    return ", ".join(str(row[0]) for row in rows)


def _quote(value: str) -> str:
    """A SQL string literal (values come from the world, but quote properly anyway)."""
    return "'" + value.replace("'", "''") + "'"


def _br_date(iso: str) -> str:
    return date.fromisoformat(iso).strftime("%d/%m/%Y")


def _long_date(iso: str) -> str:
    day = date.fromisoformat(iso)
    return f"{day.day} de {MONTHS_PT[day.month - 1]} de {day.year}"


@dataclass(frozen=True)
class _Context:
    """What the generators draw parameters from; loaded once per `build_pairs`."""

    connection: sqlite3.Connection
    db_path: str
    states: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]
    categories: tuple[str, ...]
    sellers: tuple[str, ...]
    order_ids: tuple[int, ...]
    reviewed_order_ids: tuple[int, ...]
    cache: dict[tuple[str, tuple], list[tuple]] = field(default_factory=dict)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        """Rows of `sql`, memoised: redrawn duplicate questions re-run the same queries."""
        key = (sql, tuple(parameters))
        if key not in self.cache:
            self.cache[key] = self.connection.execute(sql, parameters).fetchall()
        return self.cache[key]

    def answer(self, sql: str) -> Answer | None:
        return _answer_of(self.query(sql))


def _load_context(world: WorldInfo) -> _Context:
    connection = open_readonly(world.path)
    column = lambda sql: tuple(row[0] for row in connection.execute(sql))  # noqa: E731
    return _Context(
        connection=connection,
        db_path=str(Path(world.path).resolve()),
        states=column("SELECT DISTINCT state FROM customers ORDER BY state"),
        cities=tuple(connection.execute("SELECT DISTINCT city, state FROM customers ORDER BY city, state")),
        categories=column("SELECT name FROM categories ORDER BY id"),
        sellers=column("SELECT name FROM sellers ORDER BY id"),
        order_ids=column("SELECT id FROM orders ORDER BY id"),
        reviewed_order_ids=column("SELECT DISTINCT order_id FROM reviews ORDER BY order_id"),
    )


_YEAR = "strftime('%Y', o.purchase_date)"
_REVENUE = "SUM(oi.quantity * oi.unit_price)"
_ITEMS_JOIN = ("FROM order_items oi JOIN orders o ON o.id = oi.order_id JOIN products p ON p.id = oi.product_id "
               "JOIN categories cat ON cat.id = p.category_id")


def _ranked(ctx: _Context, label: str, metric: str, body: str, k: int = 1) -> str | None:
    """SQL for the top-`k` labels by `metric` (ties broken by label), or None when rank k ties with rank k+1."""
    values = ctx.query(f"SELECT {label}, {metric} AS metric {body} ORDER BY metric DESC, {label} LIMIT {k + 1}")
    if len(values) < k or (len(values) > k and values[k - 1][1] == values[k][1]) or values[k - 1][1] is None:
        return None
    return f"SELECT {label} {body} ORDER BY {metric} DESC, {label} LIMIT {k};"


# ----------------------------------------------------------------------------------------------------------------
# extraction
# ----------------------------------------------------------------------------------------------------------------

_EXTRACTION_SYSTEM = ("Você extrai dados estruturados de mensagens de clientes de um e-commerce brasileiro. "
                      "Responda apenas com um objeto JSON com as chaves: {keys}. Datas no formato AAAA-MM-DD, "
                      "números com ponto decimal e sem separador de milhar, textos como aparecem na mensagem.")
_ORDER_KEYS = ("pedido_id (texto), cliente, cidade, uf, data_compra, valor_total (número), "
               "forma_pagamento (boleto, cartão, pix ou voucher), parcelas (número)")
_REVIEW_KEYS = ("pedido_id (texto), produto, nota (número de 1 a 5), data_avaliacao, "
                "sentimento (positivo, neutro ou negativo)")
_METHOD_WORDS: dict[str, tuple[str, ...]] = {
    "cartão": ("cartão de crédito", "cartão"), "pix": ("Pix", "pix"), "boleto": ("boleto", "boleto bancário"),
    "voucher": ("voucher", "vale-compras (voucher)"),
}
_ORDER_TEXTS: tuple[str, ...] = (
    "Olá, sou {cliente}, de {cidade}/{uf}. Fiz o pedido #{pedido} em {data} no valor de {valor}, pago com {metodo} "
    "{parcelas}. Gostaria de saber quando chega.",
    "Pedido {pedido} | Cliente: {cliente} | {cidade} - {uf} | Data da compra: {data} | Total: {valor} | "
    "Pagamento: {metodo}, {parcelas}",
    "Bom dia! Meu nome é {cliente} e moro em {cidade} ({uf}). No dia {data} comprei o pedido nº {pedido}, "
    "total de {valor}, no {metodo} {parcelas}. Podem verificar o status?",
    "Cliente {cliente} ({cidade}, {uf}) informa: compra realizada em {data}, pedido {pedido}, {valor} pagos via "
    "{metodo} {parcelas}.",
)
_REVIEW_TEXTS: tuple[str, ...] = (
    "Avaliação do pedido {pedido} ({produto}), enviada em {data}: nota {nota} de 5. {comentario}",
    "Em {data} avaliei o {produto} (pedido #{pedido}) com {nota} estrelas. {comentario}",
    "Pedido nº {pedido} - produto: {produto}. Nota: {nota}/5. Data da avaliação: {data}. {comentario}",
)


def _money_text(rng: random.Random, value: float) -> str:
    number = format_number_pt(value)
    return rng.choice((f"R$ {number}", f"R${number}", f"{number} reais"))


def _date_text(rng: random.Random, iso: str) -> str:
    return _br_date(iso) if rng.random() < 0.7 else _long_date(iso)


def _installments_text(rng: random.Random, installments: int) -> str:
    if installments == 1:
        return rng.choice(("à vista", "em 1x"))
    return rng.choice((f"em {installments}x", f"em {installments} parcelas", f"parcelado em {installments} vezes"))


def _sentiment(score: int) -> str:
    return "positivo" if score >= 4 else "neutro" if score == 3 else "negativo"


def _extraction_spec(ctx: _Context, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A message about an order (60%) or a review: (dedup key, template, keys, text, fields)."""
    if rng.random() < 0.6:
        order_id = rng.choice(ctx.order_ids)
        (name, city, state, purchase, total), = ctx.query(
            "SELECT c.name, c.city, c.state, o.purchase_date, o.total FROM orders o "
            "JOIN customers c ON c.id = o.customer_id WHERE o.id = ?", (order_id,))
        method, installments = ctx.query(  # the main payment: a partial voucher is not how the order was paid
            "SELECT method, installments FROM payments WHERE order_id = ? ORDER BY value DESC, method LIMIT 1",
            (order_id,))[0]
        fields = {"pedido_id": str(order_id), "cliente": name, "cidade": city, "uf": state,
                  "data_compra": purchase, "valor_total": float(total), "forma_pagamento": method,
                  "parcelas": float(installments)}
        text = rng.choice(_ORDER_TEXTS).format(
            cliente=name, cidade=city, uf=state, pedido=order_id, data=_date_text(rng, purchase),
            valor=_money_text(rng, total), metodo=rng.choice(_METHOD_WORDS[method]),
            parcelas=_installments_text(rng, installments))
        return f"order:{order_id}", {"template": "order", "keys": _ORDER_KEYS, "text": text, "fields": fields}
    order_id = rng.choice(ctx.reviewed_order_ids)
    score, comment, created, product = ctx.query(
        "SELECT r.score, r.comment, r.created_at, p.name FROM reviews r "
        "JOIN order_items oi ON oi.order_id = r.order_id "
        "JOIN products p ON p.id = oi.product_id WHERE r.order_id = ? ORDER BY oi.product_id LIMIT 1", (order_id,))[0]
    fields = {"pedido_id": str(order_id), "produto": product, "nota": float(score), "data_avaliacao": created,
              "sentimento": _sentiment(score)}
    text = rng.choice(_REVIEW_TEXTS).format(pedido=order_id, produto=product, data=_date_text(rng, created),
                                            nota=score, comentario=f'"{comment}"' if comment else "")
    return f"review:{order_id}", {"template": "review", "keys": _REVIEW_KEYS, "text": text.strip(), "fields": fields}


def _build_extraction(ctx: _Context, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    key, spec = _extraction_spec(ctx, rng)
    fields = spec["fields"]
    return key, {
        "template": spec["template"],
        "prompt": [{"role": "system", "content": _EXTRACTION_SYSTEM.format(keys=spec["keys"])},
                   {"role": "user", "content": spec["text"]}],
        "reference": json.dumps(fields, ensure_ascii=False),
        "fields": fields,
    }


# ----------------------------------------------------------------------------------------------------------------
# sql_qa
# ----------------------------------------------------------------------------------------------------------------

_SQL_SYSTEM = ("Você é um analista de dados de um e-commerce brasileiro. Escreva uma consulta SQLite em um bloco "
               "```sql que responda à pergunta e termine com uma linha 'Resposta: <valor>' (números com ponto "
               "decimal, sem separador de milhar; listas separadas por vírgula). Esquema:\n{schema}")
SCHEMA_SUMMARY = "\n".join(ddl.removeprefix("CREATE TABLE ") for ddl in SCHEMA.values())
"""The DDL shown to the model: compact, one table a line."""

_SqlTemplate = Callable[[_Context, random.Random], tuple[str, str] | None]


def _q_count_method_year(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    method, year = rng.choice(PAYMENT_METHODS), rng.choice(YEARS)
    question = rng.choice(("Quantos pedidos foram pagos via {m} em {y}?", "Em {y}, quantos pedidos tiveram "
                           "pagamento com {m}?")).format(m=method, y=year)
    return question, (f"SELECT COUNT(DISTINCT o.id) FROM orders o JOIN payments pay ON pay.order_id = o.id "
                      f"WHERE pay.method = {_quote(method)} AND {_YEAR} = '{year}';")


def _q_avg_ticket_state(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    state = rng.choice(ctx.states)
    year = rng.choice((None, *YEARS))
    where = f"c.state = {_quote(state)}" + (f" AND {_YEAR} = '{year}'" if year else "")
    period = f" em {year}" if year else ""
    question = rng.choice(("Qual o ticket médio (R$) dos pedidos de clientes do estado {s}{p}?",
                           "Qual o valor médio por pedido no estado {s}{p}?")).format(s=state, p=period)
    return question, (f"SELECT ROUND(AVG(o.total), 2) FROM orders o JOIN customers c ON c.id = o.customer_id "
                      f"WHERE {where};")


def _q_top_cities(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    k = rng.randint(2, 5)
    sql = _ranked(ctx, "city", "COUNT(*)", "FROM customers GROUP BY city", k)
    return None if sql is None else (f"Quais são as {k} cidades com mais clientes cadastrados?", sql)


def _q_top_category_revenue(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    year = rng.choice(YEARS)
    sql = _ranked(ctx, "cat.name", _REVENUE, f"{_ITEMS_JOIN} WHERE o.status <> 'cancelado' AND {_YEAR} = '{year}' "
                  "GROUP BY cat.name")
    return None if sql is None else (f"Qual categoria teve o maior faturamento em {year} (sem pedidos cancelados)?",
                                     sql)


def _q_active_customers_state(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    state, year = rng.choice(ctx.states), rng.choice(YEARS)
    return (f"Quantos clientes do estado {state} fizeram pelo menos um pedido em {year}?",
            f"SELECT COUNT(DISTINCT o.customer_id) FROM orders o JOIN customers c ON c.id = o.customer_id "
            f"WHERE c.state = {_quote(state)} AND {_YEAR} = '{year}';")


def _q_avg_score_category(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    category = rng.choice(ctx.categories)
    return (f"Qual a nota média das avaliações de pedidos que incluem produtos da categoria {category}?",
            f"SELECT ROUND(AVG(r.score), 2) FROM reviews r WHERE r.order_id IN (SELECT oi.order_id FROM order_items oi "
            f"JOIN products p ON p.id = oi.product_id JOIN categories cat ON cat.id = p.category_id "
            f"WHERE cat.name = {_quote(category)});")


def _q_status_month(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    status, year, month = rng.choice(("entregue", "cancelado", "enviado")), rng.choice(YEARS), rng.randint(1, 12)
    return (f"Quantos pedidos com status '{status}' foram feitos em {MONTHS_PT[month - 1]} de {year}?",
            f"SELECT COUNT(*) FROM orders o WHERE o.status = {_quote(status)} "
            f"AND strftime('%Y-%m', o.purchase_date) = '{year}-{month:02d}';")


def _q_seller_revenue(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    seller, year = rng.choice(ctx.sellers), rng.choice(YEARS)
    return (f"Qual o valor total vendido (R$) pelo vendedor {seller} em {year}, sem contar pedidos cancelados?",
            f"SELECT ROUND({_REVENUE}, 2) FROM order_items oi JOIN orders o ON o.id = oi.order_id "
            f"JOIN products p ON p.id = oi.product_id JOIN sellers s ON s.id = p.seller_id "
            f"WHERE s.name = {_quote(seller)} AND o.status <> 'cancelado' AND {_YEAR} = '{year}';")


def _q_state_most_canceled(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    year = rng.choice((None, *YEARS))
    in_year = f" AND {_YEAR} = '{year}'" if year else ""
    sql = _ranked(ctx, "c.state", "COUNT(*)", "FROM orders o JOIN customers c ON c.id = o.customer_id "
                  f"WHERE o.status = 'cancelado'{in_year} GROUP BY c.state")
    period = f" em {year}" if year else ""
    return None if sql is None else (f"Qual estado teve mais pedidos cancelados{period}?", sql)


def _q_most_expensive_product(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    category = rng.choice(ctx.categories)
    sql = _ranked(ctx, "p.name", "p.price", "FROM products p JOIN categories cat ON cat.id = p.category_id "
                  f"WHERE cat.name = {_quote(category)}")
    return None if sql is None else (f"Qual o produto mais caro da categoria {category}?", sql)


def _q_installments(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    minimum, year = rng.choice((2, 3, 4, 6, 8, 10)), rng.choice(YEARS)
    return (f"Quantos pedidos de {year} foram pagos no cartão em {minimum} ou mais parcelas?",
            f"SELECT COUNT(DISTINCT o.id) FROM orders o JOIN payments pay ON pay.order_id = o.id "
            f"WHERE pay.method = 'cartão' AND pay.installments >= {minimum} AND {_YEAR} = '{year}';")


def _q_top_products_units(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    k, year = rng.randint(1, 3), rng.choice(YEARS)
    sql = _ranked(ctx, "p.name", "SUM(oi.quantity)", "FROM order_items oi JOIN orders o ON o.id = oi.order_id "
                  f"JOIN products p ON p.id = oi.product_id WHERE {_YEAR} = '{year}' GROUP BY p.name", k)
    what = "o produto mais vendido" if k == 1 else f"os {k} produtos mais vendidos"
    return None if sql is None else (f"Qual{'' if k == 1 else 's'} {'foi' if k == 1 else 'foram'} {what} "
                                     f"(em unidades) em {year}?", sql)


def _q_delivery_days_state(ctx: _Context, rng: random.Random) -> tuple[str, str] | None:
    state, year = rng.choice(ctx.states), rng.choice(YEARS)
    return (f"Qual o prazo médio de entrega, em dias, dos pedidos entregues a clientes do estado {state} em {year}?",
            f"SELECT ROUND(AVG(julianday(o.delivered_date) - julianday(o.purchase_date)), 2) FROM orders o "
            f"JOIN customers c ON c.id = o.customer_id WHERE o.status = 'entregue' AND c.state = {_quote(state)} "
            f"AND {_YEAR} = '{year}';")


_SQL_TEMPLATES: dict[str, _SqlTemplate] = {
    "count_method_year": _q_count_method_year, "avg_ticket_state": _q_avg_ticket_state,
    "top_cities": _q_top_cities, "top_category_revenue": _q_top_category_revenue,
    "active_customers_state": _q_active_customers_state, "avg_score_category": _q_avg_score_category,
    "status_month": _q_status_month, "seller_revenue": _q_seller_revenue,
    "state_most_canceled": _q_state_most_canceled, "most_expensive_product": _q_most_expensive_product,
    "installments": _q_installments, "top_products_units": _q_top_products_units,
    "delivery_days_state": _q_delivery_days_state,
}


def _build_sql_qa(ctx: _Context, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    template = rng.choice(sorted(_SQL_TEMPLATES))
    drawn = _SQL_TEMPLATES[template](ctx, rng)
    if drawn is None:
        return None
    question, gold_sql = drawn
    answer = ctx.answer(gold_sql)
    if answer is None:
        return None
    if isinstance(answer, float):
        answer = round(answer, 2)
    return gold_sql, {
        "template": template,
        "prompt": [{"role": "system", "content": _SQL_SYSTEM.format(schema=SCHEMA_SUMMARY)},
                   {"role": "user", "content": question}],
        "reference": f"```sql\n{gold_sql}\n```\nResposta: {format_answer(answer)}",
        "gold_sql": gold_sql,
        "answer": answer,
        "db_path": ctx.db_path,
    }


# ----------------------------------------------------------------------------------------------------------------
# insights
# ----------------------------------------------------------------------------------------------------------------

_INSIGHTS_SYSTEM = ("Você é um analista de negócios de um e-commerce brasileiro. Responda à pergunta em uma ou "
                    "duas frases, citando os nomes e os números pedidos (valores em reais, porcentagens com "
                    "uma casa).")


@dataclass(frozen=True)
class _Insight:
    question: str
    reference: str
    entities: list[str]
    numbers: list[float]
    tolerance: float


def _scope(ctx: _Context, rng: random.Random) -> tuple[str, str]:
    """An optional state filter (half the time): (SQL condition on customers c, PT-BR lead-in phrase)."""
    if rng.random() < 0.5:
        return "", ""
    state = rng.choice(ctx.states)
    return f" AND c.state = {_quote(state)}", f"No estado {state}, "


def _i_top_category(ctx: _Context, rng: random.Random) -> _Insight | None:
    year = rng.choice(YEARS)
    where, phrase = _scope(ctx, rng)
    rows = ctx.query(f"SELECT cat.name, ROUND({_REVENUE}, 2) AS v {_ITEMS_JOIN} JOIN customers c ON c.id = "
                     f"o.customer_id WHERE o.status <> 'cancelado' AND {_YEAR} = '{year}'{where} GROUP BY cat.name "
                     "ORDER BY v DESC LIMIT 2")
    if len(rows) < 2 or rows[0][1] == rows[1][1]:
        return None
    (category, revenue) = rows[0]
    question = f"{phrase}qual categoria teve maior faturamento em {year} e quanto?"
    return _Insight(question, f"{phrase or 'Em geral, '}a categoria {category} liderou o faturamento em {year}, com "
                    f"{format_brl(revenue)}.", [category], [float(revenue)], 0.01)


def _i_top_state_share(ctx: _Context, rng: random.Random) -> _Insight | None:
    year = rng.choice(YEARS)
    rows = ctx.query(f"SELECT c.state, COUNT(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id "
                     f"WHERE {_YEAR} = '{year}' GROUP BY c.state ORDER BY n DESC LIMIT 2")
    (total,), = ctx.query(f"SELECT COUNT(*) FROM orders o WHERE {_YEAR} = '{year}'")
    if len(rows) < 2 or rows[0][1] == rows[1][1]:
        return None
    state, count = rows[0]
    share = round(100 * count / total, 1)
    return _Insight(f"Qual estado concentrou mais pedidos em {year} e qual a sua participação no total?",
                    f"{state} concentrou mais pedidos em {year}: {count} pedidos, {format_number_pt(share, 1)}% do "
                    f"total.", [state], [float(count), share], 0.02)


def _i_top_method(ctx: _Context, rng: random.Random) -> _Insight | None:
    year = rng.choice(YEARS)
    where, phrase = _scope(ctx, rng)
    rows = ctx.query(f"SELECT pay.method, COUNT(DISTINCT o.id) AS n FROM payments pay JOIN orders o ON o.id = "
                     f"pay.order_id JOIN customers c ON c.id = o.customer_id WHERE {_YEAR} = '{year}'{where} "
                     "GROUP BY pay.method ORDER BY n DESC LIMIT 2")
    if len(rows) < 2 or rows[0][1] == rows[1][1]:
        return None
    method, count = rows[0]
    question = f"{phrase}qual forma de pagamento foi mais usada em {year} e em quantos pedidos?"
    return _Insight(question, f"{phrase or 'Em geral, '}a forma de pagamento mais usada em {year} foi {method}, em "
                    f"{count} pedidos.", [method], [float(count)], 0.02)


def _i_best_rated_category(ctx: _Context, rng: random.Random) -> _Insight | None:
    minimum = rng.choice((10, 20, 30))
    rows = ctx.query("SELECT cat.name, ROUND(AVG(r.score), 2) AS v FROM reviews r JOIN order_items oi ON "
                     "oi.order_id = r.order_id JOIN products p ON p.id = oi.product_id JOIN categories cat ON "
                     f"cat.id = p.category_id GROUP BY cat.name HAVING COUNT(*) >= {minimum} ORDER BY v DESC LIMIT 2")
    if len(rows) < 2 or rows[0][1] == rows[1][1]:
        return None
    category, score = rows[0]
    return _Insight(f"Entre as categorias com pelo menos {minimum} avaliações, qual tem a melhor nota média e qual "
                    "é essa nota?", f"A categoria {category} tem a melhor nota média: {format_number_pt(score)}.",
                    [category], [float(score)], 0.01)


def _i_revenue_growth(ctx: _Context, rng: random.Random) -> _Insight | None:
    first, second = sorted(rng.sample(YEARS, 2))
    state = rng.choice(ctx.states) if rng.random() < 0.5 else None
    where = f" AND c.state = {_quote(state)}" if state else ""
    revenue = {}
    for year in (first, second):
        (value,), = ctx.query(f"SELECT ROUND(SUM(o.total), 2) FROM orders o JOIN customers c ON c.id = "
                              f"o.customer_id WHERE o.status <> 'cancelado' AND {_YEAR} = '{year}'{where}")
        if not value:
            return None
        revenue[year] = float(value)
    change = round(100 * (revenue[second] - revenue[first]) / revenue[first], 1)
    direction = "cresceu" if change >= 0 else "caiu"
    scope = f" no estado {state}" if state else ""
    return _Insight(f"Como variou o faturamento{scope} entre {first} e {second}, em porcentagem?",
                    f"O faturamento{scope} {direction} de {format_brl(revenue[first])} em {first} para "
                    f"{format_brl(revenue[second])} em {second}, uma variação de {format_number_pt(change, 1)}%.",
                    [], [revenue[first], revenue[second], change], 0.02)


def _i_busiest_month(ctx: _Context, rng: random.Random) -> _Insight | None:
    year = rng.choice(YEARS)
    where, phrase = _scope(ctx, rng)
    rows = ctx.query(f"SELECT CAST(strftime('%m', o.purchase_date) AS INTEGER) AS m, COUNT(*) AS n FROM orders o "
                     f"JOIN customers c ON c.id = o.customer_id WHERE {_YEAR} = '{year}'{where} "
                     "GROUP BY m ORDER BY n DESC LIMIT 2")
    if len(rows) < 2 or rows[0][1] == rows[1][1]:
        return None
    month, count = rows[0]
    name = MONTHS_PT[month - 1]
    return _Insight(f"{phrase}qual mês de {year} teve mais pedidos e quantos foram?",
                    f"{phrase}o mês com mais pedidos em {year} foi {name}, com {count} pedidos.", [name],
                    [float(count)], 0.02)


def _i_cancellation_rate(ctx: _Context, rng: random.Random) -> _Insight | None:
    year = rng.choice(YEARS)
    where, phrase = _scope(ctx, rng)
    (total, canceled), = ctx.query(f"SELECT COUNT(*), SUM(o.status = 'cancelado') FROM orders o JOIN customers c "
                                   f"ON c.id = o.customer_id WHERE {_YEAR} = '{year}'{where}")
    if not total or total < 20:
        return None
    rate = round(100 * canceled / total, 1)
    question = f"{phrase}qual foi a taxa de cancelamento de pedidos em {year}?"
    return _Insight(question, f"{phrase or 'Em geral, '}a taxa de cancelamento em {year} foi de "
                    f"{format_number_pt(rate, 1)}% ({canceled} de {total} pedidos).", [],
                    [rate, float(canceled), float(total)], 0.02)


def _i_top_seller(ctx: _Context, rng: random.Random) -> _Insight | None:
    year = rng.choice(YEARS)
    category = rng.choice(ctx.categories) if rng.random() < 0.7 else None
    where = f" AND cat.name = {_quote(category)}" if category else ""
    rows = ctx.query(f"SELECT s.name, ROUND({_REVENUE}, 2) AS v {_ITEMS_JOIN} JOIN sellers s ON s.id = p.seller_id "
                     f"WHERE o.status <> 'cancelado' AND {_YEAR} = '{year}'{where} GROUP BY s.name "
                     "ORDER BY v DESC LIMIT 2")
    if len(rows) < 2 or rows[0][1] == rows[1][1]:
        return None
    seller, revenue = rows[0]
    scope = f" em {category}" if category else ""
    return _Insight(f"Qual vendedor mais faturou{scope} em {year} e quanto?",
                    f"O vendedor {seller} mais faturou{scope} em {year}: {format_brl(revenue)}.", [seller],
                    [float(revenue)], 0.01)


def _i_late_deliveries(ctx: _Context, rng: random.Random) -> _Insight | None:
    year, days = rng.choice(YEARS), rng.choice((10, 15, 20))
    where, phrase = _scope(ctx, rng)
    (total, late), = ctx.query(
        f"SELECT COUNT(*), SUM(julianday(o.delivered_date) - julianday(o.purchase_date) > {days}) FROM orders o "
        f"JOIN customers c ON c.id = o.customer_id WHERE o.status = 'entregue' AND {_YEAR} = '{year}'{where}")
    if not total or total < 20:
        return None
    rate = round(100 * late / total, 1)
    question = f"{phrase}qual a porcentagem de entregas de {year} que levaram mais de {days} dias?"
    return _Insight(question, f"{phrase or 'Em geral, '}{format_number_pt(rate, 1)}% das entregas de {year} "
                    f"levaram mais de {days} dias ({late} de {total}).", [], [rate], 0.02)


_INSIGHT_TEMPLATES: dict[str, Callable[[_Context, random.Random], _Insight | None]] = {
    "top_category": _i_top_category, "top_state_share": _i_top_state_share, "top_method": _i_top_method,
    "best_rated_category": _i_best_rated_category, "revenue_growth": _i_revenue_growth,
    "busiest_month": _i_busiest_month, "cancellation_rate": _i_cancellation_rate, "top_seller": _i_top_seller,
    "late_deliveries": _i_late_deliveries,
}


def _build_insights(ctx: _Context, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    template = rng.choice(sorted(_INSIGHT_TEMPLATES))
    insight = _INSIGHT_TEMPLATES[template](ctx, rng)
    if insight is None:
        return None
    question = insight.question[0].upper() + insight.question[1:]
    return question, {
        "template": template,
        "prompt": [{"role": "system", "content": _INSIGHTS_SYSTEM}, {"role": "user", "content": question}],
        "reference": insight.reference[0].upper() + insight.reference[1:],
        "entities": insight.entities,
        "numbers": insight.numbers,
        "tolerance": insight.tolerance,
    }


# ----------------------------------------------------------------------------------------------------------------
# push
# ----------------------------------------------------------------------------------------------------------------

_PUSH_SYSTEM = ("Você escreve notificações push curtas para um e-commerce brasileiro. Responda só com o texto da "
                "notificação, em português, respeitando todas as restrições.")
_MAX_CHARS_CHOICES: tuple[int, ...] = (80, 100, 120, 140, 160)
_DISCOUNTS: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 40)
_EXTRA_MENTIONS: dict[str, tuple[str, ...]] = {
    "frete grátis": ("Frete grátis!", "Com frete grátis."), "só hoje": ("Só hoje!", "Vale só hoje."),
    "Pix": ("Pague no Pix.", "Aceitamos Pix."), "últimas unidades": ("Últimas unidades!",),
}
"""Optional extra words a request may require, each with sentences that contain them."""
_CTA_TEXTS: tuple[str, ...] = ("Compre agora!", "Aproveite!", "Confira!", "Garanta já!", "Peça já!")


def push_violations(text: str, constraints: Mapping[str, Any]) -> list[str]:
    """What `text` breaks, in words (empty when compliant); mentions and CTAs are case-insensitive substrings."""
    problems = []
    folded = text.casefold()
    if not text.strip():
        problems.append("empty text")
    if len(text) > constraints["max_chars"]:
        problems.append(f"{len(text)} characters > {constraints['max_chars']}")
    problems += [f"does not mention {item!r}" for item in constraints["must_mention"] if item.casefold() not in folded]
    if constraints.get("discount_pct") is not None and f"{constraints['discount_pct']}%" not in text:
        problems.append(f"does not state the {constraints['discount_pct']}% discount")
    if constraints.get("cta") and not any(phrase in folded for phrase in CTA_PHRASES):
        problems.append("no call to action")
    return problems


@dataclass(frozen=True)
class _Segment:
    """A customer segment: who it is, what the push must mention, opening lines that mention it, its size."""

    description: str
    mentions: list[str]
    hooks: tuple[str, ...]
    size: int


def _segment(ctx: _Context, rng: random.Random) -> _Segment | None:
    kind = rng.choice(("city_category", "category_year", "city", "pix", "inactive", "promoters"))
    if kind == "city_category":
        category, (city, state) = rng.choice(ctx.categories), rng.choice(ctx.cities)
        sql = (f"SELECT COUNT(DISTINCT c.id) {_ITEMS_JOIN} JOIN customers c ON c.id = o.customer_id WHERE cat.name = "
               f"{_quote(category)} AND c.city = {_quote(city)} AND c.state = {_quote(state)}")
        segment = (f"clientes de {city}/{state} que já compraram {category}", [category, city],
                   (f"{category} com preço especial em {city}!", f"{city}: novidades em {category} pra você!"))
    elif kind == "category_year":
        category, year = rng.choice(ctx.categories), rng.choice(YEARS)
        sql = (f"SELECT COUNT(DISTINCT c.id) {_ITEMS_JOIN} JOIN customers c ON c.id = o.customer_id WHERE cat.name = "
               f"{_quote(category)} AND {_YEAR} = '{year}'")
        segment = (f"clientes que compraram {category} em {year}", [category],
                   (f"Você curte {category}? Temos novidades!", f"Chegaram novidades em {category}!"))
    elif kind == "city":
        city, state = rng.choice(ctx.cities)
        sql = f"SELECT COUNT(*) FROM customers c WHERE c.city = {_quote(city)} AND c.state = {_quote(state)}"
        segment = (f"todos os clientes de {city}/{state}", [city],
                   (f"Oferta especial para {city}!", f"{city}, essa é pra você!"))
    elif kind == "pix":
        sql = ("SELECT COUNT(DISTINCT o.customer_id) FROM orders o JOIN payments pay ON pay.order_id = o.id "
               "WHERE pay.method = 'pix'")
        segment = ("clientes que já pagaram com Pix", ["Pix"], ("No Pix é mais vantagem!", "Pagou no Pix, ganhou!"))
    elif kind == "inactive":
        year = rng.choice(YEARS[:-1])
        sql = (f"SELECT COUNT(*) FROM customers c WHERE (SELECT MAX(o.purchase_date) FROM orders o WHERE "
               f"o.customer_id = c.id) < '{year + 1}-01-01'")
        segment = (f"clientes que não compram desde {year}", ["saudade"],
                   ("Estamos com saudade de você!", "Que saudade! Volte pra gente."))
    else:
        sql = "SELECT COUNT(DISTINCT o.customer_id) FROM reviews r JOIN orders o ON o.id = r.order_id WHERE r.score = 5"
        segment = ("clientes que deram nota 5 em alguma avaliação", ["obrigado"],
                   ("Muito obrigado pela sua avaliação!", "Obrigado pela nota 5!"))
    (size,), = ctx.query(sql)
    if size < 5:  # a campaign for one or two people is not a push campaign
        return None
    description, mentions, hooks = segment
    return _Segment(description, mentions, hooks, size)


def _push_candidates(segment: _Segment, extra: str | None, discount: int | None, cta: bool) -> list[str]:
    """Texts that mention everything, state the discount and carry a CTA by construction (length is checked later)."""
    offers = (f"{discount}% OFF em tudo.", f"Ganhe {discount}% de desconto.") if discount is not None else ("",)
    extras = _EXTRA_MENTIONS[extra] if extra else ("",)
    endings = _CTA_TEXTS if cta else ("",)
    return [" ".join(part for part in (hook, offer, extra_text, ending) if part)
            for hook in segment.hooks for offer in offers for extra_text in extras for ending in endings]


def _build_push(ctx: _Context, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    segment = _segment(ctx, rng)
    if segment is None:
        return None
    extra = rng.choice(sorted(_EXTRA_MENTIONS)) if rng.random() < 0.3 else None
    if extra is not None and extra.casefold() in (mention.casefold() for mention in segment.mentions):
        extra = None
    mentions = segment.mentions + ([extra] if extra else [])
    discount = rng.choice(_DISCOUNTS) if rng.random() < 0.6 else None
    cta = rng.random() < 0.7
    candidates = _push_candidates(segment, extra, discount, cta)
    shortest = min(len(text) for text in candidates)
    feasible = [limit for limit in _MAX_CHARS_CHOICES if limit >= shortest]
    max_chars = rng.choice(feasible) if feasible else (shortest + 19) // 20 * 20
    constraints = {"max_chars": max_chars, "must_mention": mentions, "discount_pct": discount, "cta": cta}
    reference = rng.choice([text for text in candidates if not push_violations(text, constraints)])
    rules = [f"no máximo {max_chars} caracteres", "mencione " + ", ".join(f'"{mention}"' for mention in mentions),
             f"ofereça {discount}% de desconto" if discount is not None else "não ofereça desconto"]
    if cta:
        rules.append("inclua uma chamada para ação (ex.: Compre agora!)")
    request = (f"Escreva uma notificação push para {segment.description} ({segment.size} clientes). "
               f"Restrições: {'; '.join(rules)}.")
    return request, {
        "template": "push",
        "prompt": [{"role": "system", "content": _PUSH_SYSTEM}, {"role": "user", "content": request}],
        "reference": reference,
        "constraints": constraints,
        "segment": segment.description,
        "segment_size": segment.size,
    }


# ----------------------------------------------------------------------------------------------------------------
# Building, splitting, the fixed eval set
# ----------------------------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[_Context, random.Random], tuple[str, dict[str, Any]] | None]] = {
    "extraction": _build_extraction, "sql_qa": _build_sql_qa, "insights": _build_insights, "push": _build_push,
}


def build_pairs(data_seed: int, world: WorldInfo, n_per_task: Mapping[str, int]) -> list[dict[str, Any]]:
    """`n_per_task[task]` records of each task (tasks in `TASKS` order), deterministic in (data_seed, world)."""
    for task, n in n_per_task.items():
        if task not in TASKS:
            raise InputError(f"config error: task.n_per_task: unknown task {task!r}; allowed: {', '.join(TASKS)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"config error: task.n_per_task.{task}: expected an integer >= 0, got {n!r}")
    ctx = _load_context(world)
    records: list[dict[str, Any]] = []
    try:
        for task in TASKS:
            seen: set[str] = set()
            for index in range(n_per_task.get(task, 0)):
                rng = random.Random(f"commerce/{data_seed}/{task}/{index}")
                for _ in range(_MAX_DRAWS):
                    drawn = _BUILDERS[task](ctx, rng)
                    if drawn is not None and drawn[0] not in seen:
                        break
                else:
                    raise InputError(f"config error: task.n_per_task.{task}: only {index} distinct {task} records "
                                     f"can be drawn from this world; ask for fewer or use a larger world scale")
                key, fields = drawn
                seen.add(key)
                records.append({"id": f"{task}/{data_seed}/{index}", "task": task, **fields})
    finally:
        ctx.connection.close()
    return records


def _rank_key(data_seed: int, purpose: str, record_id: str) -> str:
    """A pseudo-random but fixed order of records: depends only on the seed and the id, never on list order."""
    return hashlib.sha256(f"commerce/{data_seed}/{purpose}/{record_id}".encode()).hexdigest()


def split_pairs(records: Sequence[dict[str, Any]], data_seed: int,
                eval_fraction: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval): per task, the `round(eval_fraction * n)` records first in the seeded id order go to eval.

    Stratified so every task is evaluated; by id so a record's side does not depend on the other records of its
    task beyond their count. Both lists keep the input order.
    """
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not 0 <= eval_fraction < 1:
        raise InputError(f"config error: task.eval_fraction: expected a number in [0, 1), got {eval_fraction!r}")
    by_task: dict[str, list[str]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record["id"])
    eval_ids: set[str] = set()
    for ids in by_task.values():
        ordered = sorted(ids, key=lambda record_id: _rank_key(data_seed, "split", record_id))
        eval_ids.update(ordered[:round(eval_fraction * len(ids))])
    train = [record for record in records if record["id"] not in eval_ids]
    evaluation = [record for record in records if record["id"] in eval_ids]
    return train, evaluation


def eval_set_sha256(records: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the records' canonical JSON, without ``db_path`` (a location, not content: the world's own
    sha256 pins the database)."""
    digest = hashlib.sha256()
    for record in records:
        content = {key: value for key, value in record.items() if key != "db_path"}
        digest.update(json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def stratified_eval_set(eval_records: Sequence[dict[str, Any]],
                        minimums: Mapping[str, int] = DEFAULT_EVAL_MINIMUMS, *,
                        data_seed: int) -> tuple[list[dict[str, Any]], str]:
    """The fixed eval set: exactly `minimums[task]` records per task, drawn by `data_seed` only, and its hash.

    It never sees the run seed, so every run of an experiment is scored on the same records; a fixed size per
    task keeps eval cost and the per-task CI width the same across runs. Raises InputError when a task has fewer
    eval records than its minimum.
    """
    chosen: list[dict[str, Any]] = []
    for task in sorted(minimums, key=lambda name: (TASKS.index(name) if name in TASKS else len(TASKS), name)):
        candidates = [record for record in eval_records if record["task"] == task]
        if len(candidates) < minimums[task]:
            raise InputError(f"config error: eval set: task {task!r} has {len(candidates)} eval records, needs at "
                             f"least {minimums[task]}; raise task.n_per_task.{task} or task.eval_fraction")
        candidates.sort(key=lambda record: _rank_key(data_seed, "eval_set", record["id"]))
        chosen += candidates[:minimums[task]]
    return chosen, eval_set_sha256(chosen)

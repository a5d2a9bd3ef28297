"""A synthetic Brazilian e-commerce store in SQLite, generated from ``data_seed`` (the V4.2 commerce world).

Why synthetic: the four commerce tasks need questions whose answers are *computed* (by SQL on this database), so a
reward can verify them; a generated store gives that at any scale with no download and no licence question. The
shape follows the public olist data set: customers and sellers in real Brazilian cities, products in PT-BR
categories, orders with PT-BR statuses, items, payments (boleto, cartão, pix, voucher) and reviews.

Determinism: the same ``(data_seed, scale)`` gives a byte-identical file with the same SQLite library. All values
come from one ``random.Random`` seeded with a string (hashed with SHA-512, so independent of PYTHONHASHSEED), rows
are inserted in a fixed order in one transaction, the page size, encoding and journal mode are set explicitly, and
nothing depends on the current time. (The file header records the SQLite version that wrote it, so a different
SQLite library may give different bytes; the row contents are the same.)

Money is generated in integer cents and stored as REAL reais rounded to 2 decimals, so an order's ``total`` is
exactly the sum of its items and the sum of its payments. Dates are ISO ``YYYY-MM-DD`` text (``strftime`` works).
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path

from aegir.errors import InputError

WORLD_SCHEMA_VERSION = 1
"""Stored as ``PRAGMA user_version``; bump it when the schema or the generator changes meaning."""

SCHEMA: dict[str, str] = {
    "customers": "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, "
                 "state TEXT NOT NULL, created_at TEXT NOT NULL)",
    "sellers": "CREATE TABLE sellers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, "
               "state TEXT NOT NULL)",
    "categories": "CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    "products": "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                "category_id INTEGER NOT NULL REFERENCES categories(id), price REAL NOT NULL, "
                "seller_id INTEGER NOT NULL REFERENCES sellers(id))",
    "orders": "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), "
              "status TEXT NOT NULL, purchase_date TEXT NOT NULL, delivered_date TEXT, total REAL NOT NULL)",
    "order_items": "CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id), "
                   "product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL, "
                   "unit_price REAL NOT NULL, PRIMARY KEY (order_id, product_id))",
    "payments": "CREATE TABLE payments (order_id INTEGER NOT NULL REFERENCES orders(id), method TEXT NOT NULL, "
                "installments INTEGER NOT NULL, value REAL NOT NULL)",
    "reviews": "CREATE TABLE reviews (order_id INTEGER NOT NULL REFERENCES orders(id), score INTEGER NOT NULL, "
               "comment TEXT, created_at TEXT NOT NULL)",
}
"""DDL of every table, in creation (and insertion) order."""

INDEXES: tuple[str, ...] = (
    "CREATE INDEX orders_customer ON orders(customer_id)",
    "CREATE INDEX orders_purchase_date ON orders(purchase_date)",
    "CREATE INDEX order_items_product ON order_items(product_id)",
    "CREATE INDEX products_category ON products(category_id)",
    "CREATE INDEX products_seller ON products(seller_id)",
    "CREATE INDEX payments_order ON payments(order_id)",
    "CREATE INDEX reviews_order ON reviews(order_id)",
)
"""Indexes on the join keys, built after the inserts: the tasks run thousands of joins per build."""

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id", "name", "city", "state", "created_at"),
    "sellers": ("id", "name", "city", "state"),
    "categories": ("id", "name"),
    "products": ("id", "name", "category_id", "price", "seller_id"),
    "orders": ("id", "customer_id", "status", "purchase_date", "delivered_date", "total"),
    "order_items": ("order_id", "product_id", "quantity", "unit_price"),
    "payments": ("order_id", "method", "installments", "value"),
    "reviews": ("order_id", "score", "comment", "created_at"),
}
"""The columns the tasks rely on; a user database must have at least these (see ``user_data.check_user_db``)."""

SCALES: dict[str, dict[str, int]] = {
    "tiny": {"customers": 80, "sellers": 15, "products": 60, "orders": 300},
    "small": {"customers": 300, "sellers": 60, "products": 200, "orders": 1500},
    "medium": {"customers": 3000, "sellers": 300, "products": 1500, "orders": 15000},
}

UF_CODES: frozenset[str] = frozenset(
    "AC AL AP AM BA CE DF ES GO MA MT MS MG PA PB PR PE PI RJ RN RS RO RR SC SP SE TO".split())
"""The 27 federative units of Brazil."""

CITIES: tuple[tuple[str, str, float], ...] = (
    ("São Paulo", "SP", 12.3), ("Rio de Janeiro", "RJ", 6.7), ("Brasília", "DF", 3.0), ("Salvador", "BA", 2.9),
    ("Fortaleza", "CE", 2.7), ("Belo Horizonte", "MG", 2.5), ("Manaus", "AM", 2.2), ("Curitiba", "PR", 1.9),
    ("Recife", "PE", 1.6), ("Goiânia", "GO", 1.5), ("Belém", "PA", 1.5), ("Porto Alegre", "RS", 1.5),
    ("Guarulhos", "SP", 1.4), ("Campinas", "SP", 1.2), ("São Luís", "MA", 1.1), ("São Gonçalo", "RJ", 1.1),
    ("Maceió", "AL", 1.0), ("Duque de Caxias", "RJ", 0.9), ("Natal", "RN", 0.9), ("Teresina", "PI", 0.9),
    ("Campo Grande", "MS", 0.9), ("São Bernardo do Campo", "SP", 0.8), ("João Pessoa", "PB", 0.8),
    ("Santo André", "SP", 0.7), ("Osasco", "SP", 0.7), ("Ribeirão Preto", "SP", 0.7), ("Uberlândia", "MG", 0.7),
    ("Sorocaba", "SP", 0.7), ("Contagem", "MG", 0.7), ("Aracaju", "SE", 0.7), ("Feira de Santana", "BA", 0.6),
    ("Cuiabá", "MT", 0.6), ("Joinville", "SC", 0.6), ("Juiz de Fora", "MG", 0.6), ("Londrina", "PR", 0.6),
    ("Niterói", "RJ", 0.5), ("Florianópolis", "SC", 0.5), ("Vitória", "ES", 0.4), ("Porto Velho", "RO", 0.5),
    ("Santos", "SP", 0.4), ("Macapá", "AP", 0.5), ("Palmas", "TO", 0.3),
)
"""Real Brazilian cities with their UF and a weight (roughly the population in millions) for drawing customers."""

FIRST_NAMES: tuple[str, ...] = (
    "Ana", "Maria", "Juliana", "Fernanda", "Camila", "Beatriz", "Larissa", "Patrícia", "Aline", "Gabriela",
    "Letícia", "Mariana", "Bruna", "Vanessa", "Luana", "Sofia", "Helena", "Alice", "Isabela", "Raquel",
    "João", "José", "Pedro", "Lucas", "Gabriel", "Rafael", "Gustavo", "Felipe", "Bruno", "Matheus",
    "Thiago", "Rodrigo", "Carlos", "Paulo", "Marcelo", "Leonardo", "Vinícius", "André", "Diego", "Eduardo",
)
LAST_NAMES: tuple[str, ...] = (
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
    "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa",
    "Rocha", "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas",
    "Cardoso", "Ramos", "Gonçalves", "Santana", "Teixeira", "Araújo", "Monteiro", "Correia", "Pinto", "Cavalcanti",
)
_SELLER_PATTERNS: tuple[str, ...] = (
    "{last} Comércio", "Loja {last}", "Casa {last}", "{last} & Filhos", "Empório {last}", "{last} Distribuidora",
    "Mega {last}", "{last} Store", "Armazém {last}", "{last} Variedades",
)

CATEGORIES: dict[str, tuple[tuple[str, int], ...]] = {
    "Eletrônicos": (("Fone de Ouvido Bluetooth", 14990), ("Caixa de Som Portátil", 24990),
                    ("Smart TV 43 polegadas", 219900), ("Carregador Turbo", 7990)),
    "Informática": (("Notebook", 329900), ("Mouse sem Fio", 8990), ("Teclado Mecânico", 27990),
                    ("Monitor 24 polegadas", 89990)),
    "Celulares": (("Smartphone", 149900), ("Capinha de Celular", 3990), ("Película de Vidro", 2490)),
    "Eletrodomésticos": (("Air Fryer", 39990), ("Liquidificador", 14990), ("Micro-ondas", 69990),
                         ("Aspirador de Pó", 29990)),
    "Móveis e Decoração": (("Cadeira de Escritório", 59990), ("Estante", 34990), ("Luminária de Mesa", 12990)),
    "Cama, Mesa e Banho": (("Jogo de Lençol", 12990), ("Toalha de Banho", 4990), ("Travesseiro", 6990)),
    "Beleza e Perfumaria": (("Perfume", 18990), ("Hidratante Corporal", 3990), ("Secador de Cabelo", 15990)),
    "Esporte e Lazer": (("Tênis de Corrida", 29990), ("Bicicleta Aro 29", 149900), ("Garrafa Térmica", 6990)),
    "Brinquedos": (("Quebra-Cabeça 1000 peças", 7990), ("Boneca", 9990), ("Carrinho de Controle Remoto", 15990)),
    "Livros": (("Livro de Receitas", 5990), ("Romance", 4490), ("Livro Infantil", 3490)),
    "Moda": (("Camiseta Básica", 4990), ("Calça Jeans", 12990), ("Jaqueta", 19990), ("Bolsa", 15990)),
    "Utilidades Domésticas": (("Jogo de Panelas", 29990), ("Garrafa de Café", 5990), ("Organizador", 3990)),
    "Ferramentas e Jardim": (("Furadeira", 24990), ("Kit de Ferramentas", 15990), ("Mangueira de Jardim", 8990)),
    "Pet Shop": (("Ração para Cães 15kg", 17990), ("Arranhador para Gatos", 8990), ("Cama para Pet", 11990)),
    "Automotivo": (("Aspirador Automotivo", 13990), ("Capa de Volante", 4990), ("Suporte Veicular", 5990)),
}
"""PT-BR categories, each with product stems and a typical price in cents (prices vary ±35% around it)."""

_BRANDS: tuple[str, ...] = ("Atlas", "Brisa", "Cerrado", "Aurora", "Tupã", "Ipê", "Jatobá", "Pampa", "Sertão",
                            "Carioca", "Paulista", "Guará", "Araucária", "Maré", "Horizonte", "Vértice")
_VARIANTS: tuple[str, ...] = ("Preto", "Branco", "Azul", "Cinza", "Vermelho", "Verde", "Rosa", "Bege",
                              "Pro", "Plus", "Max", "Lite", "Essencial", "Premium")

ORDER_STATUSES: tuple[str, ...] = ("entregue", "enviado", "faturado", "processando", "cancelado")
_STATUS_WEIGHTS: tuple[float, ...] = (0.90, 0.03, 0.015, 0.01, 0.045)
PAYMENT_METHODS: tuple[str, ...] = ("cartão", "pix", "boleto", "voucher")
_METHOD_WEIGHTS: tuple[float, ...] = (0.56, 0.26, 0.14, 0.04)
_INSTALLMENT_WEIGHTS: dict[int, float] = {1: 0.45, 2: 0.12, 3: 0.12, 4: 0.07, 5: 0.06, 6: 0.06, 8: 0.05, 10: 0.07}

YEARS: tuple[int, ...] = (2022, 2023, 2024)
_YEAR_WEIGHTS: tuple[float, ...] = (0.28, 0.33, 0.39)  # the store grows
_LATE_DAYS = 15  # a delivery slower than this pulls the review score down

_REVIEW_COMMENTS: dict[int, tuple[str, ...]] = {
    5: ("Produto excelente, chegou antes do prazo!", "Amei, recomendo a loja.", "Tudo certo, muito bom.",
        "Ótima qualidade e entrega rápida.", "Superou minhas expectativas."),
    4: ("Bom produto, entrega dentro do prazo.", "Gostei, mas a embalagem veio amassada.",
        "Produto bom, recomendo.", "Chegou certinho."),
    3: ("Produto ok, nada demais.", "A entrega demorou um pouco.", "Razoável pelo preço."),
    2: ("Produto diferente do anunciado.", "Demorou muito para chegar.", "Qualidade abaixo do esperado."),
    1: ("Não recebi o produto.", "Péssimo, veio com defeito.", "Nunca mais compro nessa loja.",
        "Produto quebrado e sem resposta do vendedor."),
}
_SCORE_WEIGHTS_ON_TIME: tuple[float, ...] = (0.07, 0.02, 0.07, 0.20, 0.64)  # scores 1..5
_SCORE_WEIGHTS_LATE: tuple[float, ...] = (0.35, 0.15, 0.18, 0.17, 0.15)


@dataclass(frozen=True)
class WorldInfo:
    """Where a world lies and what it holds; `sha256` pins its exact bytes for provenance (metadata.json)."""

    path: Path
    sha256: str
    data_seed: int
    scale: str
    row_counts: dict[str, int] = field(default_factory=dict)


def _cents_to_reais(cents: int) -> float:
    return round(cents / 100, 2)


def _random_date(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def _psychological_price(rng: random.Random, typical_cents: int) -> int:
    """A price near `typical_cents` ending in ,90 or ,99 as Brazilian shops price things."""
    reais = max(9, int(typical_cents * rng.uniform(0.65, 1.35) / 100))
    return reais * 100 + rng.choice((90, 99))


def _unique_name(rng: random.Random, make, taken: set[str]) -> str:
    """Draw names with `make(rng)` until one is new (questions name sellers and products, so names must be unique)."""
    for _ in range(50):
        name = make(rng)
        if name not in taken:
            taken.add(name)
            return name
    name = f"{make(rng)} {len(taken) + 1}"
    taken.add(name)
    return name


def _generate_rows(rng: random.Random, counts: dict[str, int]) -> dict[str, list[tuple]]:
    """Every table's rows, in insertion order (one rng, fixed draw order: the determinism contract)."""
    city_weights = [weight for _, _, weight in CITIES]
    customers = []
    for customer_id in range(1, counts["customers"] + 1):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if rng.random() < 0.35:
            name += f" {rng.choice(LAST_NAMES)}"
        city, state, _ = rng.choices(CITIES, weights=city_weights)[0]
        created = _random_date(rng, date(2020, 6, 1), date(2024, 6, 30))
        customers.append((customer_id, name, city, state, created.isoformat()))

    seller_names: set[str] = set()
    sellers = []
    for seller_id in range(1, counts["sellers"] + 1):
        name = _unique_name(rng, lambda r: r.choice(_SELLER_PATTERNS).format(last=r.choice(LAST_NAMES)), seller_names)
        city, state, _ = rng.choices(CITIES, weights=city_weights)[0]
        sellers.append((seller_id, name, city, state))

    category_names = list(CATEGORIES)
    categories = [(index + 1, name) for index, name in enumerate(category_names)]

    product_names: set[str] = set()
    products = []
    product_price_cents: dict[int, int] = {}
    for product_id in range(1, counts["products"] + 1):
        category_index = rng.randrange(len(category_names))
        stem, typical = rng.choice(CATEGORIES[category_names[category_index]])
        name = _unique_name(rng, lambda r: f"{stem} {r.choice(_BRANDS)} {r.choice(_VARIANTS)}", product_names)
        price = _psychological_price(rng, typical)
        product_price_cents[product_id] = price
        products.append((product_id, name, category_index + 1, _cents_to_reais(price),
                         rng.randint(1, counts["sellers"])))

    # A few customers and products account for much of the activity, as in real stores.
    customer_ids = range(1, len(customers) + 1)
    customer_cumulative = list(accumulate(rng.paretovariate(1.5) for _ in customers))
    product_ids = list(product_price_cents)
    product_cumulative = list(accumulate(rng.paretovariate(1.2) for _ in product_ids))
    orders, items, payments, reviews = [], [], [], []
    for order_id in range(1, counts["orders"] + 1):
        customer_id = rng.choices(customer_ids, cum_weights=customer_cumulative)[0]
        year = rng.choices(YEARS, weights=_YEAR_WEIGHTS)[0]
        purchase = _random_date(rng, date(year, 1, 1), date(year, 12, 31))
        status = rng.choices(ORDER_STATUSES, weights=_STATUS_WEIGHTS)[0]
        if status != "cancelado" and purchase >= date(2024, 12, 20):  # recent orders are still on their way
            status = rng.choice(("enviado", "faturado", "processando"))
        delivery_days = rng.choices((rng.randint(2, 12), rng.randint(13, 35)), weights=(0.85, 0.15))[0]
        delivered = purchase + timedelta(days=delivery_days) if status == "entregue" else None

        n_items = rng.choices((1, 2, 3, 4), weights=(0.72, 0.19, 0.06, 0.03))[0]
        chosen: list[int] = []
        while len(chosen) < n_items:
            product_id = rng.choices(product_ids, cum_weights=product_cumulative)[0]
            if product_id not in chosen:
                chosen.append(product_id)
        total_cents = 0
        for product_id in chosen:
            quantity = rng.choices((1, 2, 3), weights=(0.86, 0.11, 0.03))[0]
            total_cents += quantity * product_price_cents[product_id]
            items.append((order_id, product_id, quantity, _cents_to_reais(product_price_cents[product_id])))
        orders.append((order_id, customer_id, status, purchase.isoformat(),
                       delivered.isoformat() if delivered else None, _cents_to_reais(total_cents)))

        method = rng.choices(PAYMENT_METHODS, weights=_METHOD_WEIGHTS)[0]
        remaining = total_cents
        if method != "voucher" and total_cents > 5000 and rng.random() < 0.05:  # part paid with a voucher
            voucher = rng.randint(1, total_cents // 200) * 100
            payments.append((order_id, "voucher", 1, _cents_to_reais(voucher)))
            remaining -= voucher
        installments = 1
        if method == "cartão":
            installments = rng.choices(list(_INSTALLMENT_WEIGHTS), weights=list(_INSTALLMENT_WEIGHTS.values()))[0]
        payments.append((order_id, method, installments, _cents_to_reais(remaining)))

        if status == "entregue" and rng.random() < 0.85:
            weights = _SCORE_WEIGHTS_LATE if delivery_days > _LATE_DAYS else _SCORE_WEIGHTS_ON_TIME
            review_date = delivered + timedelta(days=rng.randint(0, 7))
        elif status == "cancelado" and rng.random() < 0.4:
            weights = _SCORE_WEIGHTS_LATE
            review_date = purchase + timedelta(days=rng.randint(3, 20))
        else:
            continue
        score = rng.choices((1, 2, 3, 4, 5), weights=weights)[0]
        comment = rng.choice(_REVIEW_COMMENTS[score]) if rng.random() < 0.75 else None
        reviews.append((order_id, score, comment, review_date.isoformat()))

    return {"customers": customers, "sellers": sellers, "categories": categories, "products": products,
            "orders": orders, "order_items": items, "payments": payments, "reviews": reviews}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_world(data_seed: int, path: Path, scale: str = "small") -> WorldInfo:
    """Generate the world for `data_seed` at `path` (replacing any file there) and describe it.

    Written to a temporary sibling and renamed into place, so a reader never sees a half-written database.
    """
    if scale not in SCALES:
        raise InputError(f"config error: task.world.scale: unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    if isinstance(data_seed, bool) or not isinstance(data_seed, int):
        raise InputError(f"config error: data_seed: expected an integer, got {data_seed!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = _generate_rows(random.Random(f"commerce/{data_seed}/world/{scale}"), SCALES[scale])

    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    connection = sqlite3.connect(temporary, isolation_level=None)
    try:
        for pragma in ("page_size = 4096", "encoding = 'UTF-8'", "journal_mode = OFF", "synchronous = OFF",
                       "auto_vacuum = NONE", f"user_version = {WORLD_SCHEMA_VERSION}"):
            connection.execute(f"PRAGMA {pragma}")
        connection.execute("BEGIN")
        for table, ddl in SCHEMA.items():
            connection.execute(ddl)
        for table, table_rows in rows.items():
            placeholders = ", ".join("?" for _ in TABLE_COLUMNS[table])
            connection.executemany(f"INSERT INTO {table} VALUES ({placeholders})", table_rows)
        for ddl in INDEXES:
            connection.execute(ddl)
        connection.execute("COMMIT")
    finally:
        connection.close()
    os.replace(temporary, path)
    return WorldInfo(path=path, sha256=_sha256_file(path), data_seed=data_seed, scale=scale,
                     row_counts={table: len(table_rows) for table, table_rows in rows.items()})


def open_readonly(path: Path | str) -> sqlite3.Connection:
    """A read-only connection (URI ``mode=ro``), so task code and rewards can never modify the world."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such database file")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)

"""The pretraining corpus: a synthetic *data-product* corpus generated from a seed, or the user's own text.

Why synthetic: the experiment asks whether stating the ontology and/or the SQL schema next to tabular data helps a
small model learn the data. Each generated document is a list of typed segments -- ``ontology`` statements,
``ddl``, serialized ``rows`` and ``prose`` about those rows -- so the three arms (``full``, ``no_ontology``,
``no_schema``) differ *exactly* by dropping whole segments; no segment ever contains text of another kind.

Determinism: document ``i`` depends only on ``(data_seed, i)`` (its own ``random.Random``), and the train/val
split depends only on ``data_seed`` and is drawn on document indices *before* an arm is applied, so every arm is
evaluated on the same held-out documents. No global random state is touched.

Held-out classes (``task.heldout_classes`` = k > 0): k classes, drawn from ``data_seed`` and the catalog only
(``heldout_class_names``), are never drawn for a document, and they are chosen among leaves no other class
references, so no training byte names them (no subclass chain, CREATE TABLE, view or property range of a retained
class does). ``generate_heldout_document`` writes documents about them alone, for the eval instrument.

Corpus bytes: documents are UTF-8 encoded and joined with ``DOCUMENT_SEPARATOR`` (the one byte 0x1E, ASCII
"record separator", which never occurs in generated text); inside a document, segments are separated by a blank
line. The document lists are kept too, for callers that prefer to insert EOS ids.

User corpora (``load_user_corpus``):

* ``.txt`` -- documents are separated by one or more blank (whitespace-only) lines.
* ``.jsonl`` -- one JSON object per line with a non-empty string field ``text``; blank lines are skipped.
* a directory -- its ``.txt``/``.jsonl`` files, non-recursive, sorted by name; dotfiles and subdirectories are
  ignored, any other file is an error (a stray ``.json`` is more likely a mistake than something to skip).

Input problems raise ``InputError`` with one line ``<file>:<line>: <what is wrong>``. A plain per-line loop is used
here rather than a pandera schema (which the SOTAB loader, the commerce user data and the audit sheet use): a text
corpus has no columns to check, and the loop gives the exact line number for free.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, get_args

from aegir.errors import InputError
from aegir.tasks.data_files import not_a_special_file, parse_json_line, regular_file
from aegir.tasks.ontology.catalog import Catalog, Column, Table, default_catalog

SegmentKind = Literal["ontology", "ddl", "rows", "prose"]
SEGMENT_KINDS: tuple[SegmentKind, ...] = get_args(SegmentKind)

ARMS: tuple[str, ...] = ("full", "no_ontology", "no_schema")
_DROPPED_BY_ARM: dict[str, frozenset[str]] = {
    "full": frozenset(),
    "no_ontology": frozenset({"ontology"}),
    "no_schema": frozenset({"ddl"}),
}

SEGMENT_SEPARATOR = "\n\n"
DOCUMENT_SEPARATOR = b"\x1e"
USER_CORPUS_SUFFIXES: tuple[str, ...] = (".txt", ".jsonl")


@dataclass(frozen=True)
class Segment:
    """One homogeneous piece of a document; ``kind`` decides which arms keep it."""

    kind: SegmentKind
    text: str


# --------------------------------------------------------------------------------------------------------------
# Realistic values
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _City:
    name: str
    country: str
    currency: str
    language: str
    lat: float
    lon: float
    postal: str  # pattern: '#' digit, '@' upper-case letter
    phone: str


_CITIES: tuple[_City, ...] = (
    _City("Berlin", "Germany", "EUR", "de", 52.52, 13.405, "1####", "+49 30"),
    _City("Munich", "Germany", "EUR", "de", 48.137, 11.575, "8####", "+49 89"),
    _City("Zürich", "Switzerland", "CHF", "de", 47.377, 8.541, "80##", "+41 44"),
    _City("Paris", "France", "EUR", "fr", 48.857, 2.352, "750##", "+33 1"),
    _City("Lyon", "France", "EUR", "fr", 45.764, 4.836, "690##", "+33 4"),
    _City("Madrid", "Spain", "EUR", "es", 40.417, -3.704, "280##", "+34 91"),
    _City("Barcelona", "Spain", "EUR", "es", 41.385, 2.173, "080##", "+34 93"),
    _City("Rome", "Italy", "EUR", "it", 41.903, 12.496, "001##", "+39 06"),
    _City("Amsterdam", "Netherlands", "EUR", "nl", 52.368, 4.904, "10## @@", "+31 20"),
    _City("Kraków", "Poland", "PLN", "pl", 50.065, 19.945, "3#-###", "+48 12"),
    _City("Malmö", "Sweden", "SEK", "sv", 55.605, 13.004, "2## ##", "+46 40"),
    _City("Copenhagen", "Denmark", "DKK", "da", 55.676, 12.568, "1###", "+45"),
    _City("London", "United Kingdom", "GBP", "en", 51.507, -0.128, "@@# #@@", "+44 20"),
    _City("Manchester", "United Kingdom", "GBP", "en", 53.481, -2.243, "M# #@@", "+44 161"),
    _City("Dublin", "Ireland", "EUR", "en", 53.350, -6.260, "D## @#@#", "+353 1"),
    _City("New York", "United States", "USD", "en", 40.713, -74.006, "100##", "+1 212"),
    _City("Chicago", "United States", "USD", "en", 41.878, -87.630, "606##", "+1 312"),
    _City("San Francisco", "United States", "USD", "en", 37.775, -122.419, "941##", "+1 415"),
    _City("Toronto", "Canada", "CAD", "en", 43.653, -79.383, "M#@ #@#", "+1 416"),
    _City("São Paulo", "Brazil", "BRL", "pt", -23.551, -46.633, "0####-###", "+55 11"),
    _City("Tokyo", "Japan", "JPY", "ja", 35.676, 139.650, "1##-####", "+81 3"),
    _City("Sydney", "Australia", "AUD", "en", -33.869, 151.209, "2###", "+61 2"),
)

_STREETS: dict[str, tuple[str, ...]] = {
    "de": ("Hauptstraße", "Bahnhofstraße", "Lindenallee", "Gartenweg"),
    "fr": ("Rue de la Paix", "Avenue Victor Hugo", "Rue du Commerce"),
    "es": ("Calle Mayor", "Gran Vía", "Calle de Alcalá"),
    "it": ("Via Roma", "Via Garibaldi", "Corso Italia"),
    "nl": ("Keizersgracht", "Damstraat", "Prinsengracht"),
    "pl": ("ulica Floriańska", "ulica Długa", "ulica Grodzka"),
    "sv": ("Storgatan", "Kungsgatan", "Södergatan"),
    "da": ("Vesterbrogade", "Nørregade", "Strøget"),
    "en": ("Main Street", "High Street", "Oak Avenue", "Park Road", "Elm Street"),
    "pt": ("Rua Augusta", "Avenida Paulista", "Rua Oscar Freire"),
    "ja": ("Chuo-dori", "Omotesando", "Meiji-dori"),
}
_NUMBER_FIRST_LANGUAGES = frozenset({"en", "fr", "ja"})

_GIVEN = ("Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Isabel", "Jonas", "Kenji", "Lena",
          "Mateo", "Nora", "Oliver", "Priya", "Quentin", "Rosa", "Sofia", "Tom", "Uma", "Viktor", "Wei", "Yara",
          "Zoë", "José", "Søren", "Björn", "Chloé", "Łukasz", "Aoife", "Marta", "Luca", "Emma", "Noah", "Mia")
_FAMILY = ("Smith", "Müller", "García", "Rossi", "Dubois", "Kowalski", "Jansen", "Andersson", "Tanaka", "Silva",
           "O'Brien", "Nielsen", "Schmidt", "Martin", "Brown", "Novak", "Fischer", "López", "Bianchi", "Moreau",
           "Wilson", "Sato", "Costa", "Berg", "Walsh", "Taylor")
_ORG_WORDS = ("Blue", "North", "Bright", "Silver", "Green", "Harbor", "Summit", "Cedar", "Atlas", "Nova", "Pioneer",
              "Lumen")
_ORG_SUFFIXES = ("GmbH", "Ltd", "Inc.", "Labs", "Group", "Trading Co.", "Partners", "AG", "S.A.", "B.V.")
_SHOPS = ("Bakery", "Books", "Hardware", "Flowers", "Bikes", "Pharmacy", "Coffee", "Records")
_RESTAURANT_WORDS = ("Golden Spoon", "Blue Door", "Olive Tree", "Red Lantern", "Salt & Pepper", "Little Fig")
_BRANDS = ("Fjordline", "Acme", "Luxora", "Verdant", "Kestrel", "Nimbus", "Orbit", "Tundra", "Helios", "Marlow",
           "Quokka", "Zephyr")
_SLOGANS = ("Built to last.", "Made for everyday life.", "Simply better.", "Design you can feel.",
            "Less, but better.", "Go further.")
_PRODUCT_ADJECTIVES = ("Classic", "Ultra", "Compact", "Eco", "Pro", "Smart", "Vintage", "Nordic", "Urban", "Deluxe",
                       "Mini", "Solar")
_PRODUCT_NOUNS = ("Chair", "Lamp", "Backpack", "Kettle", "Headphones", "Desk", "Bicycle", "Watch", "Blender",
                  "Jacket", "Sneakers", "Tent", "Camera", "Notebook", "Speaker", "Mug")
_COLORS = ("black", "white", "red", "navy", "olive", "grey", "sand", "teal", "orange", "forest green")
_CUISINES = ("Italian", "Japanese", "Mexican", "Indian", "French", "Thai", "Lebanese", "Greek", "Vegan", "Korean",
             "Spanish")
_GENRES = ("Drama", "Comedy", "Thriller", "Documentary", "Science Fiction", "Animation", "Romance", "Horror")
_TITLE_ADJECTIVES = ("Silent", "Last", "Hidden", "Broken", "Golden", "Endless", "Crimson", "Distant")
_TITLE_NOUNS = ("River", "Summer", "Empire", "Signal", "Garden", "Voyage", "Harbor", "Night", "Letter")
_DISHES = ("Lemon Risotto", "Spicy Ramen", "Chickpea Curry", "Ratatouille", "Fish Tacos", "Shakshuka", "Pad Thai",
           "Apple Crumble", "Gazpacho", "Bibimbap", "Moussaka", "Paella")
_EVENT_KINDS = ("Jazz Festival", "Tech Conference", "Food Market", "Marathon", "Book Fair", "Design Week",
                "Film Festival", "Startup Meetup")
_PLACE_KINDS = ("Convention Center", "Arena", "Public Library", "Botanical Garden", "Old Town Hall",
                "Harbour Pavilion", "City Museum")
_JOB_TITLES = ("Data Engineer", "Barista", "Store Manager", "Software Developer", "Accountant", "Nurse",
               "Sales Associate", "UX Designer", "Warehouse Operative", "Chef de Partie")
_EMPLOYMENT_TYPES = ("FULL_TIME", "PART_TIME", "CONTRACTOR", "TEMPORARY", "INTERN")
_ORDER_STATUSES = ("OrderDelivered", "OrderProcessing", "OrderInTransit", "OrderCancelled", "OrderPaymentDue")
_OPENING_HOURS = ("Mo-Fr 09:00-18:00", "Mo-Sa 10:00-20:00", "Tu-Su 12:00-23:00", "Mo-Su 07:00-22:00",
                  "We-Su 17:00-23:30")
_ADDRESS_KINDS = ("office", "warehouse", "residence", "store", "depot")
_REVIEW_BODIES = ("Great quality, would buy again.", "Arrived late but works as described.",
                  "The {color} colour is lovely.", "Too expensive for what it is.", "Exactly what I needed.",
                  "Stopped working after {n} weeks.", "Solid, simple and well made.", "Not as shown in the photos.")
_MAIL_DOMAINS = ("example.com", "mail.example.org", "inbox.example.net", "post.example.de")
_TLDS = ("com", "de", "co.uk", "io", "fr", "nl", "es")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_TRANSLIT = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "'": "", "&": "and", " ": ""})

# Decimals shown for Number columns (default 2: prices, weights, salaries).
_DECIMALS: dict[str, int] = {"latitude": 4, "longitude": 4, "rating_value": 1, "best_rating": 1, "worst_rating": 1}
_NULL_PROBABILITY = 0.04
_NEVER_NULL = frozenset({"id", "name"})


def _ascii_slug(text: str) -> str:
    """Lower-case ASCII form of a name for e-mail addresses and URLs (Søren -> soren)."""
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    return "".join(ch for ch in text if ch.isascii() and ch.isalnum()).lower()


def _random_date(rng: random.Random, first_year: int, last_year: int) -> date:
    start, end = date(first_year, 1, 1).toordinal(), date(last_year, 12, 31).toordinal()
    return date.fromordinal(rng.randint(start, end))


def _postal_code(rng: random.Random, pattern: str) -> str:
    return "".join(
        str(rng.randint(0, 9)) if ch == "#" else chr(rng.randint(65, 90)) if ch == "@" else ch for ch in pattern
    )


def _isbn13(rng: random.Random) -> str:
    """A syntactically valid ISBN-13 (correct check digit), so the data is internally consistent."""
    digits = [9, 7, 8] + [rng.randint(0, 9) for _ in range(9)]
    check = (10 - sum(d * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits)) % 10) % 10
    s = "".join(map(str, digits + [check]))
    return f"{s[:3]}-{s[3]}-{s[4:8]}-{s[8:12]}-{s[12]}"


@dataclass
class _RowContext:
    """Values drawn once per row so that related columns agree (name, e-mail, city, postal code, ...)."""

    given: str
    family: str
    city: _City
    org: str
    brand: str
    product: str
    title: str
    year: int


def _draw_context(rng: random.Random) -> _RowContext:
    family = rng.choice(_FAMILY)
    org_style = rng.randrange(3)
    if org_style == 0:
        org = f"{family} & Sons"
    elif org_style == 1:
        org = f"{rng.choice(_ORG_WORDS)} {rng.choice(_ORG_SUFFIXES)}"
    else:
        org = f"{family} {rng.choice(_ORG_SUFFIXES)}"
    brand = rng.choice(_BRANDS)
    product = f"{brand} {rng.choice(_PRODUCT_ADJECTIVES)} {rng.choice(_PRODUCT_NOUNS)}"
    if rng.random() < 0.3:
        product += f" {rng.choice('XSMV')}{rng.randint(2, 9)}"
    return _RowContext(
        given=rng.choice(_GIVEN),
        family=family,
        city=rng.choice(_CITIES),
        org=org,
        brand=brand,
        product=product,
        title=f"The {rng.choice(_TITLE_ADJECTIVES)} {rng.choice(_TITLE_NOUNS)}",
        year=rng.randint(2015, 2025),
    )


def _row_name(cat: Catalog, class_name: str, ctx: _RowContext, row_id: int, rng: random.Random) -> str:
    """The ``name`` column: what a row of this class would be called in real data."""
    lineage = [class_name, *cat.ancestors(class_name)]
    if "Person" in lineage:
        return f"{ctx.given} {ctx.family}"
    if "Restaurant" in lineage:
        return rng.choice((f"The {rng.choice(_RESTAURANT_WORDS)}", f"Trattoria {ctx.family}", f"Café {ctx.city.name}"))
    if "LocalBusiness" in lineage:
        return f"{ctx.family}'s {rng.choice(_SHOPS)}"
    named: dict[str, Callable[[], str]] = {
        "Organization": lambda: ctx.org,
        "Place": lambda: f"{ctx.city.name} {rng.choice(_PLACE_KINDS)}",
        "PostalAddress": lambda: f"{ctx.city.name} {rng.choice(_ADDRESS_KINDS)}",
        "Brand": lambda: ctx.brand,
        "Product": lambda: ctx.product,
        "Offer": lambda: f"Offer for {ctx.product}",
        "AggregateRating": lambda: f"Overall rating of {ctx.product}",
        "Rating": lambda: f"Rating #{row_id}",
        "Review": lambda: f"Review of {ctx.product}",
        "Movie": lambda: ctx.title,
        "Book": lambda: f"A {rng.choice(_TITLE_NOUNS)} in {ctx.city.name}",
        "Recipe": lambda: rng.choice(_DISHES),
        "CreativeWork": lambda: f"{ctx.title}: Notes",
        "Event": lambda: f"{ctx.city.name} {rng.choice(_EVENT_KINDS)} {ctx.year}",
        "Order": lambda: f"Order ORD-{ctx.year}-{row_id:05d}",
        "Invoice": lambda: f"Invoice INV-{ctx.year}-{row_id:05d}",
        "JobPosting": lambda: f"{rng.choice(_JOB_TITLES)} in {ctx.city.name}",
    }
    for cls in lineage:
        if cls in named:
            return named[cls]()
    return f"{class_name} {row_id}"


def _site(cat: Catalog, ctx: _RowContext, class_name: str, rng: random.Random) -> str:
    lineage = [class_name, *cat.ancestors(class_name)]
    if "Organization" in lineage:
        return f"https://www.{_ascii_slug(ctx.org)}.{rng.choice(_TLDS)}"
    if "Person" in lineage:
        return f"https://people.example.com/{_ascii_slug(ctx.given)}-{_ascii_slug(ctx.family)}"
    if "Product" in lineage or "Offer" in lineage:
        return f"https://shop.{_ascii_slug(ctx.brand)}.com/p/{rng.randint(1000, 99999)}"
    return f"https://data.example.org/{cat.table_name(class_name)}/{rng.randint(1, 99999)}"


_Value = str | int | float | bool | date | None


@dataclass
class _RowDraw:
    """Everything a column generator may look at: the row's class, shared context, columns so far, the rng."""

    class_name: str
    row_id: int
    ctx: _RowContext
    row: dict[str, _Value]
    rng: random.Random
    catalog: Catalog


def _email(d: _RowDraw) -> str:
    if d.class_name == "Person":
        return f"{_ascii_slug(d.ctx.given)}.{_ascii_slug(d.ctx.family)}@{d.rng.choice(_MAIL_DOMAINS)}"
    return f"{d.rng.choice(('info', 'contact', 'hello', 'sales'))}@{_ascii_slug(d.ctx.org)}.com"


def _street(d: _RowDraw) -> str:
    city, rng = d.ctx.city, d.rng
    if city.language in _NUMBER_FIRST_LANGUAGES:
        return f"{rng.randint(1, 220)} {rng.choice(_STREETS[city.language])}"
    return f"{rng.choice(_STREETS[city.language])} {rng.randint(1, 220)}"


def _end_date(d: _RowDraw) -> date:
    start = d.row.get("start_date")
    if isinstance(start, date):
        return start + timedelta(days=d.rng.randint(0, 4))
    return _random_date(d.rng, 2019, 2026)


# Generators for specific columns (by property name); everything else falls back to _BY_DATATYPE.
_BY_COLUMN: dict[str, Callable[[_RowDraw], _Value]] = {
    "name": lambda d: _row_name(d.catalog, d.class_name, d.ctx, d.row_id, d.rng),
    "url": lambda d: _site(d.catalog, d.ctx, d.class_name, d.rng),
    "email": _email,
    "telephone": lambda d: f"{d.ctx.city.phone} {d.rng.randint(100, 999)} {d.rng.randint(1000, 9999)}",
    "founding_date": lambda d: _random_date(d.rng, 1890, 2020),
    "birth_date": lambda d: _random_date(d.rng, 1950, 2005),
    "opening_hours": lambda d: d.rng.choice(_OPENING_HOURS),
    "price_range": lambda d: "$" * d.rng.randint(1, 4),
    "serves_cuisine": lambda d: d.rng.choice(_CUISINES),
    "given_name": lambda d: d.ctx.given,
    "family_name": lambda d: d.ctx.family,
    "latitude": lambda d: round(d.ctx.city.lat + d.rng.uniform(-0.05, 0.05), 4),
    "longitude": lambda d: round(d.ctx.city.lon + d.rng.uniform(-0.05, 0.05), 4),
    "street_address": _street,
    "address_locality": lambda d: d.ctx.city.name,
    "postal_code": lambda d: _postal_code(d.rng, d.ctx.city.postal),
    "address_country": lambda d: d.ctx.city.country,
    "slogan": lambda d: d.rng.choice(_SLOGANS),
    "sku": lambda d: f"{_ascii_slug(d.ctx.brand)[:3].upper()}-{d.rng.randint(100, 999)}-{d.rng.choice('ABCDEFGH')}",
    "color": lambda d: d.rng.choice(_COLORS),
    "weight_kg": lambda d: round(d.rng.uniform(0.1, 25.0), 2),
    "price": lambda d: round(d.rng.choice((9.99, 19.0, 49.5, 129.0, 999.0)) * d.rng.uniform(0.5, 2.0), 2),
    "price_currency": lambda d: d.ctx.city.currency,
    "rating_value": lambda d: round(d.rng.uniform(1.0, 5.0) * 2) / 2,
    "best_rating": lambda d: 5.0,
    "worst_rating": lambda d: 1.0,
    "rating_count": lambda d: d.rng.randint(1, 5000),
    "in_language": lambda d: d.ctx.city.language,
    "review_body": lambda d: d.rng.choice(_REVIEW_BODIES).format(color=d.rng.choice(_COLORS), n=d.rng.randint(2, 12)),
    "duration_minutes": lambda d: d.rng.randint(78, 185),
    "genre": lambda d: d.rng.choice(_GENRES),
    "isbn": lambda d: _isbn13(d.rng),
    "number_of_pages": lambda d: d.rng.randint(90, 900),
    "recipe_cuisine": lambda d: d.rng.choice(_CUISINES),
    "cook_time_minutes": lambda d: d.rng.choice((10, 15, 20, 25, 30, 45, 60, 90, 120)),
    "recipe_yield": lambda d: d.rng.randint(1, 8),
    "start_date": lambda d: _random_date(d.rng, 2019, 2026),
    "end_date": _end_date,
    "order_status": lambda d: d.rng.choice(_ORDER_STATUSES),
    "total_payment_due": lambda d: round(d.rng.uniform(5.0, 2500.0), 2),
    "title": lambda d: d.rng.choice(_JOB_TITLES),
    "base_salary": lambda d: float(d.rng.randrange(24_000, 160_000, 500)),
    "employment_type": lambda d: d.rng.choice(_EMPLOYMENT_TYPES),
}

_BY_DATATYPE: dict[str, Callable[[_RowDraw], _Value]] = {
    "Date": lambda d: _random_date(d.rng, d.ctx.year - 1, min(d.ctx.year + 1, 2026)),
    "Boolean": lambda d: d.rng.random() < 0.6,
    "Number": lambda d: round(d.rng.uniform(1.0, 1000.0), 2),
    "Integer": lambda d: d.rng.randint(1, 1000),
    "URL": lambda d: _site(d.catalog, d.ctx, d.class_name, d.rng),
    "Text": lambda d: f"text {d.rng.randint(1, 99)}",
}


def _column_value(col: Column, draw: _RowDraw) -> _Value:
    """A plausible value for one column of the row being drawn."""
    if col.name == "id":
        return draw.row_id
    if col.references:
        return draw.rng.randint(1, 80)
    generator = _BY_COLUMN.get(col.name) or _BY_DATATYPE[col.datatype]
    return generator(draw)


def _generate_rows(cat: Catalog, table: Table, n_rows: int, rng: random.Random) -> list[dict[str, _Value]]:
    """``n_rows`` rows with consecutive ids from a random start; a few optional cells are NULL."""
    first_id = rng.randint(1, 500)
    rows: list[dict[str, _Value]] = []
    for row_id in range(first_id, first_id + n_rows):
        draw = _RowDraw(table.class_name, row_id, _draw_context(rng), {}, rng, cat)
        for col in table.columns:
            value = _column_value(col, draw)
            if col.name not in _NEVER_NULL and rng.random() < _NULL_PROBABILITY:
                value = None
            draw.row[col.name] = value
        rows.append(draw.row)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Rendering: rows
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Style:
    """How one rows segment writes dates and booleans (varies per segment, like real exports do)."""

    date_format: str  # "iso", "dmy_dots", "mdy_slashes", "long", "short"
    booleans: tuple[str, str]  # (true, false)


def _format_date(d: date, fmt: str) -> str:
    if fmt == "dmy_dots":
        return f"{d.day:02d}.{d.month:02d}.{d.year}"
    if fmt == "mdy_slashes":
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if fmt == "long":
        return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"
    if fmt == "short":
        return f"{d.day} {_MONTHS[d.month - 1][:3]} {d.year}"
    return d.isoformat()


def _format_number(column: str, value: float) -> str:
    return f"{value:.{_DECIMALS.get(column, 2)}f}"


def _cell(column: str, value: _Value, style: _Style) -> str:
    """Text form of a value for CSV / markdown / prose."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return style.booleans[0] if value else style.booleans[1]
    if isinstance(value, date):
        return _format_date(value, style.date_format)
    if isinstance(value, float):
        return _format_number(column, value)
    return str(value)


def _json_value(column: str, value: _Value, style: _Style) -> object:
    if isinstance(value, date):
        return _format_date(value, style.date_format)
    if isinstance(value, float):
        return round(value, _DECIMALS.get(column, 2))
    return value


def _sql_literal(column: str, value: _Value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    if isinstance(value, float):
        return _format_number(column, value)
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _render_csv(table: Table, rows: list[dict[str, _Value]], style: _Style, rng: random.Random) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", delimiter=rng.choice((",", ",", ";")))
    columns = [c.name for c in table.columns]
    writer.writerow(columns)
    writer.writerows([_cell(c, row[c], style) for c in columns] for row in rows)
    caption = rng.choice((f"{table.name}.csv", f"Export of {table.name}:", ""))
    return (caption + "\n" if caption else "") + buffer.getvalue().rstrip("\n")


def _render_jsonl(table: Table, rows: list[dict[str, _Value]], style: _Style, rng: random.Random) -> str:
    lines = [json.dumps({c: _json_value(c, v, style) for c, v in row.items()}, ensure_ascii=False) for row in rows]
    caption = rng.choice((f"{table.name}.jsonl", ""))
    return "\n".join(([caption] if caption else []) + lines)


def _render_markdown(table: Table, rows: list[dict[str, _Value]], style: _Style, rng: random.Random) -> str:
    columns = [c.name for c in table.columns]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c, row[c], style).replace("|", "\\|") for c in columns) + " |")
    caption = rng.choice((f"Table: {table.name}", f"### {table.name}", ""))
    return "\n".join(([caption] if caption else []) + lines)


def _render_inserts(table: Table, rows: list[dict[str, _Value]], style: _Style, rng: random.Random) -> str:
    columns = [c.name for c in table.columns]
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES"
    tuples = ["(" + ", ".join(_sql_literal(c, row[c]) for c in columns) + ")" for row in rows]
    if rng.random() < 0.5:
        return head + "\n" + ",\n".join(f"  {t}" for t in tuples) + ";"
    return "\n".join(f"{head} {t};" for t in tuples)


_ROW_RENDERERS = (_render_csv, _render_jsonl, _render_markdown, _render_inserts)


def _random_style(rng: random.Random) -> _Style:
    return _Style(
        date_format=rng.choice(("iso", "iso", "dmy_dots", "mdy_slashes", "long", "short")),
        booleans=rng.choice((("true", "false"), ("yes", "no"), ("1", "0"), ("Y", "N"))),
    )


# --------------------------------------------------------------------------------------------------------------
# Rendering: ontology, DDL, prose
# --------------------------------------------------------------------------------------------------------------

def _indefinite(noun: str) -> str:
    return f"an {noun}" if noun[0].lower() in "aeio" else f"a {noun}"


def _chain(cat: Catalog, cls: str) -> list[tuple[str, str]]:
    """(class, parent) pairs from ``cls`` up to the root: the subclass statements every ontology segment makes."""
    lineage = [cls, *cat.ancestors(cls)]
    return list(zip(lineage, lineage[1:]))


def _ontology_plain(cat: Catalog, cls: str, props: list[tuple[str, str, str]], rng: random.Random
                    ) -> list[str]:
    lines = [f"{c} is a subclass of {p}." for c, p in _chain(cat, cls)]
    lines.append(f"{cls}: {cat.classes[cls].comment}.")
    lines.extend(f"{owner} has property {p} of type {r}." for owner, p, r in props)
    return lines


def _ontology_definitions(cat: Catalog, cls: str, props: list[tuple[str, str, str]], rng: random.Random
                          ) -> list[str]:
    lines = [f"Class {c} (subclass of {p}): {cat.classes[c].comment}." for c, p in _chain(cat, cls)]
    lines.extend(f"Property {p}: domain {owner}, range {r}." for owner, p, r in props)
    return lines


def _ontology_narrative(cat: Catalog, cls: str, props: list[tuple[str, str, str]], rng: random.Random
                        ) -> list[str]:
    lines = [
        f"In the ontology, {_indefinite(c)} is a more specific kind of {p}, that is, a subclass of {p}."
        for c, p in _chain(cat, cls)
    ]
    lines.extend(
        f"{_indefinite(owner).replace('a', 'A', 1)} can have {_indefinite(p)}, whose values are of type {r}."
        for owner, p, r in props
    )
    return lines


def _ontology_turtle(cat: Catalog, cls: str, props: list[tuple[str, str, str]], rng: random.Random
                     ) -> list[str]:
    lines = ["@prefix schema: <https://schema.org/> ."] if rng.random() < 0.5 else []
    for c, p in _chain(cat, cls):
        comment = cat.classes[c].comment
        lines.append(f'schema:{c} a rdfs:Class ; rdfs:subClassOf schema:{p} ; rdfs:comment "{comment}" .')
    for owner, p, r in props:
        lines.append(
            f"schema:{p} a rdf:Property ; schema:domainIncludes schema:{owner} ; schema:rangeIncludes schema:{r} ."
        )
    return lines


# Four phrasings of the same facts; each takes (catalog, class, [(declaring class, property, range)], rng).
_ONTOLOGY_STYLES = (_ontology_plain, _ontology_definitions, _ontology_narrative, _ontology_turtle)


def _render_ontology(cat: Catalog, cls: str, rng: random.Random) -> str:
    """Subclass chain plus the class's own properties (and, sometimes, the inherited ones)."""
    include_inherited = rng.random() < 0.3
    props = [
        (owner, prop.name, prop.range)
        for owner, prop in cat.all_properties(cls)
        if owner == cls or include_inherited
    ]
    style = rng.choice(_ONTOLOGY_STYLES)
    return "\n".join(style(cat, cls, props, rng))


def _render_ddl(cat: Catalog, cls: str, rng: random.Random) -> str:
    """CREATE TABLE for the class (sometimes also for classes it references) and sometimes a CREATE VIEW or two."""
    table = cat.table_for(cls)
    inline = rng.random() < 0.5
    if_not_exists = rng.random() < 0.3
    statements: list[str] = []
    if rng.random() < 0.2:
        referenced = sorted({c.references for c in table.columns if c.references})
        for other in rng.sample(referenced, k=min(len(referenced), rng.randint(1, 2))):
            statements.append(cat.render_create_table(cat.table_for(other), if_not_exists, inline))
    statements.append(cat.render_create_table(table, if_not_exists, inline))
    views = cat.views_for(cls)
    if views and rng.random() < 0.5:
        statements.extend(v.sql for v in rng.sample(views, k=min(len(views), rng.randint(1, 2))))
    if rng.random() < 0.3:
        statements.insert(0, f"-- {table.name}")
    return "\n".join(statements)


def _plural(cat: Catalog, cls: str) -> str:
    words = cat.table_name(cls).replace("_", " ")
    if words == "person":
        return "people"
    return words + ("es" if words.endswith("s") else "s")


def _words(column: str) -> str:
    return column.replace("_", " ")


_PROSE_STYLE = _Style(date_format="long", booleans=("yes", "no"))
_UNIQUE_TEXT = frozenset({"name", "url", "email", "telephone", "sku", "isbn", "street_address", "postal_code",
                          "review_body", "given_name", "family_name"})


def _render_prose(cat: Catalog, table: Table, rows: list[dict[str, _Value]], rng: random.Random) -> str:
    """English sentences about the rows: counts, ranges, extremes, common values, gaps. Never DDL or ontology."""
    cls, n = table.class_name, len(rows)
    plural = _plural(cat, cls)
    sentences = [rng.choice((
        f"This extract lists {n} {plural}.",
        f"The {table.name} data contains {n} records.",
        f"There are {n} {plural} in this sample, with ids from {rows[0]['id']} to {rows[-1]['id']}.",
    ))]
    facts: list[str] = []
    for col in table.columns:
        if col.name == "id":
            continue
        values = [row[col.name] for row in rows if row[col.name] is not None]
        missing = n - len(values)
        if missing:
            facts.append(f"The {_words(col.name)} is missing for {missing} of them.")
        if not values:
            continue
        if col.references:
            facts.append(f"They point to {len(set(values))} different {_words(col.name)} values.")
        elif col.datatype in ("Number", "Integer"):
            lo_row = min((r for r in rows if r[col.name] is not None), key=lambda r: r[col.name])
            hi_row = max((r for r in rows if r[col.name] is not None), key=lambda r: r[col.name])
            lo, hi = _cell(col.name, lo_row[col.name], _PROSE_STYLE), _cell(col.name, hi_row[col.name], _PROSE_STYLE)
            facts.append(rng.choice((
                f"The {_words(col.name)} ranges from {lo} to {hi}.",
                f"{hi_row['name']} has the highest {_words(col.name)} ({hi}), {lo_row['name']} the lowest ({lo}).",
            )))
        elif col.datatype == "Date":
            dates = sorted(values)
            facts.append(
                f"The earliest {_words(col.name)} is {_format_date(dates[0], 'long')}, "
                f"the latest {_format_date(dates[-1], 'long')}."
            )
        elif col.datatype == "Boolean":
            k = sum(1 for v in values if v)
            facts.append(f"{k} of {n} have {_words(col.name)} set to yes.")
        elif col.name not in _UNIQUE_TEXT:
            value, count = Counter(values).most_common(1)[0]
            if count > 1:
                facts.append(f"The most common {_words(col.name)} is {value} ({count} records).")
    example = rng.choice(rows)
    shown = [
        c for c in table.columns if c.name not in ("id", "name") and not c.references and example[c.name] is not None
    ]
    if shown:
        pick = rng.sample(shown, k=min(2, len(shown)))
        details = " and ".join(f"{_words(c.name)} {_cell(c.name, example[c.name], _PROSE_STYLE)}" for c in pick)
        facts.append(f"For example, {example['name']} (id {example['id']}) has {details}.")
    rng.shuffle(facts)
    sentences.extend(facts[: rng.randint(2, 5)])
    return " ".join(sentences)


# --------------------------------------------------------------------------------------------------------------
# Documents and arms
# --------------------------------------------------------------------------------------------------------------

_ORDERS: tuple[tuple[SegmentKind, ...], ...] = (
    ("ontology", "ddl", "rows", "prose"),
    ("ddl", "ontology", "rows", "prose"),
    ("rows", "prose", "ddl", "ontology"),
    ("prose", "rows", "ontology", "ddl"),
)


def _related_class(cat: Catalog, cls: str, rng: random.Random, pool: Sequence[str]) -> str:
    """A second class for the document: one the first references, else any of ``pool`` (references to table
    classes outside ``pool`` are never drawn)."""
    outside = set(cat.table_classes).difference(pool)
    referenced = sorted({c.references for c in cat.table_for(cls).columns
                         if c.references and c.references not in outside})
    if referenced and rng.random() < 0.7:
        return rng.choice(referenced)
    return rng.choice(pool)


def _class_segments(cat: Catalog, cls: str, rng: random.Random) -> list[Segment]:
    """The segments about one class; rows and prose always, ontology and DDL usually."""
    table = cat.table_for(cls)
    rows = _generate_rows(cat, table, rng.randint(3, 6), rng)
    renderer = rng.choice(_ROW_RENDERERS)
    segments = [Segment("rows", renderer(table, rows, _random_style(rng), rng))]
    if rng.random() < 0.9:
        segments.append(Segment("prose", _render_prose(cat, table, rows, rng)))
    if rng.random() < 0.85:
        segments.append(Segment("ontology", _render_ontology(cat, cls, rng)))
    if rng.random() < 0.85:
        segments.append(Segment("ddl", _render_ddl(cat, cls, rng)))
    return segments


def holdable_classes(cat: Catalog) -> tuple[str, ...]:
    """Table classes that can be kept out of every training byte, in catalog order: leaves (so no other class's
    subclass chain or inherited properties name them) that no other class's table references (so no other CREATE
    TABLE, view, ontology property range or related-class draw names them)."""
    parents = {c.parent for c in cat.classes.values() if c.parent}
    referenced = {col.references for cls in cat.table_classes for col in cat.table_for(cls).columns
                  if col.references and col.references != cls}
    return tuple(c for c in cat.table_classes if c not in parents and c not in referenced)


@cache
def heldout_class_names(cat: Catalog, data_seed: int, n_classes: int) -> tuple[str, ...]:
    """The ``n_classes`` classes the training corpus never draws (``task.heldout_classes``), in catalog order.
    Drawn from ``data_seed`` and the catalog only -- never the arm, n_documents or seed -- so every arm holds out
    the same classes."""
    if n_classes == 0:
        return ()
    candidates = holdable_classes(cat)
    if not 0 < n_classes <= len(candidates):
        raise InputError(f"config error: task.heldout_classes: the catalog {cat.source} can hold out at most "
                         f"{len(candidates)} classes (leaves no other class references: {', '.join(candidates)}); "
                         f"got {n_classes}")
    chosen = set(random.Random(f"aegir-heldout-classes:{data_seed}").sample(candidates, n_classes))
    return tuple(c for c in candidates if c in chosen)


def seen_class_names(cat: Catalog, data_seed: int, n_classes: int) -> tuple[str, ...]:
    """The table classes training documents may be about (every class but ``heldout_class_names``), in catalog
    order; also the classes the relational probes ask about, so no probe names a class no arm has seen."""
    held_out = heldout_class_names(cat, data_seed, n_classes)
    return tuple(c for c in cat.table_classes if c not in held_out)


def _document(cat: Catalog, rng: random.Random, pool: Sequence[str]) -> list[Segment]:
    """A document about one class of ``pool``, sometimes two (the second also from ``pool``)."""
    first = rng.choice(pool)
    classes = [first] if rng.random() < 0.7 else [first, _related_class(cat, first, rng, pool)]
    order = rng.choice(_ORDERS)
    if rng.random() < 0.5:
        # Group by class (all about A, then all about B), each group in the document's order.
        segments = [s for cls in classes
                    for s in sorted(_class_segments(cat, cls, rng), key=lambda s: order.index(s.kind))]
    else:
        segments = [s for cls in classes for s in _class_segments(cat, cls, rng)]
        rng.shuffle(segments)
    return segments


def generate_document(data_seed: int, index: int, catalog: Catalog | None = None,
                      heldout_classes: int = 0) -> list[Segment]:
    """Document ``index`` of the corpus for ``data_seed``; independent of how many documents are generated.
    ``catalog``: the ontology the document is about (None = the shipped catalog). ``heldout_classes``: how many
    classes (``heldout_class_names``) the document may not be about; with 0 every class may be drawn."""
    cat = catalog or default_catalog()
    return _document(cat, random.Random(f"aegir-corpus:{data_seed}:{index}"),
                     seen_class_names(cat, data_seed, heldout_classes))


def generate_heldout_document(data_seed: int, index: int, catalog: Catalog, heldout_classes: int) -> list[Segment]:
    """Document ``index`` about the held-out classes only (the eval instrument's unseen classes); numbered apart
    from the training documents (its own random stream), so no index range of the corpus can collide with it."""
    held_out = heldout_class_names(catalog, data_seed, heldout_classes)
    if not held_out:
        raise ValueError("generate_heldout_document needs heldout_classes > 0")
    return _document(catalog, random.Random(f"aegir-heldout-corpus:{data_seed}:{index}"), held_out)


def generate_documents(data_seed: int, n_documents: int, catalog: Catalog | None = None,
                       heldout_classes: int = 0) -> list[list[Segment]]:
    """The first ``n_documents`` documents of the synthetic corpus for ``data_seed`` (``catalog``, held-out
    classes)."""
    return [generate_document(data_seed, i, catalog, heldout_classes) for i in range(n_documents)]


def document_text(segments: Sequence[Segment]) -> str:
    """A document's text: its segments separated by a blank line."""
    return SEGMENT_SEPARATOR.join(s.text for s in segments)


def apply_arm(documents: Sequence[Sequence[Segment]], arm: str) -> list[str]:
    """Document texts for an arm: ``no_ontology`` drops every ontology segment, ``no_schema`` every DDL segment."""
    if arm not in _DROPPED_BY_ARM:
        raise InputError(f"unknown corpus arm {arm!r}; allowed arms: {', '.join(ARMS)}")
    dropped = _DROPPED_BY_ARM[arm]
    return [document_text([s for s in doc if s.kind not in dropped]) for doc in documents]


# --------------------------------------------------------------------------------------------------------------
# Corpus and split
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Corpus:
    """Train/val documents as UTF-8 bytes; ``train``/``val`` are the separator-joined streams to cut windows from."""

    train_documents: tuple[bytes, ...]
    val_documents: tuple[bytes, ...]
    val_indices: tuple[int, ...]  # positions of the val documents in the full document list
    train: bytes = field(init=False, repr=False)
    val: bytes = field(init=False, repr=False)
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        train = DOCUMENT_SEPARATOR.join(self.train_documents)
        val = DOCUMENT_SEPARATOR.join(self.val_documents)
        object.__setattr__(self, "train", train)
        object.__setattr__(self, "val", val)
        object.__setattr__(self, "sha256", _content_sha256(train, val))

    @property
    def n_documents(self) -> int:
        return len(self.train_documents) + len(self.val_documents)


def _content_sha256(train: bytes, val: bytes) -> str:
    """Hash of both streams, length-prefixed so moving bytes between train and val changes the hash."""
    digest = hashlib.sha256()
    for part in (train, val):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def _check_val_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction!r}")


def _val_indices(n_documents: int, val_fraction: float, seed_key: str) -> list[int]:
    """Sorted held-out document indices: ``round(n * val_fraction)``, at least 1 if asked, leaving 1 for training."""
    if val_fraction == 0.0:
        return []
    n_val = min(max(1, round(n_documents * val_fraction)), n_documents - 1)
    return sorted(random.Random(seed_key).sample(range(n_documents), n_val))


def _split(texts: Sequence[str], val_indices: Sequence[int]) -> Corpus:
    held_out = set(val_indices)
    encoded = [t.encode("utf-8") for t in texts]
    return Corpus(
        train_documents=tuple(b for i, b in enumerate(encoded) if i not in held_out),
        val_documents=tuple(encoded[i] for i in val_indices),
        val_indices=tuple(val_indices),
    )


def build_corpus(data_seed: int, n_documents: int, arm: str, val_fraction: float,
                 catalog: Catalog | None = None, heldout_classes: int = 0) -> Corpus:
    """The synthetic corpus for one arm; the val documents are the same indices for every arm of a ``data_seed``.
    ``catalog`` is the ontology the documents describe (``task.catalog``; None = the shipped catalog);
    ``heldout_classes`` classes of it appear in no document (``task.heldout_classes``)."""
    if arm not in _DROPPED_BY_ARM:
        raise InputError(f"unknown corpus arm {arm!r}; allowed arms: {', '.join(ARMS)}")
    _check_val_fraction(val_fraction)
    minimum = 2 if val_fraction > 0 else 1
    if n_documents < minimum:
        raise InputError(f"n_documents must be >= {minimum} (val_fraction={val_fraction}), got {n_documents}")
    documents = generate_documents(data_seed, n_documents, catalog, heldout_classes)
    val_indices = _val_indices(n_documents, val_fraction, f"aegir-split:{data_seed}")
    return _split(apply_arm(documents, arm), val_indices)


# --------------------------------------------------------------------------------------------------------------
# User corpora
# --------------------------------------------------------------------------------------------------------------

def _read_utf8(path: Path) -> str:
    data = regular_file(path).read_bytes()
    if not data.strip():
        raise InputError(f"{path}:1: file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    return text.replace("\r\n", "\n")


def _read_txt(path: Path) -> list[str]:
    """Documents of a text file: runs of non-blank lines separated by blank lines."""
    documents: list[str] = []
    paragraph: list[str] = []
    for line in _read_utf8(path).split("\n"):
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            documents.append("\n".join(paragraph))
            paragraph = []
    if paragraph:
        documents.append("\n".join(paragraph))
    return documents


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _read_jsonl(path: Path) -> list[str]:
    """The ``text`` field of every non-blank line; each line is checked and errors name the line."""
    documents: list[str] = []
    for lineno, line in enumerate(_read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        record = parse_json_line(line, f"{path}:{lineno}", "not valid JSON ({msg} at column {col})")
        if not isinstance(record, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object with a string field 'text', "
                             f"got {_json_type(record)}")
        if "text" not in record:
            raise InputError(f"{path}:{lineno}: missing field 'text'")
        text = record["text"]
        if not isinstance(text, str):
            raise InputError(f"{path}:{lineno}: field 'text' must be a string, got {_json_type(text)}")
        if not text.strip():
            raise InputError(f"{path}:{lineno}: field 'text' is empty")
        documents.append(text)
    return documents


def _corpus_files(path: Path) -> list[Path]:
    not_a_special_file(path, "file or directory")  # a FIFO or /dev/null: one line, not a hang or crash
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: directory contains no .txt or .jsonl files")
    for file in files:
        if file.suffix.lower() not in USER_CORPUS_SUFFIXES:
            raise InputError(f"{file}: unsupported file extension {file.suffix!r} (expected .txt or .jsonl)")
    return files


def load_user_corpus(path: str | Path, val_fraction: float, seed: int) -> Corpus:
    """The user's ``.txt`` / ``.jsonl`` file or directory as a corpus, split by document with ``seed``."""
    _check_val_fraction(val_fraction)
    path = Path(path)
    documents: list[str] = []
    for file in _corpus_files(path):
        documents.extend(_read_jsonl(file) if file.suffix.lower() == ".jsonl" else _read_txt(file))
    if val_fraction > 0 and len(documents) < 2:
        raise InputError(f"{path}: found {len(documents)} document(s); at least 2 are needed to hold out a "
                         f"validation split (val_fraction={val_fraction})")
    return _split(documents, _val_indices(len(documents), val_fraction, f"aegir-user-split:{seed}"))

"""A small schema.org-flavoured ontology and the relational schema (DDL) derived from it.

Why: the pretraining experiment asks whether a model learns tabular data better when the corpus also states the
ontology and/or the schema. Keeping the ontology as plain data here makes the other two views (SQL tables and
views) *derived* from it, so the three views of the data can never disagree.

Mapping to SQL: every class except the root ``Thing`` becomes one table (snake_case of the class name;
``Order`` becomes ``purchase_order`` since ORDER is reserved) holding
its own and all inherited properties; the primary key is ``id INTEGER``. A datatype property becomes a column of
the matching SQL type; a class-valued property ``p`` with range ``C`` becomes ``p_id INTEGER`` with a foreign key
to ``C``'s table. Views are derived too: one join view per foreign key and one aggregate view per (foreign key,
numeric column) pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

DATATYPES: tuple[str, ...] = ("Text", "Number", "Integer", "Date", "URL", "Boolean")

SQL_TYPES: dict[str, str] = {
    "Text": "VARCHAR(255)",
    "Number": "NUMERIC(12, 2)",
    "Integer": "INTEGER",
    "Date": "DATE",
    "URL": "VARCHAR(2048)",
    "Boolean": "BOOLEAN",
}

ROOT_CLASS = "Thing"


@dataclass(frozen=True)
class Property:
    """A property declared on a class (its domain); ``range`` is a datatype from ``DATATYPES`` or a class name."""

    name: str
    range: str
    comment: str


@dataclass(frozen=True)
class OntologyClass:
    """A class with its direct superclass (None only for the root) and the properties it declares itself."""

    name: str
    parent: str | None
    comment: str
    properties: tuple[Property, ...]


def _p(name: str, range_: str, comment: str) -> Property:
    return Property(name=name, range=range_, comment=comment)


CLASSES: dict[str, OntologyClass] = {
    c.name: c
    for c in (
        OntologyClass("Thing", None, "the most generic kind of item", (
            _p("name", "Text", "the name of the item"),
            _p("url", "URL", "a web page about the item"),
        )),
        OntologyClass("Organization", "Thing", "a company, club or institution", (
            _p("email", "Text", "a contact e-mail address"),
            _p("telephone", "Text", "a contact telephone number"),
            _p("founding_date", "Date", "the date the organization was founded"),
            _p("address", "PostalAddress", "the physical address of the organization"),
        )),
        OntologyClass("LocalBusiness", "Organization", "a business with a physical location customers visit", (
            _p("opening_hours", "Text", "when the business is open"),
            _p("price_range", "Text", "how expensive the business is, e.g. $$"),
        )),
        OntologyClass("Restaurant", "LocalBusiness", "a place that serves meals", (
            _p("serves_cuisine", "Text", "the kind of food served"),
            _p("accepts_reservations", "Boolean", "whether tables can be booked"),
        )),
        OntologyClass("Person", "Thing", "a human being", (
            _p("given_name", "Text", "the first name"),
            _p("family_name", "Text", "the last name"),
            _p("email", "Text", "a personal e-mail address"),
            _p("birth_date", "Date", "the date of birth"),
            _p("works_for", "Organization", "the employer"),
            _p("address", "PostalAddress", "the home address"),
        )),
        OntologyClass("Place", "Thing", "a location with a fixed position", (
            _p("address", "PostalAddress", "the postal address of the place"),
            _p("latitude", "Number", "latitude in degrees"),
            _p("longitude", "Number", "longitude in degrees"),
        )),
        OntologyClass("PostalAddress", "Thing", "a mailing address", (
            _p("street_address", "Text", "street and house number"),
            _p("address_locality", "Text", "the city"),
            _p("postal_code", "Text", "the postal code"),
            _p("address_country", "Text", "the country"),
        )),
        OntologyClass("Brand", "Thing", "a name under which products are sold", (
            _p("slogan", "Text", "the brand's slogan"),
        )),
        OntologyClass("Product", "Thing", "something that is made to be sold", (
            _p("sku", "Text", "the stock keeping unit"),
            _p("brand", "Brand", "the brand of the product"),
            _p("color", "Text", "the main colour"),
            _p("weight_kg", "Number", "the weight in kilograms"),
            _p("release_date", "Date", "the date the product was released"),
        )),
        OntologyClass("Offer", "Thing", "an offer to sell a product at a price", (
            _p("item_offered", "Product", "the product being offered"),
            _p("seller", "Organization", "who sells the product"),
            _p("price", "Number", "the asking price"),
            _p("price_currency", "Text", "the ISO 4217 currency of the price"),
            _p("valid_from", "Date", "the first day the offer is valid"),
            _p("in_stock", "Boolean", "whether the product is available"),
        )),
        OntologyClass("Rating", "Thing", "a score given to something", (
            _p("rating_value", "Number", "the score"),
            _p("best_rating", "Number", "the highest possible score"),
            _p("worst_rating", "Number", "the lowest possible score"),
        )),
        OntologyClass("AggregateRating", "Rating", "the average of many ratings", (
            _p("rating_count", "Integer", "how many ratings were averaged"),
            _p("item_reviewed", "Product", "the product being rated"),
        )),
        OntologyClass("CreativeWork", "Thing", "a work of authorship", (
            _p("author", "Person", "who created the work"),
            _p("date_published", "Date", "the publication date"),
            _p("in_language", "Text", "the language of the work"),
        )),
        OntologyClass("Review", "CreativeWork", "an opinion about a product", (
            _p("item_reviewed", "Product", "the product being reviewed"),
            _p("review_rating", "Rating", "the rating given in the review"),
            _p("review_body", "Text", "the text of the review"),
        )),
        OntologyClass("Movie", "CreativeWork", "a motion picture", (
            _p("director", "Person", "who directed the movie"),
            _p("duration_minutes", "Integer", "the running time in minutes"),
            _p("genre", "Text", "the genre"),
        )),
        OntologyClass("Book", "CreativeWork", "a written book", (
            _p("isbn", "Text", "the ISBN"),
            _p("number_of_pages", "Integer", "how many pages the book has"),
        )),
        OntologyClass("Recipe", "CreativeWork", "instructions for cooking a dish", (
            _p("recipe_cuisine", "Text", "the cuisine of the dish"),
            _p("cook_time_minutes", "Integer", "the cooking time in minutes"),
            _p("recipe_yield", "Integer", "how many servings it makes"),
        )),
        OntologyClass("Event", "Thing", "something that happens at a time and place", (
            _p("start_date", "Date", "when the event starts"),
            _p("end_date", "Date", "when the event ends"),
            _p("location", "Place", "where the event happens"),
            _p("organizer", "Organization", "who organizes the event"),
            _p("is_accessible_for_free", "Boolean", "whether entry is free"),
        )),
        OntologyClass("Order", "Thing", "a confirmed purchase", (
            _p("customer", "Person", "who placed the order"),
            _p("seller", "Organization", "who fulfils the order"),
            _p("accepted_offer", "Offer", "the offer that was accepted"),
            _p("order_date", "Date", "when the order was placed"),
            _p("order_status", "Text", "the processing state of the order"),
        )),
        OntologyClass("Invoice", "Thing", "a request for payment", (
            _p("reference_order", "Order", "the order being billed"),
            _p("customer", "Person", "who has to pay"),
            _p("total_payment_due", "Number", "the amount to pay"),
            _p("payment_due_date", "Date", "the payment deadline"),
            _p("is_paid", "Boolean", "whether the invoice has been paid"),
        )),
        OntologyClass("JobPosting", "Thing", "an advertised job opening", (
            _p("title", "Text", "the job title"),
            _p("hiring_organization", "Organization", "the employer"),
            _p("job_location", "Place", "where the job is"),
            _p("base_salary", "Number", "the yearly base salary"),
            _p("date_posted", "Date", "when the posting was published"),
            _p("employment_type", "Text", "full-time, part-time, ..."),
        )),
    )
}

# Classes that have a table: everything but the root.
TABLE_CLASSES: tuple[str, ...] = tuple(name for name in CLASSES if name != ROOT_CLASS)


def is_datatype(range_: str) -> bool:
    """True for a literal range (Text, Number, ...), False for a class-valued one."""
    return range_ in DATATYPES


def ancestors(class_name: str) -> list[str]:
    """Superclasses from the direct parent up to the root."""
    chain: list[str] = []
    parent = CLASSES[class_name].parent
    while parent is not None:
        chain.append(parent)
        parent = CLASSES[parent].parent
    return chain


def all_properties(class_name: str) -> list[tuple[str, Property]]:
    """(declaring class, property) pairs, inherited first, so ``name`` and ``url`` lead every table."""
    lineage = [*reversed(ancestors(class_name)), class_name]
    return [(owner, prop) for owner in lineage for prop in CLASSES[owner].properties]


# Class names whose snake_case form is an SQL reserved word.
_RESERVED_TABLE_NAMES: dict[str, str] = {"Order": "purchase_order"}


def table_name(class_name: str) -> str:
    """snake_case table name of a class (PostalAddress -> postal_address), avoiding SQL reserved words."""
    if class_name in _RESERVED_TABLE_NAMES:
        return _RESERVED_TABLE_NAMES[class_name]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


@dataclass(frozen=True)
class Column:
    """One table column; ``references`` is the referenced class for foreign keys."""

    name: str
    sql_type: str
    datatype: str  # the ontology range for literals, "Integer" for keys
    prop: str | None  # the property it stores; None for the primary key
    references: str | None = None


@dataclass(frozen=True)
class Table:
    """A table derived from one ontology class."""

    name: str
    class_name: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class View:
    """A derived view; ``sql`` is the full CREATE VIEW statement."""

    name: str
    base_class: str
    sql: str


@cache
def table_for(class_name: str) -> Table:
    """The table of a class (see the module docstring for the mapping)."""
    columns = [Column("id", "INTEGER", "Integer", None)]
    for _, prop in all_properties(class_name):
        if is_datatype(prop.range):
            columns.append(Column(prop.name, SQL_TYPES[prop.range], prop.range, prop.name))
        else:
            columns.append(Column(f"{prop.name}_id", "INTEGER", "Integer", prop.name, references=prop.range))
    return Table(table_name(class_name), class_name, tuple(columns))


def render_create_table(table: Table, if_not_exists: bool = False, inline_references: bool = False) -> str:
    """CREATE TABLE statement; the two flags give the corpus some surface variety with the same meaning."""
    head = f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{table.name} ("
    lines: list[str] = []
    for col in table.columns:
        line = f"  {col.name} {col.sql_type}"
        if col.name == "id":
            line += " PRIMARY KEY" if inline_references else " NOT NULL"
        elif col.references and inline_references:
            line += f" REFERENCES {table_name(col.references)}(id)"
        lines.append(line)
    if not inline_references:
        lines.append("  PRIMARY KEY (id)")
        lines.extend(
            f"  FOREIGN KEY ({col.name}) REFERENCES {table_name(col.references)}(id)"
            for col in table.columns
            if col.references
        )
    return head + "\n" + ",\n".join(lines) + "\n);"


@cache
def views_for(class_name: str) -> tuple[View, ...]:
    """Views whose base table is this class's table: a join per foreign key, an aggregate per (key, number)."""
    table = table_for(class_name)
    numeric = [c for c in table.columns if c.datatype in ("Number", "Integer") and c.name != "id" and not c.references]
    views: list[View] = []
    for fk in (c for c in table.columns if c.references):
        other = table_name(fk.references)
        join_name = f"{table.name}_with_{fk.prop}"
        views.append(View(join_name, class_name, (
            f"CREATE VIEW {join_name} AS\n"
            f"SELECT t.id, t.name, r.name AS {fk.prop}_name\n"
            f"FROM {table.name} AS t\n"
            f"JOIN {other} AS r ON t.{fk.name} = r.id;"
        )))
        for num in numeric:
            agg_name = f"{table.name}_{num.name}_by_{fk.prop}"
            views.append(View(agg_name, class_name, (
                f"CREATE VIEW {agg_name} AS\n"
                f"SELECT {fk.name}, COUNT(*) AS n, AVG({num.name}) AS avg_{num.name}, "
                f"MAX({num.name}) AS max_{num.name}\n"
                f"FROM {table.name}\n"
                f"GROUP BY {fk.name};"
            )))
    return tuple(views)

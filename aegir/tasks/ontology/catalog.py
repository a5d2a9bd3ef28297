"""The ontology catalog as data: loading and validating a catalog file, and the relational schema derived from it.

A catalog (YAML or JSON, format 1, documented in docs/ontology.md and in the header of the shipped
``catalogs/schema_org.yaml``) lists classes with their parent, comment and own properties, plus groups of
pairwise-disjoint classes. Everything relational is *derived*, so the ontology, the SQL tables and the views can
never disagree:

* every class except the root becomes one table (``table:`` in the file, else snake_case of the class name) holding
  its own and all inherited properties; the primary key is ``id INTEGER``;
* a datatype property becomes a column of the matching SQL type (``SQL_TYPES``); a class-valued property ``p`` with
  range ``C`` becomes ``p_id INTEGER`` with a foreign key to ``C``'s table;
* views: one join view per foreign key and one aggregate view per (foreign key, numeric column) pair.

A malformed file raises ``InputError`` with one line ``<file>: <path.in.file>: <what is wrong>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from aegir.errors import InputError

DATATYPES: tuple[str, ...] = ("Text", "Number", "Integer", "Date", "URL", "Boolean")

SQL_TYPES: dict[str, str] = {
    "Text": "VARCHAR(255)",
    "Number": "NUMERIC(12, 2)",
    "Integer": "INTEGER",
    "Date": "DATE",
    "URL": "VARCHAR(2048)",
    "Boolean": "BOOLEAN",
}
DATATYPE_OF_SQL: dict[str, str] = {sql: datatype for datatype, sql in SQL_TYPES.items()}

CATALOG_FORMAT = 1
DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalogs" / "schema_org.yaml"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CLASS_KEYS = {"parent", "comment", "properties", "table"}
_PROPERTY_KEYS = {"name", "range", "comment"}
_TOP_KEYS = {"format", "root", "disjoint", "classes"}


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
    table: str | None = None  # explicit table name; None = snake_case of the name


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


def is_datatype(range_: str) -> bool:
    """True for a literal range (Text, Number, ...), False for a class-valued one."""
    return range_ in DATATYPES


def snake_case(class_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


@dataclass(frozen=True, eq=False)
class Catalog:
    """A validated catalog; ``sha256`` is the hash of the file's bytes (its version), ``source`` where it came from."""

    classes: dict[str, OntologyClass]
    root: str
    disjoint: tuple[tuple[str, ...], ...]
    sha256: str
    source: str
    _tables: dict[str, Table] = field(default_factory=dict, repr=False)
    _views: dict[str, tuple[View, ...]] = field(default_factory=dict, repr=False)

    @property
    def version(self) -> str:
        """The short content hash logged as ``reward/catalog_version`` and used in ``catalogs/<version>.yaml``."""
        return self.sha256[:12]

    @property
    def table_classes(self) -> tuple[str, ...]:
        """Classes that have a table: everything but the root, in file order."""
        return tuple(name for name in self.classes if name != self.root)

    def ancestors(self, class_name: str) -> list[str]:
        """Superclasses from the direct parent up to the root."""
        chain: list[str] = []
        parent = self.classes[class_name].parent
        while parent is not None:
            chain.append(parent)
            parent = self.classes[parent].parent
        return chain

    def all_properties(self, class_name: str) -> list[tuple[str, Property]]:
        """(declaring class, property) pairs, inherited first, so ``name`` and ``url`` lead every table."""
        lineage = [*reversed(self.ancestors(class_name)), class_name]
        return [(owner, prop) for owner in lineage for prop in self.classes[owner].properties]

    def declarations(self, prop_name: str) -> list[tuple[str, Property]]:
        """Every (domain, property) the catalog declares under this property name."""
        return [(c.name, p) for c in self.classes.values() for p in c.properties if p.name == prop_name]

    def disjoint_pairs(self) -> set[frozenset[str]]:
        """Asserted disjoint pairs (subclasses inherit disjointness through the closure, see the verifier)."""
        return {frozenset((a, b)) for group in self.disjoint for a in group for b in group if a != b}

    def table_name(self, class_name: str) -> str:
        """The table of a class: its ``table:`` entry, else snake_case (PostalAddress -> postal_address)."""
        explicit = self.classes[class_name].table
        return explicit if explicit else snake_case(class_name)

    def table_for(self, class_name: str) -> Table:
        """The table of a class (see the module docstring for the mapping)."""
        if class_name not in self._tables:
            columns = [Column("id", "INTEGER", "Integer", None)]
            for _, prop in self.all_properties(class_name):
                if is_datatype(prop.range):
                    columns.append(Column(prop.name, SQL_TYPES[prop.range], prop.range, prop.name))
                else:
                    columns.append(Column(f"{prop.name}_id", "INTEGER", "Integer", prop.name,
                                          references=prop.range))
            self._tables[class_name] = Table(self.table_name(class_name), class_name, tuple(columns))
        return self._tables[class_name]

    def views_for(self, class_name: str) -> tuple[View, ...]:
        """Views whose base table is this class's table: a join per foreign key, an aggregate per (key, number)."""
        if class_name in self._views:
            return self._views[class_name]
        table = self.table_for(class_name)
        numeric = [c for c in table.columns
                   if c.datatype in ("Number", "Integer") and c.name != "id" and not c.references]
        views: list[View] = []
        for fk in (c for c in table.columns if c.references):
            other = self.table_name(fk.references)
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
        self._views[class_name] = tuple(views)
        return self._views[class_name]

    def render_create_table(self, table: Table, if_not_exists: bool = False, inline_references: bool = False) -> str:
        return render_create_table(table, self.table_name, if_not_exists, inline_references)


def render_create_table(table: Table, table_name_of: Any, if_not_exists: bool = False,
                        inline_references: bool = False) -> str:
    """CREATE TABLE statement; the two flags give the corpus some surface variety with the same meaning.
    ``table_name_of`` maps a referenced class to its table name."""
    head = f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{table.name} ("
    lines: list[str] = []
    for col in table.columns:
        line = f"  {col.name} {col.sql_type}"
        if col.name == "id":
            line += " PRIMARY KEY" if inline_references else " NOT NULL"
        elif col.references and inline_references:
            line += f" REFERENCES {table_name_of(col.references)}(id)"
        lines.append(line)
    if not inline_references:
        lines.append("  PRIMARY KEY (id)")
        lines.extend(
            f"  FOREIGN KEY ({col.name}) REFERENCES {table_name_of(col.references)}(id)"
            for col in table.columns
            if col.references
        )
    return head + "\n" + ",\n".join(lines) + "\n);"


# ----------------------------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------------------------

def parse_catalog(data: bytes, source: str) -> Catalog:
    """Parse and validate catalog bytes (YAML, which includes JSON); every problem is one InputError line
    ``<source>: <path>: <problem>``."""
    def fail(where: str, problem: str) -> InputError:
        return InputError(f"{source}: {where}: {problem}")

    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail("(file)", f"not valid UTF-8 YAML/JSON: {first}") from None
    if not isinstance(raw, dict):
        raise fail("(file)", f"expected a mapping with keys {', '.join(sorted(_TOP_KEYS))}")
    unknown = sorted(str(k) for k in raw if k not in _TOP_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
    if raw.get("format") != CATALOG_FORMAT:
        raise fail("format", f"expected {CATALOG_FORMAT}, got {raw.get('format')!r}")
    root = raw.get("root")
    raw_classes = raw.get("classes")
    if not isinstance(raw_classes, dict) or not raw_classes:
        raise fail("classes", "expected a non-empty mapping NAME: {parent, comment, properties}")
    if not isinstance(root, str) or root not in raw_classes:
        raise fail("root", f"must name a class of `classes`, got {root!r}")

    classes: dict[str, OntologyClass] = {}
    for name, entry in raw_classes.items():
        where = f"classes.{name}"
        if not isinstance(name, str) or not _NAME.match(name) or name in DATATYPES:
            raise fail(where, "class names are identifiers (letter, then letters/digits/_) and not a datatype")
        if not isinstance(entry, dict):
            raise fail(where, "expected a mapping with parent, comment, properties")
        extra = sorted(str(k) for k in entry if k not in _CLASS_KEYS)
        if extra:
            raise fail(f"{where}.{extra[0]}", f"unknown key; allowed: {', '.join(sorted(_CLASS_KEYS))}")
        parent = entry.get("parent")
        if name == root:
            if parent is not None:
                raise fail(f"{where}.parent", "the root class has no parent")
        elif not isinstance(parent, str) or parent not in raw_classes:
            raise fail(f"{where}.parent", f"must name a class of `classes`, got {parent!r}")
        comment = entry.get("comment")
        if not isinstance(comment, str) or not comment.strip():
            raise fail(f"{where}.comment", "a non-empty string is required")
        table = entry.get("table")
        if table is not None and (not isinstance(table, str) or not _NAME.match(table)):
            raise fail(f"{where}.table", f"must be an SQL identifier, got {table!r}")
        raw_props = entry.get("properties", [])
        if raw_props is None:
            raw_props = []
        if not isinstance(raw_props, list):
            raise fail(f"{where}.properties", "expected a list of {name, range, comment}")
        props: list[Property] = []
        for i, prop in enumerate(raw_props):
            pwhere = f"{where}.properties[{i}]"
            if not isinstance(prop, dict):
                raise fail(pwhere, "expected a mapping {name, range, comment}")
            extra = sorted(str(k) for k in prop if k not in _PROPERTY_KEYS)
            if extra:
                raise fail(f"{pwhere}.{extra[0]}", f"unknown key; allowed: {', '.join(sorted(_PROPERTY_KEYS))}")
            pname, prange, pcomment = prop.get("name"), prop.get("range"), prop.get("comment")
            if not isinstance(pname, str) or not _NAME.match(pname) or pname == "id":
                raise fail(f"{pwhere}.name", f"must be an identifier other than `id`, got {pname!r}")
            if not isinstance(prange, str) or (prange not in DATATYPES and prange not in raw_classes):
                raise fail(f"{pwhere}.range", f"must be a datatype ({', '.join(DATATYPES)}) or a class, got {prange!r}")
            if not isinstance(pcomment, str) or not pcomment.strip():
                raise fail(f"{pwhere}.comment", "a non-empty string is required")
            props.append(Property(pname, prange, pcomment))
        classes[name] = OntologyClass(name, parent, comment, tuple(props), table)

    # Every class reaches the root (no cycles), and no class redeclares a property it inherits (the table would
    # get two columns of one name).
    for name in classes:
        seen = [name]
        parent = classes[name].parent
        while parent is not None:
            if parent in seen:
                raise fail(f"classes.{name}.parent", f"subclass cycle: {' -> '.join([*seen, parent])}")
            seen.append(parent)
            parent = classes[parent].parent
        columns: dict[str, str] = {}
        for owner in reversed(seen):
            for prop in classes[owner].properties:
                column = prop.name if prop.range in DATATYPES else f"{prop.name}_id"
                if column in columns:
                    raise fail(f"classes.{owner}.properties", f"column {column!r} of class {name} is declared twice "
                                                              f"({columns[column]} and {owner})")
                columns[column] = owner
    tables: dict[str, str] = {}
    for name, cls in classes.items():
        if name == root:
            continue
        tname = cls.table or snake_case(name)
        if tname in tables:
            raise fail(f"classes.{name}", f"table name {tname!r} is also the table of {tables[tname]}")
        tables[tname] = name

    raw_disjoint = raw.get("disjoint") or []
    if not isinstance(raw_disjoint, list):
        raise fail("disjoint", "expected a list of class lists")
    disjoint: list[tuple[str, ...]] = []
    for i, group in enumerate(raw_disjoint):
        if not isinstance(group, list) or len(group) < 2:
            raise fail(f"disjoint[{i}]", "expected a list of at least two classes")
        for member in group:
            if member not in classes:
                raise fail(f"disjoint[{i}]", f"unknown class {member!r}")
        if len(set(group)) != len(group):
            raise fail(f"disjoint[{i}]", "a class is listed twice")
        for a in group:
            lineage = set(_lineage(classes, a))
            for b in group:
                if a != b and b in lineage:
                    raise fail(f"disjoint[{i}]", f"{a} is a subclass of {b}: disjoint classes cannot be nested")
        disjoint.append(tuple(group))
    return Catalog(classes=classes, root=root, disjoint=tuple(disjoint),
                   sha256=hashlib.sha256(data).hexdigest(), source=source)


def _lineage(classes: dict[str, OntologyClass], name: str) -> list[str]:
    out, parent = [name], classes[name].parent
    while parent is not None:
        out.append(parent)
        parent = classes[parent].parent
    return out


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file (None = the shipped catalog)."""
    path = Path(path) if path is not None else DEFAULT_CATALOG
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from None
    return parse_catalog(data, str(path))


@cache
def default_catalog() -> Catalog:
    """The shipped catalog (aegir/tasks/ontology/catalogs/schema_org.yaml), loaded once per process."""
    return load_catalog(DEFAULT_CATALOG)


def catalog_for(path: str | Path | None) -> Catalog:
    """``task.catalog``: the shipped catalog for None, else the user's file."""
    return default_catalog() if path in (None, "") else load_catalog(path)


def catalog_to_json(catalog: Catalog) -> str:
    """A canonical JSON form (for tests and for writing a catalog programmatically)."""
    return json.dumps({
        "format": CATALOG_FORMAT, "root": catalog.root, "disjoint": [list(g) for g in catalog.disjoint],
        "classes": {c.name: {**({"parent": c.parent} if c.parent else {}), **({"table": c.table} if c.table else {}),
                             "comment": c.comment,
                             "properties": [{"name": p.name, "range": p.range, "comment": p.comment}
                                            for p in c.properties]}
                    for c in catalog.classes.values()}}, indent=1)

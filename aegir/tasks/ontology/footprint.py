"""Footprints: small relational schemas generated from a hidden catalog subset, their noisy DDL, and the reference
composition that maps them back onto the catalog (docs/ontology.md, "Records").

A footprint is one table of a catalog class, plus (often) the table of a class it references, each with the
primary key and a few of the class's columns (foreign keys only between footprint tables, so every key can be
closed). Noise makes the DDL look like a real database rather than the catalog's derived schema: renamed tables
(plurals, prefixes) and columns (synonyms, ``_dt`` / ``_ref`` suffixes, CamelCase), SQL type aliases (TEXT, DECIMAL,
INT, ...), and sometimes a bookkeeping column the catalog does not have (``created_at``), which the reference maps
with a new datatype property.

Everything is a pure function of (catalog, data_seed, index).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from aegir.tasks.ontology.catalog import Catalog, Column
from aegir.tasks.ontology.composition import ClassDecl, Composition, PropDecl, render_composition
from aegir.tasks.ontology.verifier import Footprint, FootprintColumn, FootprintTable

_SQL_ALIASES: dict[str, tuple[str, ...]] = {
    "Text": ("VARCHAR(255)", "TEXT", "VARCHAR(100)"),
    "Number": ("NUMERIC(12, 2)", "DECIMAL(10,2)", "REAL"),
    "Integer": ("INTEGER", "INT", "BIGINT"),
    "Date": ("DATE",),
    "URL": ("VARCHAR(2048)", "VARCHAR(1024)"),
    "Boolean": ("BOOLEAN", "BOOL"),
}
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "name": ("label", "nm", "display_name"), "url": ("link", "website", "web_url"), "email": ("mail", "email_addr"),
    "telephone": ("phone", "tel"), "price": ("amount", "unit_price"), "title": ("job_title",),
    "sku": ("sku_code",), "color": ("colour",), "genre": ("category",),
}
_EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (("created_at", "Date"), ("updated_at", "Date"),
                                               ("source_system", "Text"), ("row_version", "Integer"))


@dataclass(frozen=True)
class FootprintSpec:
    """What a footprint was generated from (kept in the record, never in the prompt)."""

    classes: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]  # per class: the catalog column names kept (primary key excluded)
    extra: tuple[tuple[str, str] | None, ...]  # per class: an extra (column, datatype) not in the catalog

    @property
    def key(self) -> str:
        """The footprint's identity: records with the same key differ only in noise (the split unit)."""
        return ";".join(f"{c}({','.join(cols)}{'+' + e[0] if e else ''})"
                        for c, cols, e in zip(self.classes, self.columns, self.extra))


def draw_spec(catalog: Catalog, rng: random.Random, max_columns: int) -> FootprintSpec:
    """A catalog subset: one class, often one class it references (then joined by one foreign key), and a few
    columns of each: the first table up to `max_columns` (the key included), the referenced one up to
    `max_columns - 1`, at least one data column each."""
    first = rng.choice(catalog.table_classes)
    classes = [first]
    referenced = sorted({c.references for c in catalog.table_for(first).columns
                         if c.references and c.references != first})
    if referenced and rng.random() < 0.6:
        classes.append(rng.choice(referenced))
    columns: list[tuple[str, ...]] = []
    extras: list[tuple[str, str] | None] = []
    for position, cls in enumerate(classes):
        table = catalog.table_for(cls)
        keys = [c.name for c in table.columns if c.references in classes and c.references != cls]
        data = [c.name for c in table.columns if c.name != "id" and not c.references]
        most = max_columns - min(len(keys), 1) if position == 0 else max_columns - 1  # the referenced table: fewer
        n_data = rng.randint(1, max(1, most))
        chosen = set(keys[:1]) | set(rng.sample(data, k=min(n_data, len(data))))
        columns.append(tuple(c.name for c in table.columns if c.name in chosen))
        extras.append(rng.choice(_EXTRA_COLUMNS) if rng.random() < 0.15 else None)
    return FootprintSpec(tuple(classes), tuple(columns), tuple(extras))


def _rename_table(name: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return name
    if roll < 0.75:
        return name + ("es" if name.endswith("s") else "s")
    return rng.choice(("tbl_", "t_", "dim_")) + name


def _rename_column(column: Column, target_table: str | None, rng: random.Random) -> str:
    if rng.random() >= 0.4:
        return column.name
    if column.references and target_table is not None:
        stem = column.name[: -len("_id")]
        return rng.choice((f"{stem}_ref", f"{stem}_fk", f"{target_table}_id"))
    if column.name.endswith("_date"):
        return column.name[: -len("_date")] + rng.choice(("_dt", "_on"))
    if column.name in _SYNONYMS:
        return rng.choice(_SYNONYMS[column.name])
    parts = column.name.split("_")
    return parts[0] + "".join(p.title() for p in parts[1:]) if len(parts) > 1 else "c_" + column.name


@dataclass(frozen=True)
class GeneratedFootprint:
    spec: FootprintSpec
    footprint: Footprint
    ddl: str
    reference: str


def generate_footprint(catalog: Catalog, rng: random.Random, max_columns: int) -> GeneratedFootprint:
    """Draw a spec, rename, render the DDL and write the reference composition."""
    spec = draw_spec(catalog, rng, max_columns)
    table_names = {cls: _rename_table(catalog.table_name(cls), rng) for cls in spec.classes}
    tables: list[FootprintTable] = []
    ddl: list[str] = []
    comp = Composition()
    for cls, kept, extra in zip(spec.classes, spec.columns, spec.extra):
        table = catalog.table_for(cls)
        tname = table_names[cls]
        columns = [FootprintColumn("id", "Integer", None, primary=True)]
        sql = [f"id {rng.choice(_SQL_ALIASES['Integer'])} PRIMARY KEY"]
        used = {"id"}
        props: list[PropDecl] = []
        for name in kept:
            column = table.column(name)
            target = table_names.get(column.references) if column.references else None
            renamed = _rename_column(column, target, rng)
            if renamed in used:
                renamed = column.name
            used.add(renamed)
            if column.references:
                columns.append(FootprintColumn(renamed, "Integer", target))
                sql.append(f"{renamed} {rng.choice(_SQL_ALIASES['Integer'])} REFERENCES {target}(id)")
                props.append(PropDecl(cls, column.prop or name, True, column.references, tname, renamed, 0))
            else:
                columns.append(FootprintColumn(renamed, column.datatype))
                sql.append(f"{renamed} {rng.choice(_SQL_ALIASES[column.datatype])}")
                props.append(PropDecl(cls, column.prop or name, False, column.datatype, tname, renamed, 0))
        if extra is not None and extra[0] not in used:
            columns.append(FootprintColumn(extra[0], extra[1]))
            sql.append(f"{extra[0]} {rng.choice(_SQL_ALIASES[extra[1]])}")
            props.append(PropDecl(cls, extra[0], False, extra[1], tname, extra[0], 0))
        tables.append(FootprintTable(tname, tuple(columns)))
        ddl.append(f"CREATE TABLE {tname} (" + ", ".join(sql) + ");")
        parent = catalog.classes[cls].parent
        comp.classes.append(ClassDecl(cls, (parent,) if parent else (), tname, 0))
        comp.props.extend(props)
    return GeneratedFootprint(spec, Footprint(tuple(tables)), "\n".join(ddl), render_composition(comp))

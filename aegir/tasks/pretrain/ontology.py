"""The shipped ontology and the relational schema (DDL) derived from it, as module-level names.

Why: the pretraining experiment asks whether a model learns tabular data better when the corpus also states the
ontology and/or the schema. The ontology itself is data now -- aegir/tasks/ontology/catalogs/schema_org.yaml, loaded
and validated by :mod:`aegir.tasks.ontology.catalog`, where the derivation rules (tables, columns, foreign keys,
views) live. This module keeps the names earlier code imports, bound to the shipped catalog; code that accepts a
user's catalog (`task.catalog=PATH`) takes a :class:`~aegir.tasks.ontology.catalog.Catalog` instead.
"""

from __future__ import annotations

from aegir.tasks.ontology.catalog import (
    DATATYPES,
    SQL_TYPES,
    Column,
    OntologyClass,
    Property,
    Table,
    View,
    default_catalog,
    is_datatype,
)
from aegir.tasks.ontology.catalog import render_create_table as _render_create_table

__all__ = ["DATATYPES", "SQL_TYPES", "ROOT_CLASS", "CLASSES", "TABLE_CLASSES", "Column", "OntologyClass", "Property",
           "Table", "View", "is_datatype", "ancestors", "all_properties", "table_name", "table_for", "views_for",
           "render_create_table"]

_CATALOG = default_catalog()
ROOT_CLASS: str = _CATALOG.root
CLASSES: dict[str, OntologyClass] = _CATALOG.classes
# Classes that have a table: everything but the root.
TABLE_CLASSES: tuple[str, ...] = _CATALOG.table_classes
ancestors = _CATALOG.ancestors
all_properties = _CATALOG.all_properties
table_name = _CATALOG.table_name
table_for = _CATALOG.table_for
views_for = _CATALOG.views_for


def render_create_table(table: Table, if_not_exists: bool = False, inline_references: bool = False) -> str:
    """CREATE TABLE statement; the two flags give the corpus some surface variety with the same meaning."""
    return _render_create_table(table, table_name, if_not_exists, inline_references)

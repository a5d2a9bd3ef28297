"""The ontology-composition text format the policy writes, and its parser (docs/ontology.md, "Composition format").

One statement per line; blank lines and lines starting with ``#`` are ignored::

    class Review < CreativeWork = reviews                  a class, its parent(s), the table it maps
    class VeganPlace < Restaurant, Place                   several parents; the mapping is optional
    prop Review.review_body : Text = reviews.body          a datatype property: domain.name : Datatype = table.column
    prop Review.item_reviewed -> Product = reviews.prod    an object property: domain.name -> RangeClass = table.column
    disjoint Review Product                                the listed classes pairwise share no instance

Names are identifiers (a letter, then letters, digits or ``_``); whitespace around the symbols is free. The parser
is total: it never raises on model output, it returns the statements it understood and one message per line it
did not (any such line fails the structural gate R_A).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_CLASS = re.compile(rf"^class\s+(?P<name>{_ID})\s*(?:<\s*(?P<parents>{_ID}(?:\s*,\s*{_ID})*))?\s*"
                    rf"(?:=\s*(?P<table>{_ID}))?$")
_PROP = re.compile(rf"^prop\s+(?P<domain>{_ID})\.(?P<name>{_ID})\s*(?P<kind>:|->)\s*(?P<range>{_ID})\s*"
                   rf"(?:=\s*(?P<table>{_ID})\.(?P<column>{_ID}))?$")
_DISJOINT = re.compile(rf"^disjoint\s+(?P<members>{_ID}(?:\s+{_ID})+)$")
MAX_LINES = 200  # a longer completion is not a composition of a small footprint (and keeps the verifier cheap)


@dataclass(frozen=True)
class ClassDecl:
    name: str
    parents: tuple[str, ...]
    table: str | None
    line: int


@dataclass(frozen=True)
class PropDecl:
    domain: str
    name: str
    object: bool  # True: `->` an object property (range is a class); False: `:` a datatype property
    range: str
    table: str | None
    column: str | None
    line: int


@dataclass(frozen=True)
class DisjointDecl:
    members: tuple[str, ...]
    line: int


@dataclass
class Composition:
    classes: list[ClassDecl] = field(default_factory=list)
    props: list[PropDecl] = field(default_factory=list)
    disjoints: list[DisjointDecl] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "line N: ..." for every line that is not a statement

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.classes)


def parse_composition(text: str) -> Composition:
    """Parse a completion; never raises."""
    out = Composition()
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        out.errors.append(f"more than {MAX_LINES} lines")
        lines = lines[:MAX_LINES]
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := _CLASS.match(line):
            parents = tuple(p.strip() for p in m["parents"].split(",")) if m["parents"] else ()
            out.classes.append(ClassDecl(m["name"], parents, m["table"], number))
        elif m := _PROP.match(line):
            out.props.append(PropDecl(m["domain"], m["name"], m["kind"] == "->", m["range"], m["table"],
                                      m["column"], number))
        elif m := _DISJOINT.match(line):
            out.disjoints.append(DisjointDecl(tuple(m["members"].split()), number))
        else:
            out.errors.append(f"line {number}: not a statement: {line[:80]!r}")
    if not out.classes and not out.errors:
        out.errors.append("no class statement")
    return out


def render_composition(comp: Composition) -> str:
    """Statements back to text in the canonical spelling (classes, then their properties, then disjointness)."""
    lines: list[str] = []
    for decl in comp.classes:
        text = f"class {decl.name}"
        if decl.parents:
            text += " < " + ", ".join(decl.parents)
        if decl.table:
            text += f" = {decl.table}"
        lines.append(text)
        for prop in (p for p in comp.props if p.domain == decl.name):
            lines.append(render_prop(prop))
    declared = {c.name for c in comp.classes}
    lines.extend(render_prop(p) for p in comp.props if p.domain not in declared)
    lines.extend("disjoint " + " ".join(d.members) for d in comp.disjoints)
    return "\n".join(lines)


def render_prop(prop: PropDecl) -> str:
    text = f"prop {prop.domain}.{prop.name} {'->' if prop.object else ':'} {prop.range}"
    if prop.table and prop.column:
        text += f" = {prop.table}.{prop.column}"
    return text

"""The deterministic verifier of an ontology composition: R = R_A · (0.50·R_B + 0.05·R_C + 0.45·R_D).

Pure functions of (catalog, footprint, composition text); the definitions, with worked examples, are in
docs/ontology.md ("Verifier"). In short:

* **R_A structural gate** (0 or 1): the text parses and has a class statement; every class it names is declared
  in it or in the catalog, every datatype is one of ``DATATYPES``; every mapping target (table, table.column)
  exists in the footprint; nothing is declared twice (a class, a ``domain.property``, a disjointness set) and no
  table or column is mapped twice.
* **R_B consistency**: the fraction of the composition's axioms that survive the closure checks. Axioms: each
  subclass edge, each disjointness statement, each property statement. Over the union of catalog and composition
  (subclass graph, disjointness inherited by subclasses) a class is *broken* if it lies on a subclass cycle or is
  unsatisfiable (its reflexive superclass closure holds two disjoint classes). A subclass edge fails if it lies on a
  cycle or its class is broken; a disjointness statement fails if some class lies under two of its members; a
  property statement fails if its domain is broken, if its
  name is a catalog property whose catalog declarations contradict it (no declaration whose domain is a superclass
  of the statement's domain with a compatible range: the same datatype, or a range class that is the catalog's or a
  subclass of it -- narrowing is fine), or if its mapping has the wrong kind (a foreign key needs an object
  property, a column a datatype property of the column's datatype). A complete composition states one axiom per
  footprint item (a subclass edge per table, a property per column); R_B = surviving / (stated + missing/2) with
  missing = max(0, items - stated), so a failing axiom costs one, an omitted one half, and a trivial composition
  (one class, nothing mapped) does not earn the consistency half of the reward -- GRPO found exactly that hack
  (``class <garbage>`` scored 0.5 under plain surviving/stated) in the first ontology_rlvr run.
* **R_C parsimony**: 1 - (redundant axioms + classes with no table) / (axioms + classes). Redundant: a parent
  already implied through another stated or catalog parent (restating the catalog's direct parent is not), a
  disjointness already implied by inherited disjointness.
* **R_D coverage-close**: the fraction of the footprint's tables, columns (not the primary key) and foreign keys
  covered: a table by a class mapped to it; a column by a datatype property of the column's datatype whose
  domain is the table's class or one of its superclasses; a foreign key (closed) by an object property with such a
  domain whose range is the class mapped to the referenced table.

Where R_A = 0 the other components are still computed on what parsed (they are logged), but the total is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aegir.tasks.ontology.catalog import DATATYPES, Catalog
from aegir.tasks.ontology.composition import Composition, parse_composition

WEIGHTS = {"consistency": 0.50, "parsimony": 0.05, "coverage": 0.45}


# ----------------------------------------------------------------------------------------------------------------
# Footprint
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FootprintColumn:
    name: str
    datatype: str  # the catalog datatype the column stores ("Integer" for keys)
    references: str | None = None  # the referenced table, for a foreign key
    primary: bool = False


@dataclass(frozen=True)
class FootprintTable:
    name: str
    columns: tuple[FootprintColumn, ...]

    def column(self, name: str) -> FootprintColumn | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Footprint:
    tables: tuple[FootprintTable, ...]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Footprint:
        return cls(tuple(FootprintTable(t["name"], tuple(
            FootprintColumn(c["name"], c["datatype"], c.get("references"), bool(c.get("primary", False)))
            for c in t["columns"])) for t in raw["tables"]))

    def to_dict(self) -> dict[str, Any]:
        return {"tables": [{"name": t.name, "columns": [
            {"name": c.name, "datatype": c.datatype, "references": c.references, "primary": c.primary}
            for c in t.columns]} for t in self.tables]}

    def table(self, name: str) -> FootprintTable | None:
        return next((t for t in self.tables if t.name == name), None)


# ----------------------------------------------------------------------------------------------------------------
# Verdict
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Verdict:
    structural: float
    consistency: float
    parsimony: float
    coverage: float
    reasons: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.structural * (WEIGHTS["consistency"] * self.consistency + WEIGHTS["parsimony"] * self.parsimony
                                  + WEIGHTS["coverage"] * self.coverage)


# ----------------------------------------------------------------------------------------------------------------
# Closure over catalog + composition
# ----------------------------------------------------------------------------------------------------------------

class Closure:
    """The subclass graph and disjointness of the catalog plus a composition's statements."""

    def __init__(self, catalog: Catalog, comp: Composition) -> None:
        self.catalog = catalog
        self.parents: dict[str, set[str]] = {name: ({c.parent} if c.parent else set())
                                             for name, c in catalog.classes.items()}
        for decl in comp.classes:
            stated = set(decl.parents)
            if not stated and decl.name not in catalog.classes and decl.name != catalog.root:
                stated = {catalog.root}  # a new class without parents sits under the root
            self.parents.setdefault(decl.name, set()).update(stated)
        for name in list(self.parents):  # names used only as parents (unknown terms: R_A's business)
            for parent in list(self.parents[name]):
                self.parents.setdefault(parent, set())
        self.disjoint: set[frozenset[str]] = set(catalog.disjoint_pairs())
        self.disjoint |= {frozenset((a, b)) for d in comp.disjoints for a in d.members for b in d.members if a != b}
        self._up: dict[str, frozenset[str]] = {}

    def up(self, name: str) -> frozenset[str]:
        """Reflexive superclass closure (cycles included)."""
        if name not in self._up:
            seen = {name}
            stack = [name]
            while stack:
                for parent in self.parents.get(stack.pop(), ()):
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            self._up[name] = frozenset(seen)
        return self._up[name]

    def strictly_above(self, child: str, parent: str, skip_edge: tuple[str, str] | None = None) -> bool:
        """Is ``parent`` reachable from ``child`` in one or more steps, optionally without one edge?"""
        seen: set[str] = set()
        stack = [child]
        while stack:
            node = stack.pop()
            for nxt in self.parents.get(node, ()):
                if (node, nxt) == skip_edge:
                    continue
                if nxt == parent:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def on_cycle(self, child: str, parent: str) -> bool:
        return child == parent or child in self.up(parent)

    def unsatisfiable(self, name: str, disjoint: Iterable[frozenset[str]] | None = None) -> bool:
        ups = self.up(name)
        pairs = self.disjoint if disjoint is None else disjoint
        return any(pair <= ups for pair in pairs)

    def on_a_cycle(self, name: str) -> bool:
        """Is the class reachable from one of its own parents?"""
        return any(name in self.up(parent) for parent in self.parents.get(name, ()))

    def broken(self, name: str) -> bool:
        """A class on a subclass cycle or under two disjoint classes: every axiom about it fails."""
        return self.on_a_cycle(name) or self.unsatisfiable(name)

    def under(self, name: str, ancestor: str) -> bool:
        return ancestor in self.up(name)


# ----------------------------------------------------------------------------------------------------------------
# The four components
# ----------------------------------------------------------------------------------------------------------------

def structural(catalog: Catalog, footprint: Footprint, comp: Composition) -> tuple[float, list[str]]:
    """R_A: 1.0 if the composition is well formed against the catalog and footprint, else 0.0 (with reasons)."""
    reasons = list(comp.errors)
    declared = [c.name for c in comp.classes]
    known = set(catalog.classes) | set(declared)
    for name in declared:
        if name in DATATYPES:
            reasons.append(f"line {_line(comp, name)}: {name} is a datatype, not a class")
    seen: set[str] = set()
    for decl in comp.classes:
        if decl.name in seen:
            reasons.append(f"line {decl.line}: class {decl.name} declared twice")
        seen.add(decl.name)
        for parent in decl.parents:
            if parent not in known:
                reasons.append(f"line {decl.line}: unknown class {parent}")
        if decl.table is not None and footprint.table(decl.table) is None:
            reasons.append(f"line {decl.line}: no table {decl.table} in the footprint")
    props_seen: set[tuple[str, str]] = set()
    for prop in comp.props:
        if (prop.domain, prop.name) in props_seen:
            reasons.append(f"line {prop.line}: property {prop.domain}.{prop.name} declared twice")
        props_seen.add((prop.domain, prop.name))
        if prop.domain not in known:
            reasons.append(f"line {prop.line}: unknown class {prop.domain}")
        if prop.object and prop.range not in known:
            reasons.append(f"line {prop.line}: unknown class {prop.range}")
        if not prop.object and prop.range not in DATATYPES:
            reasons.append(f"line {prop.line}: unknown datatype {prop.range}")
        if prop.table is not None:
            table = footprint.table(prop.table)
            if table is None or table.column(prop.column or "") is None:
                reasons.append(f"line {prop.line}: no column {prop.table}.{prop.column} in the footprint")
    disjoint_seen: set[frozenset[str]] = set()
    for dis in comp.disjoints:
        members = frozenset(dis.members)
        if members in disjoint_seen or len(members) != len(dis.members):
            reasons.append(f"line {dis.line}: disjointness declared twice")
        disjoint_seen.add(members)
        for member in dis.members:
            if member not in known:
                reasons.append(f"line {dis.line}: unknown class {member}")
    tables = [c.table for c in comp.classes if c.table]
    if len(set(tables)) != len(tables):
        reasons.append("a table is mapped by two classes")
    columns = [(p.table, p.column) for p in comp.props if p.table]
    if len(set(columns)) != len(columns):
        reasons.append("a column is mapped by two properties")
    return (0.0 if reasons else 1.0), reasons


def _line(comp: Composition, name: str) -> int:
    return next((c.line for c in comp.classes if c.name == name), 0)


def _catalog_range_ok(closure: Closure, catalog_range: str, stated_range: str, stated_object: bool) -> bool:
    if catalog_range in DATATYPES:
        return not stated_object and stated_range == catalog_range
    return stated_object and closure.under(stated_range, catalog_range)


def _axioms(catalog: Catalog, footprint: Footprint, comp: Composition, closure: Closure
            ) -> list[tuple[str, bool, bool]]:
    """(description, survives, redundant) for every axiom of the composition."""
    out: list[tuple[str, bool, bool]] = []
    for decl in comp.classes:
        catalog_parent = catalog.classes[decl.name].parent if decl.name in catalog.classes else None
        for parent in decl.parents:
            edge = (decl.name, parent)
            ok = not closure.on_cycle(decl.name, parent) and not closure.broken(decl.name)
            redundant = parent != catalog_parent and closure.strictly_above(decl.name, parent, skip_edge=edge)
            out.append((f"{decl.name} < {parent}", ok, redundant))
    all_classes = list(closure.parents)
    for dis in comp.disjoints:
        pairs = {frozenset((a, b)) for a in dis.members for b in dis.members if a != b}
        ok = not any(len(pair & closure.up(x)) == 2 for x in all_classes for pair in pairs)
        others = set(catalog.disjoint_pairs()) | {frozenset((a, b)) for d in comp.disjoints if d is not dis
                                                  for a in d.members for b in d.members if a != b}
        redundant = all(any(_split(other, closure.up(a), closure.up(b)) for other in others)
                        for a, b in (tuple(pair) for pair in pairs))
        out.append(("disjoint " + " ".join(dis.members), ok, redundant))
    for prop in comp.props:
        ok = not closure.broken(prop.domain)
        declarations = catalog.declarations(prop.name)
        if ok and declarations:
            ok = any(closure.under(prop.domain, domain) and _catalog_range_ok(closure, p.range, prop.range, prop.object)
                     for domain, p in declarations)
        if ok and prop.table is not None:
            table = footprint.table(prop.table)
            column = table.column(prop.column or "") if table else None
            if column is not None:
                if column.references:
                    ok = prop.object
                else:
                    ok = not prop.object and prop.range == column.datatype
        out.append((f"{prop.domain}.{prop.name}", ok, False))
    return out


def _split(pair: frozenset[str], up_a: frozenset[str], up_b: frozenset[str]) -> bool:
    """Does the disjoint pair have one member above a and the other above b?"""
    x, y = tuple(pair)
    return (x in up_a and y in up_b) or (y in up_a and x in up_b)


def footprint_items(footprint: Footprint) -> int:
    """Tables plus their columns other than the primary key: what a complete composition states one axiom for."""
    return sum(1 + sum(1 for c in t.columns if not c.primary) for t in footprint.tables)


def consistency_share(surviving: int, stated: int, items: int) -> float:
    """R_B = surviving / (stated + missing / 2), missing = max(0, items - stated): a failing axiom costs one, an
    axiom a complete composition would state but this one omits costs half (see the module docstring)."""
    denominator = stated + 0.5 * max(0, items - stated)
    return surviving / denominator if denominator else 1.0


def consistency(catalog: Catalog, footprint: Footprint, comp: Composition) -> float:
    """R_B (see `consistency_share`)."""
    axioms = _axioms(catalog, footprint, comp, Closure(catalog, comp))
    return consistency_share(sum(ok for _, ok, _ in axioms), len(axioms), footprint_items(footprint))


def parsimony(catalog: Catalog, footprint: Footprint, comp: Composition) -> float:
    """R_C: 1 - (redundant axioms + classes without a table) / (axioms + classes)."""
    axioms = _axioms(catalog, footprint, comp, Closure(catalog, comp))
    unmapped = sum(1 for c in comp.classes if c.table is None)
    denominator = len(axioms) + len(comp.classes)
    if denominator == 0:
        return 1.0
    return max(0.0, 1.0 - (sum(r for _, _, r in axioms) + unmapped) / denominator)


def coverage(catalog: Catalog, footprint: Footprint, comp: Composition) -> float:
    """R_D: covered footprint items (tables, non-key columns, closed foreign keys) / items."""
    closure = Closure(catalog, comp)
    class_of = {c.table: c.name for c in comp.classes if c.table}
    by_column = {(p.table, p.column): p for p in comp.props if p.table}
    items = covered = 0
    for table in footprint.tables:
        items += 1
        cls = class_of.get(table.name)
        covered += cls is not None
        for column in table.columns:
            if column.primary:
                continue
            items += 1
            prop = by_column.get((table.name, column.name))
            if prop is None or cls is None or not closure.under(cls, prop.domain):
                continue
            if column.references:
                covered += prop.object and prop.range == class_of.get(column.references)
            else:
                covered += (not prop.object) and prop.range == column.datatype
    return covered / items if items else 0.0


def verify(catalog: Catalog, footprint: Footprint | Mapping[str, Any], text: str) -> Verdict:
    """All four components of one completion."""
    fp = footprint if isinstance(footprint, Footprint) else Footprint.from_dict(footprint)
    comp = parse_composition(text)
    r_a, reasons = structural(catalog, fp, comp)
    closure = Closure(catalog, comp)
    axioms = _axioms(catalog, fp, comp, closure)
    r_b = consistency_share(sum(ok for _, ok, _ in axioms), len(axioms), footprint_items(fp))
    unmapped = sum(1 for c in comp.classes if c.table is None)
    denominator = len(axioms) + len(comp.classes)
    r_c = max(0.0, 1.0 - (sum(r for _, _, r in axioms) + unmapped) / denominator) if denominator else 1.0
    if not comp.classes and not comp.props:  # nothing parsed: nothing is parsimonious either
        r_c = 0.0
    r_d = coverage(catalog, fp, comp)
    reasons += [f"axiom fails: {d}" for d, ok, _ in axioms if not ok]
    reasons += [f"redundant: {d}" for d, _, r in axioms if r]
    return Verdict(r_a, r_b, r_c, r_d, reasons)

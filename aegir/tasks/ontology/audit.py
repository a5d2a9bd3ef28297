"""Verifier audit: corrupt reference compositions along a severity ladder and check the reward follows it.

Ladder (severity level: corruptions; each is a pure function of the reference composition and the catalog):

    0 reference        the reference composition itself (must score 1.0)
    1 redundant        a disjointness the catalog already implies is stated (``disjoint X Y``): parsimony only
    2 drop_mapping     one property statement is deleted: a column is no longer covered
    3 wrong_range      one datatype property gets another datatype: a catalog contradiction and an uncovered column
    4 cycle            the class's parent is declared a subclass of it: both classes break (every axiom fails)
      disjoint         the class is also put under a class disjoint with its lineage: it breaks
    5 unknown_term     the parent is misspelt (the gate R_A fails: 0)
      missing_column   a mapping names a column that is not in the footprint (R_A: 0)
      garbage          the text is not a composition (R_A: 0)
      trivial          one new class and nothing else: passes R_A, but states and maps nothing (R: 0)

``audit_ladder`` scores every corruption of every record and reports Spearman's rho between the negated severity
and the reward (1 = the reward ranks every corruption exactly by severity), the mean reward per level, and the
records where a level does not score strictly below the previous one. ``python -m aegir.audit_ontology`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aegir.tasks.ontology.catalog import Catalog
from aegir.tasks.ontology.composition import ClassDecl, Composition, PropDecl, parse_composition, render_composition
from aegir.tasks.ontology.verifier import Footprint, verify

Corruption = Callable[[Composition, Catalog, Footprint], str]


def _copy(comp: Composition) -> Composition:
    return Composition(list(comp.classes), list(comp.props), list(comp.disjoints), list(comp.errors))


def _first(comp: Composition) -> ClassDecl:
    return comp.classes[0]


def _clash(first: ClassDecl, catalog: Catalog) -> str:
    """A catalog class disjoint with the first class's lineage."""
    lineage = {first.name, *catalog.ancestors(first.name)} if first.name in catalog.classes else set(first.parents)
    pairs = catalog.disjoint_pairs()
    return next(c for c in catalog.classes if any(frozenset((c, x)) in pairs for x in lineage))


def redundant(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    """A disjointness the catalog already implies: survives the closure, costs parsimony only."""
    first = _first(comp)
    return render_composition(comp) + f"\ndisjoint {first.name} {_clash(first, catalog)}"


def _data_prop(comp: Composition) -> int:
    return next(i for i, p in enumerate(comp.props) if not p.object)


def drop_mapping(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    out = _copy(comp)
    del out.props[_data_prop(out)]
    return render_composition(out)


def wrong_range(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    out = _copy(comp)
    i = _data_prop(out)
    prop = out.props[i]
    other = next(d for d in ("Date", "Boolean", "Text") if d != prop.range)
    out.props[i] = PropDecl(prop.domain, prop.name, False, other, prop.table, prop.column, prop.line)
    return render_composition(out)


def cycle(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    first = _first(comp)
    parent = first.parents[0] if first.parents else catalog.root
    return render_composition(comp) + f"\nclass {parent} < {first.name}"


def disjoint(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    out = _copy(comp)
    first = _first(out)
    out.classes[0] = ClassDecl(first.name, (*first.parents, _clash(first, catalog)), first.table, first.line)
    return render_composition(out)


def unknown_term(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    out = _copy(comp)
    first = _first(out)
    parent = first.parents[0] if first.parents else catalog.root
    out.classes[0] = ClassDecl(first.name, (parent[:-1],), first.table, first.line)
    return render_composition(out)


def missing_column(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    out = _copy(comp)
    prop = out.props[0]
    out.props[0] = PropDecl(prop.domain, prop.name, prop.object, prop.range, prop.table, f"{prop.column}_x", prop.line)
    return render_composition(out)


def garbage(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    return "The table stores reviews of products."


def trivial(comp: Composition, catalog: Catalog, fp: Footprint) -> str:
    """Well formed but empty: one new class, nothing mapped (the hack GRPO found first, see verifier.py)."""
    return f"class {_first(comp).name}Thing"


LADDER: tuple[tuple[int, str, Corruption | None], ...] = (
    (0, "reference", None), (1, "redundant", redundant), (2, "drop_mapping", drop_mapping),
    (3, "wrong_range", wrong_range), (4, "cycle", cycle), (4, "disjoint", disjoint),
    (5, "unknown_term", unknown_term), (5, "missing_column", missing_column), (5, "garbage", garbage), (5, "trivial", trivial),
)


@dataclass
class AuditResult:
    rho: float
    n: int
    level_means: dict[int, float]
    kind_means: dict[str, float]
    reference_min: float
    violations: list[str] = field(default_factory=list)  # "record: level k >= level k-1"
    rows: list[dict[str, Any]] = field(default_factory=list)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho with average ranks for ties."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def audit_ladder(catalog: Catalog, records: Sequence[Mapping[str, Any]]) -> AuditResult:
    rows: list[dict[str, Any]] = []
    violations: list[str] = []
    for record in records:
        fp = Footprint.from_dict(record["footprint"])
        comp = parse_composition(record["reference"])
        by_level: dict[int, list[float]] = {}
        for level, kind, corrupt in LADDER:
            text = record["reference"] if corrupt is None else corrupt(comp, catalog, fp)
            v = verify(catalog, fp, text)
            rows.append({"id": record["id"], "level": level, "kind": kind, "reward": v.total,
                         "structural": v.structural, "consistency": v.consistency, "parsimony": v.parsimony,
                         "coverage": v.coverage})
            by_level.setdefault(level, []).append(v.total)
        levels = sorted(by_level)
        for lower, higher in zip(levels, levels[1:]):
            if not max(by_level[higher]) < min(by_level[lower]) and not (lower == 5 or max(by_level[lower]) == 0):
                violations.append(f"{record['id']}: level {higher} ({max(by_level[higher]):.3f}) is not below "
                                  f"level {lower} ({min(by_level[lower]):.3f})")
    rho = spearman([-r["level"] for r in rows], [r["reward"] for r in rows])
    level_means = {lvl: _mean([r["reward"] for r in rows if r["level"] == lvl]) for lvl in sorted({r["level"] for r in rows})}
    kind_means = {kind: _mean([r["reward"] for r in rows if r["kind"] == kind]) for _, kind, _ in LADDER}
    reference_min = min(r["reward"] for r in rows if r["level"] == 0)
    return AuditResult(rho, len(rows), level_means, kind_means, reference_min, violations, rows)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def format_audit(result: AuditResult, where: str) -> str:
    lines = [f"verifier audit on {where}: {result.n} scored compositions",
             f"reference compositions: min reward {result.reference_min:.4f} (must be 1.0)"]
    names = {lvl: ", ".join(k for lv, k, _ in LADDER if lv == lvl) for lvl, _, _ in LADDER}
    for level, mean in result.level_means.items():
        lines.append(f"  severity {level}: mean reward {mean:.4f}   ({names[level]})")
    lines.append(f"Spearman rho (severity rank vs reward): {result.rho:.4f}")
    lines.append(f"records where a level is not strictly below the previous one: {len(result.violations)}")
    lines.extend(f"  {v}" for v in result.violations[:10])
    ok = result.rho > 0.9 and result.reference_min == 1.0 and not result.violations
    lines.append("PASSED" if ok else "FAILED")
    return "\n".join(lines)

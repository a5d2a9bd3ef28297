"""Cross-check of the in-house closure checks against a real OWL reasoner (owlready2 + HermiT, needs Java).

The fragment the verifier's closure covers: the subclass closure over catalog + composition, and unsatisfiability
through disjointness inherited down that closure. 200 seeded random classes, each with 1-3 parents from the
catalog (and some under earlier random classes), go into one OWL ontology with the catalog's subclass axioms and
AllDisjointClasses groups; HermiT's unsatisfiable classes and inferred superclasses must equal ours.
Skipped, with the reason, where owlready2 or Java is missing (`pip install -e ".[owl]"`; Java 11+ on PATH)."""

from __future__ import annotations

import random
import shutil

import pytest

from aegir.tasks.ontology.catalog import default_catalog
from aegir.tasks.ontology.composition import ClassDecl, Composition
from aegir.tasks.ontology.verifier import Closure

owlready2 = pytest.importorskip("owlready2", reason="owlready2 is not installed (optional extra: pip install -e '.[owl]')")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("java") is None,
                                                   reason="no `java` on PATH: HermiT needs a Java runtime")]


def _random_composition(n: int, seed: int) -> Composition:
    catalog = default_catalog()
    rng = random.Random(seed)
    names = list(catalog.classes)
    comp = Composition()
    for k in range(n):
        pool = names + [c.name for c in comp.classes]
        parents = tuple(sorted(set(rng.sample(pool, k=rng.randint(1, 3)))))
        comp.classes.append(ClassDecl(f"K{k}", parents, None, k + 1))
    return comp


def test_hermit_agrees_with_the_closure_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    catalog = default_catalog()
    comp = _random_composition(200, seed=20)
    closure = Closure(catalog, comp)

    world = owlready2.World()
    onto = world.get_ontology("http://aegir.test/onto.owl")
    with onto:
        owl: dict[str, type] = {}
        for name, cls in catalog.classes.items():  # file order: parents come first
            base = owl[cls.parent] if cls.parent else owlready2.Thing
            owl[name] = owlready2.types.new_class("C_" + name, (base,))
        for decl in comp.classes:
            owl[decl.name] = owlready2.types.new_class(decl.name, tuple(owl[p] for p in decl.parents))
        for group in catalog.disjoint:
            owlready2.AllDisjoint([owl[c] for c in group])
    owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
    unsat_owl = {c.name for c in world.inconsistent_classes()} - {"Nothing"}

    unsat_ours = {d.name for d in comp.classes if closure.unsatisfiable(d.name)}
    unsat_owl_new = {n for n in unsat_owl if not n.startswith("C_")}
    assert 0 < len(unsat_ours) < len(comp.classes)  # the sample exercises both outcomes
    assert unsat_owl_new == unsat_ours
    assert not {n for n in unsat_owl if n.startswith("C_")}  # the catalog itself stays satisfiable

    for decl in comp.classes:
        if decl.name in unsat_ours:
            continue
        inferred = {a.name[2:] for a in owl[decl.name].ancestors() if a.name.startswith("C_")}
        ours = {a for a in closure.up(decl.name) if a in catalog.classes}
        assert inferred == ours, decl

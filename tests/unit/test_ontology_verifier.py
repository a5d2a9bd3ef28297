"""The ontology verifier on hand-computed cases (docs/ontology.md, "Verifier").

Footprint: reviews(id, body Text, prod_ref -> products), products(id, nm Text): 5 items (2 tables, 3 columns).
Reference: 2 classes, 5 axioms (2 subclass edges, 3 property statements)."""

from __future__ import annotations

import pytest

from aegir.tasks.ontology.catalog import default_catalog
from aegir.tasks.ontology.composition import parse_composition, render_composition
from aegir.tasks.ontology.rewards import onto_consistency, onto_coverage, onto_parsimony, onto_structural
from aegir.tasks.ontology.verifier import Footprint, verify

FOOTPRINT = Footprint.from_dict({"tables": [
    {"name": "reviews", "columns": [{"name": "id", "datatype": "Integer", "primary": True},
                                    {"name": "body", "datatype": "Text"},
                                    {"name": "prod_ref", "datatype": "Integer", "references": "products"}]},
    {"name": "products", "columns": [{"name": "id", "datatype": "Integer", "primary": True},
                                     {"name": "nm", "datatype": "Text"}]},
]})
REFERENCE = """class Review < CreativeWork = reviews
prop Review.review_body : Text = reviews.body
prop Review.item_reviewed -> Product = reviews.prod_ref
class Product < Thing = products
prop Product.name : Text = products.nm"""


def score(text: str) -> tuple[float, float, float, float, float]:
    v = verify(default_catalog(), FOOTPRINT, text)
    return v.structural, v.consistency, v.parsimony, v.coverage, v.total


def test_reference_scores_one() -> None:
    assert score(REFERENCE) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_parser_round_trips_and_tolerates_spacing_and_comments() -> None:
    comp = parse_composition("# a comment\n\n  class  Review<CreativeWork=reviews\nprop Review.review_body:Text = reviews.body")
    assert comp.ok and comp.classes[0].parents == ("CreativeWork",) and comp.props[0].column == "body"
    assert render_composition(parse_composition(REFERENCE)) == REFERENCE


def test_dropped_mapping_costs_coverage_and_half_an_axiom() -> None:
    text = REFERENCE.replace("\nprop Product.name : Text = products.nm", "")
    # 4 stated axioms survive, 1 of the 5 a complete composition states is missing: R_B = 4 / (4 + 1/2);
    # R_D = 4/5; total = 0.50 * 8/9 + 0.05 + 0.45 * 0.8
    assert score(text) == pytest.approx((1.0, 8 / 9, 1.0, 0.8, 0.5 * 8 / 9 + 0.05 + 0.36))


def test_a_trivial_composition_earns_nothing() -> None:
    # well formed (a new class), but it states and maps nothing: R_B = 0 / (0 + 5/2), R_C = 1 - 1/1, R_D = 0
    assert score("class Whatever") == (1.0, 0.0, 0.0, 0.0, 0.0)


def test_wrong_datatype_contradicts_the_catalog_and_uncovers_the_column() -> None:
    text = REFERENCE.replace("review_body : Text", "review_body : Date")
    # R_B = 4/5 (the review_body statement fails); R_D = 4/5; total = 0.4 + 0.05 + 0.36 = 0.81
    assert score(text) == pytest.approx((1.0, 0.8, 1.0, 0.8, 0.81))


def test_range_narrowing_is_consistent_but_a_foreign_key_must_close_on_the_mapped_class() -> None:
    # item_reviewed's catalog range is Product; a new subclass Gadget < Product narrows it: consistent.
    text = REFERENCE.replace("-> Product = reviews.prod_ref", "-> Gadget = reviews.prod_ref") + "\nclass Gadget < Product"
    a, b, c, d, _ = score(text)
    # axioms: 3 edges + 3 props, all survive; Gadget has no table: R_C = 1 - 1/(6 + 3); the key is not closed
    # (its range is Gadget, the products table is Product): R_D = 4/5
    assert (a, b) == (1.0, 1.0) and c == pytest.approx(8 / 9) and d == pytest.approx(0.8)


def test_subclass_cycle_breaks_both_classes() -> None:
    text = REFERENCE + "\nclass CreativeWork < Review"
    # Review and CreativeWork lie on a cycle: both edges and Review's two properties fail: 2 of 6 axioms survive.
    # CreativeWork has no table: R_C = 1 - 1/(6 + 3). Coverage is untouched.
    a, b, c, d, total = score(text)
    assert (a, d) == (1.0, 1.0) and b == pytest.approx(2 / 6) and c == pytest.approx(8 / 9)
    assert total == pytest.approx(0.5 * 2 / 6 + 0.05 * 8 / 9 + 0.45)


def test_a_class_under_two_disjoint_classes_is_unsatisfiable() -> None:
    text = REFERENCE.replace("class Review < CreativeWork", "class Review < CreativeWork, Product")
    # Review's 2 edges and 2 properties fail; Product's edge and property survive: 2 of 6.
    a, b, _, _, _ = score(text)
    assert a == 1.0 and b == pytest.approx(2 / 6)


def test_property_domain_must_be_under_a_catalog_domain() -> None:
    # `customer` is declared on Order and Invoice only; Product is under neither -> the statement fails.
    text = REFERENCE + "\nprop Product.customer -> Person"
    assert score(text)[1] == pytest.approx(5 / 6)
    # a new property name is free
    assert score(REFERENCE + "\nprop Product.shelf : Text")[1] == 1.0


def test_mapping_kind_must_match_the_column() -> None:
    # a foreign key mapped by a datatype property: the statement fails and the key is not closed
    text = REFERENCE.replace("prop Review.item_reviewed -> Product = reviews.prod_ref",
                             "prop Review.product_code : Integer = reviews.prod_ref")
    a, b, _, d, _ = score(text)
    assert a == 1.0 and b == pytest.approx(4 / 5) and d == pytest.approx(4 / 5)


def test_redundant_axioms_cost_parsimony() -> None:
    # Thing is implied through CreativeWork; Review/Product disjointness is implied by the catalog
    text = REFERENCE.replace("class Review < CreativeWork", "class Review < CreativeWork, Thing") + \
        "\ndisjoint Review Product"
    a, b, c, d, _ = score(text)
    # axioms: 3 edges + 3 props + 1 disjointness = 7, 2 redundant; classes 2: R_C = 1 - 2/9
    assert (a, b, d) == (1.0, 1.0, 1.0) and c == pytest.approx(7 / 9)


@pytest.mark.parametrize("text", [
    REFERENCE.replace("CreativeWork", "CreativeWrk"),                      # unknown class
    REFERENCE.replace(": Text = reviews.body", ": Txt = reviews.body"),     # unknown datatype
    REFERENCE.replace("reviews.body", "reviews.bdy"),                       # no such column
    REFERENCE.replace("= products", "= product"),                           # no such table
    REFERENCE + "\nclass Product < Thing",                                  # class declared twice
    REFERENCE + "\nprop Review.review_body : Text",                         # property declared twice
    REFERENCE.replace("Product.name : Text = products.nm", "Product.name : Text = reviews.body"),  # column mapped twice
    REFERENCE + "\nthis is not a statement",                                # does not parse
    "",                                                                     # nothing
])
def test_structural_gate(text: str) -> None:
    a, *_, total = score(text)
    assert a == 0.0 and total == 0.0


def test_registered_components_read_the_record() -> None:
    record = {"id": "r1", "task": "ontology", "footprint": FOOTPRINT.to_dict()}
    text = REFERENCE.replace("\nprop Product.name : Text = products.nm", "")
    assert [f(record, text) for f in (onto_structural, onto_consistency, onto_parsimony, onto_coverage)] == \
        pytest.approx([1.0, 8 / 9, 1.0, 0.8])
    assert onto_coverage({"id": "x", "task": "sql_qa"}, text) is None


def test_the_verifier_never_raises_on_hostile_text() -> None:
    for text in ("class", "prop .x : Text", "class A < A = reviews\nprop A.a -> A = reviews.prod_ref", "\x00" * 50,
                 "disjoint A", "class A < B\nclass B < A", "class Thing < Review = reviews"):
        v = verify(default_catalog(), FOOTPRINT, text)
        assert 0.0 <= v.total <= 1.0

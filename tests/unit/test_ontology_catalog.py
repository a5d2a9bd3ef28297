"""The ontology catalog as data: the shipped file reproduces the former Python literals (same corpus bytes), a
user's catalog reaches the corpus generator, and malformed files fail with one line naming the file and the path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aegir.errors import InputError
from aegir.tasks.ontology.catalog import DEFAULT_CATALOG, default_catalog, load_catalog, parse_catalog
from aegir.tasks.pretrain.corpus import build_corpus

# sha256 of the synthetic pretraining corpus (data_seed, n_documents, arm, val_fraction 0.1), computed with the
# code on main *before* the ontology moved from Python literals to catalogs/schema_org.yaml. They must never change.
CORPUS_SHA256_BEFORE = {
    (0, 1500, "full"): "0b0786139a762226f9785e007089e9f417a238037b58c9ad21c4a3f42b6bc04c",
    (0, 1500, "no_ontology"): "c01d5e0ab620e6fa8ea400882206476b4945c7be04d2b82dbc9d3215e10d0f1b",
    (0, 1500, "no_schema"): "54b4167253dd17584bb94ce71288f579a8ba610536d975d88e7945d262bf46a2",
    (42, 200, "full"): "259cb223bac4e34f100459e508de54b2f644dfb47b606cfe8fcbec0abfbc9cac",
}


@pytest.mark.parametrize(("data_seed", "n_documents", "arm"), list(CORPUS_SHA256_BEFORE))
def test_corpus_hashes_are_unchanged(data_seed: int, n_documents: int, arm: str) -> None:
    corpus = build_corpus(data_seed, n_documents, arm, 0.1)
    assert corpus.sha256 == CORPUS_SHA256_BEFORE[(data_seed, n_documents, arm)]


def test_shipped_catalog_has_the_21_classes() -> None:
    cat = default_catalog()
    assert len(cat.classes) == 21 and cat.root == "Thing"
    assert cat.table_name("Order") == "purchase_order" and cat.table_name("PostalAddress") == "postal_address"
    assert cat.ancestors("Restaurant") == ["LocalBusiness", "Organization", "Thing"]
    review = cat.table_for("Review")
    assert [c.name for c in review.columns][:3] == ["id", "name", "url"]
    assert review.column("item_reviewed_id").references == "Product"
    assert frozenset(("Person", "Organization")) in cat.disjoint_pairs()


def test_a_user_catalog_reaches_the_corpus(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text())
    raw["classes"]["Gadget"] = {"parent": "Product", "comment": "a small device",
                                "properties": [{"name": "battery_hours", "range": "Integer", "comment": "runtime"}]}
    path = tmp_path / "mine.json"
    import json
    path.write_text(json.dumps(raw))
    cat = load_catalog(path)
    assert "Gadget" in cat.table_classes
    corpus = build_corpus(0, 200, "full", 0.1, catalog=cat)
    assert corpus.sha256 != CORPUS_SHA256_BEFORE.get((0, 200, "full"))
    assert b"battery_hours" in corpus.train + corpus.val


@pytest.mark.parametrize(("edit", "where"), [
    (lambda r: r.update(format=2), "format"),
    (lambda r: r["classes"]["Person"].update(parent="Nobody"), "classes.Person.parent"),
    (lambda r: r["classes"]["Person"]["properties"][0].update(range="Txt"), "classes.Person.properties[0].range"),
    (lambda r: r["classes"]["Thing"].update(parent="Person"), "classes.Thing.parent"),
    (lambda r: r["classes"]["Person"].update(parent="Restaurant") or r["classes"]["Organization"].update(
        parent="Person"), "subclass cycle"),
    (lambda r: r["disjoint"].append(["Restaurant", "Organization"]), "disjoint[2]"),
    (lambda r: r["classes"]["Brand"].update(colour="red"), "classes.Brand.colour"),
    (lambda r: r["classes"]["Person"]["properties"].append(
        {"name": "name", "range": "Text", "comment": "again"}), "declared twice"),
])
def test_malformed_catalogs_name_file_and_path(edit, where: str) -> None:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text())
    edit(raw)
    with pytest.raises(InputError) as info:
        parse_catalog(yaml.safe_dump(raw, sort_keys=False).encode(), "my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ") and where in message and "\n" not in message


def test_unparsable_file_is_one_line() -> None:
    with pytest.raises(InputError, match=r"^bad\.yaml: \(file\): not valid"):
        parse_catalog(b"classes: [unclosed", "bad.yaml")

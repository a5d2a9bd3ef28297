"""Held-out classes (issue 17, task.heldout_classes): classes the pretraining corpus never draws, chosen from
data_seed and the catalog only, so the cross-arm instrument can score documents about tables no arm has seen."""

from __future__ import annotations

import hashlib
import re

import pytest

from aegir.config import load_group
from aegir.errors import InputError
from aegir.tasks.ontology.catalog import default_catalog, parse_catalog
from aegir.tasks.pretrain import corpus
from aegir.tasks.pretrain.corpus import (_plural, document_text, generate_document, generate_documents,
                                         generate_heldout_document, heldout_class_names, holdable_classes)
from aegir.tasks.pretrain.instrument import build_eval_windows, build_probes
from aegir.tasks.pretrain.task import prepare_pretrain_data

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")


def test_holdable_classes_are_the_leaves_no_other_class_references() -> None:
    """By hand from catalogs/schema_org.yaml: the leaves are Restaurant, Person, Place, PostalAddress, Brand,
    Product, Offer, AggregateRating, Review, Movie, Book, Recipe, Event, Order, Invoice, JobPosting; of these
    Person, Place, PostalAddress, Brand, Product, Offer (Order.accepted_offer) and Order (Invoice.reference_order)
    are ranges of some property, so they are referenced."""
    assert holdable_classes(default_catalog()) == ("Restaurant", "AggregateRating", "Review", "Movie", "Book",
                                                   "Recipe", "Event", "Invoice", "JobPosting")


def test_heldout_selection_is_fixed_by_data_seed_and_catalog() -> None:
    catalog = default_catalog()
    assert heldout_class_names(catalog, 0, 0) == ()
    chosen = heldout_class_names(catalog, 0, 4)
    assert chosen == ("Restaurant", "Movie", "Recipe", "Invoice")  # pinned: the experiment's classes (data_seed 0)
    assert set(chosen) <= set(holdable_classes(catalog))
    assert heldout_class_names(catalog, 1, 4) != chosen
    assert heldout_class_names(catalog, 0, 9) == holdable_classes(catalog)


def test_every_arm_holds_out_the_same_classes() -> None:
    task = load_group("task", "pretrain", data={"n_documents": 40}, seq_len=64, val_windows=2, eval_windows=2,
                      probe_items=0, heldout_classes=3)
    corpora = [prepare_pretrain_data(task, arm, data_seed=5).provenance["corpus"]
               for arm in ("full", "no_ontology", "no_schema")]
    assert {tuple(c["heldout_classes"]) for c in corpora} == {heldout_class_names(default_catalog(), 5, 3)}
    bigger = prepare_pretrain_data(load_group("task", "pretrain", data={"n_documents": 80}, seq_len=64,
                                              val_windows=2, eval_windows=0, probe_items=0, heldout_classes=3),
                                   "full", data_seed=5).provenance["corpus"]
    assert bigger["heldout_classes"] == corpora[0]["heldout_classes"]


def test_too_many_heldout_classes_is_one_config_error() -> None:
    task = load_group("task", "pretrain", data={"n_documents": 20}, heldout_classes=10)
    with pytest.raises(InputError) as info:
        prepare_pretrain_data(task, "full", data_seed=0)
    message = str(info.value)
    assert "\n" not in message and message.startswith("config error: task.heldout_classes:"), message
    assert "at most 9" in message and "got 10" in message, message


def test_heldout_classes_need_the_synthetic_corpus(tmp_path) -> None:
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("first document\n\nsecond document\n")
    task = load_group("task", "pretrain", data={"source": "files", "path": str(corpus_file)}, heldout_classes=2)
    with pytest.raises(InputError, match=r"^config error: task.heldout_classes: only the synthetic corpus .*"
                                         r"task.data.source=files$"):
        prepare_pretrain_data(task, "full", data_seed=0)


def test_without_heldout_classes_the_corpus_and_eval_windows_are_unchanged() -> None:
    """Oracles computed with the generator before held-out classes existed (commit 6f78a29)."""
    digest = hashlib.sha256()
    for document in generate_documents(0, 20):
        digest.update(document_text(document).encode())
        digest.update(b"\x1e")
    assert digest.hexdigest() == "3fe7e9dc1787c648398f18a69c560b3be5f614de58929056911e36515eb70001"
    windows = build_eval_windows(0, default_catalog(), seq_len=64, n_windows=24)
    assert windows.sha256 == "856ce5fd74fd96fb8e32a1a6e5750055edac9ead89835f6984dca13468d6634e"


def _names(catalog, classes: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """(class names, table names and their prose plurals) of the classes."""
    return set(classes), {n for c in classes for n in (catalog.table_name(c), _plural(catalog, c))}


@pytest.mark.parametrize("n_heldout", [4, 9])
def test_no_training_byte_names_a_heldout_class(n_heldout: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole identifier tokens, so `item_reviewed` is not `review`. Class names are checked in ontology and DDL
    segments (where classes are named); table names and their plurals everywhere (captions, INSERT INTO,
    REFERENCES, views, prose). Class names are not checked in row values and prose: an Event row may be called
    "Berlin Book Fair 2023", English, not the class Book."""
    catalog = default_catalog()
    held_out = heldout_class_names(catalog, 0, n_heldout)
    drawn: list[str] = []
    original = corpus._class_segments
    monkeypatch.setattr(corpus, "_class_segments", lambda cat, cls, rng: drawn.append(cls) or original(cat, cls, rng))
    class_names, table_names = _names(catalog, held_out)
    for index in range(300):
        for segment in generate_document(0, index, catalog, n_heldout):
            tokens = set(_IDENTIFIER.findall(segment.text))
            assert not tokens & table_names, (index, segment.kind, tokens & table_names)
            if segment.kind in ("ontology", "ddl"):
                assert not tokens & class_names, (index, segment.kind, tokens & class_names)
    assert drawn and not set(drawn) & set(held_out)
    assert len(set(drawn)) == len(catalog.table_classes) - n_heldout


def test_heldout_documents_are_about_heldout_classes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = default_catalog()
    held_out = heldout_class_names(catalog, 0, 4)
    drawn: list[str] = []
    original = corpus._class_segments
    monkeypatch.setattr(corpus, "_class_segments", lambda cat, cls, rng: drawn.append(cls) or original(cat, cls, rng))
    documents = [generate_heldout_document(0, index, catalog, 4) for index in range(60)]
    assert set(drawn) == set(held_out)
    assert documents[3] == generate_heldout_document(0, 3, catalog, 4)
    assert documents[3] != generate_document(0, 3, catalog, 4)


def test_no_probe_names_a_heldout_class() -> None:
    """Every probe's context, candidates and baseline, as whole identifier tokens: no held-out table name or plural
    anywhere, and no held-out class name either (probe rows are of seen classes, whose values here happen to
    name none). The items still ask about foreign keys: only held-out tables were left out."""
    catalog = default_catalog()
    held_out = heldout_class_names(catalog, 0, 4)
    class_names, table_names = _names(catalog, held_out)
    probes = build_probes(0, catalog, 60, heldout_classes=4)
    for name, items in probes.items():
        assert len(items) == 60
        for item in items:
            tokens = {t for text in (item.context, item.baseline, *item.candidates)
                      for t in _IDENTIFIER.findall(text)}
            assert not tokens & (class_names | table_names), (name, tokens & (class_names | table_names))
    everywhere = {t for items in build_probes(0, catalog, 60).values() for item in items
                  for text in (item.context, *item.candidates) for t in _IDENTIFIER.findall(text)}
    assert everywhere & table_names  # the same check finds them when nothing is held out


_TINY_CATALOG = b"""
format: 1
root: Thing
disjoint: []
classes:
  Thing: {comment: anything, properties: [{name: name, range: Text, comment: its name}]}
  Company: {parent: Thing, comment: a firm, properties: [{name: founded, range: Date, comment: when}]}
  Person: {parent: Thing, comment: someone, properties: [{name: employer, range: Company, comment: works for}]}
  Gadget: {parent: Thing, comment: a device, properties: [{name: weight, range: Number, comment: grams}]}
  Tool: {parent: Thing, comment: an implement, properties: [{name: length, range: Number, comment: cm}]}
  Novel: {parent: Thing, comment: a book, properties: [{name: pages, range: Integer, comment: count}]}
"""


def test_too_few_seen_distractors_is_one_config_error() -> None:
    """The one foreign key (Person.employer -> Company) has four unrelated classes, enough for three distractors;
    holding out two of the four holdable leaves (Person, Gadget, Tool, Novel) removes either the key or two of them.
    No fallback to held-out names: the probes would then ask about what no arm saw."""
    catalog = parse_catalog(_TINY_CATALOG, "tiny.yaml")
    assert holdable_classes(catalog) == ("Person", "Gadget", "Tool", "Novel")
    assert {len(items) for items in build_probes(0, catalog, 3).values()} == {3}
    for data_seed in range(4):
        with pytest.raises(InputError) as info:
            build_probes(data_seed, catalog, 3, heldout_classes=2)
        message = str(info.value)
        assert "\n" not in message and message.startswith("config error: task.heldout_classes: the catalog tiny.yaml "
                                                           "without the held-out "), message
        assert "no foreign key among the seen tables" in message or (
            "leaves 2 seen classes unrelated to Company (referenced by person.employer_id)" in message), message

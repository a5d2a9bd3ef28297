"""task=ontology records and the verifier audit: determinism, the split by footprint, the fixed hashed eval set,
references that score 1.0, and a corruption ladder the reward follows (Spearman rho > 0.9)."""

from __future__ import annotations

import pytest

from aegir.audit_ontology import main as audit_main
from aegir.config import load_group
from aegir.errors import InputError
from aegir.tasks.ontology.audit import audit_ladder
from aegir.tasks.ontology.catalog import default_catalog
from aegir.tasks.ontology.task import build_records, prepare_ontology, split_by_footprint
from aegir.tasks.ontology.verifier import verify


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return prepare_ontology(load_group("task", "ontology"), 0)


def test_records_are_deterministic_and_index_stable() -> None:
    cat = default_catalog()
    a = build_records(cat, 0, 30, 2)
    assert a == build_records(cat, 0, 30, 2)
    assert a[:10] == build_records(cat, 0, 10, 2)
    assert a != build_records(cat, 1, 30, 2)


def test_split_is_by_footprint_and_eval_set_is_fixed(data) -> None:  # type: ignore[no-untyped-def]
    train_keys = {r["footprint_key"] for r in data.train}
    assert not train_keys & {r["footprint_key"] for r in data.eval}
    assert len({r["footprint_key"] for r in data.eval}) == len(data.eval) == 48
    again = prepare_ontology(load_group("task", "ontology"), 0)
    assert again.provenance["ontology"]["eval_sha256"] == data.provenance["ontology"]["eval_sha256"]
    other = prepare_ontology(load_group("task", "ontology"), 1)
    assert other.provenance["ontology"]["eval_sha256"] != data.provenance["ontology"]["eval_sha256"]


def test_split_keeps_every_noisy_copy_of_a_footprint_together() -> None:
    records = [{"id": str(i), "footprint_key": f"k{i % 5}"} for i in range(40)]
    train, held = split_by_footprint(records, 0, 0.4)
    assert len({r["footprint_key"] for r in held}) == 2 and len(held) == 16
    assert not {r["footprint_key"] for r in train} & {r["footprint_key"] for r in held}


def test_every_reference_scores_one(data) -> None:  # type: ignore[no-untyped-def]
    for record in data.train[:300] + data.eval:
        assert verify(data.catalog, record["footprint"], record["reference"]).total == 1.0, record["id"]


def test_prompt_hides_the_catalog_subset(data) -> None:  # type: ignore[no-untyped-def]
    for record in data.eval:
        ddl = record["prompt"][-1]["content"]
        assert ddl.startswith("CREATE TABLE") and "class " not in ddl
        first_class = record["footprint_key"].split("(")[0]
        assert f" {first_class} " not in ddl  # class names appear only as (snake_case) table names


def test_too_few_held_out_footprints_is_an_input_error() -> None:
    with pytest.raises(InputError, match="task.n_eval"):
        prepare_ontology(load_group("task", "ontology", n_records=20, n_eval=48), 0)


def test_schema_accepts_the_option_file() -> None:
    assert load_group("task", "ontology").n_eval == 48


def test_verifier_audit_ladder(data) -> None:  # type: ignore[no-untyped-def]
    result = audit_ladder(data.catalog, data.eval)
    assert result.reference_min == 1.0
    assert not result.violations
    means = list(result.level_means.values())
    assert means == sorted(means, reverse=True) and len(set(means)) == len(means)
    assert result.rho > 0.9


def test_audit_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_main([]) == 0
    out = capsys.readouterr().out
    assert "Spearman rho" in out and out.strip().endswith("PASSED")
    assert audit_main(["--catalog", "/nonexistent.yaml"]) == 2

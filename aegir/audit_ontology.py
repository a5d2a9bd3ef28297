"""`python -m aegir.audit_ontology`: the ontology verifier's corruption-ladder audit (aegir/tasks/ontology/audit.py).

    python -m aegir.audit_ontology                          # the fixed eval set of task=ontology, data_seed 0
    python -m aegir.audit_ontology --split train --data-seed 3 --catalog my_catalog.yaml
    python -m aegir.audit_ontology --csv outputs/audit/ontology_ladder.csv   # every scored corruption

Prints the mean reward per severity level, Spearman's rho between severity and reward, and PASSED when every
reference scores 1.0, every level scores strictly below the previous one on every record, and rho > 0.9
(exit status 0), else FAILED (exit status 3). A bad catalog or option is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from aegir.config import load_group
from aegir.errors import InputError
from aegir.tasks.ontology.audit import audit_ladder, format_audit
from aegir.tasks.ontology.task import prepare_ontology


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegir.audit_ontology", description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default=None, help="catalog file (default: the shipped one)")
    parser.add_argument("--data-seed", type=int, default=0, help="data_seed of the records (default 0)")
    parser.add_argument("--split", choices=("eval", "train"), default="eval", help="which records (default eval)")
    parser.add_argument("--csv", default=None, help="write every scored corruption to this CSV")
    args = parser.parse_args(argv)
    try:
        task = load_group("task", "ontology", catalog=args.catalog)
        data = prepare_ontology(task, args.data_seed)
    except InputError as exc:
        print(f"aegir: {exc}", file=sys.stderr)
        return 2
    records = data.eval if args.split == "eval" else data.train
    result = audit_ladder(data.catalog, records)
    print(format_audit(result, f"the {args.split} records of task=ontology (data_seed {args.data_seed}, "
                               f"catalog {data.catalog.version})"))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(result.rows[0]))
            writer.writeheader()
            writer.writerows(result.rows)
    passed = result.rho > 0.9 and result.reference_min == 1.0 and not result.violations
    return 0 if passed else 3


if __name__ == "__main__":
    sys.exit(main())

"""Catalog hot-reload for the ontology verifier (``reward.catalog_reload=true``; docs/ontology.md, "Hot reload").

The watcher lives in the training process. Once per training step (``before_step``; a second call in the same step
does nothing) it hashes the catalog file:

* same hash: nothing happens;
* a new hash that validates: it becomes the catalog in force, is copied to ``<run dir>/catalogs/<version>.yaml``
  (``version`` = the first 12 hex digits of its sha256) and every record scored from then on carries that copy's
  path and hash (``annotate``), so every reward worker process switches on the next rollout;
* a new hash that does not validate: the previous catalog stays in force, the problem is logged once per bad
  content, and ``reward/catalog_errors`` counts the malformed versions seen.

With ``catalog_reload=false`` the file is read once at the start (and copied too: every run keeps the catalog it
used). The version in force is saved in every checkpoint; a resumed run starts from that version's copy.
Metrics each step: ``reward/catalog_version`` (the version's first 6 hex digits as an integer, exact in float32,
since metrics are numbers) and ``reward/catalog_errors``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aegir.errors import InputError
from aegir.tasks.ontology.catalog import DEFAULT_CATALOG, Catalog, load_catalog, parse_catalog

log = logging.getLogger("aegir")


def version_number(version: str) -> float:
    """The logged form of a version: its first 6 hex digits as an integer (< 2^24, exact in float32)."""
    return float(int(version[:6], 16))


class CatalogWatcher:
    def __init__(self, path: str | Path | None, run_dir: Path, reload: bool) -> None:
        self.path = Path(path) if path else DEFAULT_CATALOG
        self.copies = Path(run_dir) / "catalogs"
        self.reload = reload
        self.errors = 0
        self._bad: set[str] = set()
        self._checked_step: int | None = None
        try:
            data = self.path.read_bytes()  # read once: the copy is exactly the bytes that were validated
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read the catalog: {exc.strerror or exc}") from None
        self.catalog: Catalog = parse_catalog(data, str(self.path))
        self._copy_path = self._keep(self.catalog, data)

    def _keep(self, catalog: Catalog, data: bytes) -> Path:
        self.copies.mkdir(parents=True, exist_ok=True)
        target = self.copies / f"{catalog.version}.yaml"
        if not target.exists():
            target.write_bytes(data)
        return target

    @property
    def version(self) -> str:
        return self.catalog.version

    def before_step(self, step: int) -> dict[str, float]:
        """Check the file (at most once per step) and return this step's metrics."""
        if self.reload and step != self._checked_step:
            self._checked_step = step
            self._check(step)
        return {"reward/catalog_version": version_number(self.version), "reward/catalog_errors": float(self.errors)}

    def _check(self, step: int) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            digest = f"unreadable:{exc}"
            if digest not in self._bad:
                self._bad.add(digest)
                self.errors += 1
                log.warning("catalog %s unreadable at step %d (%s); keeping version %s", self.path, step, exc,
                            self.version)
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.catalog.sha256 or digest in self._bad:
            return
        try:
            catalog = parse_catalog(data, str(self.path))
        except InputError as exc:
            self._bad.add(digest)
            self.errors += 1
            log.warning("catalog edit rejected at step %d, keeping version %s: %s", step, self.version, exc)
            return
        self._copy_path = self._keep(catalog, data)
        log.info("catalog reloaded at step %d: version %s -> %s", step, self.version, catalog.version)
        self.catalog = catalog

    def annotate(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The records as the verifier should see them: scored against the catalog version in force."""
        return [{**record, "catalog_file": str(self._copy_path), "catalog_sha256": self.catalog.sha256}
                for record in records]

    def state_dict(self) -> dict[str, Any]:
        return {"sha256": self.catalog.sha256, "version": self.version, "errors": self.errors}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the version in force at the checkpoint (from its copy in the run directory)."""
        copy = self.copies / f"{state['version']}.yaml"
        if not copy.is_file():
            raise InputError(f"{copy}: the catalog version {state['version']} of the checkpoint is missing from "
                             f"the run directory")
        self.catalog = load_catalog(copy)
        self._copy_path = copy
        self.errors = int(state.get("errors", 0))
        self._checked_step = None

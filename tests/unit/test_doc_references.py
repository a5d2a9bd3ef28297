"""Every file a docstring, comment, config or page points at is in the repository.

Scans aegir/, conf/, tests/, experiments/, docs/, sweeps/, scripts/ and the top-level files for
- references to Markdown files (`grpo.md`, `docs/models.md`, `../docs/models.md`),
- repository paths such as `aegir/rl/losses.py`, `tests/unit/test_lm.py`, `conf/algo/grpo.yaml`,
and fails for any that exists neither next to the file that mentions it nor under the repository root. A reference
of the form "docs/<page>.md, <Section>" must also name a heading of that page, so section pointers do not rot when
a page is reorganised.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED_DIRS = ("aegir", "conf", "tests", "experiments", "docs", "sweeps", "scripts")
SCANNED_TOP = ("README.md", "Makefile", "pyproject.toml", "run.py")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".json", ".toml", ".txt", ".sh", ".cfg"}
# Files that runs write into their output directories; a bare mention names the output, not a repository file.
GENERATED = {"aggregate.md", "bench.md"}

# `name.md` or `some/path/name.md`, not part of a longer path or a glob (`conf/**/*.md`, `{a,b}.md`).
MARKDOWN = re.compile(r"(?<![\w/.\-*{}])((?:\.\./)*[\w./\-]*[\w\-]\.md)\b")
# A path into one of the repository's own folders.
REPO_PATH = re.compile(r"(?<![\w/.\-])((?:aegir|tests|conf|sweeps|experiments|docs|scripts)/[\w/.\-]*[\w\-]"
                       r"\.(?:py|yaml|md|sh))\b")
# "docs/<page>.md, <Section>": the section runs to the next ( ) ; : , " ` or line end.
SECTION = re.compile(r"(docs/[\w\-]+\.md), ([^(),;:\"`\n]+)")
HEADING = re.compile(r"^#+\s+(.*)$", re.MULTILINE)


def scanned_files() -> list[Path]:
    """Every text file of the scanned folders, except this test (its examples are not references)."""
    files = [ROOT / name for name in SCANNED_TOP if (ROOT / name).is_file()]
    for folder in SCANNED_DIRS:
        files.extend(p for p in sorted((ROOT / folder).rglob("*"))
                     if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts)
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def _exists(ref: str, where: Path) -> bool:
    return (where.parent / ref).exists() or (ROOT / ref).exists()


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def dangling_references() -> list[str]:
    problems = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in (MARKDOWN, REPO_PATH):
            for match in pattern.finditer(text):
                ref = match.group(1)
                if ref in GENERATED or _exists(ref, path):
                    continue
                problems.append(f"{path.relative_to(ROOT)}:{_line(text, match.start())}: {ref} does not exist")
    return sorted(set(problems))


def _normalise(title: str) -> str:
    return re.sub(r"\s+", " ", title.replace("`", "")).strip().rstrip(".").lower()


def dangling_sections() -> list[str]:
    headings: dict[str, list[str]] = {}
    problems = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in SECTION.finditer(text):
            page, section = match.group(1), _normalise(match.group(2))
            if not (ROOT / page).is_file():
                continue  # reported by dangling_references
            if page not in headings:
                headings[page] = [_normalise(h) for h in HEADING.findall((ROOT / page).read_text(encoding="utf-8"))]
            if not any(h.startswith(section) or section.startswith(h) for h in headings[page]):
                problems.append(f"{path.relative_to(ROOT)}:{_line(text, match.start())}: {page} has no section "
                                f"{match.group(2)!r}")
    return sorted(set(problems))


def test_the_scan_sees_the_code_and_the_docs() -> None:
    """The scan must not silently come up empty (wrong root, renamed folders)."""
    names = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert {"aegir/rl/losses.py", "conf/algo/grpo.yaml", "docs/grpo.md", "README.md"} <= names


def test_patterns_find_references_and_skip_globs() -> None:
    text = "see grpo.md and ../docs/models.md, aegir/rl/losses.py; not conf/**/*.md or conf/model/{a,b}.yaml"
    assert [m.group(1) for m in MARKDOWN.finditer(text)] == ["grpo.md", "../docs/models.md"]
    assert [m.group(1) for m in REPO_PATH.finditer(text)] == ["aegir/rl/losses.py"]
    assert SECTION.search("(docs/grpo.md, Loss types).").groups() == ("docs/grpo.md", "Loss types")


def test_every_referenced_file_exists() -> None:
    problems = dangling_references()
    if problems:
        pytest.fail("references to files that are not in the repository:\n" + "\n".join(problems))


def test_every_referenced_docs_section_exists() -> None:
    problems = dangling_sections()
    if problems:
        pytest.fail("references to sections that docs/ does not have:\n" + "\n".join(problems))

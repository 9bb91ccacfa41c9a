"""Fail when docs/architecture.md and a module docstring under src/docloop share prose.

The module docstring says *how*, docs/architecture.md says *where* and *why*; the same prose in
both drifts apart. Two texts share prose when they have a run of ``RUN`` words in common, compared
after lower-casing and dropping Markdown/reST markup. Run by ``make lint``
(``python scripts/check_docs.py``); exits 1 and names each overlap.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = 10
WORD = re.compile(r"[a-z0-9][a-z0-9_.'-]*")


def words(text: str) -> list[str]:
    """The text's words, lower-cased, without markup (backticks, emphasis, links, tables)."""
    return [word.rstrip(".'-") for word in WORD.findall(text.lower())]


def runs(text: str) -> set[tuple[str, ...]]:
    """Every run of ``RUN`` consecutive words in the text."""
    found = words(text)
    return {tuple(found[i : i + RUN]) for i in range(len(found) - RUN + 1)}


def module_docstrings(package: Path) -> dict[Path, str]:
    """The module docstring of every Python file under ``package``."""
    docstrings = {}
    for path in sorted(package.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if docstring:
            docstrings[path] = docstring
    return docstrings


def overlaps(doc: Path, package: Path) -> list[str]:
    """One line per module whose docstring shares a run of words with ``doc``."""
    in_doc = runs(doc.read_text(encoding="utf-8"))
    found = []
    for path, docstring in module_docstrings(package).items():
        shared = in_doc & runs(docstring)
        if shared:
            example = " ".join(min(shared))
            found.append(
                f"{path.relative_to(ROOT)}: {len(shared)} shared {RUN}-word runs, e.g. {example!r}"
            )
    return found


def main() -> int:
    """Check docs/architecture.md against every module docstring of src/docloop."""
    doc = ROOT / "docs" / "architecture.md"
    found = overlaps(doc, ROOT / "src" / "docloop")
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(
            f"{doc.relative_to(ROOT)} repeats module docstrings: keep the *how* in the docstring "
            "and the *where*/*why* in the doc",
            file=sys.stderr,
        )
        return 1
    print(f"{doc.relative_to(ROOT)}: no prose shared with a module docstring")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scaffold a new component: ``make component NAME=<name>`` (``python -m components.scaffold``).

Like kubeflow/pipelines-components' ``make component``, it writes a starting point that already
works, for a developer to edit:

- ``components/<name>/``: ``__init__.py``; ``component.py``, a thin ``@dsl.component`` with a
  Google-style docstring whose body imports the step and calls ``run``; the compiled
  ``component.yaml`` and the ``README.md`` generated from the docstring (``components.compile``);
- ``src/docloop/steps/<name>.py``: the step, whose ``run`` copies the input dataset to the output
  (trivially real, so every generated test passes before the real work replaces it);
- ``tests/local/components/test_<name>.py``: the step on its own and the component through
  ``kfp.local``.

The name joins ``COMPONENT_NAMES`` in ``components/compile.py`` (so ``make compile`` and the
freshness test cover it) and the component table of the project README. An existing or malformed
name is refused before anything is written.
"""

from __future__ import annotations

import ast
import keyword
import logging
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_NAME_LENGTH = 30  # the generated files stay within ruff's 100 columns
# modules of the components package itself, and of the steps package that are not components
RESERVED = frozenset({"compile", "images", "scaffold", "champions"})

logger = logging.getLogger(__name__)


class ScaffoldError(ValueError):
    """A name the scaffold refuses; the message says why and what to do instead."""


def component_files(name: str, root: Path = ROOT) -> dict[Path, str]:
    """The hand-written files of a new component ``name`` under ``root``, with their text."""
    kebab = name.replace("_", "-")
    return {
        root / "components" / name / "__init__.py": INIT.format(name=name, kebab=kebab),
        root / "components" / name / "component.py": COMPONENT.format(name=name, kebab=kebab),
        root / "src" / "docloop" / "steps" / f"{name}.py": STEP.format(name=name, kebab=kebab),
        root / "tests" / "local" / "components" / f"test_{name}.py": TEST.format(
            name=name, kebab=kebab
        ),
    }


def check_name(name: str, root: Path = ROOT) -> None:
    """Refuse a malformed name, a reserved one, or one whose files exist already.

    Raises:
        ScaffoldError: the name cannot be used; the message says why.
    """
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"{name!r} is not a component name: use lower_snake_case that starts with a letter "
            "and is not a Python keyword (e.g. redact_pages)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"{name!r} is longer than {MAX_NAME_LENGTH} characters: shorten it")
    if name in RESERVED:
        raise ScaffoldError(f"{name!r} is reserved (a module of its own): pick another name")
    existing = [path for path in component_files(name, root) if path.exists()]
    if (root / "components" / name).exists():
        existing.insert(0, root / "components" / name)
    if existing or name in _component_names(root):
        where = ", ".join(str(path.relative_to(root)) for path in existing) or "COMPONENT_NAMES"
        raise ScaffoldError(f"component {name!r} exists already ({where}): pick another name")


def scaffold(name: str, root: Path = ROOT) -> list[Path]:
    """Write the component's sources and add it to ``COMPONENT_NAMES``; return what was written.

    Raises:
        ScaffoldError: the name cannot be used (nothing is written then).
    """
    check_name(name, root)
    files = component_files(name, root)
    steps = root / "src" / "docloop" / "steps" / "__init__.py"
    if not steps.exists():
        files[steps] = '"""The launcher layer: one module per component, each with ``run``."""\n'
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _add_component_name(name, root)
    return list(files)


def _compile_module_path(root: Path) -> Path:
    return root / "components" / "compile.py"


def _names_node(source: str) -> ast.Tuple:
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets] == ["COMPONENT_NAMES"]
            and isinstance(node.value, ast.Tuple)
        ):
            return node.value
    raise ScaffoldError("components/compile.py has no COMPONENT_NAMES tuple to add the name to")


def _component_names(root: Path) -> list[str]:
    source = _compile_module_path(root).read_text(encoding="utf-8")
    return [ast.literal_eval(element) for element in _names_node(source).elts]


def _add_component_name(name: str, root: Path) -> None:
    """Insert ``"name",`` as the last line of the one-per-line ``COMPONENT_NAMES`` tuple."""
    path = _compile_module_path(root)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    closing = _names_node("".join(lines)).end_lineno
    if closing is None or lines[closing - 1].strip() != ")":
        raise ScaffoldError(
            "components/compile.py: COMPONENT_NAMES must end with ')' on its own line; "
            f'add "{name}", to it by hand'
        )
    lines.insert(closing - 1, f'    "{name}",\n')
    path.write_text("".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Scaffold the component named on the command line, then compile it and its README."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        logger.error("usage: make component NAME=<lower_snake_case name>")
        return 2
    name = args[0]
    try:
        written = scaffold(name)
    except ScaffoldError as error:
        logger.error("make component: %s", error)
        return 1
    from components.compile import COMPONENTS_DIR, compile_component, readme, update_readme

    folder = COMPONENTS_DIR / name
    written.append(compile_component(name, folder))
    (folder / "README.md").write_text(readme(name), encoding="utf-8")
    written.append(folder / "README.md")
    update_readme(ROOT / "README.md")
    for path in written:
        logger.info("wrote %s", path.relative_to(ROOT))
    logger.info(
        "next: put the real work in src/docloop/steps/%s.py, say what it does in the docstring of "
        "components/%s/component.py, run `make compile`, and use it in a pipeline",
        name,
        name,
    )
    return 0


INIT = '''"""The {kebab} component."""

from components.{name}.component import {name}

__all__ = ["{name}"]
'''

COMPONENT = '''"""{kebab}: copies a dataset (scaffolded; say here what it does)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def {name}(
    source: Input[Dataset],
    result: Output[Dataset],
) -> int:
    """Copy the ``source`` dataset to ``result``, file for file.

    Scaffolded by ``make component``: replace the copy in the step with the real work, and
    this docstring with what the component does; ``make compile`` regenerates
    ``component.yaml`` and ``README.md`` from it.

    Args:
        source: The dataset to read (a file or a folder).
        result: Output. The same files as ``source``.

    Returns:
        How many files were copied.
    """
    from docloop.steps import {name} as step

    return step.run(source.path, result.path)
'''

STEP = '''"""The {kebab} step: copies a dataset (scaffolded by `make component`)."""

from __future__ import annotations

import shutil
from pathlib import Path


def run(source_path: str, output_path: str) -> int:
    """Copy ``source_path`` (a file or a folder) to ``output_path``, keeping relative paths.

    Args:
        source_path: the component's ``source`` path.
        output_path: the component's ``result`` path.

    Returns:
        How many files were copied.
    """
    source, output = Path(source_path), Path(output_path)
    if source.is_file():
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, output)
        return 1
    shutil.copytree(source, output, dirs_exist_ok=True)
    return sum(1 for path in output.rglob("*") if path.is_file())
'''

TEST = '''"""{kebab}: the step, and the component through kfp.local."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.local


def _source(folder: Path) -> Path:
    (folder / "pages").mkdir(parents=True)
    (folder / "pages" / "page-1.txt").write_text("Referral letter\\n", encoding="utf-8")
    (folder / "manifest.json").write_text('{{"pages": 1}}\\n', encoding="utf-8")
    return folder


def _files(folder: Path) -> dict[str, str]:
    return {{
        str(path.relative_to(folder)): path.read_text(encoding="utf-8")
        for path in folder.rglob("*")
        if path.is_file()
    }}


def test_{name}_step_copies_its_input(tmp_path: Path) -> None:
    from docloop.steps import {name} as step

    source = _source(tmp_path / "source")
    assert step.run(str(source), str(tmp_path / "result")) == 2
    assert _files(tmp_path / "result") == _files(source)


def test_{name}_component_runs_locally(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kfp.local
    from kfp import dsl

    from components.{name} import {name}

    # every local task leaves a mktemp -d folder behind: keep them in this test's tmp_path
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "pipeline-root"),
    )
    source = _source(tmp_path / "source")

    @dsl.pipeline(name="{kebab}-only")
    def only(source_uri: str) -> dsl.Dataset:
        imported = dsl.importer(artifact_uri=source_uri, artifact_class=dsl.Dataset)
        return {name}(source=imported.output).outputs["result"]

    run = only(source_uri=str(source))
    assert _files(Path(run.output.path)) == _files(source)
'''


if __name__ == "__main__":
    sys.exit(main())

"""`make component` (components/scaffold.py): refusals, and a scaffold run into a temp copy."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components import scaffold
from tests.compiled import without_sdk_version

pytestmark = pytest.mark.unit

NAME = "echo_pages"


@pytest.mark.parametrize(
    "name", ["Echo", "2pages", "echo-pages", "echo__pages", "_echo", "echo_", "class", ""]
)
def test_a_malformed_name_is_refused(name: str) -> None:
    with pytest.raises(scaffold.ScaffoldError, match="not a component name: use lower_snake_case"):
        scaffold.check_name(name)


def test_a_module_of_the_components_package_is_refused() -> None:
    with pytest.raises(scaffold.ScaffoldError, match="'compile' is reserved"):
        scaffold.check_name("compile")


def test_an_existing_component_is_refused_and_nothing_is_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    compile_module = (scaffold.ROOT / "components" / "compile.py").read_text()
    with caplog.at_level(logging.ERROR):
        assert scaffold.main(["preprocess"]) == 1
    assert "component 'preprocess' exists already (components/preprocess" in caplog.text
    assert (scaffold.ROOT / "components" / "compile.py").read_text() == compile_module


def test_a_name_too_long_for_100_columns_is_refused() -> None:
    with pytest.raises(scaffold.ScaffoldError, match="longer than 30 characters"):
        scaffold.check_name("a" * 31)


def test_the_longest_name_scaffolds_files_that_pass_ruff(tmp_path: Path) -> None:
    name = "redact_pages_with_a_long_name1"
    assert len(name) == scaffold.MAX_NAME_LENGTH
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(scaffold.ROOT / "components", tmp_path / "components", ignore=ignore)
    shutil.copyfile(scaffold.ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    written = [str(path) for path in scaffold.scaffold(name, tmp_path)]
    for command in (["check"], ["format", "--check"]):
        done = _python(tmp_path, "-m", "ruff", *command, *written)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's sources with ``make component NAME=echo_pages`` run in it."""
    root = tmp_path_factory.mktemp("repo")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(scaffold.ROOT / "src", root / "src", ignore=ignore)
    shutil.copytree(scaffold.ROOT / "components", root / "components", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(scaffold.ROOT / name, root / name)
    done = _python(root, "-m", "components.scaffold", NAME)
    assert done.returncode == 0, done.stderr
    return root


def _python(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python in ``root``, with ``root``'s own docloop and components first on the path."""
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_the_scaffold_writes_the_component_its_step_and_its_test(scaffolded: Path) -> None:
    for path in (
        f"components/{NAME}/__init__.py",
        f"components/{NAME}/component.py",
        f"components/{NAME}/component.yaml",
        f"components/{NAME}/README.md",
        f"src/docloop/steps/{NAME}.py",
        f"tests/local/components/test_{NAME}.py",
    ):
        assert (scaffolded / path).is_file(), path
    component = (scaffolded / "components" / NAME / "component.py").read_text()
    assert "@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)" in component
    assert f"from docloop.steps import {NAME} as step" in component
    assert f'    "{NAME}",\n)' in (scaffolded / "components" / "compile.py").read_text()


def test_the_scaffolded_files_import_and_the_component_compiles(scaffolded: Path) -> None:
    """In a fresh interpreter on the copy: the compiled YAML and README are what compile makes."""
    check = f"""
import sys
from pathlib import Path
from kfp import compiler
import components.{NAME} as package
from components.compile import COMPONENT_NAMES, readme, reference_table
from docloop.steps import {NAME}

assert "{NAME}" in COMPONENT_NAMES
assert {NAME}.__file__.startswith(sys.argv[1]), {NAME}.__file__
compiler.Compiler().compile(package.{NAME}, sys.argv[1] + "/fresh.yaml")
folder = Path(sys.argv[1], "components", "{NAME}")
assert (folder / "README.md").read_text() == readme("{NAME}")
assert reference_table() in Path(sys.argv[1], "README.md").read_text()
"""
    done = _python(scaffolded, "-c", check, str(scaffolded))
    assert done.returncode == 0, done.stderr
    fresh = (scaffolded / "fresh.yaml").read_text()
    committed = (scaffolded / "components" / NAME / "component.yaml").read_text()
    assert without_sdk_version(fresh) == without_sdk_version(committed)
    assert "comp-echo-pages" in committed and "docloop-base:" in committed


def test_a_second_scaffold_of_the_same_name_is_refused(scaffolded: Path) -> None:
    done = _python(scaffolded, "-m", "components.scaffold", NAME)
    assert done.returncode == 1
    assert f"component '{NAME}' exists already (components/{NAME}" in done.stderr


@pytest.mark.local
def test_the_scaffolded_test_passes(scaffolded: Path) -> None:
    """The generated test runs the step and the component through kfp.local, and passes."""
    test = f"tests/local/components/test_{NAME}.py"
    done = _python(scaffolded, "-m", "pytest", "-q", "-p", "no:cacheprovider", test)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout

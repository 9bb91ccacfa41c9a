"""The one bridge to the KFP SDK: compile the components and pipelines of a docloop checkout.

Imported lazily by the CLI (``docloop compile``), so the runtime library never needs ``kfp``.
Components and pipelines live next to the package in the project tree (``components/``,
``pipelines/``); the compiled YAML is committed, and tests recompile and diff it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from docloop.errors import ConfigError

logger = logging.getLogger(__name__)

PIPELINE_NAMES = ("bootstrap", "retrain", "drift_check")
"""Pipelines compiled to ``pipelines/compiled/<name>.yaml``; each module defines ``<name>``."""


def project_root(start: Path | None = None) -> Path:
    """The docloop checkout holding ``components/`` and ``pipelines/`` (cwd or a parent).

    Raises:
        ConfigError: no checkout above ``start``.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "components" / "compile.py").is_file() and (folder / "pipelines").is_dir():
            return folder
    raise ConfigError(
        f"no docloop checkout (components/ and pipelines/) at or above {here}; run from the "
        "repository root or pass --root"
    )


def _importable(root: Path) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def compile_pipeline(name: str, target: Path, root: Path | None = None) -> Path:
    """Compile the pipeline ``pipelines/<name>.py`` to ``target``.

    Raises:
        ConfigError: ``name`` is not a docloop pipeline.
    """
    if name not in PIPELINE_NAMES:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINE_NAMES)}")
    from kfp import compiler

    _importable(root or project_root())
    module = importlib.import_module(f"pipelines.{name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(getattr(module, name), str(target))
    return target


def compile_all(root: Path | None = None) -> list[Path]:
    """Compile every component (YAML + README) and every pipeline; return the written files."""
    root = root or project_root()
    _importable(root)
    components = importlib.import_module("components.compile")
    written: list[Path] = []
    for name in components.COMPONENT_NAMES:
        folder = root / "components" / name
        written.append(components.compile_component(name, folder))
        (folder / "README.md").write_text(components.readme(name), encoding="utf-8")
        written.append(folder / "README.md")
    if components.update_readme(root / "README.md"):
        written.append(root / "README.md")
    for name in PIPELINE_NAMES:
        written.append(
            compile_pipeline(name, root / "pipelines" / "compiled" / f"{name}.yaml", root)
        )
    for path in written:
        logger.info("wrote %s", path.relative_to(root))
    return written

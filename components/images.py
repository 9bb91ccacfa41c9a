"""Container images of the components: one tag, equal to the docloop package version.

The registry is overridable at compile time (``DOCLOOP_IMAGE_REGISTRY``) for platform teams that
mirror images; the tag is never ``latest``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def _version() -> str:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])


VERSION = _version()
REGISTRY = os.environ.get("DOCLOOP_IMAGE_REGISTRY", "ghcr.io/docloop")
BASE_IMAGE = f"{REGISTRY}/docloop-base:{VERSION}"
TRAIN_IMAGE = f"{REGISTRY}/docloop-train:{VERSION}"
SERVE_IMAGE = f"{REGISTRY}/docloop-serve:{VERSION}"

"""Release bundles: written once per release (content-addressed), loaded whole by the predictor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from docloop.deploy.release_bundle import (
    RELEASE_FILE,
    ensure_bundle,
    plan_bundle,
    release_digest,
    write_bundle,
)
from docloop.errors import InvalidInput
from docloop.serve.compat import InvalidInput as RefusedAtStartup
from docloop.serve.predictor import resolve_model_folders
from docloop.storage import Storage, local_path

if TYPE_CHECKING:  # imported for real by pytest_plugins
    from tests.serving import TinyModels

pytest_plugins = ["tests.serving"]
pytestmark = pytest.mark.unit


def test_the_digest_is_the_release_and_nothing_else() -> None:
    uris = {"classify": "s3://m/c/1", "extract": "s3://m/e/1"}
    versions = {"classify": "1", "extract": "1"}
    assert release_digest(uris, versions) == release_digest(dict(reversed(uris.items())), versions)
    assert release_digest(uris, versions) == release_digest(
        {"classify": "s3://m/c/1/", "extract": "s3://m/e/1"}, versions
    )
    assert release_digest(uris, versions) != release_digest(uris, {**versions, "extract": "2"})
    assert release_digest(uris, versions) != release_digest(
        {**uris, "extract": "s3://m/e/2"}, versions
    )
    with pytest.raises(InvalidInput, match="a version and a model URI per task"):
        release_digest(uris, {"classify": "1"})


def test_a_bundle_is_written_once_and_served_whole(tiny_models: TinyModels, tmp_path: Path) -> None:
    storage = Storage()
    data_root = (tmp_path / "data").as_uri()
    uris = {"classify": tiny_models.classifier.as_uri(), "extract": tiny_models.extractor.as_uri()}
    versions = {"classify": "3", "extract": "5"}
    bundle = ensure_bundle(storage, data_root, uris, versions)
    assert bundle.uri == f"{data_root}/releases/{release_digest(uris, versions)}"
    folder = local_path(bundle.uri)
    manifest = json.loads((folder / RELEASE_FILE).read_text())
    assert manifest["models"]["extract"] == {
        "version": "5", "uri": uris["extract"], "folder": "extractor",
    }  # fmt: skip
    served = resolve_model_folders([folder])
    assert (served.classifier, served.extractor) == (folder / "classifier", folder / "extractor")
    copied = sorted(p.relative_to(folder / "extractor") for p in (folder / "extractor").rglob("*"))
    assert copied == sorted(
        p.relative_to(tiny_models.extractor) for p in tiny_models.extractor.rglob("*")
    )
    # a second writer (a retried task) finds release.json and writes nothing
    assert write_bundle(storage, plan_bundle(data_root, uris, versions)) is False
    # a bundle missing a model it names fails at predictor startup, not by serving half a release
    shutil.rmtree(folder / "extractor")
    with pytest.raises(RefusedAtStartup, match="names extract but holds no such model"):
        resolve_model_folders([folder])


def test_a_crashed_write_is_finished_by_the_next(tiny_models: TinyModels, tmp_path: Path) -> None:
    storage = Storage()
    data_root = (tmp_path / "data").as_uri()
    uris = {"extract": tiny_models.extractor.as_uri()}
    bundle = plan_bundle(data_root, uris, {"extract": "1"})
    partial = local_path(bundle.uri) / "extractor"
    partial.mkdir(parents=True)
    (partial / "stale.bin").write_bytes(b"half")  # a crash before release.json
    assert write_bundle(storage, bundle) is True
    assert (local_path(bundle.uri) / RELEASE_FILE).is_file()
    assert resolve_model_folders([local_path(bundle.uri)]).extractor == partial


def test_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    missing = (tmp_path / "nothing").as_uri()
    with pytest.raises(InvalidInput, match="empty or missing"):
        ensure_bundle(Storage(), tmp_path.as_uri(), {"extract": missing}, {"extract": "1"})

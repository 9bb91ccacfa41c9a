"""A release bundle: one storage URI holding the classifier and extractor of a release.

Layout under ``{data_root}/{deploy.kserve.release_prefix}/{digest}/``::

    classifier/...     a copy of the classifier version's model folder
    extractor/...      a copy of the extractor version's model folder
    release.json       {"format": "docloop-release", "digest", "models": {task: {version, uri}}}

KServe's storage initializer downloads the whole prefix to ``/mnt/models`` and the predictor
loads it as a bundle (``serve/predictor.py``: ``classifier/`` and ``extractor/``), so the
InferenceService serves one model from one ``storageUri`` (``predictor.model``) and a new
release is a new URI, which KServe's webhook asks of a ``predictor.name`` change.

The digest is content addressing over what the release serves (per task: the version and the
model URI), so writing the same release twice lands on the same prefix. ``release.json`` is
written last: it marks a complete bundle, a writer that finds it does nothing, and a writer that
crashed half way is finished by the next one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from docloop.errors import InvalidInput
from docloop.storage import Storage, join

logger = logging.getLogger(__name__)

RELEASE_FILE: Final = "release.json"
MODEL_FORMAT: Final = "docloop-release"
RUNTIME: Final = "docloop-predictor"
TASK_FOLDERS: Final = {"classify": "classifier", "extract": "extractor"}


@dataclass(frozen=True)
class ReleaseBundle:
    """Where a release lives as one model, and what it holds.

    Attributes:
        uri: The bundle's prefix (the InferenceService's ``storageUri``).
        digest: Content address of the release (the prefix's last segment).
        versions: Registry version per task.
        model_uris: The model folder each task was copied from.
    """

    uri: str
    digest: str
    versions: Mapping[str, str]
    model_uris: Mapping[str, str]

    def manifest(self) -> dict[str, Any]:
        """``release.json``'s content."""
        return {
            "format": MODEL_FORMAT,
            "digest": self.digest,
            "models": {
                task: {"version": self.versions[task], "uri": self.model_uris[task],
                       "folder": TASK_FOLDERS[task]}
                for task in sorted(self.versions)
            },
        }  # fmt: skip


def release_digest(model_uris: Mapping[str, str], versions: Mapping[str, str]) -> str:
    """The content address of a release: per task its version and model URI (16 hex)."""
    if not model_uris or set(model_uris) != set(versions) or set(model_uris) - set(TASK_FOLDERS):
        raise InvalidInput(
            f"a release names a version and a model URI per task of {sorted(TASK_FOLDERS)}; got "
            f"URIs for {sorted(model_uris)} and versions for {sorted(versions)}"
        )
    body = json.dumps(
        {task: [str(versions[task]), model_uris[task].rstrip("/")] for task in sorted(versions)},
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def plan_bundle(
    data_root: str,
    model_uris: Mapping[str, str],
    versions: Mapping[str, str],
    prefix: str = "releases",
) -> ReleaseBundle:
    """The bundle of a release, without writing it."""
    digest = release_digest(model_uris, versions)
    return ReleaseBundle(join(data_root, prefix, digest), digest, dict(versions), dict(model_uris))


def _copy_folder(storage: Storage, source: str, destination: str) -> int:
    """Copy every object under ``source`` to the same relative path under ``destination``."""
    base = source.rstrip("/")
    objects = storage.list(base)
    if not objects:
        raise InvalidInput(f"the model folder {source} is empty or missing; register it again")
    with tempfile.TemporaryDirectory(prefix="docloop-release-") as scratch:
        local = Path(scratch) / "object"
        for info in objects:
            relative = info.uri[len(base) :].lstrip("/")
            storage.download(info.uri, local)
            storage.upload(local, join(destination, relative))
    return len(objects)


def write_bundle(storage: Storage, bundle: ReleaseBundle) -> bool:
    """Write ``bundle`` unless it is complete already; idempotent.

    Returns:
        True when this call wrote it, False when ``release.json`` was already there.

    Raises:
        InvalidInput: A model folder is missing.
        StorageError: The store refused a read or a write.
    """
    marker = join(bundle.uri, RELEASE_FILE)
    if storage.exists(marker):
        logger.info("release bundle %s is complete already", bundle.uri)
        return False
    for task in sorted(bundle.versions):
        count = _copy_folder(storage, bundle.model_uris[task], join(bundle.uri, TASK_FOLDERS[task]))
        logger.info("release %s: %s copied (%d objects)", bundle.digest, task, count)
    storage.write_bytes(
        marker,
        json.dumps(bundle.manifest(), indent=2, sort_keys=True).encode(),
        content_type="application/json",
    )
    return True


def ensure_bundle(
    storage: Storage,
    data_root: str,
    model_uris: Mapping[str, str],
    versions: Mapping[str, str],
    prefix: str = "releases",
) -> ReleaseBundle:
    """Plan and write the bundle of a release (nothing when it exists); return it."""
    bundle = plan_bundle(data_root, model_uris, versions, prefix)
    write_bundle(storage, bundle)
    return bundle

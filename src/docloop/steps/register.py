"""The register component's step: a blessed model folder -> a registered (promoted) version.

It also leaves the *release* the version would serve in (it, beside the other tasks' champions)
as a typed artifact: ``release.json`` and metadata naming the release bundle (written on
``deploy.target: kserve``, :mod:`docloop.deploy.release_bundle`), which deploy-kserve consumes.
With ``skip_unblessed`` a model the gate did not bless is not registered and its release artifact
says so (``registered: false``, no version), so deploy-kserve keeps that task's champion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docloop.config import DocloopConfig, load_config
from docloop.deploy.run import release_artifact, release_with, write_release
from docloop.errors import InvalidInput
from docloop.models.artifact import read_card
from docloop.storage import Storage
from docloop.store.registry import TAG_PREFIX, Registry, model_name_for
from docloop.store.versions import VersionRecord

logger = logging.getLogger(__name__)


def register_blessed(
    registry: Registry,
    config: DocloopConfig,
    model_dir: Path,
    model_uri: str,
    gate: Mapping[str, Any],
    dataset_digest: str,
    *,
    pipeline_run: str = "",
    promote: bool = False,
) -> VersionRecord:
    """Register a trained model folder the gate blessed; optionally make it the default.

    Args:
        registry: the registry.
        config: the configuration (registered model names).
        model_dir: the model folder on local disk (its card gives task and lineage).
        model_uri: where the folder lives for everyone else (``file://``, ``s3://``, ``gs://``).
        gate: the evaluate step's ``gate.json``.
        dataset_digest: the training dataset's digest.
        pipeline_run: the KFP run, recorded in tags and the audit log.
        promote: make the version the default (alias ``champion``) at once.

    Returns:
        The version as the store knows it after registration (and promotion).

    Raises:
        InvalidInput: the gate did not bless the model, or the folder is not a docloop model.
    """
    card = read_card(model_dir)
    if not gate.get("blessed", False):
        raise InvalidInput(
            f"refusing to register {model_uri}: the gate did not bless it "
            f"({gate.get('summary') or 'no reason recorded'}); only blessed models are registered"
        )
    name = model_name_for(card.task, config)
    registration = registry.register(
        name,
        model_uri,
        card.mlflow_run_id,
        dataset_digest or card.dataset_digest,
        gate,
        card.code_version,
        tags={f"{TAG_PREFIX}pipeline_run": pipeline_run} if pipeline_run else None,
    )
    logger.info(
        "%s version %s %s",
        name,
        registration.version,
        "registered" if registration.created else "already registered (retry)",
    )
    if promote:
        registry.promote(
            name,
            registration.version,
            reason="first blessed model (bootstrap)",
            run_id=pipeline_run or None,
        )
        return registry.get_version(name, registration.version)
    return registration.record


def unregistered_release(
    task: str, gate: Mapping[str, Any], pipeline_run: str = ""
) -> dict[str, Any]:
    """The release artifact of a candidate the gate did not bless: no version, the reason."""
    return {
        "task": task,
        "registered": False,
        "reason": str(gate.get("summary") or "the gate did not bless it"),
        "pipeline_run": pipeline_run,
    }


@dataclass(frozen=True)
class Registration:
    """What the register component outputs.

    Attributes:
        record: The version as the store knows it; None when an unblessed model was skipped.
        release: The release artifact's metadata (bundle URI, versions, the registered model).
    """

    record: VersionRecord | None
    release: dict[str, Any]


def run(
    model_dir: str,
    model_uri: str,
    gate_path: str,
    dataset_digest: str,
    pipeline_run: str,
    promote: bool,
    release_dir: str = "",
    skip_unblessed: bool = False,
) -> Registration:
    """Register the model folder the gate blessed; with ``promote`` make it the default.

    Args:
        model_dir: the trained model folder (the ``model`` artifact's path).
        model_uri: where that folder lives for everyone else (the artifact's URI).
        gate_path: the evaluate step's ``gate`` artifact (a ``gate.json`` or its folder).
        dataset_digest: the training dataset's digest.
        pipeline_run: the KFP run, recorded in tags and the audit log.
        promote: make the version the default at once (bootstrap).
        release_dir: the ``release`` artifact's folder (``release.json`` goes there); empty:
            none is written.
        skip_unblessed: an unblessed model registers nothing (its release says
            ``registered: false``) instead of being refused.

    Returns:
        The version as the store knows it after registration (and promotion), and the release
        it serves in.
    """
    config = load_config()
    gate_file = Path(gate_path)
    if gate_file.is_dir():  # the evaluate component's gate artifact is a folder
        gate_file = gate_file / "gate.json"
    gate = json.loads(gate_file.read_text(encoding="utf-8"))
    if skip_unblessed and not gate.get("blessed", False):
        task = read_card(Path(model_dir)).task
        logger.info("%s candidate %s not blessed: nothing registered", task, model_uri)
        release = unregistered_release(task, gate, pipeline_run)
        if release_dir:
            write_release(Storage(config.storage), release_dir, release)
        return Registration(None, release)
    registry = Registry.from_config(config)
    try:
        record = register_blessed(
            registry,
            config,
            Path(model_dir),
            model_uri,
            gate,
            dataset_digest,
            pipeline_run=pipeline_run,
            promote=promote,
        )
        task = read_card(Path(model_dir)).task
        release = release_artifact(
            release_with(registry, config, task, record.version),
            task=task,
            model_name=record.model_name,
            version=record.version,
            pipeline_run=pipeline_run,
            registered=True,
        )
    finally:
        registry.close()
    if release_dir:
        write_release(Storage(config.storage), release_dir, release)
    return Registration(record, release)

"""The promote component's step: a blessed, registered version becomes the champion.

The champions' release is then written as a bundle (``deploy.target: kserve``; idempotent), so
the storage URI of what now serves by default exists before any deploy asks for it.
"""

from __future__ import annotations

from typing import Any

from docloop.config import load_config, store_url
from docloop.deploy.run import champion_versions, plan_release, release_artifact, write_release
from docloop.evaluation.gate import read_gate
from docloop.monitor.outcomes import record_outcome
from docloop.storage import Storage
from docloop.store.db import open_store
from docloop.store.registry import Registry


def run(
    task: str,
    model_name: str,
    version: str,
    gate_path: str,
    pipeline_run: str,
    release_dir: str = "",
) -> dict[str, Any]:
    """Make a blessed, registered version the champion and record it in the retrain attempt.

    Idempotent (promoting the default again changes nothing) and recorded in the attempt.

    Args:
        task: ``classify`` or ``extract``.
        model_name: the registered model.
        version: the version to promote.
        gate_path: the evaluate step's gate artifact.
        pipeline_run: the KFP run.
        release_dir: the ``release`` artifact's folder (``release.json``); empty: not written.

    Returns:
        The champions' release (bundle URI, versions): the release artifact's metadata.
    """
    config = load_config()
    gate = read_gate(gate_path)
    registry = Registry.from_config(config)
    try:
        registry.promote(
            model_name,
            version,
            reason=f"retrain {pipeline_run}: {gate.headline}",
            run_id=pipeline_run or None,
        )
        champions = plan_release(registry, config, champion_versions(registry, config)).release
    finally:
        registry.close()
    store = open_store(store_url(config.store))
    try:
        record_outcome(store, pipeline_run, task, "promoted", [gate.headline], gate.deltas())
    finally:
        store.close()
    release = release_artifact(champions, task=task, model_name=model_name, version=version)
    if release_dir:
        write_release(Storage(config.storage), release_dir, release)
    return release

"""The rollback component's step: undo the newest deployment (idempotent)."""

from __future__ import annotations

from typing import Any

from docloop.config import load_config
from docloop.deploy.run import run_rollback
from docloop.store.registry import Registry


def run(reason: str, pipeline_run: str = "") -> dict[str, Any]:
    """Restore the serving side and the champions the newest deployment replaced.

    Args:
        reason: why (recorded in the audit log and the alert).
        pipeline_run: the KFP run.

    Returns:
        ``{"rolled_back": bool, "deployment_id": ..., "versions": ...}``; a retry after a done
        rollback returns ``rolled_back: False``.
    """
    config = load_config()
    registry = Registry.from_config(config)
    try:
        undone = run_rollback(config, registry, reason=reason, pipeline_run=pipeline_run)
    finally:
        registry.close()
    if undone is None:
        return {"rolled_back": False, "deployment_id": None, "versions": None}
    return {"rolled_back": True, "deployment_id": int(undone.id), "versions": undone.versions}

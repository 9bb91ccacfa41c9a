"""The report-health component's step (the exit handler): record the run's health, alert."""

from __future__ import annotations

from docloop.config import load_config, store_url
from docloop.monitor.outcomes import record_health
from docloop.store.db import open_store


def run(run_id: str, state: str, failed_task: str, error: str) -> bool:
    """Record the run's final state; on failure mark the attempt failed and alert.

    Returns:
        Whether the run succeeded.
    """
    config = load_config()
    store = open_store(store_url(config.store))
    try:
        return record_health(
            store, config.alerts, run_id, state, failed_task or None, error or None
        )
    finally:
        store.close()

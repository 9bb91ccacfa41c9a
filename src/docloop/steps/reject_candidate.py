"""The reject-candidate component's step (the alternate path): keep the champion, record, alert."""

from __future__ import annotations

import logging

from docloop.config import load_config, store_url
from docloop.evaluation.gate import read_gate
from docloop.monitor.outcomes import record_outcome, send_alert
from docloop.store.db import open_store

logger = logging.getLogger(__name__)


def run(task: str, gate_path: str, pipeline_run: str) -> None:
    """Keep the champion, record the rejection with the gate's reasons in the attempt, alert."""
    config = load_config()
    gate = read_gate(gate_path)
    if gate.skipped:  # no candidate was trained: nothing was rejected, the champion stays
        logger.info("%s: no candidate to reject (%s)", task, gate.skipped)
        return
    reasons = [check.reason for check in gate.failed] or [gate.headline]
    store = open_store(store_url(config.store))
    try:
        attempt = record_outcome(store, pipeline_run, task, "rejected", reasons, gate.deltas())
    finally:
        store.close()
    send_alert(
        config.alerts,
        "candidate_rejected",
        f"{task} candidate of run {pipeline_run} rejected, champion kept: {gate.headline}",
        {"task": task, "run_id": pipeline_run, "attempt": attempt, "reasons": reasons},
    )

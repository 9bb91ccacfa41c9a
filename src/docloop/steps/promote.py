"""The promote component's step: a blessed, registered version becomes the champion."""

from __future__ import annotations

from docloop.config import load_config, store_url
from docloop.evaluation.gate import read_gate
from docloop.monitor.outcomes import record_outcome
from docloop.store.db import open_store
from docloop.store.registry import Registry


def run(task: str, model_name: str, version: str, gate_path: str, pipeline_run: str) -> None:
    """Make a blessed, registered version the champion and record it in the retrain attempt.

    Idempotent (promoting the default again changes nothing) and recorded in the attempt.
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
    finally:
        registry.close()
    store = open_store(store_url(config.store))
    try:
        record_outcome(store, pipeline_run, task, "promoted", [gate.headline], gate.deltas())
    finally:
        store.close()

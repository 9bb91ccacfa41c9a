"""The worker of the promotion race test (``tests/unit/test_registry.py``).

A module of its own, importing little, so that the spawned worker processes start quickly.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

RACE_TIMEOUT_S = 120


def race_worker(
    worker: int,
    model_name: str,
    store_url: str,
    mlflow_uri: str,
    versions: list[str],
    rounds: int,
    barrier: Any,
    results: Any,
) -> None:
    """Promote a different version than the other worker, at the same moment, every round.

    Puts ``(worker, outcomes, traceback or None)`` on ``results``; an outcome is
    ``("promoted" | "conflict", version, changed)``.
    """
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from docloop.errors import PromotionConflict
    from docloop.store import Registry, open_store

    outcomes: list[tuple[str, str, bool]] = []
    try:
        registry = Registry(open_store(store_url, migrate=False, lock_timeout_s=30), mlflow_uri)
        registry.default_version(model_name)  # connect and warm up before the first round
        for round_ in range(rounds):
            version = versions[(round_ + worker) % len(versions)]
            barrier.wait(timeout=RACE_TIMEOUT_S)
            try:
                promotion = registry.promote(
                    model_name, version, reason=f"round {round_}", actor=f"worker-{worker}"
                )
                outcomes.append(("promoted", version, promotion.changed))
            except PromotionConflict:
                outcomes.append(("conflict", version, False))
        registry.close()
        results.put((worker, outcomes, None))
    except BaseException:  # report everything to the parent, which fails the test
        barrier.abort()  # so the other worker stops waiting for this one
        results.put((worker, outcomes, traceback.format_exc()))
        raise

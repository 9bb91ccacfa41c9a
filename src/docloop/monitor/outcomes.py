"""What a retraining run leaves behind: its attempt record, alerts, and pipeline health.

A drift check that triggers opens a ``retrain_attempts`` row (outcome ``pending``); the retrain
pipeline's steps then record, per model, what happened (``promoted`` or ``rejected`` with the
gate's reasons and metric deltas), and the pipeline's exit task records its health (``failed``
with the failed task). A retrain started by hand, without a drift check, opens its own row.
Alerts go to the configured webhook (a JSON POST) and count in ``docloop_alerts_total``, pushed
to a Pushgateway when one is configured (pipeline pods live too briefly to be scraped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, push_to_gateway
from sqlalchemy import select
from sqlalchemy.orm import Session

from docloop.config import AlertsConfig
from docloop.store.db import Store
from docloop.store.tables import RetrainAttempt

logger = logging.getLogger(__name__)

OUTCOME_RANK = {
    "pending": 0,
    "declined": 0,
    "rejected": 1,
    "rolled_back": 2,
    "failed": 3,
    "promoted": 4,
}
"""When models of one attempt end differently, the attempt shows the highest-ranked outcome."""

ALERT_REGISTRY = CollectorRegistry()
ALERTS = Counter(
    "docloop_alerts_total",
    "Alerts raised by docloop (rejected candidates, failed pipelines).",
    ["kind"],
    registry=ALERT_REGISTRY,
)


def _open_attempt(session: Session, run_id: str, trigger: Mapping[str, Any]) -> RetrainAttempt:
    """The attempt of ``run_id``, else the newest pending one, else a new (manual) attempt."""
    attempt = session.scalars(
        select(RetrainAttempt).where(RetrainAttempt.run_id == run_id).limit(1)
    ).first()
    if attempt is None:
        attempt = session.scalars(
            select(RetrainAttempt)
            .where(RetrainAttempt.outcome == "pending", RetrainAttempt.run_id.is_(None))
            .order_by(RetrainAttempt.started_at.desc())
            .limit(1)
        ).first()
    if attempt is None:
        attempt = RetrainAttempt(trigger=dict(trigger) or {"reasons": ["started by hand"]})
        session.add(attempt)
    attempt.run_id = run_id
    return attempt


def record_outcome(
    store: Store,
    run_id: str,
    task: str,
    outcome: str,
    reasons: Sequence[str],
    metric_deltas: Mapping[str, float] | None = None,
) -> int:
    """Record one model's outcome in the attempt of ``run_id``; return the attempt id.

    Idempotent: recording the same task and outcome again (a retried KFP task) changes nothing.
    """
    if outcome not in OUTCOME_RANK:
        raise ValueError(f"outcome must be one of {sorted(OUTCOME_RANK)}, not {outcome!r}")
    with store.write() as session:
        attempt = _open_attempt(session, run_id, {})
        deltas = dict(attempt.metric_deltas or {})
        deltas[task] = {"outcome": outcome, **dict(metric_deltas or {})}
        attempt.metric_deltas = deltas
        lines = [line for line in (attempt.reasons or []) if not line.startswith(f"{task}: ")]
        attempt.reasons = lines + [f"{task}: {reason}" for reason in reasons]
        if OUTCOME_RANK[outcome] >= OUTCOME_RANK.get(attempt.outcome, 0):
            attempt.outcome = outcome
        attempt.finished_at = datetime.now(UTC)
        session.flush()
        return int(attempt.id)


def send_alert(config: AlertsConfig, kind: str, summary: str, details: Mapping[str, Any]) -> bool:
    """Raise an alert: log it, count it, POST it to the webhook; True when the webhook took it.

    A webhook or Pushgateway that cannot be reached is logged, never raised: an alert must not
    turn a recorded rejection into a failed pipeline.
    """
    import httpx

    logger.warning("ALERT %s: %s", kind, summary)
    ALERTS.labels(kind).inc()
    if config.pushgateway_url:
        try:
            push_to_gateway(config.pushgateway_url, job="docloop", registry=ALERT_REGISTRY)
        except OSError as exc:
            logger.error("could not push alerts to %s: %s", config.pushgateway_url, exc)
    if not config.webhook_url:
        return False
    body = {"source": "docloop", "kind": kind, "summary": summary, "details": dict(details)}
    try:
        response = httpx.post(config.webhook_url, json=body, timeout=config.timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.error("alert webhook %s failed: %s", config.webhook_url, exc)
        return False
    return True


def record_health(
    store: Store,
    alerts: AlertsConfig,
    run_id: str,
    state: str,
    failed_task: str | None = None,
    error: str | None = None,
) -> bool:
    """Record a retrain run's final state; on failure mark the attempt failed and alert.

    Returns:
        Whether the run succeeded.
    """
    succeeded = state.upper() in ("SUCCEEDED", "SUCCESS")
    if succeeded:
        logger.info("retrain run %s succeeded", run_id)
        return True
    reason = f"pipeline {state.lower()}" + (f" in task {failed_task}" if failed_task else "")
    reason += f": {error}" if error else ""
    record_outcome(store, run_id, "pipeline", "failed", [reason])
    send_alert(alerts, "pipeline_failed", f"retrain run {run_id}: {reason}", {"run_id": run_id})
    return False

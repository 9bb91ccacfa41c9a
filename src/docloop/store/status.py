"""``docloop status``: the loop's story as the state store tells it, in a few rich tables.

Versions and their statuses per model (the ``default`` is the champion MLflow's alias points
at), the newest promotion-audit entries, deployments with their outcome, drift checks with their
decision, and retrain attempts — the same story ``mlflow ui`` shows from the registry side.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from docloop.config import DocloopConfig, store_url
from docloop.store.db import Store, open_store
from docloop.store.tables import Deployment as DeploymentRow
from docloop.store.tables import DriftCheck, ModelVersion, PromotionAudit, RetrainAttempt


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"


def status_tables(store: Store, config: DocloopConfig, limit: int = 5) -> list[Table]:
    """The tables of ``docloop status`` (newest rows first, ``limit`` per table)."""
    models = Table(title="Model versions", expand=False)
    for column in ("model", "version", "status", "reason", "updated"):
        models.add_column(column)
    audit = Table(title="Promotion audit (newest first)")
    for column in ("at", "model", "action", "from", "to", "reason"):
        audit.add_column(column)
    deployments = Table(title="Deployments (newest first)")
    for column in ("id", "target", "versions", "status", "reason", "updated"):
        deployments.add_column(column)
    checks = Table(title="Drift checks (newest first)")
    for column in ("checked", "window", "decision", "headline"):
        checks.add_column(column)
    attempts = Table(title="Retrain attempts (newest first)")
    for column in ("id", "started", "outcome", "reasons"):
        attempts.add_column(column)
    names = (config.registry.classifier_name, config.registry.extractor_name)
    with store.read() as session:
        for row in session.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_name.in_(names))
            .order_by(ModelVersion.model_name, ModelVersion.id)
        ):
            style = "bold green" if row.status == "default" else None
            models.add_row(
                row.model_name, row.version, row.status, (row.status_reason or "")[:70],
                _when(row.updated_at), style=style,
            )  # fmt: skip
        for entry in session.scalars(
            select(PromotionAudit).order_by(PromotionAudit.id.desc()).limit(limit)
        ):
            audit.add_row(
                _when(entry.at), entry.model_name, entry.action, entry.from_version or "-",
                entry.to_version, entry.reason[:70],
            )  # fmt: skip
        for deployment in session.scalars(
            select(DeploymentRow).order_by(DeploymentRow.id.desc()).limit(limit)
        ):
            versions = ", ".join(f"{k}={v}" for k, v in sorted(deployment.versions.items()))
            deployments.add_row(
                str(deployment.id), deployment.target, versions, deployment.status,
                (deployment.reason or "")[:70], _when(deployment.updated_at),
            )  # fmt: skip
        for check in session.scalars(
            select(DriftCheck).order_by(DriftCheck.id.desc()).limit(limit)
        ):
            decision = "RETRAIN" if check.trigger else "no retrain"
            checks.add_row(
                _when(check.checked_at),
                f"{_when(check.window_start)} → {_when(check.window_end)}",
                decision,
                check.headline[:80],
            )
        for attempt in session.scalars(
            select(RetrainAttempt).order_by(RetrainAttempt.id.desc()).limit(limit)
        ):
            attempts.add_row(
                str(attempt.id), _when(attempt.started_at), attempt.outcome,
                "; ".join(attempt.reasons or [])[:90],
            )  # fmt: skip
    return [models, audit, deployments, checks, attempts]


def render_status(config: DocloopConfig, console: Console, limit: int = 5) -> None:
    """Print the status tables for the configured state store."""
    store = open_store(store_url(config.store))
    try:
        for table in status_tables(store, config, limit):
            console.print(table)
    finally:
        store.close()

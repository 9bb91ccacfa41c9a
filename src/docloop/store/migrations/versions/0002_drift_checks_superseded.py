"""Drift checks in the store; ``superseded`` as a feedback status of its own.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

* ``drift_checks``: one row per finished drift check — triggered or declined — with the window,
  the decision and its reasons, the key numbers and the retrain attempt it opened (if any).
  Declines are rows here, not ``retrain_attempts`` rows, so they never count against the
  trigger's cooldown or budget.
* ``feedback_events.status`` gains ``superseded`` (a verdict another verdict on the same document
  replaced); revision 0001 stored those as ``quarantined`` with the reason prefixed
  ``superseded:``, and this revision moves such rows to the new status. Every non-accepted
  status needs a reason.

Self-contained like 0001: types are spelt out here, not imported from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUS = "status IN ('accepted', 'quarantined')"
_NEW_STATUS = "status IN ('accepted', 'quarantined', 'superseded')"
_OLD_REASON = "status <> 'quarantined' OR quarantine_reason IS NOT NULL"
_NEW_REASON = "status = 'accepted' OR quarantine_reason IS NOT NULL"
_PREFIX = "superseded: "


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _swap_checks(status: str, reason: str) -> None:
    with op.batch_alter_table("feedback_events") as batch:
        batch.drop_constraint("ck_feedback_events_status", type_="check")
        batch.drop_constraint("ck_feedback_events_quarantine_reason", type_="check")
        batch.create_check_constraint("ck_feedback_events_status", status)
        batch.create_check_constraint("ck_feedback_events_quarantine_reason", reason)


def upgrade() -> None:
    """Create ``drift_checks``; allow ``superseded`` and move the prefixed rows to it."""
    op.create_table(
        "drift_checks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("champion", sa.Text(), nullable=True),
        sa.Column("trigger", sa.Boolean(), nullable=False),
        sa.Column("conclusive", sa.Boolean(), nullable=False),
        sa.Column("watermark_advanced", sa.Boolean(), nullable=False),
        sa.Column("headline", sa.Text(), nullable=False),
        sa.Column("reasons", _json(), nullable=False),
        sa.Column("signals", _json(), nullable=False),
        sa.Column("blockers", _json(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("report_uri", sa.Text(), nullable=True),
        sa.Column(
            "attempt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["retrain_attempts.id"],
            name="fk_drift_checks_attempt_id_retrain_attempts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_drift_checks"),
    )
    op.create_index("ix_drift_checks_checked_at", "drift_checks", ["checked_at"])

    _swap_checks(_NEW_STATUS, _NEW_REASON)
    events = sa.table(
        "feedback_events",
        sa.column("status", sa.String(16)),
        sa.column("quarantine_reason", sa.Text()),
    )
    op.execute(
        events.update()
        .where(events.c.status == "quarantined")
        .where(events.c.quarantine_reason.like(f"{_PREFIX}%"))
        .values(
            status="superseded",
            quarantine_reason=sa.func.substr(events.c.quarantine_reason, len(_PREFIX) + 1),
        )
    )


def downgrade() -> None:
    """Store ``superseded`` as prefixed ``quarantined`` again; drop ``drift_checks``."""
    events = sa.table(
        "feedback_events",
        sa.column("status", sa.String(16)),
        sa.column("quarantine_reason", sa.Text()),
    )
    op.execute(
        events.update()
        .where(events.c.status == "superseded")
        .values(status="quarantined", quarantine_reason=_PREFIX + events.c.quarantine_reason)
    )
    _swap_checks(_OLD_STATUS, _OLD_REASON)
    op.drop_index("ix_drift_checks_checked_at", table_name="drift_checks")
    op.drop_table("drift_checks")

"""Deployments: what each rollout changed on the serving side, so that it can be undone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

One row per (service, namespace, versions served): the pre-deploy state (Knative: the
``latestRolledoutRevision`` and the predictor spec it ran; Standard: the stable predictor), the
canary share, the canary analysis and the outcome. The unique key makes a re-run with the same
versions find its row instead of deploying again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = ("pending", "canary", "promoted", "rolled_back", "failed")


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def upgrade() -> None:
    """Create ``deployments``."""
    quoted = ", ".join(f"'{status}'" for status in _STATUSES)
    op.create_table(
        "deployments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("namespace", sa.String(200), nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("versions", _json(), nullable=False),
        sa.Column("storage_uris", _json(), nullable=False),
        sa.Column("previous", _json(), nullable=True),
        sa.Column("canary_percent", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("analysis", _json(), nullable=True),
        sa.Column("service_status", _json(), nullable=True),
        sa.Column("pipeline_run", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"status IN ({quoted})", name="ck_deployments_status"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("key", name="uq_deployments_key"),
    )
    op.create_index("ix_deployments_service_id", "deployments", ["service", "id"])


def downgrade() -> None:
    """Drop ``deployments``."""
    op.drop_index("ix_deployments_service_id", table_name="deployments")
    op.drop_table("deployments")

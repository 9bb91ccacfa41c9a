"""Rate limits in the store: one verdict budget per principal, shared by every API replica.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08

* ``rate_limits``: per principal, ``refilled_at`` (seconds since the epoch by the database's
  clock), the time its token bucket is full again (GCRA's theoretical arrival time). The feedback
  API's replicas update it with one conditional UPSERT, so N replicas grant the configured rate
  once, not N times. Rows at or before now are full buckets and are deleted by the API.

Self-contained like 0001: types are spelt out here, not imported from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``rate_limits``."""
    op.create_table(
        "rate_limits",
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("refilled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("principal", name="pk_rate_limits"),
    )
    op.create_index("ix_rate_limits_refilled_at", "rate_limits", ["refilled_at"])


def downgrade() -> None:
    """Drop ``rate_limits`` (the API then forgets what principals have used of their rate)."""
    op.drop_index("ix_rate_limits_refilled_at", table_name="rate_limits")
    op.drop_table("rate_limits")

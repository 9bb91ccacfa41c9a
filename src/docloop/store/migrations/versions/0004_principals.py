"""Principals: API tokens, and verdicts tied to who sent them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

* ``api_tokens``: service clients' API tokens, kept as the SHA-256 of the token only (the token
  is a 256-bit random string shown once), with principal, role, expiry and revocation.
* ``feedback_events.reviewer_role``: the role the feedback API authenticated the sender with
  (``auditor`` verdicts are audits); NULL for rows stored before, which keep the old reading of
  ``feedback.auditors``.
* ``feedback_events``: the idempotency key is unique per reviewer (the authenticated principal),
  not globally, so nobody can claim another reviewer's key.

Self-contained like 0001: types are spelt out here, not imported from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLES = "'reviewer', 'auditor', 'admin', 'service'"


def upgrade() -> None:
    """Create ``api_tokens``; add ``reviewer_role``; scope idempotency keys to the reviewer."""
    op.create_table(
        "api_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"role IN ({_ROLES})", name="ck_api_tokens_role"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_api_tokens_token_sha256"),
    )
    with op.batch_alter_table("feedback_events") as batch:
        batch.add_column(sa.Column("reviewer_role", sa.String(16), nullable=True))
        batch.create_check_constraint(
            "ck_feedback_events_reviewer_role",
            f"reviewer_role IS NULL OR reviewer_role IN ({_ROLES})",
        )
        batch.drop_constraint("uq_feedback_events_idempotency_key", type_="unique")
        batch.create_unique_constraint(
            "uq_feedback_events_reviewer_id_idempotency_key", ["reviewer_id", "idempotency_key"]
        )


def downgrade() -> None:
    """Drop ``api_tokens`` and ``reviewer_role``; keys unique again (fails on a shared key)."""
    with op.batch_alter_table("feedback_events") as batch:
        batch.drop_constraint("uq_feedback_events_reviewer_id_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_feedback_events_idempotency_key", ["idempotency_key"])
        batch.drop_constraint("ck_feedback_events_reviewer_role", type_="check")
        batch.drop_column("reviewer_role")
    op.drop_table("api_tokens")

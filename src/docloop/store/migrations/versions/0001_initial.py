"""Initial schema: feedback, predictions, model status, audit log, retrain attempts, watermarks.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Self-contained on purpose (types are spelt out here, not imported from ``docloop.store.tables``),
so that later changes to the models never change what this revision does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = sa.String(200)
VERSION = sa.String(64)
STATUS = sa.String(16)


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _one_of(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


_PG_REFUSE_FUNCTION = """
CREATE FUNCTION docloop_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'promotion_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'append a new audit row instead of changing or deleting one';
END
$$
"""
_PG_TRIGGERS = (
    "CREATE TRIGGER promotion_audit_append_only BEFORE UPDATE OR DELETE ON promotion_audit "
    "FOR EACH ROW EXECUTE FUNCTION docloop_refuse_audit_change()",
    "CREATE TRIGGER promotion_audit_no_truncate BEFORE TRUNCATE ON promotion_audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION docloop_refuse_audit_change()",
)
_SQLITE_TRIGGERS = tuple(
    f"CREATE TRIGGER promotion_audit_no_{operation.lower()} BEFORE {operation} ON promotion_audit "
    f"BEGIN SELECT RAISE(ABORT, 'promotion_audit is append-only: {operation} refused; append a "
    "new audit row instead'); END"
    for operation in ("UPDATE", "DELETE")
)


def upgrade() -> None:
    """Create every table, the one-default index and the audit log's append-only triggers."""
    op.create_table(
        "feedback_events",
        _id(),
        sa.Column("idempotency_key", NAME, nullable=False),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("request_id", NAME, nullable=False),
        sa.Column("doc_id", NAME, nullable=False),
        sa.Column("reviewer_id", NAME, nullable=False),
        sa.Column("kind", STATUS, nullable=False),
        sa.Column("payload", _json(), nullable=False),
        _time("received_at"),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("quarantine_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            _one_of("kind", ("confirmation", "correction")), name="ck_feedback_events_kind"
        ),
        sa.CheckConstraint(
            _one_of("status", ("accepted", "quarantined")), name="ck_feedback_events_status"
        ),
        sa.CheckConstraint(
            "status <> 'quarantined' OR quarantine_reason IS NOT NULL",
            name="ck_feedback_events_quarantine_reason",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_events"),
        sa.UniqueConstraint("idempotency_key", name="uq_feedback_events_idempotency_key"),
    )
    op.create_index(
        "ix_feedback_events_model_name_received_at",
        "feedback_events",
        ["model_name", "received_at"],
    )
    op.create_index("ix_feedback_events_doc_id", "feedback_events", ["doc_id"])

    op.create_table(
        "predictions",
        _id(),
        sa.Column("request_id", NAME, nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", VERSION, nullable=False),
        sa.Column("doc_id", NAME, nullable=False),
        sa.Column("outputs", _json(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("ocr", _json(), nullable=True),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
        sa.UniqueConstraint("request_id", "instance", name="uq_predictions_request_id_instance"),
    )
    op.create_index(
        "ix_predictions_model_name_created_at", "predictions", ["model_name", "created_at"]
    )
    op.create_index("ix_predictions_doc_id", "predictions", ["doc_id"])
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])

    op.create_table(
        "model_versions",
        _id(),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("version", VERSION, nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("model_uri", sa.Text(), nullable=False),
        sa.Column("dataset_digest", NAME, nullable=True),
        sa.Column("code_version", NAME, nullable=True),
        sa.Column("gate_json", _json(), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.CheckConstraint(
            _one_of("status", ("candidate", "canary", "default", "retired", "rejected")),
            name="ck_model_versions_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_name", "version", name="uq_model_versions_model_name_version"),
    )
    # Exactly one default per model: a partial unique index, enforced by the database itself.
    op.create_index(
        "uq_model_versions_one_default",
        "model_versions",
        ["model_name"],
        unique=True,
        sqlite_where=sa.text("status = 'default'"),
        postgresql_where=sa.text("status = 'default'"),
    )

    op.create_table(
        "model_locks",
        sa.Column("model_name", NAME, nullable=False),
        sa.PrimaryKeyConstraint("model_name", name="pk_model_locks"),
    )

    op.create_table(
        "promotion_audit",
        _id(),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("from_version", VERSION, nullable=True),
        sa.Column("to_version", VERSION, nullable=False),
        sa.Column("action", STATUS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("actor", NAME, nullable=False),
        _time("at"),
        sa.CheckConstraint(
            _one_of("action", ("promote", "rollback", "register", "reject", "mark")),
            name="ck_promotion_audit_action",
        ),
        sa.ForeignKeyConstraint(
            ["model_name", "to_version"],
            ["model_versions.model_name", "model_versions.version"],
            name="fk_promotion_audit_to_version",
        ),
        sa.ForeignKeyConstraint(
            ["model_name", "from_version"],
            ["model_versions.model_name", "model_versions.version"],
            name="fk_promotion_audit_from_version",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_promotion_audit"),
    )
    op.create_index("ix_promotion_audit_model_name_id", "promotion_audit", ["model_name", "id"])

    op.create_table(
        "retrain_attempts",
        _id(),
        sa.Column("trigger", _json(), nullable=False),
        _time("started_at"),
        _time("finished_at", nullable=True),
        sa.Column("outcome", STATUS, nullable=False),
        sa.Column("metric_deltas", _json(), nullable=True),
        sa.Column("reasons", _json(), nullable=True),
        sa.Column("run_id", NAME, nullable=True),
        sa.CheckConstraint(
            _one_of("outcome", ("pending", "promoted", "rejected", "rolled_back", "failed")),
            name="ck_retrain_attempts_outcome",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_retrain_attempts"),
    )
    op.create_index("ix_retrain_attempts_started_at", "retrain_attempts", ["started_at"])

    op.create_table(
        "watermarks",
        sa.Column("name", NAME, nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_watermarks"),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_REFUSE_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER promotion_audit_no_truncate ON promotion_audit")
        op.execute("DROP TRIGGER promotion_audit_append_only ON promotion_audit")
        op.execute("DROP FUNCTION docloop_refuse_audit_change()")
    else:
        op.execute("DROP TRIGGER promotion_audit_no_delete")
        op.execute("DROP TRIGGER promotion_audit_no_update")
    for table in (
        "watermarks",
        "retrain_attempts",
        "promotion_audit",
        "model_locks",
        "model_versions",
        "predictions",
        "feedback_events",
    ):
        op.drop_table(table)

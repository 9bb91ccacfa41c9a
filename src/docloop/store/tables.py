"""The state store's tables: SQLAlchemy 2 declarative models, portable across SQLite and PostgreSQL.

The schema itself is created by the Alembic migrations in ``docloop/store/migrations`` (never by
``metadata.create_all``); a test checks that the migrations and these models agree.

Portability rules followed here:

* status-like columns are ``VARCHAR`` plus a named ``CHECK`` constraint, not native enums, so adding
  a value is a plain migration on both databases;
* JSON columns are ``JSON`` on SQLite and ``JSONB`` on PostgreSQL, and a Python ``None`` is SQL
  ``NULL`` (not the JSON literal ``null``);
* timestamps are timezone-aware UTC in Python on both databases (SQLite keeps no zone, so
  :class:`UTCDateTime` attaches UTC on the way out);
* "exactly one ``default`` version per model" is a partial unique index, which both databases
  enforce;
* ``promotion_audit`` is append-only: triggers created by the migration refuse UPDATE and DELETE.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MODEL_STATUSES: Final = ("candidate", "canary", "default", "retired", "rejected")
AUDIT_ACTIONS: Final = ("promote", "rollback", "register", "reject", "mark")
FEEDBACK_KINDS: Final = ("confirmation", "correction")
FEEDBACK_STATUSES: Final = ("accepted", "quarantined", "superseded")
RETRAIN_OUTCOMES: Final = ("pending", "promoted", "rejected", "rolled_back", "failed")
DEPLOYMENT_STATUSES: Final = ("pending", "canary", "promoted", "rolled_back", "failed")
ROLES: Final = ("reviewer", "auditor", "admin", "service")

# Short names keep identifiers under PostgreSQL's 63-character limit.
NAME_LEN: Final = 200
VERSION_LEN: Final = 64
STATUS_LEN: Final = 16


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL for ``column IN (...)`` over string literals (used by CHECK constraints)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A ``TIMESTAMP WITH TIME ZONE`` that always hands back aware UTC datetimes.

    Naive datetimes are refused on the way in: a naive time is ambiguous, and silently assuming
    UTC would hide the bug that produced it.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC (SQLite then stores it without a zone)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} given to the state store; "
                "pass an aware datetime, e.g. datetime.now(UTC)"
            )
        converted = value.astimezone(UTC)
        return converted.replace(tzinfo=None) if dialect.name == "sqlite" else converted

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite returns; normalise PostgreSQL's zone to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> JSON:
    """``JSON`` (``JSONB`` on PostgreSQL), storing Python ``None`` as SQL ``NULL``."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def id_type() -> BigInteger:
    """A 64-bit autoincrement key (plain ``INTEGER`` on SQLite, where only that autoincrements)."""
    return BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the state store; its metadata is the migrations' target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FeedbackEvent(Base):
    """One reviewer's confirmation or correction of a prediction (filled by the feedback API)."""

    __tablename__ = "feedback_events"
    __table_args__ = (
        CheckConstraint(one_of("kind", FEEDBACK_KINDS), name="kind"),
        CheckConstraint(one_of("status", FEEDBACK_STATUSES), name="status"),
        CheckConstraint(
            "status = 'accepted' OR quarantine_reason IS NOT NULL", name="quarantine_reason"
        ),
        CheckConstraint(
            "reviewer_role IS NULL OR " + one_of("reviewer_role", ROLES), name="reviewer_role"
        ),
        UniqueConstraint("reviewer_id", "idempotency_key"),
        Index(None, "model_name", "received_at"),
        Index(None, "doc_id"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(NAME_LEN))
    model_name: Mapped[str] = mapped_column(String(NAME_LEN))
    model_version: Mapped[str] = mapped_column(String(VERSION_LEN))
    request_id: Mapped[str] = mapped_column(String(NAME_LEN))
    doc_id: Mapped[str] = mapped_column(String(NAME_LEN))
    reviewer_id: Mapped[str] = mapped_column(String(NAME_LEN))
    kind: Mapped[str] = mapped_column(String(STATUS_LEN))
    payload: Mapped[dict[str, Any]] = mapped_column(json_type())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(STATUS_LEN), default="accepted")
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    reviewer_role: Mapped[str | None] = mapped_column(String(STATUS_LEN))


class ApiToken(Base):
    """An API token of a service client: only its SHA-256 is kept (the token is shown once)."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(one_of("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    principal: Mapped[str] = mapped_column(String(NAME_LEN))
    role: Mapped[str] = mapped_column(String(STATUS_LEN))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RateLimit(Base):
    """A principal's verdict budget, shared by every feedback API replica (GCRA).

    ``refilled_at`` (seconds since the epoch, the database's clock) is when the principal's
    bucket is full again; a row at or before now means a full bucket and may be deleted.
    """

    __tablename__ = "rate_limits"

    principal: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    refilled_at: Mapped[float] = mapped_column(Double(), index=True)


class Prediction(Base):
    """One predicted document (the SQL form of ``docloop.serve.sink.PredictionRecord``)."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("request_id", "instance"),
        Index(None, "model_name", "created_at"),
        Index(None, "doc_id"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(NAME_LEN))
    instance: Mapped[int] = mapped_column(Integer, default=0)
    model_name: Mapped[str] = mapped_column(String(NAME_LEN))
    model_version: Mapped[str] = mapped_column(String(VERSION_LEN))
    doc_id: Mapped[str] = mapped_column(String(NAME_LEN))
    outputs: Mapped[dict[str, Any]] = mapped_column(json_type())
    confidence: Mapped[float | None] = mapped_column(Float)
    ocr: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelVersion(Base):
    """The status of one registered model version; at most one ``default`` per model name."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_name", "version"),
        CheckConstraint(one_of("status", MODEL_STATUSES), name="status"),
        Index(
            "uq_model_versions_one_default",
            "model_name",
            unique=True,
            sqlite_where=text("status = 'default'"),
            postgresql_where=text("status = 'default'"),
        ),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(NAME_LEN))
    version: Mapped[str] = mapped_column(String(VERSION_LEN))
    status: Mapped[str] = mapped_column(String(STATUS_LEN), default="candidate")
    status_reason: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(NAME_LEN))
    model_uri: Mapped[str] = mapped_column(Text)
    dataset_digest: Mapped[str | None] = mapped_column(String(NAME_LEN))
    code_version: Mapped[str | None] = mapped_column(String(NAME_LEN))
    gate_json: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ModelLock(Base):
    """One row per model name, locked (``SELECT ... FOR UPDATE``) by every status change.

    Locking this row rather than the model's ``model_versions`` rows also covers a model that has
    no version yet (the first registration), so registrations and promotions of one model are
    serialised while different models never wait for each other.
    """

    __tablename__ = "model_locks"

    model_name: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)


class PromotionAudit(Base):
    """Append-only log of registrations and status changes (UPDATE and DELETE are refused)."""

    __tablename__ = "promotion_audit"
    __table_args__ = (
        CheckConstraint(one_of("action", AUDIT_ACTIONS), name="action"),
        ForeignKeyConstraint(
            ["model_name", "to_version"],
            ["model_versions.model_name", "model_versions.version"],
            name="fk_promotion_audit_to_version",
        ),
        ForeignKeyConstraint(
            ["model_name", "from_version"],
            ["model_versions.model_name", "model_versions.version"],
            name="fk_promotion_audit_from_version",
        ),
        Index(None, "model_name", "id"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(NAME_LEN))
    from_version: Mapped[str | None] = mapped_column(String(VERSION_LEN))
    to_version: Mapped[str] = mapped_column(String(VERSION_LEN))
    action: Mapped[str] = mapped_column(String(STATUS_LEN))
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(NAME_LEN))
    actor: Mapped[str] = mapped_column(String(NAME_LEN))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RetrainAttempt(Base):
    """One run of the retraining loop: why it started and how it ended."""

    __tablename__ = "retrain_attempts"
    __table_args__ = (
        CheckConstraint(one_of("outcome", RETRAIN_OUTCOMES), name="outcome"),
        Index(None, "started_at"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(json_type())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(STATUS_LEN), default="pending")
    metric_deltas: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    reasons: Mapped[list[str] | None] = mapped_column(json_type())
    run_id: Mapped[str | None] = mapped_column(String(NAME_LEN))


class Watermark(Base):
    """A named high-water mark (e.g. the last feedback id a drift check has seen)."""

    __tablename__ = "watermarks"

    name: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DriftCheck(Base):
    """One finished drift check, triggered or declined: its window, decision and key numbers."""

    __tablename__ = "drift_checks"
    __table_args__ = (Index(None, "checked_at"),)

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str | None] = mapped_column(String(NAME_LEN))
    champion: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[bool] = mapped_column(Boolean)
    conclusive: Mapped[bool] = mapped_column(Boolean)
    watermark_advanced: Mapped[bool] = mapped_column(Boolean)
    headline: Mapped[str] = mapped_column(Text)
    reasons: Mapped[list[str]] = mapped_column(json_type())
    signals: Mapped[list[str]] = mapped_column(json_type())
    blockers: Mapped[list[str]] = mapped_column(json_type())
    metrics: Mapped[dict[str, Any]] = mapped_column(json_type())
    report_uri: Mapped[str | None] = mapped_column(Text)
    attempt_id: Mapped[int | None] = mapped_column(
        id_type(),
        ForeignKey("retrain_attempts.id", name="fk_drift_checks_attempt_id_retrain_attempts"),
    )


class Deployment(Base):
    """One rollout of a set of model versions to a serving target, and how to undo it."""

    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint(one_of("status", DEPLOYMENT_STATUSES), name="status"),
        Index(None, "service", "id"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    service: Mapped[str] = mapped_column(String(NAME_LEN))
    namespace: Mapped[str] = mapped_column(String(NAME_LEN))
    target: Mapped[str] = mapped_column(String(STATUS_LEN))
    mode: Mapped[str] = mapped_column(String(STATUS_LEN))
    versions: Mapped[dict[str, str]] = mapped_column(json_type())
    storage_uris: Mapped[dict[str, str]] = mapped_column(json_type())
    previous: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    canary_percent: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(STATUS_LEN), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    analysis: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    service_status: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    pipeline_run: Mapped[str | None] = mapped_column(String(NAME_LEN))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

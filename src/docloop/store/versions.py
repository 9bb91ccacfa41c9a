"""Model status in the state store: register, promote, roll back, reject, read.

Every function here works inside a session opened with ``Store.write()`` (or ``Store.read()`` for
the readers), so a caller can combine several steps, and side effects such as moving MLflow
aliases, into one transaction. Every change first locks the model's row in ``model_locks``
(:func:`lock_model`): changes to one model are serialised, whichever process makes them, and a
second promotion waits for the first to commit and then sees its result. The partial unique index
on ``model_versions`` is a last line of defence, not the mechanism.

Statuses: ``candidate`` (registered, not serving), ``canary`` (serving a share of traffic),
``default`` (the one serving; at most one per model), ``retired`` (was default, replaced),
``rejected`` (failed the gate or was rolled back; never promoted again).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from docloop.errors import InvalidInput, RegistryError
from docloop.store.tables import MODEL_STATUSES, ModelLock, ModelVersion, PromotionAudit

logger = logging.getLogger(__name__)

ModelStatus = Literal["candidate", "canary", "default", "retired", "rejected"]
AuditAction = Literal["promote", "rollback", "register", "reject", "mark"]
SwitchAction = Literal["promote", "rollback"]

MODEL_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
# What each action may turn into the default.
PROMOTABLE: Final[dict[SwitchAction, frozenset[str]]] = {
    "promote": frozenset({"candidate", "canary", "retired"}),
    "rollback": frozenset({"retired"}),
}


@dataclass(frozen=True)
class VersionRecord:
    """One model version as the store knows it."""

    model_name: str
    version: str
    status: str
    status_reason: str | None
    run_id: str | None
    model_uri: str
    dataset_digest: str | None
    code_version: str | None
    gate: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: ModelVersion) -> VersionRecord:
        """Copy a ``model_versions`` row (so it outlives its session)."""
        return cls(
            model_name=row.model_name,
            version=row.version,
            status=row.status,
            status_reason=row.status_reason,
            run_id=row.run_id,
            model_uri=row.model_uri,
            dataset_digest=row.dataset_digest,
            code_version=row.code_version,
            gate=dict(row.gate_json) if row.gate_json is not None else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class AuditRecord:
    """One row of the append-only promotion audit log."""

    id: int
    model_name: str
    from_version: str | None
    to_version: str
    action: str
    reason: str
    run_id: str | None
    actor: str
    at: datetime

    @classmethod
    def from_row(cls, row: PromotionAudit) -> AuditRecord:
        """Copy a ``promotion_audit`` row."""
        return cls(
            id=row.id,
            model_name=row.model_name,
            from_version=row.from_version,
            to_version=row.to_version,
            action=row.action,
            reason=row.reason,
            run_id=row.run_id,
            actor=row.actor,
            at=row.at,
        )


@dataclass(frozen=True)
class Promotion:
    """The outcome of a promotion or rollback.

    Attributes:
        model_name: the model.
        from_version: the default before (``None`` if there was none).
        to_version: the default after.
        action: ``promote`` or ``rollback``.
        changed: ``False`` when ``to_version`` already was the default (nothing was written).
    """

    model_name: str
    from_version: str | None
    to_version: str
    action: SwitchAction
    changed: bool


def check_model_name(model_name: str) -> str:
    """Return ``model_name`` if it is a valid registry name.

    Raises:
        InvalidInput: it is empty, too long, or has characters other than letters, digits, ``.``,
            ``_`` and ``-`` (or starts with one of the last three).
    """
    if not MODEL_NAME_RE.fullmatch(model_name):
        raise InvalidInput(
            f"model name {model_name!r} is not allowed: use 1-200 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit (e.g. docloop-classifier)"
        )
    return model_name


def lock_model(session: Session, model_name: str) -> None:
    """Take the model's lock row (``SELECT ... FOR UPDATE``) until the transaction ends.

    The row is created on first use (``INSERT ... ON CONFLICT DO NOTHING``). On PostgreSQL a
    second transaction blocks here until the first commits or rolls back (up to the store's lock
    timeout); on SQLite the ``BEGIN IMMEDIATE`` of ``Store.write()`` already serialises writers.
    """
    check_model_name(model_name)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(ModelLock)
        .values(model_name=model_name)
        .on_conflict_do_nothing(index_elements=[ModelLock.model_name])
    )
    session.execute(
        select(ModelLock.model_name).where(ModelLock.model_name == model_name).with_for_update()
    )


def _row(session: Session, model_name: str, version: str) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_name == model_name, ModelVersion.version == version
        )
    )


def _require(session: Session, model_name: str, version: str) -> ModelVersion:
    row = _row(session, model_name, version)
    if row is None:
        raise RegistryError(
            f"version {version!r} of model {model_name!r} is not in the state store; register it "
            "first (docloop.store.Registry.register), and check the model name and version"
        )
    return row


def _default_row(session: Session, model_name: str) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_name == model_name, ModelVersion.status == "default"
        )
    )


def _audit(
    session: Session,
    model_name: str,
    action: AuditAction,
    to_version: str,
    *,
    from_version: str | None,
    reason: str,
    run_id: str | None,
    actor: str,
) -> None:
    session.add(
        PromotionAudit(
            model_name=model_name,
            from_version=from_version,
            to_version=to_version,
            action=action,
            reason=reason,
            run_id=run_id,
            actor=actor,
        )
    )
    session.flush()


def record_version(
    session: Session,
    model_name: str,
    version: str,
    *,
    model_uri: str,
    run_id: str | None,
    dataset_digest: str | None,
    gate: Mapping[str, Any] | None,
    code_version: str | None,
    actor: str,
    reason: str = "registered",
) -> tuple[VersionRecord, bool]:
    """Insert a ``candidate`` row for a new version, or update the lineage of an existing one.

    A new row also gets a ``register`` audit entry; an existing row keeps its status.

    Returns:
        The record and whether it was created.

    Raises:
        RegistryError: the store already has this version from another model folder or run
            (the MLflow registry and the store disagree).
    """
    lock_model(session, model_name)
    row = _row(session, model_name, version)
    if row is not None:
        if row.model_uri != model_uri or (run_id and row.run_id and row.run_id != run_id):
            raise RegistryError(
                f"the state store already has version {version} of {model_name} from "
                f"{row.model_uri} (run {row.run_id}), but MLflow's version {version} is "
                f"{model_uri} (run {run_id}): the MLflow registry and the store disagree (was one "
                "of them reset?); point both at the databases they were used with"
            )
        if dataset_digest is not None:
            row.dataset_digest = dataset_digest
        if gate is not None:
            row.gate_json = dict(gate)
        if code_version is not None:
            row.code_version = code_version
        row.run_id = row.run_id or run_id
        session.flush()
        return VersionRecord.from_row(row), False
    row = ModelVersion(
        model_name=model_name,
        version=version,
        status="candidate",
        run_id=run_id,
        model_uri=model_uri,
        dataset_digest=dataset_digest,
        code_version=code_version,
        gate_json=dict(gate) if gate is not None else None,
    )
    session.add(row)
    session.flush()
    _audit(
        session,
        model_name,
        "register",
        version,
        from_version=None,
        reason=reason,
        run_id=run_id,
        actor=actor,
    )
    return VersionRecord.from_row(row), True


def previous_default(session: Session, model_name: str) -> str | None:
    """The version that was default before the current default (from the audit log)."""
    current = _default_row(session, model_name)
    if current is None:
        return None
    return session.scalar(
        select(PromotionAudit.from_version)
        .where(
            PromotionAudit.model_name == model_name,
            PromotionAudit.action.in_(("promote", "rollback")),
            PromotionAudit.to_version == current.version,
        )
        .order_by(PromotionAudit.id.desc())
        .limit(1)
    )


def switch_default(
    session: Session,
    model_name: str,
    version: str | None,
    *,
    action: SwitchAction,
    reason: str,
    run_id: str | None,
    actor: str,
) -> Promotion:
    """Make ``version`` the default: the old default is demoted, an audit row is appended.

    ``promote`` retires the old default; ``rollback`` marks it ``rejected`` (it was rolled back
    because it was bad) and only accepts a ``retired`` version (a previous default) as target.

    Args:
        session: a ``Store.write()`` session.
        model_name: the model.
        version: the new default; for a rollback, ``None`` means the previous default.
        action: ``promote`` or ``rollback``.
        reason: why, for the audit log.
        run_id: the pipeline / MLflow run that decided it.
        actor: who decided it.

    Returns:
        What happened; ``changed`` is ``False`` (and nothing is written) when ``version`` already
        is the default.

    Raises:
        RegistryError: the version is unknown, has a status this action cannot promote, or (for
            a rollback without a version) there is no previous default.
    """
    lock_model(session, model_name)
    current = _default_row(session, model_name)
    if version is None:
        version = previous_default(session, model_name)
        if version is None:
            raise RegistryError(
                f"model {model_name!r} has no previous default to roll back to (current default: "
                f"{current.version if current else 'none'}); name the version to roll back to"
            )
    target = _require(session, model_name, version)
    if current is not None and current.id == target.id:
        return Promotion(model_name, None, version, action, changed=False)
    if target.status not in PROMOTABLE[action]:
        allowed = ", ".join(sorted(PROMOTABLE[action]))
        hint = (
            "register a new version instead"
            if target.status == "rejected"
            else "use promote() for a version that was never default"
        )
        raise RegistryError(
            f"cannot {action} version {version} of {model_name}: its status is {target.status} "
            f"({target.status_reason or 'no reason recorded'}), and {action} only accepts "
            f"{allowed}; {hint}"
        )
    from_version = current.version if current is not None else None
    if current is not None:
        current.status = "retired" if action == "promote" else "rejected"
        current.status_reason = f"{action}: replaced by version {version}: {reason}"
        # Demote first and flush on its own: the one-default index is checked row by row.
        session.flush()
    target.status = "default"
    target.status_reason = reason
    session.flush()
    _audit(
        session,
        model_name,
        action,
        version,
        from_version=from_version,
        reason=reason,
        run_id=run_id,
        actor=actor,
    )
    logger.info("%s %s: default %s -> %s (%s)", action, model_name, from_version, version, reason)
    return Promotion(model_name, from_version, version, action, changed=True)


def set_status(
    session: Session,
    model_name: str,
    version: str,
    status: str,
    *,
    reason: str,
    run_id: str | None,
    actor: str,
) -> tuple[VersionRecord, bool]:
    """Set a non-default status (candidate, canary, retired, rejected) and audit it.

    Returns:
        The record and whether it changed (setting the current status again writes nothing).

    Raises:
        InvalidInput: ``status`` is not a model status.
        RegistryError: ``status`` is ``default`` (use :func:`switch_default`), the version is the
            current default (promote another one or roll back first), or it is unknown.
    """
    if status not in MODEL_STATUSES:
        raise InvalidInput(
            f"unknown model status {status!r}; use one of {', '.join(MODEL_STATUSES)}"
        )
    if status == "default":
        raise RegistryError(
            f"a version becomes default only through promote() or rollback_to(), not by "
            f"setting its status (model {model_name}, version {version})"
        )
    lock_model(session, model_name)
    row = _require(session, model_name, version)
    if row.status == status:
        return VersionRecord.from_row(row), False
    if row.status == "default":
        raise RegistryError(
            f"version {version} of {model_name} is the default; promote another version or "
            f"roll back before marking it {status}"
        )
    old = row.status
    row.status = status
    row.status_reason = reason
    session.flush()
    _audit(
        session,
        model_name,
        "reject" if status == "rejected" else "mark",
        version,
        from_version=None,
        reason=f"{old} -> {status}: {reason}",
        run_id=run_id,
        actor=actor,
    )
    return VersionRecord.from_row(row), True


def get_version(session: Session, model_name: str, version: str) -> VersionRecord:
    """One version's record.

    Raises:
        RegistryError: the version is not in the store.
    """
    return VersionRecord.from_row(_require(session, model_name, version))


def default_version(session: Session, model_name: str) -> VersionRecord | None:
    """The current default version, or ``None`` if nothing was promoted yet."""
    row = _default_row(session, model_name)
    return VersionRecord.from_row(row) if row is not None else None


def list_versions(session: Session, model_name: str) -> list[VersionRecord]:
    """Every version of a model, oldest first."""
    rows = session.scalars(
        select(ModelVersion).where(ModelVersion.model_name == model_name).order_by(ModelVersion.id)
    )
    return [VersionRecord.from_row(row) for row in rows]


def audit_log(session: Session, model_name: str) -> list[AuditRecord]:
    """A model's audit log, oldest first."""
    rows = session.scalars(
        select(PromotionAudit)
        .where(PromotionAudit.model_name == model_name)
        .order_by(PromotionAudit.id)
    )
    return [AuditRecord.from_row(row) for row in rows]

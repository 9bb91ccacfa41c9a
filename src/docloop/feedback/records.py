"""Feedback and predictions in the state store: store verdicts once, read them back in bulk.

Writing (the feedback API):

* :func:`record_feedback` / :func:`record_feedback_batch` insert verdicts idempotently:
  ``(reviewer_id, idempotency_key)`` is unique (a key is its reviewer's), each insert is
  ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL), and a key that is already
  stored is compared with the new body. The same body is a replay (the stored record comes
  back, ``created=False``); another body raises :class:`IdempotencyConflict` (HTTP 409). A
  batch is one transaction: all of it or none.
* ``payload`` holds the whole validated event (``FeedbackEvent.model_dump(mode="json")``), which
  is what "the same body" means; the other columns copy the fields queries filter on.
* On SQLite, writers of one process take a process-wide lock before ``BEGIN IMMEDIATE``, so the
  API's threads queue in Python instead of polling SQLite's busy handler; other processes still
  wait on the busy timeout, and a write that runs out of it (``StoreBusy``) is retried.

Reading (drift check, dataset building) streams in pages of ``chunk_size`` rows by keyset
(``id > last``; ``(created_at, id)`` for predictions), each page its own short read transaction,
so a million rows never sit in one result set or hold one long transaction:

* :func:`iter_accepted_feedback` / :func:`accepted_feedback`: accepted verdicts joined with the
  predictions they judge (predicted type, probabilities, entities); :func:`iter_feedback` for
  any status (the quality rules re-assess quarantined ones too);
* :func:`iter_predictions` / :func:`predictions_since`: the prediction log.

Each page costs two indexed queries (the page, then its predictions by ``request_id``); the time
goes into decoding the JSON columns, about 10^5 rows per 5-10 s on a busy 2-core machine.
:func:`find_prediction` / :func:`find_predictions` look single predictions up by
``(request_id, instance)``.

Model status (``GET /v1/models/{name}/status``): :func:`model_status` counts, per version of a
served name, its logged predictions and its feedback by kind and status (two grouped queries), and
reads a registered name's versions and default from ``model_versions``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, and_, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from docloop.errors import DocloopError, StoreBusy
from docloop.feedback.contracts import FeedbackEvent, FeedbackRecord
from docloop.store import versions as vs
from docloop.store.db import Store
from docloop.store.tables import FeedbackEvent as FeedbackRow
from docloop.store.tables import ModelVersion, Prediction, utcnow

logger = logging.getLogger(__name__)

DEFAULT_CHUNK: Final = 5000
LOOKUP_CHUNK: Final = 1000
WRITE_ATTEMPTS: Final = 5
ACCEPTED: Final = "accepted"

PredictionKey = tuple[str, int]

# Core tables (not the ORM entities): statements over them skip the ORM's per-execution work,
# and the statements below are built once, with bound parameters, so SQLAlchemy's compiled
# cache serves every execution.
_P: Final = cast(Table, Prediction.__table__)
_F: Final = cast(Table, FeedbackRow.__table__)
_PREDICTION_COLUMNS: Final = (
    _P.c.id,
    _P.c.request_id,
    _P.c.instance,
    _P.c.model_name,
    _P.c.model_version,
    _P.c.doc_id,
    _P.c.created_at,
    _P.c.confidence,
    _P.c.outputs,
    _P.c.ocr,
)
_FEEDBACK_COLUMNS: Final = (
    _F.c.id,
    _F.c.idempotency_key,
    _F.c.model_name,
    _F.c.model_version,
    _F.c.request_id,
    _F.c.doc_id,
    _F.c.reviewer_id,
    _F.c.kind,
    _F.c.payload,
    _F.c.received_at,
    _F.c.status,
    _F.c.quarantine_reason,
    _F.c.reviewer_role,
)
_FIND_ONE: Final = select(*_PREDICTION_COLUMNS).where(
    _P.c.request_id == bindparam("request_id"), _P.c.instance == bindparam("instance")
)
_FIND_BY_REQUESTS: Final = select(*_PREDICTION_COLUMNS).where(
    _P.c.request_id.in_(bindparam("request_ids", expanding=True))
)
_OUTPUTS_BY_REQUESTS: Final = select(_P.c.request_id, _P.c.instance, _P.c.outputs).where(
    _P.c.request_id.in_(bindparam("request_ids", expanding=True))
)
_FIND_FEEDBACK: Final = select(*_FEEDBACK_COLUMNS).where(
    _F.c.reviewer_id == bindparam("reviewer_id"),
    _F.c.idempotency_key == bindparam("idempotency_key"),
)
_INSERT_FEEDBACK: Final = {
    dialect: module.insert(_F)
    .on_conflict_do_nothing(index_elements=[_F.c.reviewer_id, _F.c.idempotency_key])
    .returning(_F.c.id)
    for dialect, module in (("sqlite", sqlite), ("postgresql", postgresql))
}

_sqlite_locks: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_sqlite_locks_guard = threading.Lock()


class IdempotencyConflict(DocloopError):
    """An idempotency key is already stored with a different body (HTTP 409).

    Attributes:
        key: the reused key.
        index: the event's position in its batch (0 for a single event).
        stored: the record stored under the key.
    """

    def __init__(self, key: str, index: int, stored: FeedbackRecord) -> None:
        super().__init__(
            f"idempotency_key: {key!r} was already used on {stored.received_at} for a different "
            f"verdict ({stored.kind} of request {stored.request_id!r} instance "
            f"{stored.instance}); send a new verdict under a new key, or resend the original "
            "body unchanged to get the stored record back"
        )
        self.key = key
        self.index = index
        self.stored = stored


@dataclass(frozen=True, slots=True)
class StoredPrediction:
    """One row of the ``predictions`` table, decoded.

    Attributes:
        id: the row id.
        request_id: the server's id of the request (the answer's ``request_id``).
        instance: the document's position in its request.
        model_name: the served model name.
        model_version: the served version (``classify=...,extract=...`` for two models).
        doc_id: the document id (its served document is ``served-documents/<doc_id>.parquet``).
        created_at: when the prediction was answered (UTC).
        doc_type: the predicted type (None without a classifier).
        confidence: the predicted type's probability.
        probabilities: every classifier label's probability (the label set, too).
        entities: predicted entities (type, text, page, box, confidence, word_indices).
        entity_types: every type the extractor can predict (empty without an extractor).
        model_versions: version per task.
        ocr: pages, words, mean_confidence, ocr_pages, text_source, quarantined_pages, latency_ms.
        outputs: the raw ``outputs`` column (protocol, input, source_uri, ...).
    """

    id: int
    request_id: str
    instance: int
    model_name: str
    model_version: str
    doc_id: str
    created_at: datetime
    doc_type: str | None
    confidence: float | None
    probabilities: dict[str, float]
    entities: list[dict[str, Any]]
    entity_types: list[str]
    model_versions: dict[str, str]
    ocr: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def key(self) -> PredictionKey:
        """``(request_id, instance)``: how feedback names this prediction."""
        return (self.request_id, self.instance)

    @property
    def doc_types(self) -> list[str]:
        """The classifier's labels, sorted; empty without a classifier.

        They are the keys of ``probabilities`` (sorted: PostgreSQL's JSONB keeps no key order).
        """
        return sorted(self.probabilities)

    @property
    def word_count(self) -> int | None:
        """Words in the served document (None when the log did not record it)."""
        words = self.ocr.get("words")
        return words if isinstance(words, int) else None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredPrediction:
        """Decode a row selected with the prediction columns, in their order."""
        (id_, request_id, instance, model_name, model_version, doc_id, created_at) = row[:7]
        confidence, outputs, ocr = row[7], dict(row[8] or {}), dict(row[9] or {})
        return cls(
            id=id_,
            request_id=request_id,
            instance=instance,
            model_name=model_name,
            model_version=model_version,
            doc_id=doc_id,
            created_at=created_at,
            doc_type=outputs.get("doc_type"),
            confidence=confidence,
            probabilities=dict(outputs.get("probabilities") or {}),
            entities=list(outputs.get("entities") or []),
            entity_types=list(outputs.get("entity_types") or []),
            model_versions=dict(outputs.get("model_versions") or {}),
            ocr=ocr,
            outputs=outputs,
        )


def event_payload(event: FeedbackEvent) -> dict[str, Any]:
    """The stored form of an event (``payload``): every field, JSON types, defaults filled in."""
    return event.model_dump(mode="json")


def _write_lock(store: Store) -> AbstractContextManager[Any]:
    """A process-wide lock per SQLite store (SQLite has one writer at a time anyway)."""
    if store.dialect != "sqlite":
        return nullcontext()
    with _sqlite_locks_guard:
        lock = _sqlite_locks.get(store)
        if lock is None:
            lock = _sqlite_locks[store] = threading.Lock()
    return lock


def _record(columns: Sequence[Any], outputs: Mapping[str, Any] | None) -> FeedbackRecord:
    """A ``FeedbackRecord`` from feedback columns and its prediction's ``outputs``.

    The columns are in ``_FEEDBACK_COLUMNS`` order; ``outputs`` is None when the prediction is
    gone.
    """
    (id_, key, model_name, model_version, request_id, doc_id, reviewer_id, kind) = columns[:8]
    payload: Mapping[str, Any] = columns[8] or {}
    received_at: datetime = columns[9]
    predicted = outputs or {}
    return FeedbackRecord(
        id=id_,
        idempotency_key=key,
        model_name=model_name,
        model_version=model_version,
        request_id=request_id,
        instance=int(payload.get("instance", 0)),
        doc_id=doc_id,
        reviewer_id=reviewer_id,
        kind=kind,
        correction=payload.get("correction"),  # a dict: validated into a Correction
        received_at=received_at.isoformat(),
        status=columns[10],
        quarantine_reason=columns[11],
        reviewer_role=columns[12] if len(columns) > 12 else None,
        predicted_doc_type=predicted.get("doc_type"),
        predicted_probabilities=predicted.get("probabilities") or {},
        predicted_entities=predicted.get("entities") or [],
    )


def _judged(session: Session, keys: Sequence[PredictionKey]) -> dict[PredictionKey, Any]:
    """The ``outputs`` of the predictions among ``keys`` (all a feedback record needs)."""
    wanted = set(keys)
    request_ids = sorted({request_id for request_id, _ in wanted})
    found: dict[PredictionKey, Any] = {}
    for start in range(0, len(request_ids), LOOKUP_CHUNK):
        chunk = request_ids[start : start + LOOKUP_CHUNK]
        for request_id, instance, outputs in session.execute(
            _OUTPUTS_BY_REQUESTS, {"request_ids": chunk}
        ):
            if (request_id, instance) in wanted:
                found[(request_id, instance)] = outputs
    return found


# --- predictions ------------------------------------------------------------------------------
def _lookup(
    session: Session, keys: Sequence[PredictionKey]
) -> dict[PredictionKey, StoredPrediction]:
    wanted = set(keys)
    request_ids = sorted({request_id for request_id, _ in wanted})
    found: dict[PredictionKey, StoredPrediction] = {}
    for start in range(0, len(request_ids), LOOKUP_CHUNK):
        chunk = request_ids[start : start + LOOKUP_CHUNK]
        for row in session.execute(_FIND_BY_REQUESTS, {"request_ids": chunk}):
            if (row.request_id, row.instance) in wanted:
                prediction = StoredPrediction.from_row(row)
                found[prediction.key] = prediction
    return found


def find_predictions(
    store: Store, keys: Iterable[PredictionKey]
) -> dict[PredictionKey, StoredPrediction]:
    """The stored predictions among ``keys`` (``(request_id, instance)`` pairs).

    Raises:
        StoreError: the database failed.
    """
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    with store.read() as session:
        return _lookup(session, wanted)


def find_prediction(store: Store, request_id: str, instance: int = 0) -> StoredPrediction | None:
    """The prediction of document ``instance`` of request ``request_id``, if it was logged.

    Raises:
        StoreError: the database failed.
    """
    with store.read() as session:
        row = session.execute(_FIND_ONE, {"request_id": request_id, "instance": instance}).first()
    return StoredPrediction.from_row(row) if row is not None else None


def iter_predictions(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    model_name: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[StoredPrediction]:
    """Stream logged predictions with ``since <= created_at < until``, oldest first.

    Args:
        store: the state store.
        since: inclusive lower bound (aware datetime); None: from the first.
        until: exclusive upper bound; None: up to now.
        model_name: only this served model.
        chunk_size: rows per page (one short read transaction each).

    Yields:
        The predictions, ordered by ``(created_at, id)``.

    Raises:
        StoreError: the database failed.
    """
    last: tuple[datetime, int] | None = None
    while True:
        statement = select(*_PREDICTION_COLUMNS)
        if since is not None:
            statement = statement.where(_P.c.created_at >= since)
        if until is not None:
            statement = statement.where(_P.c.created_at < until)
        if model_name is not None:
            statement = statement.where(_P.c.model_name == model_name)
        if last is not None:  # keyset: after the last row of the previous page
            statement = statement.where(
                or_(
                    _P.c.created_at > last[0],
                    and_(_P.c.created_at == last[0], _P.c.id > last[1]),
                )
            )
        statement = statement.order_by(_P.c.created_at, _P.c.id).limit(chunk_size)
        with store.read() as session:
            page = [StoredPrediction.from_row(row) for row in session.execute(statement)]
        yield from page
        if len(page) < chunk_size:
            return
        last = (page[-1].created_at, page[-1].id)


def predictions_since(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    model_name: str | None = None,
) -> list[StoredPrediction]:
    """Logged predictions with ``since <= created_at < until`` (see :func:`iter_predictions`).

    Raises:
        StoreError: the database failed.
    """
    return list(iter_predictions(store, since, until, model_name=model_name))


# --- feedback ---------------------------------------------------------------------------------
def _store_one(
    session: Session,
    store: Store,
    index: int,
    event: FeedbackEvent,
    prediction: StoredPrediction,
    role: str | None,
) -> tuple[FeedbackRecord, bool]:
    payload = event_payload(event)
    values: dict[str, Any] = {
        "idempotency_key": event.idempotency_key,
        "model_name": event.model_name,
        "model_version": event.model_version,
        "request_id": event.request_id,
        "doc_id": prediction.doc_id,
        "reviewer_id": event.reviewer_id,
        "kind": event.kind,
        "payload": payload,
        "received_at": utcnow(),
        "status": ACCEPTED,
        "quarantine_reason": None,
        "reviewer_role": role,
    }
    new_id = session.execute(_INSERT_FEEDBACK[store.dialect], values).scalar()
    if new_id is not None:
        columns = [new_id, *(values[column.key] for column in _FEEDBACK_COLUMNS[1:])]
        return _record(columns, prediction.outputs), True
    stored = session.execute(
        _FIND_FEEDBACK,
        {"reviewer_id": event.reviewer_id, "idempotency_key": event.idempotency_key},
    ).one()
    same = (stored.request_id, int(stored.payload.get("instance", 0))) == prediction.key
    record = _record(stored, prediction.outputs if same else None)
    if stored.payload != payload:
        raise IdempotencyConflict(event.idempotency_key, index, record)
    return record, False


def record_feedback_batch(
    store: Store,
    items: Sequence[tuple[FeedbackEvent, StoredPrediction]],
    *,
    attempts: int = WRITE_ATTEMPTS,
    roles: Sequence[str | None] | None = None,
) -> list[tuple[FeedbackRecord, bool]]:
    """Store validated events, each with the prediction it judges, in one transaction.

    Idempotency keys are scoped to the reviewer: ``(reviewer_id, idempotency_key)`` is unique.

    Args:
        store: the state store.
        items: ``(event, prediction)`` pairs; the events were validated against the predictions
            (``docloop.feedback.validation``).
        attempts: tries while the store stays locked (``StoreBusy``).
        roles: per item, the role its sender was authenticated with (``reviewer_role``; None
            when unknown).

    Returns:
        Per item, in order: the stored record and whether it was created (``False``: the key
        was already stored with the same body, or appeared earlier in this batch).

    Raises:
        IdempotencyConflict: a key is stored (or earlier in the batch) with another body; nothing
            of the batch was stored.
        ValueError: an event does not name its paired prediction.
        StoreBusy: the store stayed locked through every attempt.
        StoreError: the database failed.
    """
    for event, prediction in items:
        if (event.request_id, event.instance) != prediction.key:
            raise ValueError(
                f"event {event.idempotency_key!r} names {event.request_id}/{event.instance} but "
                f"was paired with prediction {prediction.request_id}/{prediction.instance}; pair "
                "each event with find_prediction(store, event.request_id, event.instance)"
            )
    if not items:
        return []
    given = list(roles) if roles is not None else [None] * len(items)
    for attempt in range(1, max(1, attempts) + 1):
        try:
            with _write_lock(store), store.write() as session:
                return [
                    _store_one(session, store, index, event, prediction, given[index])
                    for index, (event, prediction) in enumerate(items)
                ]
        except StoreBusy:
            if attempt >= attempts:
                raise
            logger.info("the state store is busy; retrying the feedback write (%d)", attempt)
            time.sleep(0.02 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def record_feedback(
    store: Store, event: FeedbackEvent, prediction: StoredPrediction
) -> tuple[FeedbackRecord, bool]:
    """Store one validated event idempotently (see :func:`record_feedback_batch`).

    Args:
        store: the state store.
        event: the verdict, validated against ``prediction``.
        prediction: the prediction it judges (:func:`find_prediction`).

    Returns:
        The stored record and ``True`` if this call stored it, ``False`` for a replay (the key
        was stored before with the same body; the stored record is returned).

    Raises:
        IdempotencyConflict: the key is stored with a different body.
        StoreBusy: the store stayed locked through every retry.
        StoreError: the database failed.
    """
    return record_feedback_batch(store, [(event, prediction)])[0]


def iter_feedback(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    statuses: Iterable[str] | None = None,
    model_name: str | None = None,
    after_id: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[FeedbackRecord]:
    """Stream feedback with ``since <= received_at < until``, joined with its predictions.

    Each page of ``chunk_size`` feedback rows (``id > last``) is read with the predictions it
    judges (looked up by ``(request_id, instance)`` on their unique index) in one short read
    transaction. A feedback whose prediction is gone has empty ``predicted_*`` fields.

    Args:
        store: the state store.
        since: inclusive lower bound on ``received_at`` (aware datetime).
        until: exclusive upper bound on ``received_at``.
        statuses: only these statuses (``accepted``, ``quarantined``, ...); None: every status.
        model_name: only feedback on this served model.
        after_id: only feedback rows with a larger id (a watermark from an earlier read).
        chunk_size: feedback rows per page.

    Yields:
        The records, in id order (the order they were stored).

    Raises:
        StoreError: the database failed.
    """
    wanted = sorted(set(statuses)) if statuses is not None else None
    last = after_id
    while True:
        statement = select(*_FEEDBACK_COLUMNS).where(_F.c.id > last)
        if wanted is not None:
            statement = statement.where(_F.c.status.in_(wanted))
        if since is not None:
            statement = statement.where(_F.c.received_at >= since)
        if until is not None:
            statement = statement.where(_F.c.received_at < until)
        if model_name is not None:
            statement = statement.where(_F.c.model_name == model_name)
        statement = statement.order_by(_F.c.id).limit(chunk_size)
        with store.read() as session:
            rows = session.execute(statement).all()
            keys = [(row.request_id, int((row.payload or {}).get("instance", 0))) for row in rows]
            judged = _judged(session, keys)
        for row, key in zip(rows, keys, strict=True):
            yield _record(row, judged.get(key))
        if len(rows) < chunk_size:
            return
        last = rows[-1].id


def iter_accepted_feedback(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    model_name: str | None = None,
    after_id: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[FeedbackRecord]:
    """Stream accepted feedback (status ``accepted``); see :func:`iter_feedback`.

    Raises:
        StoreError: the database failed.
    """
    return iter_feedback(
        store,
        since,
        until,
        statuses=(ACCEPTED,),
        model_name=model_name,
        after_id=after_id,
        chunk_size=chunk_size,
    )


def accepted_feedback(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    model_name: str | None = None,
    after_id: int = 0,
) -> list[FeedbackRecord]:
    """Accepted feedback received in ``[since, until)``, each with the prediction it judges.

    Reads in pages (see :func:`iter_feedback`); use :func:`iter_accepted_feedback` to stream.

    Args:
        store: the state store.
        since: inclusive lower bound on ``received_at`` (aware datetime); None: from the first.
        until: exclusive upper bound; None: up to now.
        model_name: only feedback on this served model.
        after_id: only rows with a larger id.

    Returns:
        The records in the order they were stored.

    Raises:
        StoreError: the database failed.
    """
    return list(
        iter_accepted_feedback(store, since, until, model_name=model_name, after_id=after_id)
    )


# --- model status -----------------------------------------------------------------------------
class ServedVersion(BaseModel):
    """One model version as the prediction log and the feedback table know it."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    predictions: int = Field(description="Logged predictions.")
    feedback: int = Field(description="Feedback events on them (every status).")
    confirmations: int
    corrections: int
    quarantined: int = Field(description="Feedback events quarantined by the quality rules.")
    first_prediction_at: str | None = None
    last_prediction_at: str | None = None


class RegisteredVersion(BaseModel):
    """One registered version (``model_versions``)."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    status: str = Field(description="candidate, canary, default, retired or rejected.")
    status_reason: str | None = None
    run_id: str | None = None
    model_uri: str
    dataset_digest: str | None = None
    created_at: str
    updated_at: str


class ModelStatus(BaseModel):
    """What the store knows about a model name."""

    name: str
    served: list[ServedVersion] = Field(
        description="Versions seen in the prediction log under this served name, oldest first."
    )
    registered: list[RegisteredVersion] = Field(
        description="Registered versions under this registry name, oldest first."
    )
    default_version: str | None = Field(
        default=None, description="The registered default version, if any."
    )


def model_status(store: Store, name: str) -> ModelStatus | None:
    """The status of a served and/or registered model name (None: the store knows neither).

    Raises:
        StoreError: the database failed.
    """
    with store.read() as session:
        served_rows = session.execute(
            select(
                Prediction.model_version,
                func.count(),
                func.min(Prediction.created_at),
                func.max(Prediction.created_at),
            )
            .where(Prediction.model_name == name)
            .group_by(Prediction.model_version)
        ).all()
        feedback_rows = session.execute(
            select(FeedbackRow.model_version, FeedbackRow.kind, FeedbackRow.status, func.count())
            .where(FeedbackRow.model_name == name)
            .group_by(FeedbackRow.model_version, FeedbackRow.kind, FeedbackRow.status)
        ).all()
        registered = vs.list_versions(session, name)
        default = vs.default_version(session, name)
    if not served_rows and not feedback_rows and not registered:
        return None
    served: dict[str, ServedVersion] = {}
    for version, count, first, last in served_rows:
        served[version] = ServedVersion(
            version=version,
            predictions=count,
            feedback=0,
            confirmations=0,
            corrections=0,
            quarantined=0,
            first_prediction_at=first.isoformat() if first is not None else None,
            last_prediction_at=last.isoformat() if last is not None else None,
        )
    for version, kind, status, count in feedback_rows:
        entry = served.setdefault(
            version,
            ServedVersion(
                version=version,
                predictions=0,
                feedback=0,
                confirmations=0,
                corrections=0,
                quarantined=0,
            ),
        )
        entry.feedback += count
        if kind == "correction":
            entry.corrections += count
        else:
            entry.confirmations += count
        if status == "quarantined":
            entry.quarantined += count
    return ModelStatus(
        name=name,
        served=sorted(served.values(), key=lambda v: (v.first_prediction_at or "", v.version)),
        registered=[
            RegisteredVersion(
                version=v.version,
                status=v.status,
                status_reason=v.status_reason,
                run_id=v.run_id,
                model_uri=v.model_uri,
                dataset_digest=v.dataset_digest,
                created_at=v.created_at.isoformat(),
                updated_at=v.updated_at.isoformat(),
            )
            for v in registered
        ],
        default_version=default.version if default is not None else None,
    )


def known_model_names(store: Store, limit: int = 20) -> tuple[list[str], list[str]]:
    """Some served and registered model names, sorted (for a message naming what exists).

    Raises:
        StoreError: the database failed.
    """
    with store.read() as session:
        served = session.scalars(
            select(Prediction.model_name).distinct().order_by(Prediction.model_name).limit(limit)
        ).all()
        registered = session.scalars(
            select(ModelVersion.model_name)
            .distinct()
            .order_by(ModelVersion.model_name)
            .limit(limit)
        ).all()
    return list(served), list(registered)

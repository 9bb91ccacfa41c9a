"""Feedback records for tests: the one factory of ``FeedbackRecord`` (a verdict read back).

Test modules keep their own short builders (``rec``, ``record``, ``verdict``) for the shapes they
vary, and those builders call :func:`feedback_record`, so a new field of the contract is added
here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackKind, FeedbackRecord

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def correction(
    doc_type: str | None = None, entities: Sequence[tuple[str, Sequence[int]]] | None = None
) -> Correction | None:
    """A correction to ``doc_type`` and/or to ``(type, word positions)`` entities, else ``None``."""
    if doc_type is None and entities is None:
        return None
    return Correction(
        doc_type=doc_type,
        entities=None
        if entities is None
        else [
            CorrectedEntity(type=kind, word_indices=list(positions)) for kind, positions in entities
        ],
    )


def feedback_record(
    id_: int,
    *,
    kind: FeedbackKind | None = None,
    correction: Correction | None = None,
    doc_id: str | None = None,
    request_id: str | None = None,
    reviewer_id: str = "alice",
    received_at: datetime = RECEIVED,
    status: str = "accepted",
    quarantine_reason: str | None = None,
    predicted_doc_type: str | None = "invoice",
    predicted_probabilities: Mapping[str, float] | None = None,
    predicted_entities: Sequence[dict[str, object]] = (),
    reviewer_role: str | None = None,
) -> FeedbackRecord:
    """An accepted verdict on the prediction of request ``req-<id_>`` by model ``docloop`` v1.

    ``kind`` defaults to ``correction`` when a correction is given and ``confirmation`` otherwise;
    ``doc_id`` defaults to ``doc-<id_>``.
    """
    return FeedbackRecord(
        id=id_,
        idempotency_key=f"key-{id_:08d}",
        model_name="docloop",
        model_version="1",
        request_id=request_id or f"req-{id_}",
        instance=0,
        doc_id=doc_id or f"doc-{id_}",
        reviewer_id=reviewer_id,
        kind=kind or ("correction" if correction is not None else "confirmation"),
        correction=correction,
        received_at=received_at.isoformat(),
        status=status,
        quarantine_reason=quarantine_reason,
        predicted_doc_type=predicted_doc_type,
        predicted_probabilities=dict(predicted_probabilities or {}),
        predicted_entities=list(predicted_entities),
        reviewer_role=reviewer_role,
    )

"""What a reviewer's verdict means: the one reading that quality, performance and retraining share.

A verdict (a :class:`~docloop.feedback.contracts.FeedbackRecord`) judges one prediction:

* a **confirmation** says the prediction was right: its type and its entities are the truth;
* a **correction** replaces, part by part, what it names: ``doc_type`` gives the true type (else
  the predicted type stands), ``entities`` gives the complete true entity list (``[]``: none;
  else the predicted entities stand). A correction that names neither is *empty*.

An entity is placed in the document by its word positions; a **span** is ``(type, sorted
distinct positions)``, and two entities are the same when their spans are. Entity lists compare
as sets of spans.

**Predictions without word positions** (a prediction log that did not record ``word_indices``
for every entity) have types but no spans. One rule follows from what the reviewer said, not from
what the log lacks:

1. *The prediction's spans are unknown* (:func:`predicted_spans` is None) when any predicted
   entity has no positions; an empty prediction has the known, empty set.
2. *The verdict's true spans* (:attr:`Verdict.entities`) are the corrected list when the
   correction names one (the reviewer gave positions: known whatever the prediction carried),
   else the predicted spans (unknown without positions). Labels and agreement between verdicts
   use these; an unknown part is not compared.
3. *Whether the verdict confirms the predicted entities* (:func:`confirms_entities`) does not
   depend on positions: a verdict that names no entity list says every predicted entity is right
   and none is missing, so the prediction can be scored as all right even without positions.
4. *Whether a correction changed the entities* (:func:`changes_prediction`,
   :func:`changed_entity_types`): a named list that differs from the predicted spans does; a
   named list for a prediction without positions counts as a change of every type it names (it
   cannot be shown equal, and the reviewer chose to correct).

So a document whose prediction lacks positions trains nothing on entities unless a correction
lists them, and its entities are scored only when the verdict confirms them (a correction's list
cannot be matched against spans the prediction never had).

**The newest verdict** is the latest by ``(received_at, id)``: the server's clock first, the
store's insertion order for verdicts received in the same instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackRecord, PredictedEntity

Span = tuple[str, tuple[int, ...]]
"""An entity placed in a document: its type and its sorted, distinct word positions."""


def corrected_spans(entities: Sequence[CorrectedEntity]) -> frozenset[Span]:
    """Entity spans of a corrected entity list, positions sorted and de-duplicated."""
    return frozenset((entity.type, tuple(sorted(set(entity.positions)))) for entity in entities)


def predicted_spans(entities: Sequence[PredictedEntity]) -> frozenset[Span] | None:
    """Entity spans of a prediction, or None if any of its entities has no word positions."""
    spans: set[Span] = set()
    for entity in entities:
        span = entity.span()
        if span is None:
            return None
        spans.add(span)
    return frozenset(spans)


def _correction(record: FeedbackRecord) -> Correction | None:
    return record.correction if record.kind == "correction" else None


def is_empty_correction(record: FeedbackRecord) -> bool:
    """A correction that names neither a type nor an entity list."""
    correction = record.correction
    return record.kind == "correction" and (
        correction is None or (correction.doc_type is None and correction.entities is None)
    )


def corrects_doc_type(record: FeedbackRecord) -> bool:
    """The verdict corrects the document type to one other than the predicted type."""
    correction = _correction(record)
    return (
        correction is not None
        and correction.doc_type is not None
        and correction.doc_type != record.predicted_doc_type
    )


def corrects_entities(record: FeedbackRecord) -> bool:
    """The verdict names the document's entity list (which may equal the prediction's)."""
    correction = _correction(record)
    return correction is not None and correction.entities is not None


def confirms_entities(record: FeedbackRecord) -> bool:
    """The verdict leaves the predicted entities as they are: all of them right, none missing."""
    return not corrects_entities(record)


@dataclass(frozen=True)
class Verdict:
    """What a feedback event says the document is; ``None`` parts are not known.

    Attributes:
        doc_type: the type the verdict settles on (corrected, else predicted).
        entities: the entity spans it settles on (corrected list, else the predicted one);
            ``None`` when it names no list and the prediction carries no positions.
    """

    doc_type: str | None
    entities: frozenset[Span] | None

    def agrees(self, other: Verdict) -> bool | None:
        """Whether two verdicts agree on every part both know (``None``: nothing to compare)."""
        compared = False
        if self.doc_type is not None and other.doc_type is not None:
            if self.doc_type != other.doc_type:
                return False
            compared = True
        if self.entities is not None and other.entities is not None:
            if self.entities != other.entities:
                return False
            compared = True
        return True if compared else None

    def describe(self) -> str:
        """A short human description (type and entity count)."""
        parts = []
        if self.doc_type is not None:
            parts.append(f"type {self.doc_type!r}")
        if self.entities is not None:
            parts.append(f"{len(self.entities)} entities")
        return ", ".join(parts) or "nothing"


def verdict_of(record: FeedbackRecord) -> Verdict:
    """The labels a feedback event settles on (corrections override the prediction part-wise)."""
    correction = _correction(record)
    doc_type = record.predicted_doc_type
    if correction is not None and correction.doc_type is not None:
        doc_type = correction.doc_type
    if correction is not None and correction.entities is not None:
        entities: frozenset[Span] | None = corrected_spans(correction.entities)
    else:
        entities = predicted_spans(record.predicted_entities)
    return Verdict(doc_type, entities)


def gold_verdict(gold: Correction) -> Verdict:
    """The verdict of an audited label (parts left ``None`` were not audited)."""
    entities = corrected_spans(gold.entities) if gold.entities is not None else None
    return Verdict(gold.doc_type, entities)


def changes_prediction(record: FeedbackRecord, verdict: Verdict | None = None) -> bool:
    """The verdict differs from the prediction (a no-op correction counts as a confirmation).

    Args:
        record: the feedback event.
        verdict: its :func:`verdict_of`, when the caller has it already.
    """
    if record.kind != "correction":
        return False
    verdict = verdict if verdict is not None else verdict_of(record)
    if verdict.doc_type != record.predicted_doc_type:
        return True
    return verdict.entities != predicted_spans(record.predicted_entities)


def changed_entity_types(record: FeedbackRecord) -> list[str]:
    """Entity types whose spans the correction changed, sorted (empty: it names no entity list).

    Against a prediction without positions every type of the corrected list counts as changed.
    """
    correction = _correction(record)
    if correction is None or correction.entities is None:
        return []
    corrected = corrected_spans(correction.entities)
    predicted = predicted_spans(record.predicted_entities)
    if predicted is None:
        return sorted({kind for kind, _ in corrected})
    return sorted({kind for kind, _ in corrected.symmetric_difference(predicted)})


def verdict_order(record: FeedbackRecord) -> tuple[str, int]:
    """Sort key from oldest to newest verdict: ``(received_at, id)``."""
    return (record.received_at, record.id)


def newest_verdicts(records: Iterable[FeedbackRecord]) -> list[FeedbackRecord]:
    """The newest verdict per judged prediction (request id + instance), oldest first."""
    newest: dict[tuple[str, int], FeedbackRecord] = {}
    for record in sorted(records, key=verdict_order):
        newest[(record.request_id, record.instance)] = record
    return sorted(newest.values(), key=verdict_order)

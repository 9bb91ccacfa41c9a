"""What a verdict means: one rule for quality, performance and retraining (positions or not)."""

from __future__ import annotations

import pytest

from docloop.config import FeedbackConfig
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackRecord, PredictedEntity
from docloop.feedback.quality import assess_feedback
from docloop.feedback.verdicts import (
    Verdict,
    changed_entity_types,
    changes_prediction,
    confirms_entities,
    corrected_spans,
    corrects_doc_type,
    corrects_entities,
    gold_verdict,
    is_empty_correction,
    newest_verdicts,
    predicted_spans,
    verdict_of,
)
from docloop.monitor.performance import feedback_performance, judge

pytestmark = pytest.mark.unit

PLACED = [
    {"type": "mrn", "text": "4821937", "confidence": 0.9, "word_indices": [5]},
    {"type": "patient_name", "text": "Jane Doe", "confidence": 0.8, "word_indices": [3, 2]},
]
UNPLACED = [
    {"type": "mrn", "text": "4821937", "confidence": 0.9},
    {"type": "patient_name", "text": "Jane Doe", "confidence": 0.8},
]


def verdict(
    id_: int,
    entities: list[dict[str, object]],
    *,
    doc_type: str | None = None,
    corrected: list[tuple[str, list[int]]] | None = None,
    kind: str | None = None,
    request: str = "req-1",
    received_at: str = "2026-01-01T00:00:00+00:00",
    reviewer: str = "alice",
) -> FeedbackRecord:
    correction = None
    if doc_type is not None or corrected is not None:
        correction = Correction(
            doc_type=doc_type,
            entities=None
            if corrected is None
            else [CorrectedEntity(type=k, word_indices=i) for k, i in corrected],
        )
    return FeedbackRecord.model_validate(
        {
            "id": id_,
            "idempotency_key": f"key-{id_:05d}",
            "model_name": "docloop",
            "model_version": "1",
            "request_id": request,
            "doc_id": "doc-1",
            "reviewer_id": reviewer,
            "kind": kind or ("correction" if correction is not None else "confirmation"),
            "correction": correction,
            "received_at": received_at,
            "status": "accepted",
            "predicted_doc_type": "invoice",
            "predicted_entities": entities,
        }
    )


# --- spans ----------------------------------------------------------------------------------------


def test_a_span_is_the_type_and_its_distinct_sorted_positions() -> None:
    assert PredictedEntity(type="mrn", word_indices=[7, 5, 7]).span() == ("mrn", (5, 7))
    assert PredictedEntity(type="mrn").span() is None
    corrected = corrected_spans([CorrectedEntity(type="mrn", word_indices=[7, 5, 5])])
    assert corrected == frozenset({("mrn", (5, 7))})


def test_a_prediction_has_spans_only_when_every_entity_has_positions() -> None:
    placed = [PredictedEntity.model_validate(e) for e in PLACED]
    assert predicted_spans(placed) == {("mrn", (5,)), ("patient_name", (2, 3))}
    half = [placed[0], PredictedEntity.model_validate(UNPLACED[1])]
    assert predicted_spans(half) is None
    assert predicted_spans([]) == frozenset()  # nothing predicted: known and empty


# --- what a verdict settles on --------------------------------------------------------------------


def test_a_confirmation_settles_on_the_prediction() -> None:
    record = verdict(1, PLACED)
    assert verdict_of(record) == Verdict(
        "invoice", frozenset({("mrn", (5,)), ("patient_name", (2, 3))})
    )
    assert confirms_entities(record) and not corrects_entities(record)
    assert not changes_prediction(record) and changed_entity_types(record) == []


def test_a_correction_replaces_only_what_it_names() -> None:
    typed = verdict(1, PLACED, doc_type="letter")
    assert verdict_of(typed).doc_type == "letter" and corrects_doc_type(typed)
    assert verdict_of(typed).entities == predicted_spans(typed.predicted_entities)
    assert confirms_entities(typed) and changed_entity_types(typed) == []
    listed = verdict(2, PLACED, corrected=[("mrn", [5]), ("patient_name", [2])])
    assert verdict_of(listed) == Verdict(
        "invoice", frozenset({("mrn", (5,)), ("patient_name", (2,))})
    )
    assert not corrects_doc_type(listed) and corrects_entities(listed)
    assert changes_prediction(listed) and changed_entity_types(listed) == ["patient_name"]


def test_a_correction_that_repeats_the_prediction_changes_nothing() -> None:
    same = verdict(
        1, PLACED, doc_type="invoice", corrected=[("patient_name", [2, 3]), ("mrn", [5])]
    )
    assert not changes_prediction(same) and changed_entity_types(same) == []
    assert not corrects_doc_type(same)


def test_an_empty_correction_names_nothing() -> None:
    assert is_empty_correction(verdict(1, PLACED, kind="correction"))
    assert not is_empty_correction(verdict(2, PLACED, doc_type="letter"))
    assert not is_empty_correction(verdict(3, PLACED))


def test_an_audit_knows_only_what_it_names() -> None:
    assert gold_verdict(Correction(doc_type="letter")) == Verdict("letter", None)
    assert gold_verdict(Correction(entities=[])) == Verdict(None, frozenset())


# --- the rule for predictions without word positions ----------------------------------------------


def test_without_positions_a_confirmation_confirms_the_entities_but_places_none() -> None:
    record = verdict(1, UNPLACED)
    # labels and agreement: the true spans are unknown, so they are not compared
    assert verdict_of(record) == Verdict("invoice", None)
    assert verdict_of(record).agrees(verdict_of(verdict(2, PLACED))) is True  # type only
    # scoring the prediction: the reviewer said every predicted entity is right
    assert confirms_entities(record) and not changes_prediction(record)
    judged = judge(record)
    assert judged.predicted_spans == judged.true_spans and len(judged.true_spans or ()) == 2
    report = feedback_performance([record], bootstrap_samples=0)
    assert report.entity_documents == 1 and report.entity_documents_skipped == 0
    assert report.entity_precision.value == report.entity_recall.value == 1.0
    assert report.per_entity["mrn"].true_positives == 1


def test_without_positions_a_type_correction_still_confirms_the_entities() -> None:
    record = verdict(1, UNPLACED, doc_type="letter")
    assert verdict_of(record) == Verdict("letter", None)
    assert confirms_entities(record) and changes_prediction(record)
    assert changed_entity_types(record) == []
    report = feedback_performance([record], bootstrap_samples=0)
    assert report.entity_documents == 1 and report.entity_f1 == 1.0


def test_without_positions_a_corrected_list_is_the_truth_but_cannot_be_matched() -> None:
    record = verdict(1, UNPLACED, corrected=[("mrn", [5])])
    # the reviewer gave positions: the truth is known and can train
    assert verdict_of(record) == Verdict("invoice", frozenset({("mrn", (5,))}))
    # it cannot be shown equal to the prediction: a change of every type it names
    assert changes_prediction(record) and changed_entity_types(record) == ["mrn"]
    # but the prediction cannot be scored against it
    assert judge(record).true_spans is None
    report = feedback_performance([record], bootstrap_samples=0)
    assert report.entity_documents == 0 and report.entity_documents_skipped == 1
    assert report.entity_corrections == 1


def test_quality_compares_unplaced_verdicts_on_the_type_only() -> None:
    # a positionless confirmation and a corrected list disagree on nothing both know
    confirmation = verdict(1, UNPLACED, reviewer="alice")
    listed = verdict(2, UNPLACED, corrected=[("mrn", [5])], reviewer="bob")
    assert verdict_of(confirmation).agrees(verdict_of(listed)) is True
    report = assess_feedback([confirmation, listed], FeedbackConfig())
    assert report.counts["accepted"] == 2


# --- the newest verdict ---------------------------------------------------------------------------


def test_the_newest_verdict_per_prediction_is_the_latest_received_then_the_latest_stored() -> None:
    early = verdict(9, PLACED, received_at="2026-01-01T00:00:00+00:00")
    late = verdict(3, PLACED, doc_type="letter", received_at="2026-01-01T00:05:00+00:00")
    same_instant = [verdict(i, PLACED, request="req-2") for i in (5, 4)]
    assert [r.id for r in newest_verdicts([late, early, *same_instant])] == [5, 3]

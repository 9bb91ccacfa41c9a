"""Performance on reviewed documents: Wilson intervals, the verdict rules, per-class/entity F1."""

from __future__ import annotations

import numpy as np
import pytest

from docloop.errors import InvalidInput
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackRecord
from docloop.feedback.verdicts import newest_verdicts
from docloop.monitor.performance import (
    RateEstimate,
    classification_performance,
    feedback_performance,
    judge,
    wilson_interval,
)
from tests.feedback import feedback_record

pytestmark = pytest.mark.unit


def record(
    id_: int,
    kind: str,
    predicted: str | None = "invoice",
    *,
    correction: Correction | None = None,
    entities: list[dict[str, object]] | None = None,
    request: str | None = None,
    status: str = "accepted",
) -> FeedbackRecord:
    return feedback_record(
        id_,
        kind=kind,  # type: ignore[arg-type]
        correction=correction,
        request_id=request,
        status=status,
        quarantine_reason="untrusted" if status == "quarantined" else None,
        predicted_doc_type=predicted,
        predicted_entities=entities or [],
    )


def mrn(*positions: int) -> dict[str, object]:
    return {"type": "mrn", "text": "x", "word_indices": list(positions), "confidence": 0.9}


# --- Wilson -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "lower", "upper"),
    [  # Newcombe (1998), Statistics in Medicine 17:857-872, table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(
    successes: int, trials: int, lower: float, upper: float
) -> None:
    low, high = wilson_interval(successes, trials, 0.95)
    assert float(low) == pytest.approx(lower, abs=5e-5)
    assert float(high) == pytest.approx(upper, abs=5e-5)


def test_wilson_interval_is_vectorised_and_handles_no_trials() -> None:
    low, high = wilson_interval([5, 0, 3], [10, 0, 3])
    assert low.shape == high.shape == (3,)
    assert (low[1], high[1]) == (0.0, 1.0)  # no trial: no information
    assert low[0] < 0.5 < high[0] and high[2] == 1.0
    narrow = wilson_interval(500, 1000, 0.95)
    assert float(narrow[1] - narrow[0]) < float(high[0] - low[0])  # more trials, narrower
    with pytest.raises(InvalidInput):
        wilson_interval(3, 2)
    with pytest.raises(InvalidInput):
        wilson_interval(1, 2, confidence=1.0)


def test_rate_estimate_describes_itself() -> None:
    rate = RateEstimate.of(81, 263)
    assert rate.value == pytest.approx(81 / 263)
    assert rate.describe() == "0.308 (95% CI 0.255-0.366, 81/263)"
    assert RateEstimate.of(0, 0).describe() == "n/a (no data)"


# --- verdict rules ----------------------------------------------------------------------------


def test_confirmation_makes_the_prediction_the_truth() -> None:
    judged = judge(record(1, "confirmation", entities=[mrn(3)]))
    assert judged.true_type == judged.predicted_type == "invoice"
    assert judged.true_spans == judged.predicted_spans == (("mrn", (3,)),)
    assert not judged.corrected


def test_type_correction_gives_the_true_type_and_keeps_entities() -> None:
    judged = judge(
        record(1, "correction", correction=Correction(doc_type="receipt"), entities=[mrn(3)])
    )
    assert (judged.predicted_type, judged.true_type) == ("invoice", "receipt")
    assert judged.type_corrected and not judged.entities_corrected
    assert judged.true_spans == judged.predicted_spans


def test_entity_only_correction_confirms_the_type() -> None:
    correction = Correction(entities=[CorrectedEntity(type="mrn", word_indices=[4, 5])])
    judged = judge(record(1, "correction", correction=correction, entities=[mrn(4)]))
    assert judged.true_type == "invoice" and not judged.type_corrected
    assert judged.true_spans == (("mrn", (4, 5)),)
    assert judged.predicted_spans == (("mrn", (4,)),)


def test_entity_correction_without_predicted_positions_cannot_be_scored() -> None:
    correction = Correction(entities=[CorrectedEntity(type="mrn", word_indices=[4])])
    judged = judge(record(1, "correction", correction=correction, entities=[{"type": "mrn"}]))
    assert judged.true_spans is None


def test_newest_verdict_per_prediction_wins() -> None:
    first = record(1, "confirmation", request="r")
    second = record(2, "correction", request="r", correction=Correction(doc_type="receipt"))
    other = record(3, "confirmation", request="s")
    assert [r.id for r in newest_verdicts([second, first, other])] == [2, 3]


# --- scores -----------------------------------------------------------------------------------


def test_classification_performance_per_class_by_hand() -> None:
    true = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "b", "a"]
    accuracy, macro, interval, per_class = classification_performance(
        true, pred, bootstrap_samples=300, seed=1
    )
    assert (accuracy.successes, accuracy.trials) == (4, 6)
    a, b, c = per_class["a"], per_class["b"], per_class["c"]
    assert (a.true_positives, a.predicted, a.support) == (2, 3, 3)
    assert a.precision.value == pytest.approx(2 / 3) and a.recall.value == pytest.approx(2 / 3)
    assert b.f1 == pytest.approx(2 * 2 / (3 + 2))
    assert c.f1 == 0.0 and c.recall.value == 0.0 and c.precision.value is None
    assert macro == pytest.approx(np.mean([2 / 3, 0.8, 0.0]))
    assert interval is not None and interval[0] <= macro <= interval[1]
    for scores in per_class.values():
        assert scores.f1_lower is not None and scores.f1_upper is not None
        assert scores.f1_lower <= scores.f1 <= scores.f1_upper  # type: ignore[operator]


def test_feedback_performance_end_to_end() -> None:
    spans = [mrn(3), {"type": "name", "word_indices": [0, 1], "text": "x", "confidence": 1.0}]
    records = [
        *(record(i, "confirmation", "invoice", entities=spans) for i in range(1, 7)),
        record(7, "correction", "invoice", correction=Correction(doc_type="receipt")),
        record(
            8,
            "correction",
            "receipt",
            entities=spans,
            correction=Correction(
                entities=[
                    CorrectedEntity(type="mrn", word_indices=[3]),
                    CorrectedEntity(type="name", word_indices=[0]),
                ]
            ),
        ),
        record(9, "confirmation", "receipt", status="quarantined"),
        record(10, "confirmation", None),  # no classifier: no type evidence
    ]
    report = feedback_performance(records, bootstrap_samples=200)

    assert report.feedback_events == 9 and report.documents == 9
    assert (report.confirmed, report.corrected) == (7, 2)
    assert report.correction_rate.successes == 2 and report.correction_rate.trials == 9
    assert report.type_corrections == 1 and report.entity_corrections == 1
    assert report.type_documents == 8
    assert (report.accuracy.successes, report.accuracy.trials) == (7, 8)
    assert (
        report.per_class["receipt"].support == 2 and report.per_class["receipt"].recall.value == 0.5
    )
    # entities: 7 documents confirm both spans; doc 8 gets mrn right, name wrong (span differs)
    mrn_scores, name_scores = report.per_entity["mrn"], report.per_entity["name"]
    assert (mrn_scores.true_positives, mrn_scores.predicted, mrn_scores.support) == (7, 7, 7)
    assert (name_scores.true_positives, name_scores.predicted, name_scores.support) == (6, 7, 7)
    assert report.entity_f1 == pytest.approx(2 * 13 / 28)
    assert report.entity_precision.value == pytest.approx(13 / 14)
    assert report.metric("accuracy") == pytest.approx(7 / 8)
    assert report.metric("f1") == report.entity_f1
    assert report.flat()["feedback.accuracy"] == pytest.approx(7 / 8)
    with pytest.raises(InvalidInput):
        report.metric("auc")


def test_the_correction_rate_is_the_champion_releases_own() -> None:
    """During a canary of a new extractor the classifier's window also holds documents the old
    extractor answered: they are typed by the champion classifier, but their corrections are the
    old extractor's. The correction rate counts only predictions of the whole champion release
    (in both windows); the demo's second check read 0.73 where V2's own documents said far less."""
    spans = [mrn(3)]
    wrong = Correction(entities=[CorrectedEntity(type="mrn", word_indices=[4])])
    old_extractor = [
        record(i, "correction", entities=spans, correction=wrong, request=f"old-{i}")
        for i in range(1, 7)
    ]
    release = [
        *(record(i, "confirmation", entities=spans, request=f"new-{i}") for i in range(7, 10)),
        record(10, "correction", entities=spans, correction=wrong, request="new-10"),
    ]
    report = feedback_performance([*old_extractor, *release], entity_records=release)

    assert report.documents == 10  # every reviewed document is new evidence for the guards
    assert (report.confirmed, report.corrected) == (3, 1)
    assert (report.correction_rate.successes, report.correction_rate.trials) == (1, 4)
    assert report.entity_documents == 4 and report.entity_corrections == 1


def test_no_feedback_gives_empty_but_valid_report() -> None:
    report = feedback_performance([])
    assert report.documents == 0 and report.accuracy.value is None
    assert report.macro_f1 is None and report.entity_f1 is None
    assert report.per_class == {} and report.metric("macro_f1") is None

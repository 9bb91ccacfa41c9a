"""Canary analysis: the rules on hand-made numbers, and each variant's numbers from a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from docloop.config import CanaryConfig
from docloop.deploy.analysis import CanaryVerdict, VariantStats, analyse_canary, render_markdown
from docloop.deploy.inference_service import PredictorRelease
from docloop.deploy.rollout import store_stats
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackEvent, PredictedEntity
from docloop.feedback.records import find_prediction, record_feedback
from docloop.serve.sink import PredictionRecord, SqlSink
from docloop.store.db import Store, open_store

pytestmark = pytest.mark.unit

POLICY = CanaryConfig(min_requests=20, min_feedback=10, max_duration_s=600)


def variant(
    name: str = "champion",
    *,
    requests: int = 50,
    errors: int | None = 0,
    latency: float = 100.0,
    reviewed: int = 20,
    correct: int = 18,
) -> VariantStats:
    return VariantStats(
        variant=name,
        requests=requests,
        errors=errors,
        latencies_ms=[latency * (1 + i / 100) for i in range(requests)],
        reviewed=reviewed,
        correct=correct,
    )


def test_a_canary_no_worse_on_every_check_is_promoted() -> None:
    verdict = analyse_canary(variant(), variant("canary", correct=17), POLICY, 30)
    assert verdict.decision == "promote"
    assert [c.passed for c in verdict.checks] == [True, True, True]


@pytest.mark.parametrize(
    ("canary", "failed"),
    [
        (variant("canary", errors=5), "error_rate"),  # 10 % vs 0 %
        (variant("canary", latency=200.0), "p95_latency"),  # 2x
        (variant("canary", correct=12), "live_accuracy"),  # 0.60 vs 0.90
    ],
)
def test_one_worse_check_rolls_back_at_once(canary: VariantStats, failed: str) -> None:
    verdict = analyse_canary(variant(), canary, POLICY, 5)
    assert verdict.decision == "rollback"
    assert [c.name for c in verdict.checks if c.passed is False] == [failed]
    assert verdict.reasons[0].startswith("canary is worse than the champion")


def test_too_little_evidence_waits_then_follows_the_policy() -> None:
    thin = variant("canary", requests=5, reviewed=2, correct=2)
    early = analyse_canary(variant(), thin, POLICY, 60)
    assert early.decision == "wait" and "below min_requests 20" in early.reasons[0]
    late = analyse_canary(variant(), thin, POLICY, 600)
    assert late.decision == "rollback" and "on_insufficient_evidence = rollback" in late.reasons[0]
    lenient = POLICY.model_copy(update={"on_insufficient_evidence": "promote"})
    assert analyse_canary(variant(), thin, lenient, 600).decision == "promote"


def test_uncounted_errors_and_disabled_accuracy_do_not_hold_promotion_up() -> None:
    policy = POLICY.model_copy(update={"min_feedback": 0})
    verdict = analyse_canary(
        variant(errors=None, reviewed=0), variant("canary", errors=None, reviewed=0), policy, 1
    )
    assert verdict.decision == "promote"
    assert [c.name for c in verdict.checks] == ["error_rate", "p95_latency"]
    assert verdict.checks[0].passed is None and "not counted" in verdict.checks[0].reason


def test_the_markdown_shows_the_decision_checks_and_timeline() -> None:
    steps = [analyse_canary(variant(), variant("canary", requests=5), POLICY, 0)]
    steps.append(analyse_canary(variant(), variant("canary", correct=10), POLICY, 30))
    text = render_markdown(steps[-1], steps)
    assert text.startswith("# Canary analysis: **ROLLBACK**")
    assert "| live_accuracy | 0.9 | 0.5 | 0.05 | **fail** |" in text
    assert "| 0 | wait |" in text and "| 30 | rollback |" in text


# --- the live numbers of each variant, from a real state store ------------------------------------

CLASSIFIER = "run-c1"


def serve_and_review(
    store: Store, versions: dict[str, str], *, right_entities: int, right_types: int = 20
) -> None:
    """20 predictions of the release ``versions`` (logged as the predictor logs them) and a
    verdict on each: the first ``right_entities`` confirm the entities, the rest move the MRN;
    the first ``right_types`` keep the type."""
    label = ".".join(f"{task}-{version}" for task, version in sorted(versions.items()))
    served = ",".join(f"{task}={version}" for task, version in versions.items())
    stamp = datetime.now(UTC).isoformat()
    SqlSink(store).write(
        [
            PredictionRecord(
                timestamp=stamp,
                request_id=f"{label}-{i}",
                instance=0,
                doc_id=f"{label}-doc-{i}",
                source_uri=f"request://{label}-{i}/0",
                model_name="docloop",
                model_version=served,
                model_versions=versions,
                protocol="v1",
                input="pages",
                doc_type="invoice",
                doc_type_confidence=0.9,
                probabilities={"invoice": 0.9, "letter": 0.1},
                entities=[PredictedEntity(type="mrn", text="1", word_indices=[5], confidence=0.9)],
                entity_types=["mrn"],
                entity_count=1,
                pages=1,
                words=12,
                mean_confidence=None,
                ocr_pages=0,
                latency_ms=100.0 + i,
            )
            for i in range(20)
        ]
    )
    for i in range(20):
        prediction = find_prediction(store, f"{label}-{i}")
        assert prediction is not None
        entities = None if i < right_entities else [CorrectedEntity(type="mrn", word_indices=[6])]
        doc_type = None if i < right_types else "letter"
        record_feedback(
            store,
            FeedbackEvent(
                idempotency_key=f"verdict-{label}-{i}",
                model_name="docloop",
                model_version=served,
                request_id=prediction.request_id,
                reviewer_id="alice",
                kind="confirmation" if entities is None and doc_type is None else "correction",
                correction=None
                if entities is None and doc_type is None
                else Correction(doc_type=doc_type, entities=entities),
            ),
            prediction,
        )


def canary_verdict(
    store: Store, champion: dict[str, str], canary: dict[str, str]
) -> tuple[CanaryVerdict, VariantStats, VariantStats]:
    release = PredictorRelease({"classify": "file:///c", "extract": "file:///e"}, {})
    stats = store_stats(store, {"champion": champion, "canary": canary})
    since = datetime.now(UTC) - timedelta(hours=1)
    old, new = stats(since, release, "champion"), stats(since, release, "canary")
    return analyse_canary(old, new, POLICY.model_copy(update={"min_feedback": 20}), 30), old, new


def test_a_canary_whose_extractor_is_worse_rolls_back(store_url: str) -> None:
    store = open_store(store_url)
    try:
        champion, canary = (
            {"classify": CLASSIFIER, "extract": "e1"},
            {"classify": CLASSIFIER, "extract": "e2"},
        )
        serve_and_review(store, champion, right_entities=20)
        serve_and_review(store, canary, right_entities=10)
        verdict, old, new = canary_verdict(store, champion, canary)
    finally:
        store.close()
    # each side is what its own release served: not 40 predictions and verdicts on both
    assert (old.requests, old.reviewed, new.requests, new.reviewed) == (20, 20, 20, 20)
    assert (old.entity_f1, new.entity_f1) == (1.0, 0.5)  # 10 of 20 spans right, 10 wrong
    assert verdict.decision == "rollback"
    assert [c.name for c in verdict.checks if c.passed is False] == ["live_entity_f1"]
    assert "live_accuracy" not in [c.name for c in verdict.checks]  # the classifier is shared
    assert "live entity F1 0.500 (20 reviewed) vs champion 1.000" in verdict.reasons[0]


def test_a_canary_whose_extractor_is_better_is_promoted(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        champion, canary = (
            {"classify": CLASSIFIER, "extract": "e1"},
            {"classify": CLASSIFIER, "extract": "e2"},
        )
        serve_and_review(store, champion, right_entities=12)
        serve_and_review(store, canary, right_entities=19)
        verdict, old, new = canary_verdict(store, champion, canary)
    finally:
        store.close()
    assert verdict.decision == "promote"
    assert new.entity_f1 is not None and old.entity_f1 is not None
    assert new.entity_f1 > old.entity_f1
    assert [c.name for c in verdict.checks] == ["error_rate", "p95_latency", "live_entity_f1"]


def test_a_model_both_sides_share_is_not_judged_on_sampling_noise(tmp_path: Path) -> None:
    """Same classifier on both sides: its type verdicts differ only by which documents each side
    got, so they decide nothing; the extractors, equal, pass."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        champion, canary = (
            {"classify": CLASSIFIER, "extract": "e1"},
            {"classify": CLASSIFIER, "extract": "e2"},
        )
        serve_and_review(store, champion, right_entities=18, right_types=20)
        serve_and_review(store, canary, right_entities=18, right_types=14)
        verdict, old, new = canary_verdict(store, champion, canary)
    finally:
        store.close()
    assert (old.accuracy, new.accuracy) == (1.0, 0.7)  # measured, but not a check
    assert old.entity_f1 == new.entity_f1
    assert verdict.decision == "promote"
    assert [c.name for c in verdict.checks] == ["error_rate", "p95_latency", "live_entity_f1"]


def test_a_canary_that_changes_the_classifier_is_judged_on_types() -> None:
    champion = variant().model_copy(update={"versions": {"classify": "c1", "extract": "e1"}})
    canary = variant("canary", correct=12).model_copy(
        update={"versions": {"classify": "c2", "extract": "e1"}}
    )
    verdict = analyse_canary(champion, canary, POLICY, 5)
    assert verdict.decision == "rollback"
    assert [c.name for c in verdict.checks] == ["error_rate", "p95_latency", "live_accuracy"]

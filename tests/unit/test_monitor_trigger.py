"""The trigger policy: every guard and signal, and the sentence each decision carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from docloop.config import TriggerConfig
from docloop.errors import InvalidInput
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackRecord
from docloop.monitor.performance import PerformanceReport, RateEstimate, feedback_performance
from docloop.monitor.trigger import TriggerDecision, decide_trigger
from tests.feedback import feedback_record

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = TriggerConfig(
    min_new_samples=50,
    performance_floor=0.8,
    entity_floor=0.8,
    max_drop=0.05,
    retrain_on_drift=True,
    cooldown_hours=24,
    max_retrains=3,
    budget_window_days=7,
)


def decide(policy: TriggerConfig = POLICY, **overrides: Any) -> TriggerDecision:
    """A healthy window unless overridden: 100 reviews at 95 % accuracy, no drift, no attempts."""
    arguments: dict[str, Any] = {
        "now": NOW,
        "new_samples": 100,
        "accuracy": RateEstimate.of(95, 100),
        "metric": "macro_f1",
        "feedback_score": 0.93,
        "champion_score": 0.94,
        "drift_detected": False,
        "drift_reasons": (),
        "attempts": (),
    }
    arguments.update(overrides)
    return decide_trigger(policy, **arguments)


def rule(decision: TriggerDecision, name: str) -> Any:
    return next(r for r in decision.rules if r.rule == name)


def test_a_healthy_window_does_not_trigger_and_says_why() -> None:
    decision = decide()
    assert not decision.trigger and decision.conclusive
    assert decision.headline == "No retrain: performance and drift are within the policy."
    assert len(decision.reasons) == 1 + 8  # the verdict, then one sentence per rule
    assert "0.950 (95% CI 0.888-0.978, 95/100), at or above the floor 0.800" in decision.reasons[4]
    assert "a drop of +0.010, within the allowed 0.050" in rule(decision, "max_drop").reason
    assert decision.signals == [] and decision.blockers == []


def test_accuracy_below_the_floor_triggers() -> None:
    decision = decide(accuracy=RateEstimate.of(70, 100), feedback_score=0.92)
    assert decision.trigger and decision.conclusive
    assert decision.headline == "Retrain: performance_floor fired and no guard blocks."
    assert "below the floor 0.800" in rule(decision, "performance_floor").reason


def test_a_drop_beyond_max_drop_below_the_champion_triggers() -> None:
    decision = decide(feedback_score=0.85, champion_score=0.94)
    assert decision.trigger
    assert rule(decision, "max_drop").active
    assert "0.850 vs 0.940" in rule(decision, "max_drop").reason
    assert "drop of +0.090, more than the allowed 0.050" in rule(decision, "max_drop").reason


def test_unknown_scores_leave_the_performance_rules_unchecked() -> None:
    decision = decide(accuracy=None, champion_score=None)
    assert not decision.trigger
    assert "performance floor is unchecked" in rule(decision, "performance_floor").reason
    assert "holdout score is unknown" in rule(decision, "max_drop").reason
    decision = decide(feedback_score=None)
    assert "macro_f1 cannot be measured" in rule(decision, "max_drop").reason


def test_drift_triggers_only_when_retrain_on_drift_is_on() -> None:
    reasons = ("Embedding drift: MMD² = 0.01 (p = 0.001).",)
    fired = decide(drift_detected=True, drift_reasons=reasons)
    assert fired.trigger and "MMD² = 0.01" in rule(fired, "drift").reason
    off = decide(
        POLICY.model_copy(update={"retrain_on_drift": False}),
        drift_detected=True,
        drift_reasons=reasons,
    )
    assert not off.trigger and "retrain_on_drift is off" in rule(off, "drift").reason
    assert off.conclusive


def test_never_with_fewer_than_min_new_samples() -> None:
    decision = decide(new_samples=49, accuracy=RateEstimate.of(10, 49), drift_detected=True)
    assert not decision.trigger and not decision.conclusive
    assert "49 newly reviewed documents are fewer than the minimum of 50." in decision.reasons
    assert decision.headline.startswith("No retrain yet: performance_floor, drift fired but")
    quiet = decide(new_samples=10)
    assert not quiet.trigger and not quiet.conclusive
    assert "10 reviewed documents are too few (minimum 50)" in quiet.headline


def test_not_within_the_cooldown_of_the_last_attempt() -> None:
    recent = NOW - timedelta(hours=5)
    decision = decide(accuracy=RateEstimate.of(70, 100), attempts=[recent])
    assert not decision.trigger and not decision.conclusive
    reason = rule(decision, "cooldown").reason
    assert "started 5.0 h ago" in reason and "24 h cooldown (19.0 h left)" in reason
    after = decide(accuracy=RateEstimate.of(70, 100), attempts=[NOW - timedelta(hours=25)])
    assert after.trigger and "past the 24 h cooldown" in rule(after, "cooldown").reason


def test_not_more_than_max_retrains_in_the_budget_window() -> None:
    attempts = [NOW - timedelta(days=d) for d in (6, 4, 2)]
    decision = decide(accuracy=RateEstimate.of(70, 100), attempts=attempts)
    assert not decision.trigger and rule(decision, "budget").active
    reason = rule(decision, "budget").reason
    assert "3 retrain attempts in the last 7 days use up the budget of 3" in reason
    assert (NOW + timedelta(days=1)).isoformat() in reason  # when the oldest leaves the window
    older = [NOW - timedelta(days=d) for d in (9, 4, 2)]
    assert decide(accuracy=RateEstimate.of(70, 100), attempts=older).trigger


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="naive"):
        decide(now=datetime(2026, 3, 1))
    with pytest.raises(InvalidInput, match="naive"):
        decide(attempts=[datetime(2026, 3, 1)])


def test_the_decision_serialises_with_its_policy() -> None:
    decision = decide(accuracy=RateEstimate.of(70, 100))
    again = TriggerDecision.model_validate_json(decision.model_dump_json())
    assert again == decision and again.policy == POLICY


# --- the extractor's rules ------------------------------------------------------------------------


def verdict(
    index: int, predicted: list[dict[str, object]], true: list[CorrectedEntity] | None
) -> FeedbackRecord:
    """A verdict on one prediction: a confirmation, or an entity correction to ``true``."""
    return feedback_record(
        index + 1,
        correction=None if true is None else Correction(entities=true),
        request_id=f"req-{index}",
        doc_id=f"doc-{index}",
        predicted_entities=predicted,
    )


def entity(kind: str, position: int) -> dict[str, object]:
    return {"type": kind, "text": "x", "word_indices": [position], "confidence": 0.9}


def entity_feedback(
    documents: int, *, wrong_mrn: int = 0, wrong_date: int = 0, rare_wrong: bool = False
) -> PerformanceReport:
    """Verdicts on ``documents`` predictions, each with an ``mrn`` and a ``date``.

    The first ``wrong_mrn`` (``wrong_date``) documents are corrections that move that entity to
    another word; ``rare_wrong`` adds one wrong ``npi`` entity (a rare type) to the first document.
    """
    records = []
    for i in range(documents):
        predicted = [entity("mrn", 5), entity("date", 9)]
        true = [
            CorrectedEntity(type="mrn", word_indices=[6 if i < wrong_mrn else 5]),
            CorrectedEntity(type="date", word_indices=[8 if i < wrong_date else 9]),
        ]
        if rare_wrong and i == 0:
            predicted.append(entity("npi", 2))
            true.append(CorrectedEntity(type="npi", word_indices=[3]))
        wrong = i < max(wrong_mrn, wrong_date) or (rare_wrong and i == 0)
        records.append(verdict(i, predicted, true if wrong else None))
    return feedback_performance(records, bootstrap_samples=200)


def test_a_healthy_extractor_does_not_trigger_and_says_why() -> None:
    performance = entity_feedback(100, wrong_mrn=5, wrong_date=2)
    decision = decide(performance=performance, champion_extract_score=0.97)
    assert not decision.trigger and decision.conclusive
    floor = rule(decision, "entity_floor")
    assert not floor.active and floor.kind == "signal"
    assert floor.reason.startswith(
        "Entity F1 (micro) on 100 reviewed documents with entity verdicts is 0.965 (95% CI "
    )
    assert "precision 193/200, recall 193/200), at or above the floor 0.800" in floor.reason
    assert "every entity type is at or above it (lowest: mrn 0.950 (95% CI" in floor.reason
    assert "100 true, 100 predicted)" in floor.reason
    drop = rule(decision, "entity_drop")
    assert not drop.active
    assert "vs 0.970 on the champion extractor's holdout: a drop of +0.005, within" in drop.reason


def test_micro_entity_f1_below_the_floor_triggers() -> None:
    performance = entity_feedback(100, wrong_mrn=30, wrong_date=30)
    decision = decide(performance=performance)
    assert decision.trigger and decision.conclusive
    assert decision.headline == "Retrain: entity_floor fired and no guard blocks."
    floor = rule(decision, "entity_floor")
    assert "is 0.700 (95% CI" in floor.reason and "below the floor 0.800" in floor.reason
    assert "per-entity F1 below the floor: date 0.700 (95% CI" in floor.reason
    assert ", mrn 0.700 (95% CI" in floor.reason


def test_one_entity_type_below_the_floor_triggers_when_the_micro_f1_holds() -> None:
    performance = entity_feedback(100, wrong_mrn=25)
    assert performance.entity_f1 == pytest.approx(0.875)
    decision = decide(performance=performance)
    floor = rule(decision, "entity_floor")
    assert decision.trigger and floor.active
    assert "0.875 (95% CI" in floor.reason and "at or above the floor 0.800" in floor.reason
    assert "per-entity F1 below the floor: mrn 0.750 (95% CI" in floor.reason
    assert "date" not in floor.reason.split("below the floor:")[1]


def test_rare_entity_types_are_named_but_not_judged() -> None:
    performance = entity_feedback(100, rare_wrong=True)
    assert performance.per_entity["npi"].f1 == 0.0
    decision = decide(performance=performance, min_entity_support=5)
    floor = rule(decision, "entity_floor")
    assert not decision.trigger and not floor.active
    assert "not judged per entity (fewer than 5 true entities): npi." in floor.reason
    assert decide(performance=performance).trigger  # with the default of 1 it is judged


def test_an_entity_f1_drop_beyond_max_drop_below_the_champion_extractor_triggers() -> None:
    performance = entity_feedback(100, wrong_mrn=10, wrong_date=10)
    decision = decide(performance=performance, champion_extract_score=0.97)
    assert decision.trigger
    assert [r.rule for r in decision.signals] == ["entity_drop"]
    drop = rule(decision, "entity_drop").reason
    assert "is 0.900 (95% CI" in drop and "vs 0.970 on the champion extractor's holdout" in drop
    assert "a drop of +0.070, more than the allowed 0.050." in drop


def test_the_extractor_rules_are_unchecked_without_entity_feedback_or_champion_score() -> None:
    decision = decide()
    assert "No entity feedback in the window: the extractor's floor is unchecked." in (
        decision.reasons
    )
    assert (
        "champion extractor's holdout entity F1 is unknown" in rule(decision, "entity_drop").reason
    )
    no_entities = feedback_performance([verdict(i, [], None) for i in range(60)])
    decision = decide(performance=no_entities, champion_extract_score=0.9)
    assert decision.conclusive and not decision.trigger
    assert "the extractor's drop rule is unchecked" in rule(decision, "entity_drop").reason


def test_thin_entity_evidence_is_not_judged_and_keeps_the_window() -> None:
    performance = entity_feedback(30, wrong_mrn=30, wrong_date=30)  # F1 0.0 on 30 documents
    decision = decide(performance=performance, champion_extract_score=0.97)
    assert not decision.trigger and not decision.conclusive
    floor = rule(decision, "entity_floor")
    assert not floor.active
    assert floor.reason.startswith(
        "30 reviewed documents with entity verdicts are fewer than the minimum of 50: "
        "the extractor's floor is not judged (entity F1 0.000"
    )
    assert "the extractor's drop rule is not judged" in rule(decision, "entity_drop").reason
    assert decision.headline == (
        "No retrain: no signal fired, but 30 reviewed documents with entity verdicts are too few "
        "(minimum 50) to judge the extractor."
    )
    held = decide(
        performance=performance, champion_extract_score=0.97, drift_detected=True
    )  # another signal still fires
    assert held.trigger and held.conclusive


def test_extractor_signals_respect_the_guards() -> None:
    performance = entity_feedback(100, wrong_mrn=30, wrong_date=30)
    decision = decide(
        performance=performance, attempts=[NOW - timedelta(hours=5)], champion_extract_score=0.95
    )
    assert not decision.trigger and not decision.conclusive
    assert (
        decision.headline == "No retrain yet: entity_floor, entity_drop fired but cooldown blocks."
    )

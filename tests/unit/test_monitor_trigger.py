"""The trigger policy: every guard and signal, and the sentence each decision carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from docloop.config import TriggerConfig
from docloop.errors import InvalidInput
from docloop.monitor.performance import RateEstimate
from docloop.monitor.trigger import TriggerDecision, decide_trigger

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = TriggerConfig(
    min_new_samples=50,
    performance_floor=0.8,
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
    assert len(decision.reasons) == 1 + 6  # the verdict, then one sentence per rule
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

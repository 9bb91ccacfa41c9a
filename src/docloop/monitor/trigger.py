"""The trigger policy: should the drift check launch a retrain? Every answer comes with reasons.

Rules (``TriggerConfig``), evaluated in this order and all reported:

Guards — any one blocks a retrain:

1. ``min_new_samples``: never retrain on fewer newly reviewed documents than this.
2. ``cooldown_hours``: not within this long after the last retrain attempt started.
3. ``max_retrains`` per ``budget_window_days``: at most this many attempts in the window
   (every attempt counts, whatever its outcome).

Signals — any one asks for a retrain:

4. ``performance_floor``: accuracy on the reviewed documents is below the floor.
5. ``max_drop``: the champion's key metric on the reviewed documents is more than ``max_drop``
   below its score on the holdout (what the gate measured when it was blessed).
6. drift: the drift tests detected drift (with their effect-size and significance conditions) and
   ``retrain_on_drift`` is on.

The decision is ``trigger = any signal and no guard``. Performance rules compare point estimates
(their Wilson intervals are in the sentences); the ``min_new_samples`` guard is what keeps them off
tiny samples.

``conclusive`` says whether the window's evidence was used up: True when the trigger fires, or when
there were enough samples and no signal (the window was healthy). It is False when the evidence
was too thin or a signal was held back by the cooldown or the budget; the drift check then keeps
its watermark, so the evidence carries over to the next check instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from docloop.config import TriggerConfig
from docloop.errors import InvalidInput
from docloop.monitor.performance import RateEstimate

RuleName = Literal[
    "min_new_samples", "cooldown", "budget", "performance_floor", "max_drop", "drift"
]


class RuleOutcome(BaseModel):
    """One rule's verdict: a guard that blocks, or a signal that fires."""

    model_config = ConfigDict(frozen=True)

    rule: RuleName
    kind: Literal["guard", "signal"]
    active: bool = Field(description="Guard: it blocks. Signal: it fires.")
    reason: str


class TriggerDecision(BaseModel):
    """Whether to retrain, and why (a sentence with the numbers for every rule)."""

    model_config = ConfigDict(frozen=True)

    trigger: bool
    reasons: list[str] = Field(description="The verdict first, then one sentence per rule.")
    rules: list[RuleOutcome]
    conclusive: bool = Field(
        description="False: the evidence should carry over to the next check (see module doc)."
    )
    decided_at: datetime
    new_samples: int
    policy: TriggerConfig

    @property
    def headline(self) -> str:
        """The first reason: the verdict in one sentence."""
        return self.reasons[0]

    @property
    def signals(self) -> list[RuleOutcome]:
        """The signals that fired."""
        return [rule for rule in self.rules if rule.kind == "signal" and rule.active]

    @property
    def blockers(self) -> list[RuleOutcome]:
        """The guards that blocked."""
        return [rule for rule in self.rules if rule.kind == "guard" and rule.active]


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput(f"{name} is a naive datetime; pass an aware one, e.g. datetime.now(UTC)")
    return value


def samples_rule(policy: TriggerConfig, new_samples: int) -> RuleOutcome:
    """Guard 1: enough newly reviewed documents."""
    enough = new_samples >= policy.min_new_samples
    return RuleOutcome(
        rule="min_new_samples",
        kind="guard",
        active=not enough,
        reason=(
            f"{new_samples} newly reviewed documents {'meet' if enough else 'are fewer than'} "
            f"the minimum of {policy.min_new_samples}."
        ),
    )


def cooldown_rule(policy: TriggerConfig, now: datetime, starts: Sequence[datetime]) -> RuleOutcome:
    """Guard 2: the cooldown after the last attempt (``starts`` sorted, oldest first)."""
    cooldown = timedelta(hours=policy.cooldown_hours)
    last = starts[-1] if starts else None
    if last is None:
        return RuleOutcome(
            rule="cooldown",
            kind="guard",
            active=False,
            reason="No earlier retrain attempt: no cooldown applies.",
        )
    cooling = now - last < cooldown
    if cooling:
        reason = (
            f"The last retrain attempt started {_hours(now - last)} ago ({last.isoformat()}), "
            f"within the {policy.cooldown_hours:g} h cooldown ({_hours(last + cooldown - now)} "
            "left)."
        )
    else:
        reason = (
            f"The last retrain attempt started {_hours(now - last)} ago, past the "
            f"{policy.cooldown_hours:g} h cooldown."
        )
    return RuleOutcome(rule="cooldown", kind="guard", active=cooling, reason=reason)


def budget_rule(policy: TriggerConfig, now: datetime, starts: Sequence[datetime]) -> RuleOutcome:
    """Guard 3: at most ``max_retrains`` attempts in the budget window (``starts`` sorted)."""
    window = timedelta(days=policy.budget_window_days)
    recent = [start for start in starts if now - window < start <= now]
    spent = len(recent) >= policy.max_retrains
    reason = (
        f"{len(recent)} retrain attempts in the last {policy.budget_window_days:g} days "
        f"{'use up' if spent else 'are within'} the budget of {policy.max_retrains}"
    )
    if spent:
        reason += f"; the next slot opens {(recent[-policy.max_retrains] + window).isoformat()}"
    return RuleOutcome(rule="budget", kind="guard", active=spent, reason=reason + ".")


def floor_rule(policy: TriggerConfig, accuracy: RateEstimate | None) -> RuleOutcome:
    """Signal 4: accuracy on reviewed documents below the floor."""
    if accuracy is None or accuracy.value is None:
        return RuleOutcome(
            rule="performance_floor",
            kind="signal",
            active=False,
            reason="No document-type feedback in the window: the performance floor is unchecked.",
        )
    fires = accuracy.value < policy.performance_floor
    return RuleOutcome(
        rule="performance_floor",
        kind="signal",
        active=fires,
        reason=(
            f"Accuracy on reviewed documents is {accuracy.describe()}, "
            f"{'below' if fires else 'at or above'} the floor {policy.performance_floor:.3f}."
        ),
    )


def drop_rule(
    policy: TriggerConfig, metric: str, feedback_score: float | None, champion_score: float | None
) -> RuleOutcome:
    """Signal 5: the key metric on reviewed documents more than ``max_drop`` below the holdout's."""
    if champion_score is None or feedback_score is None:
        missing = (
            "the champion's holdout score is unknown"
            if champion_score is None
            else f"{metric} cannot be measured on the reviewed documents"
        )
        return RuleOutcome(
            rule="max_drop",
            kind="signal",
            active=False,
            reason=f"The drop rule is unchecked: {missing}.",
        )
    drop = champion_score - feedback_score
    fires = drop > policy.max_drop
    return RuleOutcome(
        rule="max_drop",
        kind="signal",
        active=fires,
        reason=(
            f"{metric} on reviewed documents is {feedback_score:.3f} vs {champion_score:.3f} on "
            f"the champion's holdout: a drop of {drop:+.3f}, "
            f"{'more than' if fires else 'within'} the allowed {policy.max_drop:.3f}."
        ),
    )


def drift_rule(policy: TriggerConfig, detected: bool, reasons: Sequence[str]) -> RuleOutcome:
    """Signal 6: drift detected (and ``retrain_on_drift``)."""
    if not detected:
        reason = "No drift test found drift with enough evidence (effect size and significance)."
    elif not policy.retrain_on_drift:
        reason = "Drift was detected, but retrain_on_drift is off: " + " ".join(reasons)
    else:
        reason = "Drift was detected: " + " ".join(reasons)
    return RuleOutcome(
        rule="drift", kind="signal", active=detected and policy.retrain_on_drift, reason=reason
    )


def _headline(
    policy: TriggerConfig,
    new_samples: int,
    signals: Sequence[RuleOutcome],
    blockers: Sequence[RuleOutcome],
) -> str:
    fired = ", ".join(rule.rule for rule in signals)
    if signals and not blockers:
        return f"Retrain: {fired} fired and no guard blocks."
    if signals:
        blocking = ", ".join(rule.rule for rule in blockers)
        return f"No retrain yet: {fired} fired but {blocking} blocks."
    if new_samples < policy.min_new_samples:
        return (
            f"No retrain: no signal fired, and {new_samples} reviewed documents are too few "
            f"(minimum {policy.min_new_samples}) to judge performance."
        )
    return "No retrain: performance and drift are within the policy."


def decide_trigger(
    policy: TriggerConfig,
    *,
    now: datetime,
    new_samples: int,
    accuracy: RateEstimate | None,
    metric: str,
    feedback_score: float | None,
    champion_score: float | None,
    drift_detected: bool,
    drift_reasons: Sequence[str] = (),
    attempts: Sequence[datetime] = (),
) -> TriggerDecision:
    """Apply the trigger policy.

    Args:
        policy: The trigger configuration.
        now: The decision time (aware).
        new_samples: Documents reviewed in the window (judged predictions).
        accuracy: Document-type accuracy on those reviews (None: no type feedback).
        metric: Name of the champion's key metric (e.g. ``macro_f1``), for the sentences.
        feedback_score: That metric on the reviews (None: not measurable).
        champion_score: That metric on the champion's holdout (None: unknown).
        drift_detected: The drift tests' combined decision.
        drift_reasons: The drift tests' sentences for the tests that found drift.
        attempts: Start times (aware) of earlier retrain attempts; any outcome counts.

    Returns:
        The decision.

    Raises:
        InvalidInput: A naive datetime.
    """
    _aware(now, "now")
    starts = sorted(_aware(start, "a retrain attempt's start") for start in attempts)
    rules = [
        samples_rule(policy, new_samples),
        cooldown_rule(policy, now, starts),
        budget_rule(policy, now, starts),
        floor_rule(policy, accuracy),
        drop_rule(policy, metric, feedback_score, champion_score),
        drift_rule(policy, drift_detected, drift_reasons),
    ]
    signals = [rule for rule in rules if rule.kind == "signal" and rule.active]
    blockers = [rule for rule in rules if rule.kind == "guard" and rule.active]
    trigger = bool(signals) and not blockers
    enough = new_samples >= policy.min_new_samples
    return TriggerDecision(
        trigger=trigger,
        reasons=[_headline(policy, new_samples, signals, blockers), *(r.reason for r in rules)],
        rules=rules,
        conclusive=trigger or (enough and not signals),
        decided_at=now,
        new_samples=new_samples,
        policy=policy,
    )

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
7. ``entity_floor`` (the extractor): the micro entity F1 on the reviewed documents, or the F1 of
   any entity type with at least ``min_entity_support`` true entities among them, is below
   ``entity_floor``.
8. ``entity_drop`` (the extractor): the micro entity F1 on the reviewed documents is more than
   ``max_drop`` below the champion extractor's holdout entity F1 (the gate's ``f1``), when that is
   known.

The extractor's floor is ``entity_floor`` (entity F1 runs lower than accuracy); its drop rule
reuses ``max_drop``. Their
evidence is the number of reviewed documents scored for entities
(``PerformanceReport.entity_documents``): below ``min_new_samples`` they are reported as not
judged and do not fire. Without entity feedback (no report, or no entity true or predicted on the
reviewed documents) they are reported as unchecked.

The decision is ``trigger = any signal and no guard``. Performance rules compare point estimates
(their Wilson or bootstrap intervals are in the sentences); the ``min_new_samples`` guard and the
extractor's evidence minimum are what keep them off tiny samples.

``conclusive`` says whether the window's evidence was used up: True when the trigger fires, or when
there were enough samples and no signal (the window was healthy). It is False when the evidence
was too thin (too few reviewed documents, or entity feedback on too few of them to judge the
extractor) or a signal was held back by the cooldown or the budget; the drift check then keeps its
watermark, so the evidence carries over to the next check instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from docloop.config import TriggerConfig
from docloop.errors import InvalidInput
from docloop.monitor.performance import LabelPerformance, PerformanceReport, RateEstimate

RuleName = Literal[
    "min_new_samples",
    "cooldown",
    "budget",
    "performance_floor",
    "max_drop",
    "drift",
    "entity_floor",
    "entity_drop",
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


def _entity_evidence(
    policy: TriggerConfig, performance: PerformanceReport | None, rule: str
) -> tuple[PerformanceReport, float] | str:
    """The report and its micro entity F1 when the extractor can be judged, else why not.

    Args:
        policy: The trigger configuration (``min_new_samples``).
        performance: The feedback performance report.
        rule: The rule's name in the sentence.

    Returns:
        ``(performance, entity_f1)``, or a sentence: no entity feedback (unchecked), or entity
        feedback on fewer than ``min_new_samples`` documents (not judged).
    """
    if performance is None or performance.entity_f1 is None:
        return f"No entity feedback in the window: {rule} is unchecked."
    documents = performance.entity_documents
    if documents < policy.min_new_samples:
        return (
            f"{documents} reviewed documents with entity verdicts are fewer than the minimum of "
            f"{policy.min_new_samples}: {rule} is not judged (entity F1 "
            f"{_describe_micro(performance)})."
        )
    return performance, performance.entity_f1


def entity_evidence_thin(policy: TriggerConfig, performance: PerformanceReport | None) -> bool:
    """Whether there is entity feedback, but on too few documents to judge the extractor."""
    return (
        performance is not None
        and performance.entity_f1 is not None
        and performance.entity_documents < policy.min_new_samples
    )


def _interval(lower: float | None, upper: float | None, confidence: float) -> str:
    if lower is None or upper is None:
        return ""
    return f"{confidence * 100:g}% CI {lower:.3f}-{upper:.3f}, "


def _describe_micro(performance: PerformanceReport) -> str:
    """``0.912 (95% CI 0.887-0.935, precision 410/449, recall 410/452)``."""
    precision, recall = performance.entity_precision, performance.entity_recall
    interval = _interval(
        performance.entity_f1_lower, performance.entity_f1_upper, performance.confidence
    )
    return (
        f"{performance.entity_f1 or 0.0:.3f} ({interval}"
        f"precision {precision.successes}/{precision.trials}, "
        f"recall {recall.successes}/{recall.trials})"
    )


def _describe_entity(name: str, scores: LabelPerformance, confidence: float) -> str:
    """``date 0.612 (95% CI 0.500-0.710, 40 true, 38 predicted)``."""
    interval = _interval(scores.f1_lower, scores.f1_upper, confidence)
    return (
        f"{name} {scores.f1 or 0.0:.3f} ({interval}{scores.support} true, "
        f"{scores.predicted} predicted)"
    )


def entity_floor_rule(
    policy: TriggerConfig, performance: PerformanceReport | None, min_entity_support: int = 1
) -> RuleOutcome:
    """Signal 7: micro or per-entity F1 on reviewed documents below ``entity_floor``.

    Args:
        policy: The trigger configuration (``entity_floor``, ``min_new_samples``).
        performance: The feedback performance report (None: no feedback scored).
        min_entity_support: Entity types with fewer true entities on the reviewed documents are
            named but not judged (their F1 rests on too few entities).

    Returns:
        The outcome; it fires when the micro F1 or any judged entity type's F1 is below the floor.
    """
    evidence = _entity_evidence(policy, performance, "the extractor's floor")
    if isinstance(evidence, str):
        return RuleOutcome(rule="entity_floor", kind="signal", active=False, reason=evidence)
    performance, micro = evidence
    floor = policy.entity_floor
    f1 = {name: s.f1 for name, s in performance.per_entity.items() if s.f1 is not None}
    judged = sorted(
        (name for name in f1 if performance.per_entity[name].support >= min_entity_support),
        key=lambda name: (f1[name], name),
    )
    unjudged = sorted(name for name in f1 if name not in judged)
    below = [name for name in judged if f1[name] < floor]
    micro_below = micro < floor
    fires = micro_below or bool(below)
    reason = (
        f"Entity F1 (micro) on {performance.entity_documents} reviewed documents with entity "
        f"verdicts is {_describe_micro(performance)}, "
        f"{'below' if micro_below else 'at or above'} the floor {floor:.3f}"
    )
    confidence = performance.confidence
    if below:
        reason += "; per-entity F1 below the floor: " + ", ".join(
            _describe_entity(name, performance.per_entity[name], confidence) for name in below
        )
    elif judged:
        lowest = judged[0]
        reason += (
            f"; every entity type is at or above it (lowest: "
            f"{_describe_entity(lowest, performance.per_entity[lowest], confidence)})"
        )
    if unjudged:
        reason += (
            f"; not judged per entity (fewer than {min_entity_support} true entities): "
            + ", ".join(unjudged)
        )
    return RuleOutcome(rule="entity_floor", kind="signal", active=fires, reason=reason + ".")


def entity_drop_rule(
    policy: TriggerConfig,
    performance: PerformanceReport | None,
    champion_extract_score: float | None,
) -> RuleOutcome:
    """Signal 8: micro entity F1 on reviewed documents more than ``max_drop`` below the holdout's.

    Args:
        policy: The trigger configuration (``max_drop``, ``min_new_samples``).
        performance: The feedback performance report (None: no feedback scored).
        champion_extract_score: The champion extractor's entity F1 on its holdout (None: unknown).

    Returns:
        The outcome; unchecked when either score is unknown.
    """
    if champion_extract_score is None:
        return RuleOutcome(
            rule="entity_drop",
            kind="signal",
            active=False,
            reason=(
                "The extractor's drop rule is unchecked: the champion extractor's holdout entity "
                "F1 is unknown."
            ),
        )
    evidence = _entity_evidence(policy, performance, "the extractor's drop rule")
    if isinstance(evidence, str):
        return RuleOutcome(rule="entity_drop", kind="signal", active=False, reason=evidence)
    performance, micro = evidence
    drop = champion_extract_score - micro
    fires = drop > policy.max_drop
    return RuleOutcome(
        rule="entity_drop",
        kind="signal",
        active=fires,
        reason=(
            f"Entity F1 (micro) on {performance.entity_documents} reviewed documents with entity "
            f"verdicts is {_describe_micro(performance)} vs {champion_extract_score:.3f} on the "
            f"champion extractor's holdout: a drop of {drop:+.3f}, "
            f"{'more than' if fires else 'within'} the allowed {policy.max_drop:.3f}."
        ),
    )


def _headline(
    policy: TriggerConfig,
    new_samples: int,
    signals: Sequence[RuleOutcome],
    blockers: Sequence[RuleOutcome],
    entity_documents: int | None = None,
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
    if entity_documents is not None:
        return (
            f"No retrain: no signal fired, but {entity_documents} reviewed documents with entity "
            f"verdicts are too few (minimum {policy.min_new_samples}) to judge the extractor."
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
    performance: PerformanceReport | None = None,
    champion_extract_score: float | None = None,
    min_entity_support: int = 1,
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
        performance: The feedback performance report whose entity scores judge the extractor
            (None: the extractor's rules are unchecked).
        champion_extract_score: The champion extractor's micro entity F1 on its holdout (None:
            unknown, the extractor's drop rule is unchecked).
        min_entity_support: True entities an entity type needs on the reviewed documents for its
            own F1 to be held to the floor.

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
        entity_floor_rule(policy, performance, min_entity_support),
        entity_drop_rule(policy, performance, champion_extract_score),
    ]
    signals = [rule for rule in rules if rule.kind == "signal" and rule.active]
    blockers = [rule for rule in rules if rule.kind == "guard" and rule.active]
    trigger = bool(signals) and not blockers
    enough = new_samples >= policy.min_new_samples
    thin = entity_evidence_thin(policy, performance)
    headline = _headline(
        policy,
        new_samples,
        signals,
        blockers,
        performance.entity_documents if thin and performance is not None else None,
    )
    return TriggerDecision(
        trigger=trigger,
        reasons=[headline, *(r.reason for r in rules)],
        rules=rules,
        conclusive=trigger or (enough and not thin and not signals),
        decided_at=now,
        new_samples=new_samples,
        policy=policy,
    )

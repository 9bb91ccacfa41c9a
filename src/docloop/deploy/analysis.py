"""Canary analysis: is the canary worse than the champion on live traffic?

Pure: it takes per-variant numbers (:class:`VariantStats`, from the prediction log, the feedback
and — where the target can count them — failed requests) and the ``deploy.canary`` policy, and
decides ``promote``, ``rollback`` or ``wait``. Every check says its numbers in a sentence.

Rules, each only once both variants have the evidence it needs:

* error rate (≥ ``min_requests`` requests each, errors counted): canary - champion above
  ``max_error_rate_increase`` → worse;
* p95 latency (≥ ``min_requests``): canary above ``max_p95_latency_ratio`` x champion → worse;
* live accuracy (≥ ``min_feedback`` reviewed predictions each; ``min_feedback: 0`` turns it off):
  champion - canary above ``max_accuracy_drop`` → worse; only when the canary changes the
  classifier;
* live entity F1 (micro, over the spans the reviewers' verdicts settle on; ≥ ``min_feedback``
  reviewed predictions each): champion - canary above ``max_entity_f1_drop`` → worse; only when
  the canary changes the extractor.

Which models the canary changes comes from both variants' ``versions`` (task → version); a model
both sides share is not judged, since any difference between them would be sampling noise. When
either side does not say its versions, only the classifier is judged (as before versions were
known).

A worse check rolls back at once. When every check has its evidence and passed, the canary is
promoted. Until then the analysis waits — up to ``max_duration_s``, after which
``on_insufficient_evidence`` decides (rollback by default: no evidence is no promotion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from docloop.config import CanaryConfig

Decision = Literal["promote", "rollback", "wait"]
_EPSILON = 1e-9  # a drop of exactly the limit passes (17/20 vs 18/20 is 0.05, not 0.0500...1)


class VariantStats(BaseModel):
    """Live numbers of one variant (champion or canary) since the canary started."""

    model_config = ConfigDict(frozen=True)

    variant: str = Field(description="The versions it serves (label ``docloop.io/versions``).")
    requests: int = Field(ge=0, description="Documents answered or failed.")
    errors: int | None = Field(default=None, ge=0, description="Failed requests; None: unknown.")
    latencies_ms: list[float] = Field(default_factory=list, repr=False)
    versions: dict[str, str] = Field(
        default_factory=dict, description="Version per task (classify, extract) it serves."
    )
    reviewed: int = Field(default=0, ge=0, description="Predictions with a reviewer's verdict.")
    correct: int = Field(default=0, ge=0, description="Reviewed predictions whose type was right.")
    entity_reviewed: int = Field(
        default=0, ge=0, description="Reviewed predictions whose entities could be scored."
    )
    entity_true_positives: int = Field(default=0, ge=0, description="Predicted spans confirmed.")
    entity_predicted: int = Field(default=0, ge=0, description="Spans the extractor predicted.")
    entity_gold: int = Field(default=0, ge=0, description="Spans the verdicts settle on.")

    @property
    def error_rate(self) -> float | None:
        """Errors per request (None when errors are not counted or nothing was sent)."""
        if self.errors is None or self.requests == 0:
            return None
        return self.errors / self.requests

    @property
    def p95_ms(self) -> float | None:
        """95th percentile latency in milliseconds (None without latencies)."""
        if not self.latencies_ms:
            return None
        return float(np.percentile(np.asarray(self.latencies_ms, dtype=np.float64), 95))

    @property
    def accuracy(self) -> float | None:
        """Share of reviewed predictions that were right (None when none was reviewed)."""
        return self.correct / self.reviewed if self.reviewed else None

    @property
    def entity_f1(self) -> float | None:
        """Micro entity F1 on the reviewed predictions (None when none could be scored)."""
        if not self.entity_reviewed:
            return None
        total = self.entity_predicted + self.entity_gold
        return 2.0 * self.entity_true_positives / total if total else 1.0

    def summary(self) -> dict[str, float | int | str | None]:
        """The numbers a report shows."""
        return {
            "variant": self.variant,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p95_ms": self.p95_ms,
            "reviewed": self.reviewed,
            "accuracy": self.accuracy,
            "entity_reviewed": self.entity_reviewed,
            "entity_f1": self.entity_f1,
        }


class CanaryCheck(BaseModel):
    """One rule's outcome: None = not enough evidence yet."""

    model_config = ConfigDict(frozen=True)

    name: str
    champion: float | None
    canary: float | None
    limit: float
    passed: bool | None
    reason: str


class CanaryVerdict(BaseModel):
    """What the analysis decided, why, and on which numbers."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    reasons: list[str]
    checks: list[CanaryCheck]
    champion: dict[str, float | int | str | None]
    canary: dict[str, float | int | str | None]
    elapsed_s: float


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}{unit}"


def _error_check(champion: VariantStats, canary: VariantStats, policy: CanaryConfig) -> CanaryCheck:
    limit = policy.max_error_rate_increase
    name = "error_rate"
    if champion.error_rate is None or canary.error_rate is None:
        return CanaryCheck(
            name=name, champion=champion.error_rate, canary=canary.error_rate, limit=limit,
            passed=None, reason="failed requests are not counted by this target; not checked",
        )  # fmt: skip
    if min(champion.requests, canary.requests) < policy.min_requests:
        return CanaryCheck(
            name=name, champion=champion.error_rate, canary=canary.error_rate, limit=limit,
            passed=None,
            reason=f"{canary.requests} canary / {champion.requests} champion requests, below "
            f"min_requests {policy.min_requests}",
        )  # fmt: skip
    increase = canary.error_rate - champion.error_rate
    passed = increase <= limit + _EPSILON
    return CanaryCheck(
        name=name, champion=champion.error_rate, canary=canary.error_rate, limit=limit,
        passed=passed,
        reason=f"error rate {_fmt(canary.error_rate)} vs champion {_fmt(champion.error_rate)}: "
        f"{'+' if increase >= 0 else ''}{increase:.4f} "
        f"{'within' if passed else 'above'} the allowed +{limit:g}",
    )  # fmt: skip


def _latency_check(
    champion: VariantStats, canary: VariantStats, policy: CanaryConfig
) -> CanaryCheck:
    limit = policy.max_p95_latency_ratio
    name = "p95_latency"
    if (
        min(len(champion.latencies_ms), len(canary.latencies_ms)) < policy.min_requests
        or champion.p95_ms is None
        or canary.p95_ms is None
    ):
        return CanaryCheck(
            name=name, champion=champion.p95_ms, canary=canary.p95_ms, limit=limit, passed=None,
            reason=f"{len(canary.latencies_ms)} canary / {len(champion.latencies_ms)} champion "
            f"timed answers, below min_requests {policy.min_requests}",
        )  # fmt: skip
    ratio = canary.p95_ms / champion.p95_ms if champion.p95_ms > 0 else math.inf
    passed = ratio <= limit + _EPSILON
    return CanaryCheck(
        name=name, champion=champion.p95_ms, canary=canary.p95_ms, limit=limit, passed=passed,
        reason=f"p95 latency {_fmt(canary.p95_ms, ' ms')} vs champion "
        f"{_fmt(champion.p95_ms, ' ms')}: {ratio:.2f}x, {'within' if passed else 'above'} the "
        f"allowed {limit:g}x",
    )  # fmt: skip


def _live_quality_check(
    name: str,
    what: str,
    scores: tuple[float | None, float | None],
    reviewed: tuple[int, int],
    limit: float,
    policy: CanaryConfig,
) -> CanaryCheck | None:
    """Canary vs champion on a live quality score (champion first in each pair): a drop limit."""
    if policy.min_feedback == 0:
        return None
    (champion_score, canary_score), (champion_n, canary_n) = scores, reviewed
    if min(champion_n, canary_n) < policy.min_feedback:
        return CanaryCheck(
            name=name, champion=champion_score, canary=canary_score, limit=limit, passed=None,
            reason=f"{canary_n} canary / {champion_n} champion {what}, below min_feedback "
            f"{policy.min_feedback}",
        )  # fmt: skip
    assert champion_score is not None and canary_score is not None  # reviewed > 0
    drop = champion_score - canary_score
    passed = drop <= limit + _EPSILON
    label = name.replace("_", " ").replace("f1", "F1")
    return CanaryCheck(
        name=name, champion=champion_score, canary=canary_score, limit=limit, passed=passed,
        reason=f"{label} {canary_score:.3f} ({canary_n} reviewed) vs champion "
        f"{champion_score:.3f} ({champion_n}): drop {drop:+.3f}, "
        f"{'within' if passed else 'above'} the allowed {limit:g}",
    )  # fmt: skip


def _accuracy_check(
    champion: VariantStats, canary: VariantStats, policy: CanaryConfig
) -> CanaryCheck | None:
    return _live_quality_check(
        "live_accuracy",
        "reviewed predictions",
        (champion.accuracy, canary.accuracy),
        (champion.reviewed, canary.reviewed),
        policy.max_accuracy_drop,
        policy,
    )


def _entity_check(
    champion: VariantStats, canary: VariantStats, policy: CanaryConfig
) -> CanaryCheck | None:
    return _live_quality_check(
        "live_entity_f1",
        "predictions with scored entities",
        (champion.entity_f1, canary.entity_f1),
        (champion.entity_reviewed, canary.entity_reviewed),
        policy.max_entity_f1_drop,
        policy,
    )


def changed_tasks(champion: VariantStats, canary: VariantStats) -> set[str]:
    """The tasks whose model the canary changes (``{"classify"}`` when versions are not known)."""
    if not champion.versions or not canary.versions:
        return {"classify"}
    tasks = set(champion.versions) | set(canary.versions)
    return {task for task in tasks if champion.versions.get(task) != canary.versions.get(task)}


def analyse_canary(
    champion: VariantStats, canary: VariantStats, policy: CanaryConfig, elapsed_s: float
) -> CanaryVerdict:
    """Decide on the canary from both variants' numbers after ``elapsed_s`` seconds."""
    checks: list[CanaryCheck] = [
        _error_check(champion, canary, policy),
        _latency_check(champion, canary, policy),
    ]
    changed = changed_tasks(champion, canary)
    quality = [
        _accuracy_check(champion, canary, policy) if "classify" in changed else None,
        _entity_check(champion, canary, policy) if "extract" in changed else None,
    ]
    checks.extend(check for check in quality if check is not None)
    failed = [check for check in checks if check.passed is False]
    # a check the target cannot measure at all (errors not counted) does not hold promotion up
    pending = [
        check
        for check in checks
        if check.passed is None and not check.reason.endswith("not checked")
    ]
    decision: Decision
    if failed:
        decision = "rollback"
        headline = "canary is worse than the champion: " + "; ".join(c.reason for c in failed)
    elif not pending:
        decision = "promote"
        headline = "canary is no worse than the champion on every check"
    elif elapsed_s >= policy.max_duration_s:
        decision = policy.on_insufficient_evidence
        headline = (
            f"the analysis window of {policy.max_duration_s:g} s ended without enough evidence "
            f"({'; '.join(c.reason for c in pending)}): on_insufficient_evidence = {decision}"
        )
    else:
        decision = "wait"
        headline = f"waiting for evidence after {elapsed_s:.0f} s: " + "; ".join(
            c.reason for c in pending
        )
    return CanaryVerdict(
        decision=decision,
        reasons=[headline] + [f"{c.name}: {c.reason}" for c in checks],
        checks=checks,
        champion=champion.summary(),
        canary=canary.summary(),
        elapsed_s=elapsed_s,
    )


def render_markdown(verdict: CanaryVerdict, steps: Sequence[CanaryVerdict] = ()) -> str:
    """The analysis as Markdown for the KFP UI: decision, checks table, the timeline of looks."""
    lines = [
        f"# Canary analysis: **{verdict.decision.upper()}**",
        "",
        verdict.reasons[0],
        "",
        "| check | champion | canary | limit | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for check in verdict.checks:
        result = {True: "pass", False: "**fail**", None: "no evidence"}[check.passed]
        lines.append(
            f"| {check.name} | {_fmt(check.champion)} | {_fmt(check.canary)} | "
            f"{check.limit:g} | {result} |"
        )
    lines += [
        "",
        "| variant | requests | errors | p95 ms | reviewed | accuracy | entity-scored "
        "| entity F1 |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for side in (verdict.champion, verdict.canary):
        lines.append(
            f"| {side['variant']} | {side['requests']} | {side['errors']} | "
            f"{_fmt(side['p95_ms'])} | {side['reviewed']} | {_fmt(side['accuracy'])} | "  # type: ignore[arg-type]
            f"{side.get('entity_reviewed', 0)} | {_fmt(side.get('entity_f1'))} |"  # type: ignore[arg-type]
        )
    if steps:
        lines += ["", "| after s | decision | first reason |", "| --- | --- | --- |"]
        lines += [f"| {s.elapsed_s:.0f} | {s.decision} | {s.reasons[0][:120]} |" for s in steps]
    return "\n".join(lines) + "\n"

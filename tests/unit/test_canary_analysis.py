"""Canary analysis rules, each on hand-made numbers."""

from __future__ import annotations

import pytest

from docloop.config import CanaryConfig
from docloop.deploy.analysis import VariantStats, analyse_canary, render_markdown

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

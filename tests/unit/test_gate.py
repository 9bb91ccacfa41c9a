"""The gate on hand-made predictions: every check, the paired bootstrap and gate.json."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from docloop.config import GateConfig
from docloop.errors import ConfigError, InvalidInput
from docloop.evaluation.gate import (
    MINUS,
    GateResult,
    bootstrap_indices,
    evaluate_gate,
    paired_bootstrap,
)
from docloop.evaluation.scoring import (
    ModelScores,
    classification_scores,
    extraction_scores,
)
from docloop.models.metrics import EntityReport, entity_metrics

pytestmark = pytest.mark.unit

ABC = ["a", "b", "c"]


def gold_of(**support: int) -> list[str]:
    """Gold classes interleaved: gold_of(a=2, b=1) == ["a", "b", "a"]."""
    gold: list[str] = []
    remaining = dict(support)
    while any(remaining.values()):
        for label in list(remaining):
            if remaining[label]:
                gold.append(label)
                remaining[label] -= 1
    return gold


def with_errors(gold: list[str], wrong: set[int], to: dict[str, str] | None = None) -> list[str]:
    """Predictions equal to gold except at `wrong`, where a class moves to the next one."""
    to = to or {"a": "b", "b": "c", "c": "a"}
    return [to[label] if index in wrong else label for index, label in enumerate(gold)]


def scores(
    gold: list[str], predicted: list[str], prefix: str = "d", labels: list[str] | None = None
) -> ModelScores:
    ids = [f"{prefix}{index:04d}" for index in range(len(gold))]
    return classification_scores(ids, gold, predicted, labels or sorted(set(gold)))


def checks_named(result: GateResult, name: str) -> list[str]:
    return [check.reason for check in result.checks if check.name == name]


# --- verdicts -----------------------------------------------------------------------------------


def test_a_clear_improvement_is_blessed() -> None:
    gold = gold_of(a=20, b=20, c=20)
    incumbent = scores(gold, with_errors(gold, set(range(12))))
    candidate = scores(gold, with_errors(gold, {0, 1}))

    result = evaluate_gate("classify", GateConfig(), {"frozen": candidate}, {"frozen": incumbent})

    assert result.blessed and not result.failed and not result.first_model
    assert [check.name for check in result.checks] == [
        "floor",
        "improvement",
        "holdout_regression",
        "label_regression",
        "label_regression",
        "label_regression",
    ]
    (improvement,) = [check for check in result.checks if check.name == "improvement"]
    assert improvement.delta is not None and improvement.lower_bound is not None
    assert improvement.delta > improvement.lower_bound > 0
    assert improvement.candidate == pytest.approx(candidate.report.macro_f1)
    assert improvement.incumbent == pytest.approx(incumbent.report.macro_f1)
    assert improvement.reason.startswith(
        "macro_f1 on holdout 'frozen' (60 documents) improved by +"
    )
    assert "95% paired-bootstrap lower bound +" in improvement.reason
    assert improvement.reason.endswith("> 0); needed ≥ +0.000")
    assert result.headline == "blessed: all 6 checks passed" and result.summary == ""


def test_a_per_class_regression_fails_despite_a_big_overall_gain() -> None:
    gold = gold_of(a=20, b=20, c=20)
    b_and_c = {i for i, label in enumerate(gold) if label in "bc"}
    incumbent = scores(gold, with_errors(gold, set(sorted(b_and_c)[:16]), {"b": "c", "c": "b"}))
    a_docs = [i for i, label in enumerate(gold) if label == "a"]
    candidate = scores(gold, with_errors(gold, set(a_docs[:4]), {"a": "b"}))

    result = evaluate_gate("classify", GateConfig(), {"frozen": candidate}, {"frozen": incumbent})

    assert not result.blessed
    (failed,) = result.failed
    assert failed.name == "label_regression" and failed.label == "a" and failed.support == 20
    assert failed.reason == (
        f"class 'a' F1 on holdout 'frozen' fell 1.000 → 0.889 ({MINUS}0.111), "
        "more than the tolerated 0.050"
    )
    assert next(c for c in result.checks if c.name == "improvement").passed
    assert result.headline == "not blessed: 1 of 6 checks failed"
    assert result.summary == failed.reason


def test_a_tiny_gain_on_few_documents_is_not_significant() -> None:
    gold = gold_of(a=5, b=5)
    incumbent = scores(gold, with_errors(gold, {0}, {"a": "b"}))
    candidate = scores(gold, gold)

    result = evaluate_gate("classify", GateConfig(), {"frozen": candidate}, {"frozen": incumbent})

    assert not result.blessed
    (failed,) = result.failed
    assert failed.name == "improvement"
    assert failed.delta is not None and failed.delta > 0
    assert failed.lower_bound == 0.0  # a third of the resamples miss the one fixed document
    assert "lower bound +0.000 ≤ 0, not significant" in failed.reason


def test_identical_models_are_not_blessed() -> None:
    gold = gold_of(a=30, b=30)
    same = scores(gold, with_errors(gold, {1, 5, 9}, {"a": "b", "b": "a"}))
    result = evaluate_gate("classify", GateConfig(), {"frozen": same}, {"frozen": same})
    assert not result.blessed
    assert [check.name for check in result.failed] == ["improvement"]
    assert result.bootstrap is not None and set(result.bootstrap.replicates) == {0.0}


def test_a_significant_gain_below_min_improvement_fails() -> None:
    gold = gold_of(a=100, b=100)
    incumbent = scores(gold, with_errors(gold, set(range(0, 200, 5)), {"a": "b", "b": "a"}))
    candidate = scores(gold, with_errors(gold, set(range(0, 200, 10)), {"a": "b", "b": "a"}))
    policy = GateConfig(classify_metric="accuracy", min_improvement=0.15)

    result = evaluate_gate("classify", policy, {"frozen": candidate}, {"frozen": incumbent})

    (failed,) = result.failed
    assert failed.name == "improvement" and failed.lower_bound is not None
    assert failed.lower_bound > 0
    assert failed.reason.endswith("> 0), less than the required +0.150")
    assert failed.threshold == pytest.approx(0.8 + 0.15)


@pytest.mark.parametrize(
    ("min_improvement", "relative", "blessed", "needed"),
    [
        (0.1, True, False, "less than the required +0.080 (10.0% of the incumbent's 0.800)"),
        (0.04, True, True, "needed ≥ +0.032 (4.0% of the incumbent's 0.800)"),
        (0.05, False, False, "less than the required +0.050"),
    ],
)
def test_relative_and_absolute_min_improvement(
    min_improvement: float, relative: bool, blessed: bool, needed: str
) -> None:
    gold = gold_of(a=200, b=200)
    incumbent = scores(gold, with_errors(gold, set(range(0, 400, 5)), {"a": "b", "b": "a"}))
    candidate = scores(gold, with_errors(gold, set(range(0, 320, 5)), {"a": "b", "b": "a"}))
    assert (incumbent.metric("accuracy"), candidate.metric("accuracy")) == (0.8, 0.84)
    policy = GateConfig(
        classify_metric="accuracy", min_improvement=min_improvement, relative=relative
    )

    result = evaluate_gate("classify", policy, {"frozen": candidate}, {"frozen": incumbent})

    assert result.blessed is blessed
    (improvement,) = checks_named(result, "improvement")
    assert improvement.endswith(needed)


def test_first_model_gets_floors_only() -> None:
    gold = gold_of(a=10, b=10)
    good = scores(gold, with_errors(gold, {0, 1}, {"a": "b", "b": "a"}))
    bad = scores(gold, with_errors(gold, set(range(8)), {"a": "b", "b": "a"}))

    passed = evaluate_gate("classify", GateConfig(), {"frozen": good, "feedback": good})
    failed = evaluate_gate("classify", GateConfig(), {"frozen": good, "feedback": bad})

    assert passed.blessed and passed.first_model and passed.bootstrap is None
    assert [(c.name, c.holdout) for c in passed.checks] == [
        ("floor", "frozen"),
        ("floor", "feedback"),
    ]
    assert passed.headline == "blessed: all 2 checks passed (first model: floors only)"
    assert not failed.blessed
    (floor,) = failed.failed
    assert floor.holdout == "feedback" and floor.incumbent is None and floor.threshold == 0.7
    assert floor.reason == "macro_f1 on holdout 'feedback' is 0.600, below the floor 0.700"


def test_extractor_floor_uses_the_extract_floor() -> None:
    tags = [["B-mrn", "O"], ["O", "B-mrn"]]
    half = extraction_scores(["x", "y"], tags, [["B-mrn", "O"], ["O", "O"]])
    assert half.metric("f1") == pytest.approx(2 / 3)
    assert evaluate_gate("extract", GateConfig(extract_floor=0.6), {"h": half}).blessed
    assert not evaluate_gate("extract", GateConfig(extract_floor=0.7), {"h": half}).blessed


def test_min_support_skips_a_rare_class() -> None:
    gold = gold_of(a=30, b=30, rare=3)
    rare = {i for i, label in enumerate(gold) if label == "rare"}
    a_and_b = [i for i, label in enumerate(gold) if label != "rare"]
    incumbent = scores(
        gold, with_errors(gold, set(a_and_b[:10]), {"a": "b", "b": "a"}), labels=None
    )
    candidate = scores(gold, with_errors(gold, rare, {"rare": "a"}), labels=sorted(set(gold)))
    policy = GateConfig(classify_metric="accuracy", min_support=5)

    result = evaluate_gate("classify", policy, {"frozen": candidate}, {"frozen": incumbent})

    assert result.blessed
    (skipped,) = [check for check in result.checks if check.skipped]
    assert skipped.label == "rare" and skipped.passed and skipped.support == 3
    assert skipped.reason == (
        "class 'rare' F1 on holdout 'frozen' not checked: 3 holdout examples, fewer than "
        "min_support 5 (1.000 → 0.000)"
    )
    assert result.headline == "blessed: all 5 checks passed"  # skipped checks are not counted

    strict = evaluate_gate(
        "classify", policy.model_copy(update={"min_support": 3}), {"frozen": candidate},
        {"frozen": incumbent},
    )  # fmt: skip
    assert not strict.blessed
    assert [(c.name, c.label) for c in strict.failed] == [("label_regression", "rare")]


def test_forgetting_guard_on_a_second_holdout() -> None:
    frozen = gold_of(a=50, b=50)
    feedback = gold_of(a=50, b=50)
    swap = {"a": "b", "b": "a"}
    candidate = {
        "frozen": scores(frozen, with_errors(frozen, set(range(0, 100, 5)), swap), "f"),
        "feedback": scores(feedback, feedback, "n"),
    }
    incumbent = {
        "frozen": scores(frozen, with_errors(frozen, set(range(0, 100, 10)), swap), "f"),
        "feedback": scores(feedback, with_errors(feedback, set(range(0, 100, 2)), swap), "n"),
    }
    policy = GateConfig(classify_metric="accuracy")

    result = evaluate_gate("classify", policy, candidate, incumbent)

    assert not result.blessed
    (improvement,) = [c for c in result.checks if c.name == "improvement"]
    assert improvement.passed and improvement.holdout == "frozen+feedback"
    assert improvement.reason.startswith(
        "accuracy on the pooled holdouts 'frozen' + 'feedback' (200 documents) improved by +0.200"
    )
    assert result.summary.splitlines() == [c.reason for c in result.failed]  # one line each
    guard = {c.holdout: c for c in result.checks if c.name == "holdout_regression"}
    assert guard["feedback"].passed and not guard["frozen"].passed
    assert guard["frozen"].reason == (
        f"accuracy on holdout 'frozen' fell 0.900 → 0.800 ({MINUS}0.100), "
        "more than the tolerated 0.050"
    )


def test_a_document_in_two_holdouts_is_pooled_once(caplog: pytest.LogCaptureFixture) -> None:
    gold = gold_of(a=20, b=20)
    candidate = scores(gold, gold)
    incumbent = scores(gold, with_errors(gold, {0, 1, 2}, {"a": "b", "b": "a"}))
    with caplog.at_level(logging.WARNING, logger="docloop.evaluation.gate"):
        result = evaluate_gate(
            "classify",
            GateConfig(),
            {"one": candidate, "two": candidate},
            {"one": incumbent, "two": incumbent},
        )
    assert result.bootstrap is not None and result.bootstrap.n_documents == 40
    assert "40 documents appear in more than one holdout" in caplog.text


def test_extractor_per_entity_regression() -> None:
    gold = [["B-patient_name", "I-patient_name", "O", "B-mrn"]] * 20
    incumbent_tags = [
        ["B-patient_name", "I-patient_name", "O", "B-mrn" if i % 2 else "O"] for i in range(20)
    ]
    candidate_tags = [
        ["B-patient_name", "O" if i < 4 else "I-patient_name", "O", "B-mrn"] for i in range(20)
    ]
    ids = [f"d{i}" for i in range(20)]
    types = ["mrn", "patient_name"]
    candidate = extraction_scores(ids, gold, candidate_tags, types)
    incumbent = extraction_scores(ids, gold, incumbent_tags, types)

    result = evaluate_gate("extract", GateConfig(), {"frozen": candidate}, {"frozen": incumbent})

    regressions = [c for c in result.failed if c.name == "label_regression"]
    assert [(c.label, c.support) for c in regressions] == [("patient_name", 20)]
    assert regressions[0].reason == (
        f"entity type 'patient_name' F1 on holdout 'frozen' fell 1.000 → 0.800 ({MINUS}0.200), "
        "more than the tolerated 0.050"
    )
    (improvement,) = [c for c in result.checks if c.name == "improvement"]
    assert improvement.metric == "f1"
    assert isinstance(candidate.report, EntityReport) and isinstance(incumbent.report, EntityReport)
    assert improvement.candidate == pytest.approx(candidate.report.f1)
    assert improvement.incumbent == pytest.approx(incumbent.report.f1)


def mrn_holdout(missed: set[int]) -> ModelScores:
    """30 documents, each with a patient name; the first 15 also an MRN; `missed` MRNs not found."""
    gold = [["B-patient_name", "O", "B-mrn" if i < 15 else "O"] for i in range(30)]
    tags = [
        ["B-patient_name", "O", "B-mrn" if i < 15 and i not in missed else "O"] for i in range(30)
    ]
    return extraction_scores([f"d{i}" for i in range(30)], gold, tags, ["mrn", "patient_name"])


def test_a_label_drop_within_the_holdouts_noise_is_not_a_regression() -> None:
    """Two more MRNs missed of 15 (0.929 -> 0.846) is beyond the tolerated 0.05 but is two
    documents: the per-label paired bootstrap cannot tell it from chance, so it passes (the
    demo's round-1 candidate was refused for exactly such a drop; docs/benchmarks.md)."""
    incumbent, candidate = mrn_holdout({0, 1}), mrn_holdout({0, 1, 2, 3})

    result = evaluate_gate("extract", GateConfig(), {"frozen": candidate}, {"frozen": incumbent})

    (mrn,) = [c for c in result.checks if c.name == "label_regression" and c.label == "mrn"]
    assert mrn.passed and mrn.support == 15
    assert mrn.delta == pytest.approx(22 / 26 - 26 / 28)
    assert mrn.upper_bound is not None and mrn.upper_bound >= 0
    assert mrn.reason == (
        f"entity type 'mrn' F1 on holdout 'frozen' fell 0.929 → 0.846 ({MINUS}0.082), more "
        "than the tolerated 0.050 but not significantly (95% paired-bootstrap upper bound "
        f"+0.000 ≥ 0 on 15 examples)"
    )

    strict = evaluate_gate(
        "extract", GateConfig(label_significance=False), {"frozen": candidate},
        {"frozen": incumbent},
    )  # fmt: skip
    assert [c.label for c in strict.failed if c.name == "label_regression"] == ["mrn"]


def test_a_label_drop_the_bootstrap_confirms_is_a_regression() -> None:
    """Eight more MRNs missed of 15: significant, refused whether or not significance is asked."""
    incumbent, candidate = mrn_holdout(set()), mrn_holdout(set(range(8)))
    for policy in (GateConfig(), GateConfig(label_significance=False)):
        result = evaluate_gate("extract", policy, {"frozen": candidate}, {"frozen": incumbent})
        (failed,) = [c for c in result.failed if c.name == "label_regression"]
        assert failed.label == "mrn" and failed.reason.endswith("more than the tolerated 0.050")
        if policy.label_significance:
            assert failed.upper_bound is not None and failed.upper_bound < 0


# --- refusals -----------------------------------------------------------------------------------


def test_an_unknown_key_metric_is_a_config_error() -> None:
    gold = gold_of(a=5, b=5)
    with pytest.raises(ConfigError, match=r"gate.classify_metric is 'f1'.*accuracy, macro_f1"):
        evaluate_gate("classify", GateConfig(classify_metric="f1"), {"h": scores(gold, gold)})
    with pytest.raises(ConfigError, match=r"f1, precision, recall, macro_f1"):
        evaluate_gate(
            "extract",
            GateConfig(extract_metric="accuracy"),
            {"h": extraction_scores(["x"], [["B-a"]], [["B-a"]])},
        )


def test_scores_that_cannot_be_compared_are_refused() -> None:
    gold = gold_of(a=5, b=5)
    base = scores(gold, gold)
    other_docs = scores(gold, gold, prefix="z")
    with pytest.raises(InvalidInput, match="different documents"):
        evaluate_gate("classify", GateConfig(), {"h": base}, {"h": other_docs})
    with pytest.raises(InvalidInput, match="same holdouts"):
        evaluate_gate("classify", GateConfig(), {"h": base}, {"g": base})
    with pytest.raises(InvalidInput, match="gate runs for extract"):
        evaluate_gate("extract", GateConfig(), {"h": base})
    with pytest.raises(InvalidInput, match="at least one holdout"):
        evaluate_gate("classify", GateConfig(), {})


# --- the paired bootstrap -----------------------------------------------------------------------


def _random_classification(n: int, seed: int) -> tuple[ModelScores, ModelScores]:
    rng = np.random.default_rng(seed)
    gold = [ABC[i] for i in rng.integers(0, 3, n)]
    noisy = [ABC[i] for i in rng.integers(0, 3, n)]
    incumbent = [g if rng.random() < 0.6 else p for g, p in zip(gold, noisy, strict=True)]
    candidate = [g if rng.random() < 0.75 else p for g, p in zip(gold, noisy, strict=True)]
    return scores(gold, candidate, labels=ABC), scores(gold, incumbent, labels=ABC)


def test_the_bootstrap_is_deterministic_for_a_seed() -> None:
    candidate, incumbent = _random_classification(80, seed=3)
    counts = candidate.aligned_counts(ABC), incumbent.aligned_counts(ABC)

    def run(seed: int) -> tuple[float, ...]:
        return paired_bootstrap(
            "macro_f1", *counts, samples=300, seed=seed, confidence=0.95
        ).replicates

    assert run(7) == run(7)
    assert run(7) != run(8)
    first = paired_bootstrap("macro_f1", *counts, samples=300, seed=7, confidence=0.95)
    assert (
        first.lower_bound
        == paired_bootstrap("macro_f1", *counts, samples=300, seed=7, confidence=0.95).lower_bound
    )


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy"])
def test_the_bootstrap_matches_a_slow_reference_loop_for_a_classifier(metric: str) -> None:
    candidate, incumbent = _random_classification(15, seed=1)
    samples, seed = 100, 11
    fast = paired_bootstrap(
        metric,
        candidate.aligned_counts(ABC),
        incumbent.aligned_counts(ABC),
        samples=samples,
        seed=seed,
        confidence=0.9,
    )

    gold = np.array(candidate.gold_types)
    new, old = np.array(candidate.predicted_types), np.array(incumbent.predicted_types)

    def score(true: np.ndarray, pred: np.ndarray) -> float:
        if metric == "accuracy":
            return float(accuracy_score(true, pred))
        return float(f1_score(true, pred, average="macro", zero_division=0))

    reference = np.array(
        [
            score(gold[rows], new[rows]) - score(gold[rows], old[rows])
            for rows in bootstrap_indices(15, samples, seed)
        ]
    )
    np.testing.assert_allclose(fast.replicates, reference, atol=1e-12)
    assert fast.lower_bound == pytest.approx(float(np.quantile(reference, 0.1)), abs=1e-12)
    assert fast.delta == pytest.approx(score(gold, new) - score(gold, old), abs=1e-12)


@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "macro_f1"])
def test_the_bootstrap_matches_a_slow_reference_loop_for_an_extractor(metric: str) -> None:
    rng = np.random.default_rng(5)
    vocabulary = ["O", "O", "O", "B-mrn", "I-mrn", "B-name", "I-name", "B-date"]

    def tags(length: int) -> list[str]:
        return [vocabulary[i] for i in rng.integers(0, len(vocabulary), length)]

    lengths = rng.integers(3, 9, 12)
    gold = [tags(n) for n in lengths]
    new = [
        [g if rng.random() < 0.8 else t for g, t in zip(doc, tags(len(doc)), strict=True)]
        for doc in gold
    ]
    old = [
        [g if rng.random() < 0.6 else t for g, t in zip(doc, tags(len(doc)), strict=True)]
        for doc in gold
    ]
    ids = [f"d{i}" for i in range(12)]
    candidate, incumbent = extraction_scores(ids, gold, new), extraction_scores(ids, gold, old)
    labels = sorted(set(candidate.labels) | set(incumbent.labels))
    samples, seed = 100, 4
    fast = paired_bootstrap(
        metric,
        candidate.aligned_counts(labels),
        incumbent.aligned_counts(labels),
        samples=samples,
        seed=seed,
        confidence=0.95,
    )

    def score(rows: np.ndarray, predicted: list[list[str]]) -> float:
        report = entity_metrics([gold[r] for r in rows], [predicted[r] for r in rows])
        return float(getattr(report, metric))

    reference = np.array(
        [score(rows, new) - score(rows, old) for rows in bootstrap_indices(12, samples, seed)]
    )
    np.testing.assert_allclose(fast.replicates, reference, atol=1e-12)
    assert fast.lower_bound == pytest.approx(float(np.quantile(reference, 0.05)), abs=1e-12)


def test_the_bootstrap_handles_many_documents_quickly() -> None:
    candidate, incumbent = _random_classification(5000, seed=2)
    result = paired_bootstrap(
        "macro_f1",
        candidate.aligned_counts(ABC),
        incumbent.aligned_counts(ABC),
        samples=1000,
        seed=0,
        confidence=0.95,
    )  # several blocks of resamples; the test's time budget is the speed check
    assert len(result.replicates) == 1000
    assert 0 < result.lower_bound < result.delta


# --- gate.json ----------------------------------------------------------------------------------


def test_gate_json_round_trips() -> None:
    gold = gold_of(a=20, b=20, c=20)
    result = evaluate_gate(
        "classify",
        GateConfig(),
        {"frozen": scores(gold, with_errors(gold, {0, 1}))},
        {"frozen": scores(gold, with_errors(gold, set(range(12))))},
    )
    text = result.model_dump_json(indent=2)
    assert '"replicates"' not in text  # the replicates stay in memory (report), not in gate.json
    again = GateResult.model_validate_json(text)
    assert again.model_dump() == result.model_dump()
    assert again.policy == GateConfig()

"""Drift statistics on hand cases, MMD power and size, and the false-alarm calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from docloop.config import DriftConfig
from docloop.errors import InvalidInput
from docloop.monitor.drift import (
    POOLED_LABEL,
    DriftSample,
    cramers_v,
    detect_drift,
    embedding_shift,
    jensen_shannon_distance,
    label_shift,
    mmd2_from_indicators,
    mmd_permutation_test,
    ocr_shift,
    permutations_for,
    pool_rare_columns,
    rbf_kernel_matrix,
    standardised_mean_difference,
)

pytestmark = pytest.mark.unit


# --- label shift ------------------------------------------------------------------------------


def test_jensen_shannon_distance_hand_cases() -> None:
    assert jensen_shannon_distance([1, 2, 3], [2, 4, 6]) == 0.0  # counts are normalised
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: maximal
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); KL(p|m) = log2(4/3), KL(q|m) = (log2(2/3) + 1)/2
    divergence = (math.log2(4 / 3) + (math.log2(2 / 3) + 1) / 2) / 2
    assert jensen_shannon_distance([1, 0], [1, 1]) == pytest.approx(math.sqrt(divergence))
    assert jensen_shannon_distance([5, 1, 0, 2], [1, 1, 3, 3]) == pytest.approx(
        float(jensenshannon([5, 1, 0, 2], [1, 1, 3, 3], base=2))
    )
    with pytest.raises(InvalidInput):
        jensen_shannon_distance([1, 2], [1, 2, 3])
    with pytest.raises(InvalidInput):
        jensen_shannon_distance([0, 0], [1, 1])


def test_chi_square_and_cramers_v_hand_case() -> None:
    # [[10, 20], [20, 10]]: chi² = N (ad - bc)² / (r1 r2 c1 c2) = 60 * 300² / 30⁴ = 20/3
    shift = label_shift({"a": 10, "b": 20}, {"a": 20, "b": 10}, alpha=0.05, js_threshold=0.0)
    assert shift.statistic == pytest.approx(20 / 3)
    assert shift.dof == 1
    assert shift.cramers_v == pytest.approx(math.sqrt((20 / 3) / 60))  # = 1/3
    assert shift.p_value == pytest.approx(chi2_contingency([[10, 20], [20, 10]], False).pvalue)
    assert cramers_v(20 / 3, 60, (2, 2)) == pytest.approx(1 / 3)
    assert cramers_v(5.0, 0, (2, 3)) == 0.0


def test_label_shift_needs_both_effect_size_and_significance() -> None:
    big_but_noisy = label_shift({"a": 6, "b": 6}, {"a": 10, "b": 2}, alpha=0.01, js_threshold=0.1)
    assert big_but_noisy.effect is not None and big_but_noisy.effect >= 0.1
    assert not big_but_noisy.significant and not big_but_noisy.drift
    assert "No label shift" in big_but_noisy.reason

    tiny_but_certain = label_shift(
        {"a": 500_000, "b": 500_000}, {"a": 510_000, "b": 490_000}, alpha=0.01, js_threshold=0.1
    )
    assert tiny_but_certain.significant and not tiny_but_certain.drift
    assert tiny_but_certain.effect is not None and tiny_but_certain.effect < 0.1

    real = label_shift(
        {"a": 500, "b": 500}, {"a": 350, "b": 100, "c": 50}, alpha=0.01, js_threshold=0.1
    )
    assert real.drift and real.reason.startswith("Label shift detected")
    assert real.current_shares == {"a": 0.7, "b": 0.2, "c": 0.1}
    assert real.reference_shares["c"] == 0.0
    assert "largest move: b 50.0% -> 20.0%" in real.reason


def test_rare_categories_are_pooled_for_the_chi_square_test() -> None:
    table = np.array([[100.0, 100.0, 1.0, 2.0], [50.0, 50.0, 0.0, 1.0]])
    pooled, names, members = pool_rare_columns(table, ["a", "b", "c", "d"])
    assert names == ["a", "b", POOLED_LABEL] or names[-1] == POOLED_LABEL
    assert set(members) >= {"c", "d"}
    assert pooled.sum() == table.sum()
    expected = pooled.sum(axis=1, keepdims=True) * pooled.sum(axis=0) / pooled.sum()
    assert expected.min() >= 5.0


def test_label_shift_is_not_run_on_too_few_documents() -> None:
    shift = label_shift({"a": 100}, {"a": 3}, alpha=0.01, js_threshold=0.1)
    assert not shift.ran and not shift.drift and "not run" in shift.reason


# --- OCR statistics ---------------------------------------------------------------------------


def test_standardised_mean_difference_hand_cases() -> None:
    # means 1 and 3, both variances 2 (ddof 1): d = 2 / sqrt(2)
    assert standardised_mean_difference([0, 2], [2, 4]) == pytest.approx(math.sqrt(2))
    assert standardised_mean_difference([2, 4], [0, 2]) == pytest.approx(-math.sqrt(2))
    assert standardised_mean_difference([1, 1], [1, 1]) == 0.0
    assert standardised_mean_difference([1, 1], [2, 2]) == 1e6  # constant and different


def test_ocr_shift_flags_a_large_significant_shift_only() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(90, 4, 2000)
    shifted = ocr_shift(
        "mean_confidence", reference, rng.normal(84, 4, 300), alpha=0.01, effect_threshold=0.5
    )
    assert shifted.drift and shifted.smd is not None and shifted.smd < -1.0
    assert "Input drift in mean OCR confidence" in shifted.reason
    small = ocr_shift(
        "mean_confidence", reference, rng.normal(89.5, 4, 5000), alpha=0.01, effect_threshold=0.5
    )
    assert not small.drift  # maybe significant with 5000 documents, but |d| ~ 0.1
    with_nan = ocr_shift(
        "words_per_page", [1.0] * 20, [np.nan] * 50 + [1.0] * 5, alpha=0.01, effect_threshold=0.5
    )
    assert not with_nan.ran and with_nan.n_current == 5


# --- MMD --------------------------------------------------------------------------------------


def naive_mmd2(kernel: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    kxx = kernel[np.ix_(first, first)]
    kyy = kernel[np.ix_(second, second)]
    kxy = kernel[np.ix_(first, second)]
    m, n = len(first), len(second)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def test_vectorised_permutation_mmd_equals_the_direct_formula() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(30, 4))
    kernel, sigma = rbf_kernel_matrix(z)
    assert np.allclose(np.diag(kernel), 1.0) and sigma > 0
    direct = np.exp(-((z[:, None, :] - z[None, :, :]) ** 2).sum(-1) / (2 * sigma**2))
    assert np.allclose(kernel, direct)
    m = 12
    partitions = [rng.permutation(30) for _ in range(5)]
    indicators = np.zeros((30, 5))
    for column, order in enumerate(partitions):
        indicators[order[:m], column] = 1.0
    fast = mmd2_from_indicators(kernel, kernel.sum(axis=1), indicators, m)
    slow = [naive_mmd2(kernel, order[:m], order[m:]) for order in partitions]
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)


def test_mmd_detects_a_mean_shift_and_not_a_resample() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(300, 16))
    same = mmd_permutation_test(reference, rng.normal(size=(200, 16)), permutations=300, seed=1)
    shifted = mmd_permutation_test(
        reference, rng.normal(size=(200, 16)) + 0.3, permutations=300, seed=1
    )
    assert same.p_value > 0.05
    assert shifted.p_value == pytest.approx(1 / 301) and shifted.mmd2 > same.mmd2
    assert len(shifted.null) == 300 and shifted.n_x == 300 and shifted.n_y == 200
    sub = mmd_permutation_test(reference, reference[:50] + 1.0, permutations=100, max_rows=40)
    assert (sub.n_x, sub.n_y) == (40, 40)
    with pytest.raises(InvalidInput):
        mmd_permutation_test(reference, rng.normal(size=(5, 3)), permutations=10)


def test_embedding_shift_raises_permutations_to_reach_alpha() -> None:
    assert permutations_for(0.002, 500) == 1500
    assert permutations_for(0.05, 500) == 500
    rng = np.random.default_rng(8)
    shift = embedding_shift(
        rng.normal(size=(60, 8)), rng.normal(size=(40, 8)) + 1.0, alpha=0.01, permutations=50,
        max_rows=100,
    )  # fmt: skip
    assert shift.permutations == 300 and shift.drift and len(shift.null) == 300
    assert (shift.n_reference, shift.used_reference, shift.used_current) == (60, 60, 40)
    assert embedding_shift(None, None, alpha=0.01, permutations=50, max_rows=10).ran is False


# --- combined decision and its false-alarm calibration ----------------------------------------


def gaussian_sample(
    rng: np.random.Generator,
    n: int,
    *,
    shift: float = 0.0,
    label_p: tuple[float, ...] = (0.5, 0.3, 0.2),
) -> DriftSample:
    labels = rng.choice(len(label_p), size=n, p=label_p)
    return DriftSample(
        label_counts={f"type{k}": int((labels == k).sum()) for k in range(len(label_p))},
        ocr={
            "mean_confidence": rng.normal(90 + shift, 5, n),
            "words_per_page": rng.lognormal(5, 0.4, n),
            "ocr_page_share": (rng.random(n) < 0.3).astype(float),
        },
        embeddings=rng.normal(size=(n, 8)) + shift / 10,
    )


def test_detect_drift_bonferroni_combines_the_tests() -> None:
    rng = np.random.default_rng(11)
    config = DriftConfig(alpha=0.05, permutations=100, max_embedding_rows=200)
    report = detect_drift(gaussian_sample(rng, 300), gaussian_sample(rng, 120, shift=5.0), config)
    assert report.tests_run == 5 and report.test_alpha == pytest.approx(0.01)
    assert report.detected
    assert {t.name for t in report.drifted} >= {"ocr.mean_confidence", "embedding_mmd"}
    # six tests, five of them run: these samples carry no document profiles
    assert len(report.reasons) == 6 and all(t.alpha == pytest.approx(0.01) for t in report.tests)
    assert not report.profile.ran and "not run" in report.profile.reason
    assert report.flat()["drift.detected"] == 1.0
    thin = detect_drift(gaussian_sample(rng, 300), gaussian_sample(rng, 5), config)
    assert thin.tests_run == 0 and not thin.detected


def test_false_alarm_rate_on_no_drift_replicas_is_within_alpha() -> None:
    """Fixed seed, so deterministic: 60 replicas where reference and current share a distribution.

    The bound is family-wise alpha = 5 %: expected false alarms <= 3 of 60; the assertion allows 6
    (10 %) so that it tests calibration, not luck (P(X >= 7 | n=60, p=0.05) < 1.5 %).
    """
    rng = np.random.default_rng(2024)
    config = DriftConfig(alpha=0.05, permutations=100, max_embedding_rows=200, seed=7)
    alarms = 0
    per_test = np.zeros(6)
    for _ in range(60):
        report = detect_drift(gaussian_sample(rng, 150), gaussian_sample(rng, 80), config)
        alarms += int(report.detected)
        per_test += [float(t.p_value is not None and t.p_value <= 0.05) for t in report.tests]
    assert alarms / 60 <= 0.10
    # each test is valid on its own at the 5 % level too (discrete tests may be conservative)
    assert np.all(per_test / 60 <= 0.15), per_test

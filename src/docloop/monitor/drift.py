"""Drift between the champion's reference data and what it serves now.

Three kinds of shift, each a two-sample test between the **reference** (the champion's training
documents) and the **current** window (documents predicted since the last check):

* **label shift** — training labels vs predicted types: Jensen-Shannon distance (base 2, in
  [0, 1]) of the shares, and a chi-square test of the 2 x K contingency table (categories with an
  expected count below 5 are pooled so the chi-square approximation holds) with Cramér's V as its
  effect size. Drift needs both: JS distance >= ``label_shift_js`` *and* p <= the test's alpha.
  Cramér's V is reported, not thresholded: in a two-sample table it shrinks with the ratio of the
  sample sizes (a 100 000-document reference and a 300-document window give a small V for any
  shift), whereas the JS distance does not depend on the sample sizes.
* **input drift** on OCR statistics per document (mean OCR confidence, words per page, share of
  pages that needed OCR): standardised mean difference (difference of means over the root mean of
  the two variances) and the two-sample Kolmogorov-Smirnov test. Drift needs
  ``|SMD| >= ocr_shift_effect`` *and* p <= alpha.
* **layout and format drift** on document profiles (``monitor.profiles``: where words sit on
  the page, how lines are built, how values are written): each feature is centred and scaled by
  the pooled sample's mean and standard deviation (no side label used), and the statistic is the
  largest absolute difference of the two sides' means over all features, with a permutation
  null of the same maximum. The maximum keeps the power of one feature that moves (a date
  written ``dd Xxx dddd``, a label in a new corner) among hundreds that do not; the pooled
  scaling and the permutations over the same rows make the p-value exact. Drift when p <= alpha;
  the reason names the features that moved most, in words.
* **embedding drift**: the unbiased MMD² with an RBF kernel (bandwidth: the median pairwise
  distance of the pooled sample) and a permutation test. Each side is subsampled to
  ``max_embedding_rows``; the kernel matrix is computed once, and every permutation's MMD² comes
  from one matrix product ``K @ A`` where ``A`` holds the permutations' membership indicators:
  with ``r = K 1`` and a permutation's indicator ``a`` (``b = 1 - a``),
  ``a'Ka``, ``a'Kb = r'a - a'Ka`` and ``b'Kb = 1'K1 - 2 r'a + a'Ka`` give the three block sums.

**False alarms.** The combined decision is "drift" when any test says so. ``DriftConfig.alpha`` is
the family-wise false-alarm rate of that combined decision: with ``k`` tests run, each test uses
``alpha / k`` (Bonferroni), so P(any false alarm | no drift) <= alpha whatever the dependence
between the tests. The effect-size conditions only remove alarms. The permutation count is raised
when needed so that the smallest attainable p-value, ``1 / (permutations + 1)``, is well below the
per-test alpha (at least ``3 / alpha_per_test`` permutations).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from docloop.config import DriftConfig
from docloop.errors import InvalidInput

logger = logging.getLogger(__name__)

OCR_STATISTICS: Final = ("mean_confidence", "words_per_page", "ocr_page_share")
OCR_LABELS: Final = {
    "mean_confidence": "mean OCR confidence",
    "words_per_page": "words per page",
    "ocr_page_share": "share of OCR'd pages",
}
MIN_SAMPLES: Final = 10
MIN_EXPECTED: Final = 5.0
POOLED_LABEL: Final = "(pooled rare)"
_PERMUTATION_BLOCK: Final = 256
_MAX_SMD: Final = 1e6

FloatArray = npt.NDArray[np.float64]


class DriftTest(BaseModel):
    """One drift test's outcome (fields common to every test)."""

    model_config = ConfigDict(frozen=True)

    name: str
    ran: bool = Field(description="False when a side had too few rows to test.")
    n_reference: int
    n_current: int
    statistic: float | None = Field(default=None, description="chi², KS D or MMD².")
    p_value: float | None = None
    alpha: float = Field(description="This test's significance level (after Bonferroni).")
    effect: float | None = Field(default=None, description="The effect size the decision uses.")
    effect_name: str
    effect_threshold: float | None = None
    significant: bool = False
    drift: bool = False
    reason: str


class LabelShift(DriftTest):
    """Label-distribution shift: reference labels vs predicted types."""

    js_distance: float | None = None
    cramers_v: float | None = None
    dof: int | None = None
    reference_shares: dict[str, float] = Field(default_factory=dict)
    current_shares: dict[str, float] = Field(default_factory=dict)
    pooled: list[str] = Field(
        default_factory=list, description="Categories pooled for the chi-square test."
    )


class OcrShift(DriftTest):
    """Shift of one OCR statistic."""

    statistic_name: str
    reference_mean: float | None = None
    current_mean: float | None = None
    reference_sd: float | None = None
    current_sd: float | None = None
    smd: float | None = None


class EmbeddingShift(DriftTest):
    """Embedding drift by the MMD permutation test."""

    bandwidth: float | None = None
    permutations: int = 0
    used_reference: int = Field(default=0, description="Reference rows after subsampling.")
    used_current: int = Field(default=0, description="Current rows after subsampling.")
    null: list[float] = Field(default_factory=list, description="MMD² under the permutations.")


class FeatureMove(BaseModel):
    """One profile feature's means on both sides."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    reference_mean: float = Field(
        description="The reference's mean (a word shape: the share of documents that have it)."
    )
    current_mean: float = Field(description="The same on the current side.")
    standardised_difference: float


class ProfileShift(DriftTest):
    """Layout and format drift: the max-statistic permutation test on document profiles."""

    features: int = Field(default=0, description="Profile features that vary in the pool.")
    permutations: int = 0
    moved: list[FeatureMove] = Field(
        default_factory=list, description="The features that moved most, largest first."
    )


class DriftReport(BaseModel):
    """Every drift test and the combined decision."""

    model_config = ConfigDict(frozen=True)

    family_alpha: float = Field(description="Bound on P(false alarm) of the combined decision.")
    test_alpha: float = Field(description="Per-test level: family_alpha / tests_run.")
    tests_run: int
    label: LabelShift
    ocr: list[OcrShift]
    embedding: EmbeddingShift
    profile: ProfileShift
    detected: bool
    reasons: list[str]

    @property
    def tests(self) -> list[DriftTest]:
        """All tests, label shift first."""
        return [self.label, *self.ocr, self.embedding, self.profile]

    @property
    def drifted(self) -> list[DriftTest]:
        """The tests that found drift."""
        return [test for test in self.tests if test.drift]

    def flat(self, prefix: str = "drift.") -> dict[str, float]:
        """Flat metric names -> values (tests not run are left out)."""
        flat: dict[str, float] = {
            "detected": float(self.detected),
            "tests_run": float(self.tests_run),
            "test_alpha": self.test_alpha,
        }
        for test in self.tests:
            if not test.ran:
                continue
            flat[f"{test.name}.drift"] = float(test.drift)
            for key, value in (
                ("p_value", test.p_value),
                ("statistic", test.statistic),
                ("effect", test.effect),
            ):
                if value is not None and math.isfinite(value):
                    flat[f"{test.name}.{key}"] = value
        if self.label.cramers_v is not None:
            flat["label_shift.cramers_v"] = self.label.cramers_v
        return {f"{prefix}{name}": value for name, value in flat.items()}


@dataclass(frozen=True)
class DriftSample:
    """One side of the comparison.

    Attributes:
        label_counts: Documents per type (training labels for the reference, predicted types for
            the current window).
        ocr: Per-document OCR statistics by name (see :data:`OCR_STATISTICS`); non-finite values
            are ignored.
        embeddings: ``[documents, dims]`` document embeddings, or None when unavailable.
        profiles: ``[documents, features]`` document profiles (``monitor.profiles``), or None.
        profile_names: The profile features' names (the same list on both sides).
    """

    label_counts: Mapping[str, int]
    ocr: Mapping[str, npt.ArrayLike]
    embeddings: npt.NDArray[np.floating] | None = None
    profiles: npt.NDArray[np.floating] | None = None
    profile_names: Sequence[str] = ()


# --- label shift ----------------------------------------------------------------------------------


def jensen_shannon_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (the square root of the divergence, base 2: in [0, 1]).

    Args:
        p: Counts or shares of one distribution.
        q: Counts or shares of the other, over the same categories.

    Raises:
        InvalidInput: Different lengths, negative values or an all-zero distribution.
    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidInput("p and q must be 1-d and over the same categories")
    if np.any(a < 0) or np.any(b < 0) or a.sum() <= 0 or b.sum() <= 0:
        raise InvalidInput("p and q must be non-negative and not all zero")
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2.0

    def kl(x: FloatArray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    divergence = max(0.0, (kl(a) + kl(b)) / 2.0)
    return math.sqrt(min(1.0, divergence))


def cramers_v(chi2: float, n: int, shape: tuple[int, int]) -> float:
    """Cramér's V of an r x c contingency table: ``sqrt(chi² / (n (min(r, c) - 1)))``."""
    smaller = min(shape) - 1
    if n <= 0 or smaller <= 0:
        return 0.0
    return math.sqrt(max(0.0, chi2) / (n * smaller))


def pool_rare_columns(
    table: npt.NDArray[np.float64], names: Sequence[str]
) -> tuple[npt.NDArray[np.float64], list[str], list[str]]:
    """Pool the columns of a contingency table whose smallest expected count is below 5.

    The rare columns are summed into one; while that pooled column is itself below 5 expected,
    the smallest remaining column joins it.

    Returns:
        The table, its column names (the pooled column last, named :data:`POOLED_LABEL`), and
        the names that were pooled.
    """
    total = float(table.sum())
    rows = table.sum(axis=1)

    def min_expected(column: FloatArray) -> float:
        return float(np.min(rows * column.sum() / total)) if total > 0 else 0.0

    keep = [j for j in range(table.shape[1]) if min_expected(table[:, j]) >= MIN_EXPECTED]
    rare = [j for j in range(table.shape[1]) if j not in keep]
    if not rare:
        return table, list(names), []
    pooled = table[:, rare].sum(axis=1)
    pooled_names = [names[j] for j in rare]
    keep.sort(key=lambda j: float(table[:, j].sum()))
    while min_expected(pooled) < MIN_EXPECTED and keep:
        j = keep.pop(0)
        pooled = pooled + table[:, j]
        pooled_names.append(names[j])
    columns = [table[:, j] for j in keep] + [pooled]
    labels = [names[j] for j in keep] + [POOLED_LABEL]
    return np.stack(columns, axis=1), labels, sorted(pooled_names)


def label_shift(
    reference_counts: Mapping[str, int],
    current_counts: Mapping[str, int],
    *,
    alpha: float,
    js_threshold: float,
) -> LabelShift:
    """Test whether the current label shares differ from the reference's.

    Args:
        reference_counts: Documents per label in the reference (the champion's training labels).
        current_counts: Documents per predicted type in the current window.
        alpha: This test's significance level.
        js_threshold: The JS distance that counts as drift.

    Returns:
        The outcome; drift needs JS >= threshold and p <= alpha.
    """
    from scipy.stats import chi2_contingency

    labels = sorted(
        {label for label, count in reference_counts.items() if count > 0}
        | {label for label, count in current_counts.items() if count > 0}
    )
    ref = np.array([reference_counts.get(label, 0) for label in labels], dtype=np.float64)
    cur = np.array([current_counts.get(label, 0) for label in labels], dtype=np.float64)
    n_ref, n_cur = int(ref.sum()), int(cur.sum())
    common = {
        "name": "label_shift",
        "n_reference": n_ref,
        "n_current": n_cur,
        "alpha": alpha,
        "effect_name": "JS distance",
        "effect_threshold": js_threshold,
    }
    if min(n_ref, n_cur) < MIN_SAMPLES:
        return LabelShift(
            ran=False,
            reason=_not_run("Label shift", n_ref, n_cur),
            **common,
        )
    ref_shares = {label: float(v) for label, v in zip(labels, ref / n_ref, strict=True)}
    cur_shares = {label: float(v) for label, v in zip(labels, cur / n_cur, strict=True)}
    js = jensen_shannon_distance(ref, cur)
    table, _, pooled = pool_rare_columns(np.stack([ref, cur]), labels)
    if table.shape[1] < 2:
        chi2, p_value, dof = 0.0, 1.0, 0
    else:
        result = chi2_contingency(table, correction=False)
        chi2, p_value, dof = float(result.statistic), float(result.pvalue), int(result.dof)
    v = cramers_v(chi2, n_ref + n_cur, (2, table.shape[1]))
    significant = p_value <= alpha
    drift = significant and js >= js_threshold
    moved = max(labels, key=lambda label: abs(cur_shares[label] - ref_shares[label]))
    detail = (
        f"JS distance {js:.3f} {'>=' if js >= js_threshold else '<'} {js_threshold:.3f}; "
        f"chi-square {chi2:.1f} (df {dof}, p = {p_value:.3g} "
        f"{'<=' if significant else '>'} alpha {alpha:.3g}); Cramér's V {v:.3f}; largest move: "
        f"{moved} {ref_shares[moved]:.1%} -> {cur_shares[moved]:.1%} "
        f"({n_ref} reference vs {n_cur} current documents)"
    )
    reason = (
        f"Label shift detected: {detail}."
        if drift
        else f"No label shift (drift needs both a large and a significant change): {detail}."
    )
    return LabelShift(
        ran=True,
        statistic=chi2,
        p_value=p_value,
        effect=js,
        significant=significant,
        drift=drift,
        reason=reason,
        js_distance=js,
        cramers_v=v,
        dof=dof,
        reference_shares=ref_shares,
        current_shares=cur_shares,
        pooled=pooled,
        **common,
    )


# --- OCR statistics -------------------------------------------------------------------------------


def standardised_mean_difference(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """``(mean_current - mean_reference) / sqrt((var_reference + var_current) / 2)``.

    The root mean of the two variances (not the size-weighted pooled variance) keeps the
    measure symmetric when one side is much larger. Two constant samples give 0 when equal and a
    large signed value (capped at 1e6) when not.
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    difference = float(y.mean() - x.mean())
    spread = math.sqrt((float(x.var(ddof=1)) + float(y.var(ddof=1))) / 2.0)
    if spread <= 1e-12:
        return 0.0 if abs(difference) <= 1e-12 else math.copysign(_MAX_SMD, difference)
    return max(-_MAX_SMD, min(_MAX_SMD, difference / spread))


def _finite(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def ocr_shift(
    name: str,
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    alpha: float,
    effect_threshold: float,
) -> OcrShift:
    """Test whether one per-document OCR statistic shifted (SMD and Kolmogorov-Smirnov).

    Args:
        name: The statistic (one of :data:`OCR_STATISTICS`, or any name).
        reference: Its values on reference documents.
        current: Its values on current documents.
        alpha: This test's significance level.
        effect_threshold: The ``|SMD|`` that counts as drift.

    Returns:
        The outcome; drift needs ``|SMD| >= threshold`` and p <= alpha.
    """
    from scipy.stats import ks_2samp

    x, y = _finite(reference), _finite(current)
    label = OCR_LABELS.get(name, name)
    common = {
        "name": f"ocr.{name}",
        "statistic_name": name,
        "n_reference": len(x),
        "n_current": len(y),
        "alpha": alpha,
        "effect_name": "|standardised mean difference|",
        "effect_threshold": effect_threshold,
    }
    if min(len(x), len(y)) < MIN_SAMPLES:
        return OcrShift(
            ran=False,
            reason=_not_run(f"OCR test on {label}", len(x), len(y)),
            **common,
        )
    smd = standardised_mean_difference(x, y)
    result = ks_2samp(x, y)
    d, p_value = float(result.statistic), float(result.pvalue)
    significant = p_value <= alpha
    drift = significant and abs(smd) >= effect_threshold
    detail = (
        f"mean {x.mean():.3g} -> {y.mean():.3g}, standardised difference {smd:+.2f} "
        f"(|d| {'>=' if abs(smd) >= effect_threshold else '<'} {effect_threshold:.2f}); "
        f"KS D = {d:.3f}, p = {p_value:.3g} {'<=' if significant else '>'} alpha {alpha:.3g} "
        f"({len(x)} vs {len(y)} documents)"
    )
    reason = (
        f"Input drift in {label}: {detail}." if drift else f"No input drift in {label}: {detail}."
    )
    return OcrShift(
        ran=True,
        statistic=d,
        p_value=p_value,
        effect=abs(smd),
        significant=significant,
        drift=drift,
        reason=reason,
        reference_mean=float(x.mean()),
        current_mean=float(y.mean()),
        reference_sd=float(x.std(ddof=1)),
        current_sd=float(y.std(ddof=1)),
        smd=smd,
        **common,
    )


# --- MMD ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MmdResult:
    """An MMD permutation test's numbers.

    Attributes:
        mmd2: The unbiased MMD² of the (subsampled) samples.
        p_value: ``(1 + #{null >= mmd2}) / (1 + permutations)``.
        null: MMD² of each permutation.
        bandwidth: The RBF bandwidth (median pairwise distance).
        n_x: Rows used from the first sample.
        n_y: Rows used from the second.
    """

    mmd2: float
    p_value: float
    null: FloatArray
    bandwidth: float
    n_x: int
    n_y: int


def subsample_rows(
    data: npt.NDArray[np.floating], max_rows: int, rng: np.random.Generator
) -> npt.NDArray[np.floating]:
    """At most ``max_rows`` rows of ``data``, drawn without replacement (all when fewer)."""
    if len(data) <= max_rows:
        return data
    return data[np.sort(rng.choice(len(data), size=max_rows, replace=False))]


def rbf_kernel_matrix(z: npt.NDArray[np.floating]) -> tuple[FloatArray, float]:
    """The RBF kernel matrix of the rows of ``z`` with the median-heuristic bandwidth.

    ``k(a, b) = exp(-|a - b|² / (2 sigma²))`` with ``sigma`` the median pairwise distance
    (off-diagonal). Built in place over one ``[n, n]`` float64 buffer.

    Returns:
        ``(K, sigma)``.
    """
    z64 = np.ascontiguousarray(z, dtype=np.float64)
    norms = np.einsum("ij,ij->i", z64, z64)
    distances = z64 @ z64.T
    distances *= -2.0
    distances += norms[:, None]
    distances += norms[None, :]
    np.maximum(distances, 0.0, out=distances)
    np.fill_diagonal(distances, 0.0)
    upper = distances[np.triu(np.ones(distances.shape, dtype=bool), k=1)]
    median = float(np.median(upper)) if upper.size else 0.0
    del upper
    if median <= 0.0:
        median = 1.0  # all rows identical: any bandwidth gives MMD² = 0
    distances *= -1.0 / (2.0 * median)
    np.exp(distances, out=distances)
    return distances, math.sqrt(median)


def mmd2_from_indicators(
    kernel: FloatArray,
    row_sums: FloatArray,
    indicators: FloatArray,
    m: int,
) -> FloatArray:
    """Unbiased MMD² of each partition given by a column of ``indicators`` (1: first sample).

    Args:
        kernel: ``[N, N]`` kernel matrix with ones on the diagonal.
        row_sums: ``kernel.sum(axis=1)``.
        indicators: ``[N, P]``, each column with exactly ``m`` ones.
        m: Size of the first sample (the second has ``N - m``).

    Returns:
        ``[P]`` MMD² values.
    """
    n = kernel.shape[0] - m
    total = float(row_sums.sum())
    s_xx = np.einsum("ij,ij->j", indicators, kernel @ indicators)
    s_x1 = row_sums @ indicators
    s_yy = total - 2.0 * s_x1 + s_xx
    s_xy = s_x1 - s_xx
    result: FloatArray = (
        (s_xx - m) / (m * (m - 1)) + (s_yy - n) / (n * (n - 1)) - 2.0 * s_xy / (m * n)
    )
    return result


def mmd_permutation_test(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.floating],
    *,
    permutations: int,
    seed: int = 0,
    max_rows: int | None = None,
) -> MmdResult:
    """Two-sample MMD test (RBF kernel, median heuristic) with a vectorised permutation null.

    Args:
        x: ``[m, d]`` first sample (the reference).
        y: ``[n, d]`` second sample (the current window).
        permutations: Permutations of the null distribution.
        seed: Seed of the subsampling and the permutations.
        max_rows: Subsample each side to at most this many rows first.

    Returns:
        The MMD², its permutation p-value and null distribution.

    Raises:
        InvalidInput: Fewer than 2 rows on a side, or different dimensions.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InvalidInput(
            f"MMD needs two 2-d samples of the same width, got {x.shape} and {y.shape}"
        )
    rng = np.random.default_rng(seed)
    if max_rows is not None:
        x, y = subsample_rows(x, max_rows, rng), subsample_rows(y, max_rows, rng)
    m, n = len(x), len(y)
    if min(m, n) < 2:
        raise InvalidInput(f"MMD needs at least 2 rows per sample, got {m} and {n}")
    kernel, bandwidth = rbf_kernel_matrix(np.concatenate([x, y]))
    row_sums = kernel.sum(axis=1)
    total_rows = m + n
    observed_indicator = np.zeros((total_rows, 1))
    observed_indicator[:m, 0] = 1.0
    observed = float(mmd2_from_indicators(kernel, row_sums, observed_indicator, m)[0])
    null = np.empty(permutations, dtype=np.float64)
    for start in range(0, permutations, _PERMUTATION_BLOCK):
        size = min(_PERMUTATION_BLOCK, permutations - start)
        keys = rng.random((size, total_rows))
        members = np.argpartition(keys, m - 1, axis=1)[:, :m]  # a random m-subset per row
        indicators = np.zeros((total_rows, size))
        indicators[members.ravel(), np.repeat(np.arange(size), m)] = 1.0
        null[start : start + size] = mmd2_from_indicators(kernel, row_sums, indicators, m)
    exceed = int(np.count_nonzero(null >= observed - 1e-12 * abs(observed)))
    p_value = (1.0 + exceed) / (1.0 + permutations)
    return MmdResult(observed, p_value, null, bandwidth, m, n)


def permutations_for(alpha: float, configured: int) -> int:
    """Permutations needed so that a p-value can fall well below ``alpha`` (>= 3 / alpha)."""
    return max(configured, math.ceil(3.0 / alpha))


def embedding_shift(
    reference: npt.NDArray[np.floating] | None,
    current: npt.NDArray[np.floating] | None,
    *,
    alpha: float,
    permutations: int,
    max_rows: int,
    seed: int = 0,
) -> EmbeddingShift:
    """Test embedding drift with :func:`mmd_permutation_test`; drift when p <= alpha.

    Args:
        reference: ``[m, d]`` reference embeddings (None: not available).
        current: ``[n, d]`` current embeddings.
        alpha: This test's significance level.
        permutations: Permutations (raised to :func:`permutations_for` when too few).
        max_rows: Subsample each side to this many rows.
        seed: Seed.

    Returns:
        The outcome (the null distribution is kept for the report's plot).
    """
    n_ref = 0 if reference is None else len(reference)
    n_cur = 0 if current is None else len(current)
    common = {
        "name": "embedding_mmd",
        "n_reference": n_ref,
        "n_current": n_cur,
        "alpha": alpha,
        "effect_name": "MMD²",
    }
    if reference is None or current is None or min(n_ref, n_cur) < MIN_SAMPLES:
        return EmbeddingShift(
            ran=False,
            reason=_not_run("Embedding test", n_ref, n_cur),
            **common,
        )
    used = permutations_for(alpha, permutations)
    if used > permutations:
        logger.info(
            "MMD permutations raised from %d to %d so that p can reach alpha %.3g",
            permutations,
            used,
            alpha,
        )
    result = mmd_permutation_test(
        reference, current, permutations=used, seed=seed, max_rows=max_rows
    )
    significant = result.p_value <= alpha
    detail = (
        f"MMD² = {result.mmd2:.4g} (permutation p = {result.p_value:.3g} "
        f"{'<=' if significant else '>'} alpha {alpha:.3g}; {used} permutations, null 95th "
        f"percentile {float(np.percentile(result.null, 95)):.3g}; {result.n_x} reference vs "
        f"{result.n_y} current documents, RBF bandwidth {result.bandwidth:.3g})"
    )
    return EmbeddingShift(
        ran=True,
        statistic=result.mmd2,
        p_value=result.p_value,
        effect=result.mmd2,
        significant=significant,
        drift=significant,
        reason=(f"Embedding drift: {detail}." if significant else f"No embedding drift: {detail}."),
        bandwidth=result.bandwidth,
        permutations=used,
        used_reference=result.n_x,
        used_current=result.n_y,
        null=[float(v) for v in result.null],
        **common,
    )


# --- the combined decision ------------------------------------------------------------------------


def _not_run(what: str, n_reference: int, n_current: int) -> str:
    return (
        f"{what} not run: {n_reference} reference and {n_current} current documents "
        f"(at least {MIN_SAMPLES} needed on each side)."
    )


def _count(values: npt.ArrayLike | None) -> int:
    return 0 if values is None else len(_finite(values))


def tests_to_run(reference: DriftSample, current: DriftSample) -> int:
    """How many tests have enough rows on both sides (the Bonferroni family size)."""
    runs = int(
        min(sum(reference.label_counts.values()), sum(current.label_counts.values())) >= MIN_SAMPLES
    )
    for name in OCR_STATISTICS:
        runs += int(
            min(_count(reference.ocr.get(name)), _count(current.ocr.get(name))) >= MIN_SAMPLES
        )
    if reference.embeddings is not None and current.embeddings is not None:
        runs += int(min(len(reference.embeddings), len(current.embeddings)) >= MIN_SAMPLES)
    if reference.profiles is not None and current.profiles is not None:
        runs += int(min(len(reference.profiles), len(current.profiles)) >= MIN_SAMPLES)
    return runs


def detect_drift(reference: DriftSample, current: DriftSample, config: DriftConfig) -> DriftReport:
    """Run every drift test and combine them (Bonferroni over the tests that can run).

    Args:
        reference: The champion's reference data.
        current: The current window.
        config: Levels, thresholds, permutations, subsampling and seed.

    Returns:
        The report: ``detected`` when any test found drift; one reason per test.

    Raises:
        InvalidInput: The two sides' profiles name different features.
    """
    runs = tests_to_run(reference, current)
    test_alpha = config.alpha / max(runs, 1)
    label = label_shift(
        reference.label_counts,
        current.label_counts,
        alpha=test_alpha,
        js_threshold=config.label_shift_js,
    )
    empty: list[float] = []
    ocr = [
        ocr_shift(
            name,
            reference.ocr.get(name, empty),
            current.ocr.get(name, empty),
            alpha=test_alpha,
            effect_threshold=config.ocr_shift_effect,
        )
        for name in OCR_STATISTICS
    ]
    embedding = embedding_shift(
        reference.embeddings,
        current.embeddings,
        alpha=test_alpha,
        permutations=config.permutations,
        max_rows=config.max_embedding_rows,
        seed=config.seed,
    )
    if list(reference.profile_names) != list(current.profile_names):
        raise InvalidInput(
            "the two sides' profiles have different features; build both with "
            "monitor.profiles.document_profiles"
        )
    profile = profile_shift(
        reference.profiles,
        current.profiles,
        list(reference.profile_names),
        alpha=test_alpha,
        permutations=config.permutations,
        seed=config.seed,
    )
    tests: list[DriftTest] = [label, *ocr, embedding, profile]
    detected = any(test.drift for test in tests)
    return DriftReport(
        family_alpha=config.alpha,
        test_alpha=test_alpha,
        tests_run=runs,
        label=label,
        ocr=ocr,
        embedding=embedding,
        profile=profile,
        detected=detected,
        reasons=[test.reason for test in tests],
    )


# --- document profiles ----------------------------------------------------------------------------

PROFILE_MOVES_REPORTED: Final = 3


def max_shift_permutation_test(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.floating],
    *,
    permutations: int,
    seed: int = 0,
) -> tuple[float, float, FloatArray, FloatArray]:
    """Largest standardised mean difference over features, with a permutation p-value.

    Features are centred and scaled by the pooled rows (constant ones dropped); each
    permutation's statistic comes from one matrix product, as in the MMD test.

    Args:
        x: ``[m, d]`` reference rows.
        y: ``[n, d]`` current rows.
        permutations: Permutations of the null distribution.
        seed: Seed of the permutations.

    Returns:
        ``(statistic, p_value, differences, kept)``: the observed maximum, its p-value, the
        standardised difference ``current - reference`` of every feature (0 for constant ones),
        and the mask of the features that vary.

    Raises:
        InvalidInput: Fewer than 2 rows on a side, or different widths.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InvalidInput(f"two 2-d samples of the same width needed, got {x.shape} and {y.shape}")
    m, n = len(x), len(y)
    if min(m, n) < 2:
        raise InvalidInput(f"at least 2 rows per sample needed, got {m} and {n}")
    pooled = np.concatenate([x, y]).astype(np.float64)
    spread = pooled.std(axis=0)
    kept = spread > 1e-12
    differences = np.zeros(pooled.shape[1], dtype=np.float64)
    if not kept.any():
        return 0.0, 1.0, differences, kept
    z = (pooled[:, kept] - pooled[:, kept].mean(axis=0)) / spread[kept]
    total = z.sum(axis=0)

    def largest(indicators: FloatArray) -> FloatArray:
        reference_sums = z.T @ indicators
        shift = (total[:, None] - reference_sums) / n - reference_sums / m
        result: FloatArray = np.abs(shift).max(axis=0)
        return result

    differences[kept] = z[m:].mean(axis=0) - z[:m].mean(axis=0)
    observed = float(np.abs(differences).max())
    rng = np.random.default_rng(seed)
    rows = m + n
    exceed = 0
    for start in range(0, permutations, _PERMUTATION_BLOCK):
        size = min(_PERMUTATION_BLOCK, permutations - start)
        members = np.argpartition(rng.random((size, rows)), m - 1, axis=1)[:, :m]
        indicators = np.zeros((rows, size))
        indicators[members.ravel(), np.repeat(np.arange(size), m)] = 1.0
        exceed += int(np.count_nonzero(largest(indicators) >= observed * (1 - 1e-12)))
    return observed, (1.0 + exceed) / (1.0 + permutations), differences, kept


def profile_shift(
    reference: npt.NDArray[np.floating] | None,
    current: npt.NDArray[np.floating] | None,
    names: Sequence[str],
    *,
    alpha: float,
    permutations: int,
    seed: int = 0,
) -> ProfileShift:
    """Test layout and format drift on document profiles; drift when p <= alpha.

    Args:
        reference: ``[m, d]`` reference profiles (None: not available).
        current: ``[n, d]`` current profiles.
        names: The ``d`` feature names.
        alpha: This test's significance level.
        permutations: Permutations (raised to :func:`permutations_for` when too few).
        seed: Seed.

    Returns:
        The outcome, with the features that moved most.

    Raises:
        InvalidInput: ``names`` does not match the profiles' width.
    """
    from docloop.monitor.profiles import (
        SHAPE_LEGEND,
        describe_feature,
        format_feature_value,
        summarise_feature,
    )

    n_ref = 0 if reference is None else len(reference)
    n_cur = 0 if current is None else len(current)
    common = {
        "name": "layout_format",
        "n_reference": n_ref,
        "n_current": n_cur,
        "alpha": alpha,
        "effect_name": "largest standardised mean difference",
    }
    if reference is None or current is None or min(n_ref, n_cur) < MIN_SAMPLES:
        return ProfileShift(
            ran=False, reason=_not_run("Layout/format test", n_ref, n_cur), **common
        )
    if reference.shape[1] != len(names):
        raise InvalidInput(
            f"{len(names)} profile names for {reference.shape[1]} profile features; build both "
            "sides with monitor.profiles.document_profiles"
        )
    used = permutations_for(alpha, permutations)
    statistic, p_value, differences, kept = max_shift_permutation_test(
        reference, current, permutations=used, seed=seed
    )
    order = [int(j) for j in np.argsort(-np.abs(differences)) if kept[j]]
    moved = [
        FeatureMove(
            name=names[j],
            description=describe_feature(names[j]),
            reference_mean=summarise_feature(names[j], reference[:, j]),
            current_mean=summarise_feature(names[j], current[:, j]),
            standardised_difference=float(differences[j]),
        )
        for j in order[:PROFILE_MOVES_REPORTED]
    ]
    significant = p_value <= alpha
    moves = "; ".join(
        f"{move.description} {format_feature_value(move.name, move.reference_mean)} -> "
        f"{format_feature_value(move.name, move.current_mean)}"
        for move in moved
    )
    if any(move.name.startswith("shape:") for move in moved):
        moves += f" ({SHAPE_LEGEND})"
    detail = (
        f"largest standardised difference {statistic:.3g} (permutation p = {p_value:.3g} "
        f"{'<=' if significant else '>'} alpha {alpha:.3g}; {used} permutations over "
        f"{int(kept.sum())} features; {n_ref} reference vs {n_cur} current documents)"
    )
    reason = (
        f"Layout/format drift: the served documents are laid out or written differently from "
        f"the training documents ({moves}); {detail}. Likely a new template or source system: "
        "review a sample of these documents, their corrections teach the next retrain."
        if significant
        else f"No layout/format drift: {detail}; most moved: {moves or 'nothing'}."
    )
    return ProfileShift(
        ran=True,
        statistic=statistic,
        p_value=p_value,
        effect=statistic,
        significant=significant,
        drift=significant,
        reason=reason,
        features=int(kept.sum()),
        permutations=used,
        moved=moved,
        **common,
    )

"""How well the champion does on reviewed documents: per-class and per-entity scores with intervals.

Reviewers' verdicts give the truth for the documents they judged, as
:mod:`docloop.feedback.verdicts` reads them (the newest verdict per prediction counts). Entities
match exactly: same type and the same set of word positions. A verdict that confirms the predicted
entities scores every one of them right, with or without word positions; a corrected entity list
for a prediction without positions cannot be matched, so that document is left out of the entity
scores (``entity_documents_skipped``).

Accuracy-like rates (accuracy, correction rate, per-class precision and recall, entity precision
and recall) get **Wilson score intervals**. F1 is not a proportion of independent trials, so its
interval is a percentile bootstrap over documents (every resample recomputes F1 from per-document
counts, vectorised as one matrix product per block of resamples, as the gate does; documents
with identical counts are drawn together as one multinomial, so 100,000 reviews cost no more than
a few hundred).

Entity precision and recall intervals treat entities as independent trials; entities of one
document are not, so those intervals are somewhat too narrow. Use the bootstrap F1 interval when
that matters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from docloop.errors import InvalidInput
from docloop.feedback.contracts import FeedbackRecord, PredictedEntity
from docloop.feedback.verdicts import (
    Span,
    confirms_entities,
    corrects_doc_type,
    newest_verdicts,
    predicted_spans,
    verdict_of,
)

logger = logging.getLogger(__name__)

DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_BOOTSTRAP: Final = 1000
_BLOCK_CELLS: Final = 4_000_000  # resamples x documents per matrix product (32 MB of float64)


# --- Wilson score interval ------------------------------------------------------------------------


def normal_quantile(confidence: float) -> float:
    """The two-sided standard-normal quantile ``z`` for ``confidence`` (1.95996... for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise InvalidInput(f"confidence must be in (0, 1), not {confidence}")
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(
    successes: npt.ArrayLike, trials: npt.ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Wilson score interval of binomial proportions (no continuity correction), vectorised.

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = k/n``. Unlike the Wald
    interval it stays inside [0, 1] and keeps its coverage near 0 and 1 and for small ``n``.

    Args:
        successes: ``k`` per proportion.
        trials: ``n`` per proportion (same shape); ``n = 0`` gives the uninformative [0, 1].
        confidence: Two-sided confidence level.

    Returns:
        ``(lower, upper)`` arrays of the broadcast shape.

    Raises:
        InvalidInput: A negative count, ``k > n``, or a confidence outside (0, 1).
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(k < 0) or np.any(n < 0) or np.any(k > n):
        raise InvalidInput("Wilson interval needs 0 <= successes <= trials for every proportion")
    z = normal_quantile(confidence)
    safe_n = np.where(n > 0, n, 1.0)
    p = k / safe_n
    z2 = z * z
    denominator = 1.0 + z2 / safe_n
    centre = (p + z2 / (2.0 * safe_n)) / denominator
    half = z * np.sqrt(p * (1.0 - p) / safe_n + z2 / (4.0 * safe_n * safe_n)) / denominator
    lower = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    upper = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return lower, upper


class RateEstimate(BaseModel):
    """A proportion ``successes / trials`` with its Wilson score interval."""

    model_config = ConfigDict(frozen=True)

    successes: int = Field(ge=0)
    trials: int = Field(ge=0)
    value: float | None = Field(description="successes / trials; None when there is no trial.")
    lower: float = Field(ge=0.0, le=1.0)
    upper: float = Field(ge=0.0, le=1.0)
    confidence: float

    @classmethod
    def of(
        cls, successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE
    ) -> RateEstimate:
        """The estimate of ``successes`` out of ``trials``."""
        lower, upper = wilson_interval(successes, trials, confidence)
        return cls(
            successes=int(successes),
            trials=int(trials),
            value=successes / trials if trials else None,
            lower=float(lower),
            upper=float(upper),
            confidence=confidence,
        )

    def describe(self) -> str:
        """``0.912 (95% CI 0.871-0.941, 180/197)``, or ``n/a (no data)``."""
        if self.value is None:
            return "n/a (no data)"
        level = f"{self.confidence * 100:g}%"
        return (
            f"{self.value:.3f} ({level} CI {self.lower:.3f}-{self.upper:.3f}, "
            f"{self.successes}/{self.trials})"
        )


# --- per-label scores -----------------------------------------------------------------------------


class LabelPerformance(BaseModel):
    """One document class or entity type on the reviewed documents."""

    model_config = ConfigDict(frozen=True)

    true_positives: int = Field(ge=0)
    predicted: int = Field(ge=0)
    support: int = Field(ge=0, description="True documents of the class / true entities.")
    precision: RateEstimate
    recall: RateEstimate
    f1: float | None = Field(description="None when the label was neither true nor predicted.")
    f1_lower: float | None = None
    f1_upper: float | None = None


class PerformanceReport(BaseModel):
    """The champion's performance on the reviewed documents of one window."""

    model_config = ConfigDict(frozen=True)

    confidence: float
    bootstrap_samples: int
    feedback_events: int = Field(description="Accepted feedback events read.")
    documents: int = Field(description="Judged predictions (newest verdict per prediction).")
    confirmed: int = Field(description="Judged predictions of the champion release confirmed.")
    corrected: int = Field(description="Judged predictions of the champion release corrected.")
    type_corrections: int
    entity_corrections: int
    correction_rate: RateEstimate
    type_documents: int = Field(description="Judged documents with a predicted type.")
    accuracy: RateEstimate
    macro_f1: float | None
    macro_f1_lower: float | None = None
    macro_f1_upper: float | None = None
    per_class: dict[str, LabelPerformance]
    entity_documents: int = Field(description="Judged documents scored for entities.")
    entity_documents_skipped: int = Field(
        description="Entity corrections of predictions whose entities carry no word positions."
    )
    entity_precision: RateEstimate
    entity_recall: RateEstimate
    entity_f1: float | None
    entity_f1_lower: float | None = None
    entity_f1_upper: float | None = None
    per_entity: dict[str, LabelPerformance]

    def metric(self, name: str) -> float | None:
        """A headline metric by the gate's names: ``accuracy``, ``macro_f1``, ``f1`` (entities).

        Raises:
            InvalidInput: An unknown metric name.
        """
        if name == "accuracy":
            return self.accuracy.value
        if name == "macro_f1":
            return self.macro_f1
        if name in ("f1", "entity_f1"):
            return self.entity_f1
        raise InvalidInput(f"unknown feedback metric {name!r}; use accuracy, macro_f1 or f1")

    def flat(self, prefix: str = "feedback.") -> dict[str, float]:
        """Flat metric names -> values (missing values left out) for KFP ``Metrics`` / MLflow."""
        flat: dict[str, float] = {
            "events": float(self.feedback_events),
            "documents": float(self.documents),
            "confirmed": float(self.confirmed),
            "corrected": float(self.corrected),
        }
        for name, rate in (
            ("correction_rate", self.correction_rate),
            ("accuracy", self.accuracy),
            ("entity_precision", self.entity_precision),
            ("entity_recall", self.entity_recall),
        ):
            if rate.value is not None:
                flat[name] = rate.value
                flat[f"{name}_lower"] = rate.lower
                flat[f"{name}_upper"] = rate.upper
        for name, value in (
            ("macro_f1", self.macro_f1),
            ("macro_f1_lower", self.macro_f1_lower),
            ("macro_f1_upper", self.macro_f1_upper),
            ("entity_f1", self.entity_f1),
            ("entity_f1_lower", self.entity_f1_lower),
            ("entity_f1_upper", self.entity_f1_upper),
        ):
            if value is not None:
                flat[name] = value
        for group, labels in (("class", self.per_class), ("entity", self.per_entity)):
            for label, scores in labels.items():
                if scores.f1 is not None:
                    flat[f"{group}.{label}.f1"] = scores.f1
                flat[f"{group}.{label}.support"] = float(scores.support)
        return {f"{prefix}{name}": value for name, value in flat.items()}


# --- from feedback records to judged documents ----------------------------------------------------


@dataclass(frozen=True)
class JudgedDocument:
    """One judged prediction: what the model said and what the reviewer says is true.

    Attributes:
        predicted_type: The predicted type (None: no classifier answered).
        true_type: The reviewer's type (the predicted one unless corrected).
        predicted_spans: Predicted entities as (type, word positions), as scored; None when they
            cannot be scored (a corrected entity list for a prediction without positions).
        true_spans: The true entities, as scored; None when they cannot be scored (see above).
        corrected: Whether the verdict was a correction.
    """

    predicted_type: str | None
    true_type: str | None
    predicted_spans: tuple[Span, ...] | None
    true_spans: tuple[Span, ...] | None
    corrected: bool
    type_corrected: bool
    entities_corrected: bool


def _confirmed_unplaced(entities: Sequence[PredictedEntity]) -> tuple[Span, ...]:
    """Confirmed entities without positions: each its own placeholder span, so each matches."""
    return tuple((entity.type, (index,)) for index, entity in enumerate(entities))


def judge(record: FeedbackRecord) -> JudgedDocument:
    """What one verdict says about its prediction (:mod:`docloop.feedback.verdicts`' rule)."""
    verdict = verdict_of(record)
    placed = predicted_spans(record.predicted_entities)
    predicted: tuple[Span, ...] | None = None if placed is None else tuple(sorted(placed))
    true: tuple[Span, ...] | None
    if confirms_entities(record):
        if predicted is None:
            predicted = _confirmed_unplaced(record.predicted_entities)
        true = predicted
    elif predicted is None:
        true = None  # a corrected list cannot be matched against spans the prediction lacks
    else:
        true = tuple(sorted(verdict.entities or ()))
    return JudgedDocument(
        predicted_type=record.predicted_doc_type,
        true_type=verdict.doc_type,
        predicted_spans=predicted,
        true_spans=true,
        corrected=record.kind == "correction",
        type_corrected=corrects_doc_type(record),
        entities_corrected=not confirms_entities(record),
    )


# --- scores ---------------------------------------------------------------------------------------


def _bootstrap_f1(
    counts: npt.NDArray[np.float64],
    samples: int,
    seed: int,
    confidence: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], tuple[float, float] | None]:
    """Percentile-bootstrap intervals of per-label F1 and of their macro mean (or micro F1).

    Args:
        counts: ``[documents, labels, 3]`` per-document (true positives, predicted, true).
        samples: Bootstrap resamples.
        seed: Random seed.
        confidence: Two-sided level.

    Returns:
        ``(lower, upper)`` per label, and the interval of the macro F1 over labels present in the
        full sample.
    """
    documents, labels, _ = counts.shape
    if documents == 0 or samples == 0:
        empty = np.full(labels, np.nan)
        return empty, empty.copy(), None
    present = counts[:, :, 1:].sum(axis=(0, 2)) > 0
    # Documents with the same counts are interchangeable, so drawing `documents` of them with
    # replacement is a multinomial over the distinct count patterns (at most classes² of them for
    # classification): the cost grows with the patterns, not with the documents.
    patterns, frequency = np.unique(
        counts.reshape(documents, labels * 3), axis=0, return_counts=True
    )
    probabilities = frequency / documents
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // len(patterns))
    f1_blocks: list[npt.NDArray[np.float64]] = []
    done = 0
    while done < samples:
        size = min(block, samples - done)
        weights = rng.multinomial(documents, probabilities, size=size)
        totals = (weights.astype(np.float64) @ patterns).reshape(size, labels, 3)
        denominator = totals[:, :, 1] + totals[:, :, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2.0 * totals[:, :, 0] / denominator, 0.0)
        f1_blocks.append(f1)
        done += size
    replicates = np.concatenate(f1_blocks)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lower = np.percentile(replicates, tail, axis=0)
    upper = np.percentile(replicates, 100.0 - tail, axis=0)
    macro: tuple[float, float] | None = None
    if present.any():
        macro_values = replicates[:, present].mean(axis=1)
        macro = (
            float(np.percentile(macro_values, tail)),
            float(np.percentile(macro_values, 100.0 - tail)),
        )
    return lower, upper, macro


def label_scores(
    counts: npt.NDArray[np.float64],
    names: Sequence[str],
    samples: int,
    seed: int,
    confidence: float,
) -> tuple[dict[str, LabelPerformance], tuple[float, float] | None]:
    """Per-label precision/recall (Wilson) and F1 (bootstrap) from per-document counts.

    Args:
        counts: ``[documents, labels, 3]`` (true positives, predicted, true) per document.
        names: The labels, in the counts' order.
        samples: Bootstrap resamples (0: no F1 interval).
        seed: Bootstrap seed.
        confidence: Two-sided level.

    Returns:
        Scores per label, and the bootstrap interval of their macro-F1 (None without data).
    """
    totals = counts.sum(axis=0)
    lower, upper, macro = _bootstrap_f1(counts, samples, seed, confidence)
    table: dict[str, LabelPerformance] = {}
    for index, name in enumerate(names):
        tp, predicted, support = (int(v) for v in totals[index])
        present = predicted + support > 0
        table[name] = LabelPerformance(
            true_positives=tp,
            predicted=predicted,
            support=support,
            precision=RateEstimate.of(tp, predicted, confidence),
            recall=RateEstimate.of(tp, support, confidence),
            f1=2.0 * tp / (predicted + support) if present else None,
            f1_lower=float(lower[index]) if present and samples else None,
            f1_upper=float(upper[index]) if present and samples else None,
        )
    return table, macro


def type_counts(
    true_types: Sequence[str], predicted_types: Sequence[str]
) -> tuple[list[str], npt.NDArray[np.float64]]:
    """Per-document classification counts ``[documents, classes, 3]`` (tp, predicted, true).

    Vectorised: types become integer codes once, and counts are scattered with ``np.add.at``.
    """
    if len(true_types) != len(predicted_types):
        raise InvalidInput("pass one predicted type per true type")
    labels = sorted(set(true_types) | set(predicted_types))
    code = {label: index for index, label in enumerate(labels)}
    true_codes = np.fromiter((code[t] for t in true_types), dtype=np.int64, count=len(true_types))
    pred_codes = np.fromiter(
        (code[p] for p in predicted_types), dtype=np.int64, count=len(predicted_types)
    )
    return labels, type_counts_from_codes(true_codes, pred_codes, len(labels))


def type_counts_from_codes(
    true_codes: npt.NDArray[np.int64], pred_codes: npt.NDArray[np.int64], classes: int
) -> npt.NDArray[np.float64]:
    """:func:`type_counts` from integer class codes (the form the benchmark feeds directly)."""
    documents = len(true_codes)
    counts = np.zeros((documents, classes, 3), dtype=np.float64)
    rows = np.arange(documents)
    correct = true_codes == pred_codes
    counts[rows[correct], true_codes[correct], 0] = 1.0
    counts[rows, pred_codes, 1] = 1.0
    counts[rows, true_codes, 2] = 1.0
    return counts


def _entity_counts(
    documents: Sequence[tuple[tuple[Span, ...], tuple[Span, ...]]],
) -> tuple[list[str], npt.NDArray[np.float64]]:
    types = sorted({kind for pair in documents for spans in pair for kind, _ in spans})
    code = {kind: index for index, kind in enumerate(types)}
    counts = np.zeros((len(documents), len(types), 3), dtype=np.float64)
    for row, (predicted, true) in enumerate(documents):
        true_set = set(true)
        for span in set(predicted):
            counts[row, code[span[0]], 1] += 1
            if span in true_set:
                counts[row, code[span[0]], 0] += 1
        for span in true_set:
            counts[row, code[span[0]], 2] += 1
    return types, counts


def classification_performance(
    true_types: Sequence[str],
    predicted_types: Sequence[str],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> tuple[RateEstimate, float | None, tuple[float, float] | None, dict[str, LabelPerformance]]:
    """Accuracy (Wilson), macro-F1 (bootstrap interval) and per-class scores.

    Returns:
        ``(accuracy, macro_f1, macro_f1_interval, per_class)``.
    """
    labels, counts = type_counts(true_types, predicted_types)
    correct = int(counts[:, :, 0].sum())
    accuracy = RateEstimate.of(correct, len(true_types), confidence)
    per_class, macro_interval = label_scores(counts, labels, bootstrap_samples, seed, confidence)
    f1_values = [scores.f1 for scores in per_class.values() if scores.f1 is not None]
    macro = float(np.mean(f1_values)) if f1_values else None
    return accuracy, macro, macro_interval, per_class


def _key(record: FeedbackRecord) -> tuple[str, int]:
    """The judged prediction (request id + instance), as `newest_verdicts` groups them."""
    return (record.request_id, record.instance)


def _accepted(records: Sequence[FeedbackRecord]) -> list[FeedbackRecord]:
    accepted = [record for record in records if record.status == "accepted"]
    if len(accepted) < len(records):
        logger.warning(
            "%d quarantined feedback events ignored for performance", len(records) - len(accepted)
        )
    return accepted


def feedback_performance(
    records: Sequence[FeedbackRecord],
    *,
    entity_records: Sequence[FeedbackRecord] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> PerformanceReport:
    """Score the champion on accepted feedback.

    Args:
        records: Accepted feedback events with the predictions they judge (quarantined ones are
            ignored with a warning); they score the document types.
        entity_records: The events that score the entities (the verdicts on the champion
            extractor's own predictions); None: ``records``. ``documents`` counts both; the
            confirmed / corrected counts and the correction rate count only the predictions in
            both, i.e. those the whole champion release made.
        confidence: Two-sided level of every interval.
        bootstrap_samples: Resamples for the F1 intervals (0: no F1 interval).
        seed: Seed of the bootstrap.

    Returns:
        The report; rates with no data have ``value=None`` and the interval [0, 1].
    """
    accepted = _accepted(records)
    judged = [judge(record) for record in newest_verdicts(accepted)]
    if entity_records is None:
        entity_judged = judged
        every = accepted
    else:
        entity_accepted = _accepted(entity_records)
        entity_judged = [judge(record) for record in newest_verdicts(entity_accepted)]
        every = list({record.id: record for record in [*accepted, *entity_accepted]}.values())
    if entity_records is None:
        documents, release = len(judged), judged
    else:
        newest = newest_verdicts(every)
        # the release's own predictions: the champion classifier's and the champion extractor's
        both = {_key(r) for r in accepted} & {_key(r) for r in entity_accepted}
        documents = len(newest)
        release = [judge(record) for record in newest if _key(record) in both]
    corrected = sum(1 for doc in release if doc.corrected)

    typed = [doc for doc in judged if doc.predicted_type is not None and doc.true_type is not None]
    accuracy, macro, macro_interval, per_class = classification_performance(
        [str(doc.true_type) for doc in typed],
        [str(doc.predicted_type) for doc in typed],
        confidence=confidence,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
    )

    scored = [
        (doc.predicted_spans, doc.true_spans)
        for doc in entity_judged
        if doc.predicted_spans is not None and doc.true_spans is not None
    ]
    skipped = len(entity_judged) - len(scored)
    if skipped:
        logger.warning(
            "%d entity corrections judge predictions whose entities carry no word positions; "
            "they are left out of the entity scores",
            skipped,
        )
    entity_types, entity_counts = _entity_counts(
        [
            (predicted, true)
            for predicted, true in scored
            if predicted is not None and true is not None
        ]
    )
    per_entity, _ = label_scores(
        entity_counts, entity_types, bootstrap_samples, seed + 1, confidence
    )
    tp, predicted, gold = (int(v) for v in entity_counts.sum(axis=(0, 1)))
    micro_counts = entity_counts.sum(axis=1, keepdims=True)
    _, _, micro_interval = _bootstrap_f1(micro_counts, bootstrap_samples, seed + 2, confidence)
    entity_f1 = 2.0 * tp / (predicted + gold) if predicted + gold else None

    return PerformanceReport(
        confidence=confidence,
        bootstrap_samples=bootstrap_samples,
        feedback_events=len(every),
        documents=documents,
        confirmed=len(release) - corrected,
        corrected=corrected,
        type_corrections=sum(1 for doc in judged if doc.type_corrected),
        entity_corrections=sum(1 for doc in entity_judged if doc.entities_corrected),
        correction_rate=RateEstimate.of(corrected, len(release), confidence),
        type_documents=len(typed),
        accuracy=accuracy,
        macro_f1=macro,
        macro_f1_lower=macro_interval[0] if macro_interval and macro is not None else None,
        macro_f1_upper=macro_interval[1] if macro_interval and macro is not None else None,
        per_class=per_class,
        entity_documents=len(scored),
        entity_documents_skipped=skipped,
        entity_precision=RateEstimate.of(tp, predicted, confidence),
        entity_recall=RateEstimate.of(tp, gold, confidence),
        entity_f1=entity_f1,
        entity_f1_lower=micro_interval[0] if micro_interval and entity_f1 is not None else None,
        entity_f1_upper=micro_interval[1] if micro_interval and entity_f1 is not None else None,
        per_entity=per_entity,
    )

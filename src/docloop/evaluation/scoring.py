"""Scoring a model on a holdout: reports, plus the per-document counts the gate resamples.

Every key metric the gate knows is a function of sums over documents of three counts per label
(class or entity type): true positives, predicted and gold. A document contributes, for a
classifier, one gold and one predicted class (a true positive when they agree); for an extractor,
its exact-span entity counts per type (`docloop.models.metrics.entity_spans`, seqeval's strict
IOB2 rule). `ModelScores.counts` keeps those ``(documents, labels, 3)`` counts, so the metric of
any resample of documents is `metric_values` of a weighted sum, which is what makes the gate's
paired bootstrap a single matrix product per block of resamples.

Labels a model cannot predict are handled on purpose, not by crashing: a holdout document whose
gold class the classifier does not know counts as misclassified (the class enters the report with
F1 0), and gold entities of a type the extractor does not tag count as missed. Both are logged as
warnings that name the labels.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from docloop.documents.examples import DocumentExample
from docloop.errors import InvalidInput
from docloop.evaluation.fields import FieldReport, field_protocol, labelled_values
from docloop.models.metrics import (
    ClassificationReport,
    EntityReport,
    LabelMetrics,
    classification_metrics,
    entity_metrics,
    entity_spans,
)

if TYPE_CHECKING:  # torch is imported when a model is scored, not by the gate
    from docloop.models.artifact import LoadedModel, Task

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called with (documents scored, documents in total) after each chunk of documents."""

TP, PREDICTED, GOLD = 0, 1, 2
"""Positions of the three counts in the last axis of `ModelScores.counts`."""

KEY_METRICS: dict[str, tuple[str, ...]] = {
    "classify": ("accuracy", "macro_f1"),
    "extract": ("f1", "precision", "recall", "macro_f1"),
}
"""Key metrics the gate can use, per task. For the extractor, ``f1``, ``precision`` and ``recall``
are entity-level micro averages and ``macro_f1`` the unweighted mean over entity types."""

_CHUNK_BATCHES = 8  # documents per progress report = batch_size * this


@dataclass(frozen=True, eq=False)
class ModelScores:
    """One model scored on one holdout.

    Attributes:
        task: ``classify`` or ``extract``.
        doc_ids: The holdout documents, in scoring order (the incumbent's must be the same).
        labels: The columns of `counts`: document classes, or entity types, that occur in the
            gold or the predictions.
        counts: ``(documents, labels, 3)`` integers: (true positives, predicted, gold) per
            document and label; summed over documents they give every key metric.
        report: The classification or entity report of the whole holdout.
        model_labels: The classes (or entity types) the model can predict.
        unknown_labels: Gold classes (or entity types) of the holdout the model cannot predict;
            their documents count as misclassified (their entities as missed).
        gold_types: Gold class per document (classifier only).
        predicted_types: Predicted class per document (classifier only).
        predicted_tags: Predicted IOB2 tags per document (extractor only).
        field_report: Field exact-match scores (`docloop.evaluation.fields`) per field, each
            value normalised by its field's kind (extractor scored by `score_model` only).
    """

    task: Task
    doc_ids: tuple[str, ...]
    labels: tuple[str, ...]
    counts: npt.NDArray[np.int64] = field(repr=False)
    report: ClassificationReport | EntityReport = field(repr=False)
    model_labels: tuple[str, ...] = ()
    unknown_labels: tuple[str, ...] = ()
    gold_types: tuple[str, ...] = field(default=(), repr=False)
    predicted_types: tuple[str, ...] = field(default=(), repr=False)
    predicted_tags: tuple[tuple[str, ...], ...] = field(default=(), repr=False)
    field_report: FieldReport | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        expected = (len(self.doc_ids), len(self.labels), 3)
        if self.counts.shape != expected:
            raise InvalidInput(
                f"counts has shape {self.counts.shape}, expected {expected} "
                "(documents, labels, 3); build scores with classification_scores or "
                "extraction_scores."
            )

    @property
    def n_documents(self) -> int:
        """Documents scored."""
        return len(self.doc_ids)

    @property
    def per_label(self) -> dict[str, LabelMetrics]:
        """Precision, recall, F1 and gold support per class or entity type."""
        report = self.report
        return report.per_class if isinstance(report, ClassificationReport) else report.per_entity

    def metric(self, name: str) -> float:
        """A key metric (see `KEY_METRICS`) on the whole holdout.

        Raises:
            InvalidInput: `name` is not a key metric of this task.
        """
        check_metric(self.task, name)
        return float(metric_values(name, self.counts.sum(axis=0)))

    def aligned_counts(self, labels: Sequence[str]) -> npt.NDArray[np.int64]:
        """`counts` with its label axis laid out as `labels` (zeros for labels it lacks).

        Raises:
            InvalidInput: `labels` misses one of this model's labels.
        """
        position = {label: index for index, label in enumerate(labels)}
        missing = [label for label in self.labels if label not in position]
        if missing:
            raise InvalidInput(
                f"labels lacks {', '.join(map(repr, missing))}; pass a superset of scores.labels."
            )
        aligned = np.zeros((self.n_documents, len(labels), 3), dtype=np.int64)
        aligned[:, [position[label] for label in self.labels], :] = self.counts
        return aligned


def check_metric(task: Task, name: str) -> None:
    """Fail unless `name` is a key metric of `task`.

    Raises:
        InvalidInput: It is not; the message lists the allowed names.
    """
    allowed = KEY_METRICS.get(task)
    if allowed is None:
        raise InvalidInput(f"task {task!r} is unknown; use 'classify' or 'extract'.")
    if name not in allowed:
        raise InvalidInput(
            f"{name!r} is not a key metric of the {task} task; use one of {', '.join(allowed)}."
        )


def metric_values(name: str, totals: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A key metric from summed counts, vectorised over any leading axes.

    Args:
        name: ``accuracy``, ``precision``, ``recall``, ``f1`` (micro) or ``macro_f1``.
        totals: ``(..., labels, 3)`` sums of `ModelScores.counts` rows over a set of documents
            (a holdout, or one bootstrap resample per leading index).

    Returns:
        The metric, shape ``totals.shape[:-2]``; 0 where it is undefined (no documents, no
        entities). ``macro_f1`` averages the F1 of the labels present in the gold or the
        predictions, the way scikit-learn's and seqeval's macro averages do.

    Raises:
        InvalidInput: An unknown name, or `totals` is not ``(..., labels, 3)``.
    """
    array = np.asarray(totals, dtype=np.float64)
    if array.ndim < 2 or array.shape[-1] != 3:
        raise InvalidInput(f"totals has shape {array.shape}; expected (..., labels, 3).")
    tp, predicted, gold = array[..., TP], array[..., PREDICTED], array[..., GOLD]
    if name == "macro_f1":
        denominator = predicted + gold
        present = denominator > 0
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
        count = present.sum(axis=-1)
        result: npt.NDArray[np.float64] = np.divide(
            f1.sum(axis=-1), count, out=np.zeros(count.shape), where=count > 0
        )
        return result
    tp_sum, predicted_sum, gold_sum = tp.sum(axis=-1), predicted.sum(axis=-1), gold.sum(axis=-1)
    if name in ("accuracy", "recall"):
        numerator, denominator = tp_sum, gold_sum
    elif name == "precision":
        numerator, denominator = tp_sum, predicted_sum
    elif name == "f1":
        numerator, denominator = 2 * tp_sum, predicted_sum + gold_sum
    else:
        known = sorted({metric for names in KEY_METRICS.values() for metric in names})
        raise InvalidInput(f"unknown metric {name!r}; use one of {', '.join(known)}.")
    values: npt.NDArray[np.float64] = np.divide(
        numerator, denominator, out=np.zeros(np.shape(numerator)), where=denominator > 0
    )
    return values


def classification_scores(
    doc_ids: Sequence[str],
    gold: Sequence[str],
    predicted: Sequence[str],
    model_labels: Sequence[str] | None = None,
) -> ModelScores:
    """Scores of a classifier from its predictions (also how tests build scores by hand).

    Args:
        doc_ids: Document ids, unique.
        gold: Gold class per document.
        predicted: Predicted class per document.
        model_labels: The classes the model can predict; defaults to those in `predicted`. Gold
            classes outside them are reported in ``unknown_labels`` and count as misclassified.

    Returns:
        The scores; the report's labels are the model's classes that occur in the gold or the
        predictions, then the unknown gold classes.

    Raises:
        InvalidInput: The sequences differ in length, are empty, repeat a document id, or a
            prediction is not one of `model_labels`.
    """
    _check_documents(doc_ids, len(gold), len(predicted), "gold", "predicted")
    known = list(dict.fromkeys(model_labels if model_labels is not None else predicted))
    outside = sorted(set(predicted) - set(known))
    if outside:
        raise InvalidInput(
            f"predicted holds {', '.join(map(repr, outside))}, not among the model's labels; "
            "pass every class the model can predict as model_labels."
        )
    occurring = set(gold) | set(predicted)
    unknown = sorted(set(gold) - set(known))
    labels = [label for label in known if label in occurring] + unknown
    position = {label: index for index, label in enumerate(labels)}
    counts = np.zeros((len(doc_ids), len(labels), 3), dtype=np.int64)
    rows = np.arange(len(doc_ids))
    gold_index = np.fromiter((position[g] for g in gold), dtype=np.int64, count=len(gold))
    predicted_index = np.fromiter(
        (position[p] for p in predicted), dtype=np.int64, count=len(predicted)
    )
    counts[rows, gold_index, GOLD] = 1
    counts[rows, predicted_index, PREDICTED] = 1
    correct = gold_index == predicted_index
    counts[rows[correct], gold_index[correct], TP] = 1
    return ModelScores(
        task="classify",
        doc_ids=tuple(doc_ids),
        labels=tuple(labels),
        counts=counts,
        report=classification_metrics(list(gold), list(predicted), labels),
        model_labels=tuple(known),
        unknown_labels=tuple(unknown),
        gold_types=tuple(gold),
        predicted_types=tuple(predicted),
    )


def extraction_scores(
    doc_ids: Sequence[str],
    gold_tags: Sequence[Sequence[str]],
    predicted_tags: Sequence[Sequence[str]],
    model_entity_types: Sequence[str] | None = None,
) -> ModelScores:
    """Scores of an extractor from its IOB2 tags (also how tests build scores by hand).

    Args:
        doc_ids: Document ids, unique.
        gold_tags: Gold IOB2 tags per document, one per word.
        predicted_tags: Predicted tags, same documents and lengths.
        model_entity_types: Entity types the model can tag; defaults to those in
            `predicted_tags`. Gold entities of other types are reported in ``unknown_labels``
            and count as missed.

    Returns:
        The scores; labels are the entity types in the gold or the predictions, sorted.

    Raises:
        InvalidInput: Lengths differ, nothing to score, a repeated document id, or a tag is
            not valid IOB2 (see `docloop.models.metrics.entity_metrics`).
    """
    _check_documents(doc_ids, len(gold_tags), len(predicted_tags), "gold_tags", "predicted_tags")
    report = entity_metrics(gold_tags, predicted_tags)
    labels = list(report.per_entity)
    position = {label: index for index, label in enumerate(labels)}
    counts = np.zeros((len(doc_ids), len(labels), 3), dtype=np.int64)
    predicted_types: set[str] = set()
    for row, (true, pred) in enumerate(zip(gold_tags, predicted_tags, strict=True)):
        gold_spans = set(entity_spans(true))
        predicted_spans = set(entity_spans(pred))
        for span in gold_spans:
            counts[row, position[span.type], GOLD] += 1
        for span in predicted_spans:
            counts[row, position[span.type], PREDICTED] += 1
            predicted_types.add(span.type)
        for span in gold_spans & predicted_spans:
            counts[row, position[span.type], TP] += 1
    known = sorted(set(model_entity_types) if model_entity_types is not None else predicted_types)
    gold_types = {label for label in labels if report.per_entity[label].support > 0}
    return ModelScores(
        task="extract",
        doc_ids=tuple(doc_ids),
        labels=tuple(labels),
        counts=counts,
        report=report,
        model_labels=tuple(known),
        unknown_labels=tuple(sorted(gold_types - set(known))),
        predicted_tags=tuple(tuple(tags) for tags in predicted_tags),
    )


def score_model(
    model: LoadedModel,
    examples: Sequence[DocumentExample],
    *,
    holdout: str = "holdout",
    batch_size: int = 16,
    on_progress: ProgressCallback | None = None,
) -> ModelScores:
    """Run a model over every holdout example and keep what the gate and the report need.

    A classifier is scored on the examples that have a gold type (the others are skipped with a
    warning); an extractor on every example. Which examples those are depends on the examples
    alone, so two models scored on the same examples see the same documents in the same order.

    Args:
        model: The loaded model (its card says the task and its labels).
        examples: The holdout.
        holdout: Its name, for log messages.
        batch_size: Documents per forward pass.
        on_progress: Called with (documents done, total) after each chunk.

    Returns:
        The scores.

    Raises:
        InvalidInput: No example can be scored, or document ids repeat.
    """
    from docloop.models.inference import classify, extract

    card = model.card
    if card.task == "classify":
        scored = [example for example in examples if example.doc_type is not None]
        if len(scored) < len(examples):
            logger.warning(
                "holdout %r: %d of %d documents have no gold type and are not scored",
                holdout,
                len(examples) - len(scored),
                len(examples),
            )
    else:
        scored = list(examples)
    if not scored:
        raise InvalidInput(
            f"holdout {holdout!r} has no document to score a {card.task} model on; pass a "
            "holdout with labelled documents (build-dataset writes one as holdout.parquet)."
        )
    doc_ids = [example.doc_id for example in scored]
    if card.task == "classify":
        gold = [str(example.doc_type) for example in scored]
        _warn_unknown(
            holdout, Counter(g for g in gold if g not in card.labels), "documents", "classifies"
        )
        predicted = [
            prediction.label
            for chunk in _chunks(scored, batch_size, on_progress)
            for prediction in classify(model, chunk, batch_size=batch_size)
        ]
        return classification_scores(doc_ids, gold, predicted, card.labels)

    known_types = set(card.entity_types)
    _warn_unknown(
        holdout,
        Counter(
            tag[2:]
            for example in scored
            for tag in example.tags
            if tag.startswith("B-") and tag[2:] not in known_types
        ),
        "entities",
        "tags",
    )
    results = [
        result
        for chunk in _chunks(scored, batch_size, on_progress)
        for result in extract(model, chunk, batch_size=batch_size)
    ]
    scores = extraction_scores(
        doc_ids,
        [example.tags for example in scored],
        [result.tags for result in results],
        card.entity_types,
    )
    report = field_protocol(
        {example.doc_id: labelled_values(example) for example in scored},
        {  # each field's answer, as the predictor serves it
            doc_id: {name: answer.text for name, answer in result.fields.items()}
            for doc_id, result in zip(doc_ids, results, strict=True)
        },
        card.field_kinds,
    )
    return replace(scores, field_report=report)


def _chunks(
    examples: Sequence[DocumentExample], batch_size: int, on_progress: ProgressCallback | None
) -> Iterable[Sequence[DocumentExample]]:
    """Slices of a few batches each; reports progress after each one has been consumed."""
    size = max(1, batch_size) * _CHUNK_BATCHES
    for start in range(0, len(examples), size):
        yield examples[start : start + size]
        if on_progress is not None:
            on_progress(min(start + size, len(examples)), len(examples))


def _warn_unknown(holdout: str, unknown: Counter[str], what: str, verb: str) -> None:
    if not unknown:
        return
    listed = ", ".join(f"{label!r} ({count})" for label, count in sorted(unknown.items()))
    logger.warning(
        "holdout %r has %s of labels the model never %s: %s; they count as %s. Retrain with "
        "these labels, or leave them out of the holdout if they are out of scope.",
        holdout,
        what,
        verb,
        listed,
        "misclassified" if what == "documents" else "missed",
    )


def _check_documents(
    doc_ids: Sequence[str], gold: int, predicted: int, gold_name: str, predicted_name: str
) -> None:
    if not doc_ids:
        raise InvalidInput("there are no documents to score; pass at least one.")
    if not len(doc_ids) == gold == predicted:
        raise InvalidInput(
            f"{len(doc_ids)} doc_ids, {gold} {gold_name} and {predicted} {predicted_name}; pass "
            "one of each per document, in the same order."
        )
    repeated = sorted(doc for doc, count in Counter(doc_ids).items() if count > 1)
    if repeated:
        raise InvalidInput(
            f"doc_ids repeats {', '.join(map(repr, repeated[:5]))}; a holdout lists each "
            "document once."
        )

"""Evaluation metrics: document-type classification and exact-span entity extraction.

Classification figures come from scikit-learn; entity figures from seqeval in strict IOB2 mode (an
entity counts only when its type and both of its boundaries match). Reports are frozen pydantic
models that serialise to JSON and flatten to metric names MLflow and KFP accept. Per-document
correctness and span counts feed the gate's paired bootstrap; the plots go into the evaluate
component's HTML report. Nothing here imports kfp: `kfp_classification_metrics` only mirrors the
metadata shape that KFP's ``ClassificationMetrics.log_confusion_matrix`` writes.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, NamedTuple

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field
from seqeval.metrics.v1 import precision_recall_fscore_support as seqeval_prfs
from seqeval.scheme import IOB2, Entities
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from docloop.errors import InvalidInput

OUTSIDE = "O"
_ENTITY_TAG = re.compile(r"(?P<prefix>[BI])-(?P<type>[^-](?:.*[^-])?)", re.DOTALL)

Score = Annotated[float, Field(ge=0.0, le=1.0)]


class LabelMetrics(BaseModel):
    """Precision, recall, F1 and support of one document class or one entity type."""

    model_config = ConfigDict(frozen=True)

    precision: Score
    recall: Score
    f1: Score
    support: int = Field(ge=0, description="Gold documents of the class / gold entities.")


class ClassificationReport(BaseModel):
    """Document-type classification on one holdout."""

    model_config = ConfigDict(frozen=True)

    labels: list[str] = Field(description="The classes, in the order of the confusion matrix.")
    n_documents: int = Field(ge=0)
    accuracy: Score
    macro_f1: Score = Field(description="Unweighted mean of the per-class F1 over `labels`.")
    weighted_f1: Score = Field(description="Per-class F1 averaged with support as weights.")
    per_class: dict[str, LabelMetrics]
    confusion_matrix: list[list[int]] = Field(
        description="Rows are true classes, columns predicted ones, both in `labels` order."
    )

    def flat(self) -> dict[str, float]:
        """Metric names for MLflow / KFP ``Metrics``: ``accuracy``, ``macro_f1``, ``f1.<class>``."""
        flat = {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
        }
        flat.update(_flat_per_label(self.per_class))
        return flat


class EntityReport(BaseModel):
    """Entity extraction on one holdout, with seqeval's strict IOB2 exact-span matching."""

    model_config = ConfigDict(frozen=True)

    n_documents: int = Field(ge=0)
    precision: Score = Field(description="Micro precision over all entity types.")
    recall: Score = Field(description="Micro recall over all entity types.")
    f1: Score = Field(description="Micro F1 over all entity types.")
    macro_f1: Score = Field(description="Unweighted mean of the per-type F1.")
    support: int = Field(ge=0, description="Gold entities of every type.")
    per_entity: dict[str, LabelMetrics] = Field(
        description="Types found in the gold or the predicted tags, sorted by name."
    )

    def flat(self) -> dict[str, float]:
        """Metric names for MLflow / KFP ``Metrics``: ``entity_f1``, ``f1.<type>``..."""
        flat = {
            "entity_precision": self.precision,
            "entity_recall": self.recall,
            "entity_f1": self.f1,
            "entity_macro_f1": self.macro_f1,
            "entity_support": float(self.support),
        }
        flat.update(_flat_per_label(self.per_entity))
        return flat


class EntitySpan(NamedTuple):
    """One entity in a tag sequence: its type and word positions ``[start, end)``."""

    type: str
    start: int
    end: int


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> ClassificationReport:
    """Score predicted document types against the gold ones.

    Args:
        y_true: Gold class of each document.
        y_pred: Predicted class of each document, in the same order.
        labels: Every class the model knows; fixes the order of the confusion matrix and the set
            the macro average runs over (a class without documents counts with F1 0).

    Returns:
        The report; all zeros when there are no documents.

    Raises:
        InvalidInput: `labels` is empty or repeats a class, the two sequences differ in length,
            or either holds a class that is not in `labels`.
    """
    label_list = list(labels)
    if not label_list:
        raise InvalidInput("labels is empty; pass every class the classifier can predict.")
    repeated = sorted({label for label in label_list if label_list.count(label) > 1})
    if repeated:
        raise InvalidInput(f"labels repeats {_quoted(repeated)}; list each class once.")
    if len(y_true) != len(y_pred):
        raise InvalidInput(
            f"y_true has {len(y_true)} documents but y_pred has {len(y_pred)}; "
            "pass one prediction per gold document, in the same order."
        )
    _check_known_labels(y_true, label_list, "y_true")
    _check_known_labels(y_pred, label_list, "y_pred")

    size = len(label_list)
    if not y_true:
        zero = LabelMetrics(precision=0.0, recall=0.0, f1=0.0, support=0)
        return ClassificationReport(
            labels=label_list,
            n_documents=0,
            accuracy=0.0,
            macro_f1=0.0,
            weighted_f1=0.0,
            per_class=dict.fromkeys(label_list, zero),
            confusion_matrix=[[0] * size for _ in range(size)],
        )

    true, pred = list(y_true), list(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=label_list, average=None, zero_division=0
    )
    return ClassificationReport(
        labels=label_list,
        n_documents=len(true),
        accuracy=float(accuracy_score(true, pred)),
        macro_f1=float(f1_score(true, pred, labels=label_list, average="macro", zero_division=0)),
        weighted_f1=float(
            f1_score(true, pred, labels=label_list, average="weighted", zero_division=0)
        ),
        per_class={
            label: LabelMetrics(
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
            )
            for i, label in enumerate(label_list)
        },
        confusion_matrix=confusion_matrix(true, pred, labels=label_list).astype(int).tolist(),
    )


def entity_metrics(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> EntityReport:
    """Score predicted IOB2 word tags against the gold ones, entity by entity.

    Matching is seqeval's ``mode="strict"`` with ``scheme=IOB2``: an entity is a ``B-<type>``
    followed by any ``I-<type>``; an ``I-`` that does not continue an entity of its own type
    starts nothing; a predicted entity is correct only when type, start and end all match.

    Args:
        true_tags: Gold tags, one sequence per document (one tag per OCR word).
        pred_tags: Predicted tags, same documents and lengths.

    Returns:
        The report. Types that appear in neither the gold nor the predicted tags are not reported;
        without any entity at all (or without documents) every figure is zero.

    Raises:
        InvalidInput: The document counts or a document's tag counts differ, or a tag is not
            ``O``, ``B-<type>`` or ``I-<type>``.
    """
    true_docs, pred_docs = _checked_tag_sequences(true_tags, pred_tags)
    entities_true = Entities(true_docs, IOB2)
    entities_pred = Entities(pred_docs, IOB2)
    types = sorted(entities_true.unique_tags | entities_pred.unique_tags)
    if not types:
        return EntityReport(
            n_documents=len(true_docs),
            precision=0.0,
            recall=0.0,
            f1=0.0,
            macro_f1=0.0,
            support=0,
            per_entity={},
        )

    def scores(average: str | None) -> Any:
        return seqeval_prfs(
            true_docs,
            pred_docs,
            average=average,
            zero_division=0,
            scheme=IOB2,
            entities_true=entities_true,
            entities_pred=entities_pred,
        )

    precision, recall, f1, support = scores(None)
    micro_precision, micro_recall, micro_f1, total_support = scores("micro")
    return EntityReport(
        n_documents=len(true_docs),
        precision=float(micro_precision),
        recall=float(micro_recall),
        f1=float(micro_f1),
        macro_f1=float(np.mean(f1)),
        support=int(total_support),
        per_entity={
            name: LabelMetrics(
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
            )
            for i, name in enumerate(types)
        },
    )


def per_document_correct(y_true: Sequence[str], y_pred: Sequence[str]) -> npt.NDArray[np.bool_]:
    """Whether each document's predicted class is right (for the gate's paired bootstrap).

    Raises:
        InvalidInput: The two sequences differ in length.
    """
    if len(y_true) != len(y_pred):
        raise InvalidInput(
            f"y_true has {len(y_true)} documents but y_pred has {len(y_pred)}; "
            "pass one prediction per gold document, in the same order."
        )
    return np.fromiter(
        (true == pred for true, pred in zip(y_true, y_pred, strict=True)),
        dtype=np.bool_,
        count=len(y_true),
    )


def entity_counts_per_document(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> npt.NDArray[np.int64]:
    """Exact-span counts per document, the same rule as `entity_metrics`.

    Summed over any resample of documents, the columns give micro precision (tp / predicted),
    recall (tp / gold) and F1 for that resample; see `entity_scores_from_counts`.

    Returns:
        An ``(n_documents, 3)`` integer array of (true positives, predicted entities, gold
        entities).

    Raises:
        InvalidInput: As `entity_metrics`.
    """
    true_docs, pred_docs = _checked_tag_sequences(true_tags, pred_tags)
    counts = np.zeros((len(true_docs), 3), dtype=np.int64)
    for index, (true, pred) in enumerate(zip(true_docs, pred_docs, strict=True)):
        gold = set(entity_spans(true))
        predicted = set(entity_spans(pred))
        counts[index] = (len(gold & predicted), len(predicted), len(gold))
    return counts


def entity_scores_from_counts(counts: npt.ArrayLike) -> tuple[float, float, float]:
    """Micro precision, recall and F1 from `entity_counts_per_document` rows (zeros when undefined).

    Raises:
        InvalidInput: `counts` is not an ``(n, 3)`` array.
    """
    array = np.asarray(counts)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InvalidInput(
            f"counts has shape {array.shape}; expected (n_documents, 3) as returned by "
            "entity_counts_per_document."
        )
    true_positives, predicted, gold = (int(total) for total in array.sum(axis=0))
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_spans(tags: Sequence[str]) -> list[EntitySpan]:
    """The entities of one IOB2 tag sequence, as seqeval's strict mode reads them.

    Raises:
        InvalidInput: A tag is not ``O``, ``B-<type>`` or ``I-<type>``.
    """
    spans: list[EntitySpan] = []
    current: str | None = None
    start = 0
    for index, tag in enumerate(tags):
        parsed = _parse_tag(tag)
        if parsed is None:
            raise InvalidInput(f"tag {index} is {tag!r}; {_TAG_HELP}")
        prefix, entity_type = parsed
        if prefix == "I" and entity_type == current:
            continue
        if current is not None:
            spans.append(EntitySpan(current, start, index))
        current = entity_type if prefix == "B" else None
        start = index
    if current is not None:
        spans.append(EntitySpan(current, start, len(tags)))
    return spans


def kfp_classification_metrics(report: ClassificationReport) -> dict[str, list[dict[str, Any]]]:
    """The ``confusionMatrix`` metadata a KFP ``ClassificationMetrics`` artifact stores.

    Equal to what ``ClassificationMetrics.log_confusion_matrix(report.labels,
    report.confusion_matrix)`` writes into ``metadata["confusionMatrix"]``, so a component can
    assign it without this library importing kfp.
    """
    return {
        "annotationSpecs": [{"displayName": label} for label in report.labels],
        "rows": [{"row": list(row)} for row in report.confusion_matrix],
    }


def plot_confusion_matrix(report: ClassificationReport, title: str) -> Figure:
    """A confusion-matrix heat map (rows true, columns predicted) with the count in each cell."""
    size = len(report.labels)
    matrix = np.asarray(report.confusion_matrix, dtype=np.int64).reshape(size, size)
    side = max(4.0, 0.6 * size + 2.5)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    axes = figure.add_subplot()
    peak = max(1, int(matrix.max()))
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
    figure.colorbar(image, ax=axes, label="documents")
    axes.set_xticks(range(size), report.labels, rotation=45, ha="right")
    axes.set_yticks(range(size), report.labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(size):
        for column in range(size):
            value = int(matrix[row, column])
            axes.text(
                column,
                row,
                str(value),
                ha="center",
                va="center",
                color="white" if value > peak / 2 else "black",
            )
    return figure


def plot_f1_bars(reports: Mapping[str, ClassificationReport | EntityReport], title: str) -> Figure:
    """Grouped F1 bars: one group per class or entity type, one bar (colour) per model.

    Args:
        reports: Model name (e.g. ``candidate``, ``champion``) to its report on the same holdout.
        title: The figure's title.

    Returns:
        The figure; a label a model's report lacks is drawn as F1 0 for that model.

    Raises:
        InvalidInput: `reports` is empty.
    """
    if not reports:
        raise InvalidInput("reports is empty; pass at least one model name and its report.")
    per_model = {name: _per_label(report) for name, report in reports.items()}
    categories = list(dict.fromkeys(label for scores in per_model.values() for label in scores))
    width = 0.8 / len(per_model)
    figure = Figure(
        figsize=(max(6.0, 0.35 * len(categories) * len(per_model) + 2.0), 4.5),
        layout="constrained",
    )
    axes = figure.add_subplot()
    positions = np.arange(len(categories), dtype=float)
    for rank, (name, scores) in enumerate(per_model.items()):
        offset = (rank - (len(per_model) - 1) / 2) * width
        heights = [scores[label].f1 if label in scores else 0.0 for label in categories]
        axes.bar(positions + offset, heights, width, label=name)
    axes.set_xticks(positions, categories, rotation=45, ha="right")
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel("F1")
    axes.set_title(title)
    axes.legend(loc="lower right")
    return figure


def figure_to_base64_png(figure: Figure, dpi: int = 100) -> str:
    """Render a figure as PNG, base64-encoded for ``<img src="data:image/png;base64,...">``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_TAG_HELP = "IOB2 tags are 'O', 'B-<type>' or 'I-<type>' (a type neither starts nor ends with '-')."


@lru_cache(maxsize=1024)
def _parse_tag(tag: str) -> tuple[str, str | None] | None:
    """``(prefix, type)`` of an IOB2 tag, ``("O", None)`` outside entities, None when invalid."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    match = _ENTITY_TAG.fullmatch(tag) if isinstance(tag, str) else None
    if match is None:
        return None
    return match["prefix"], match["type"]


def _checked_tag_sequences(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """Lists of lists (what seqeval needs) after checking the pairing and every tag."""
    if len(true_tags) != len(pred_tags):
        raise InvalidInput(
            f"true_tags has {len(true_tags)} documents but pred_tags has {len(pred_tags)}; "
            "pass one predicted tag sequence per gold document, in the same order."
        )
    true_docs: list[list[str]] = []
    pred_docs: list[list[str]] = []
    for index, (true, pred) in enumerate(zip(true_tags, pred_tags, strict=True)):
        for name, tags in (("true_tags", true), ("pred_tags", pred)):
            if isinstance(tags, str):
                raise InvalidInput(
                    f"{name}[{index}] is a string; pass a list with one tag per word."
                )
        if len(true) != len(pred):
            raise InvalidInput(
                f"document {index}: true_tags has {len(true)} tags but pred_tags has "
                f"{len(pred)}; pass one predicted tag per word."
            )
        for name, tags in (("true_tags", true), ("pred_tags", pred)):
            for position, tag in enumerate(tags):
                if _parse_tag(tag) is None:
                    raise InvalidInput(f"{name}[{index}][{position}] is {tag!r}; {_TAG_HELP}")
        true_docs.append(list(true))
        pred_docs.append(list(pred))
    return true_docs, pred_docs


def _check_known_labels(values: Sequence[str], labels: list[str], name: str) -> None:
    known = set(labels)
    unknown = sorted({value for value in values if value not in known})
    if unknown:
        first = next(index for index, value in enumerate(values) if value not in known)
        raise InvalidInput(
            f"{name} holds {_quoted(unknown)} (first at index {first}), not among the labels "
            f"{_quoted(labels)}; add the class to labels or fix {name}."
        )


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(repr(value) for value in values)


def _per_label(report: ClassificationReport | EntityReport) -> dict[str, LabelMetrics]:
    return report.per_class if isinstance(report, ClassificationReport) else report.per_entity


def _flat_per_label(per_label: Mapping[str, LabelMetrics]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for label, metrics in per_label.items():
        flat[f"precision.{label}"] = metrics.precision
        flat[f"recall.{label}"] = metrics.recall
        flat[f"f1.{label}"] = metrics.f1
        flat[f"support.{label}"] = float(metrics.support)
    return flat

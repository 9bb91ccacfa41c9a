"""docloop.models.metrics on hand-computed cases, against seqeval and against KFP's own artifact."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from pydantic import ValidationError
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, Entities

from docloop.errors import InvalidInput
from docloop.models.metrics import (
    ClassificationReport,
    EntityReport,
    EntitySpan,
    classification_metrics,
    entity_counts_per_document,
    entity_metrics,
    entity_scores_from_counts,
    entity_spans,
    figure_to_base64_png,
    kfp_classification_metrics,
    per_document_correct,
    plot_confusion_matrix,
    plot_f1_bars,
)

pytestmark = pytest.mark.unit

LABELS = ["invoice", "receipt", "letter"]
# Confusion matrix (rows true, columns predicted, LABELS order):
#   invoice [2, 1, 0]   receipt [0, 1, 1]   letter [0, 0, 1]
Y_TRUE = ["invoice", "invoice", "invoice", "receipt", "receipt", "letter"]
Y_PRED = ["invoice", "invoice", "receipt", "receipt", "letter", "letter"]

# Three documents; the comments give the spans (type, start, end) gold vs predicted.
TRUE_TAGS = [
    ["B-patient_name", "I-patient_name", "O", "B-date", "O"],  # name(0,2) date(3,4)
    ["B-date", "O", "B-total", "O"],  # date(0,1) total(2,3)
    ["O", "B-patient_name", "I-patient_name", "I-patient_name"],  # name(1,4)
]
PRED_TAGS = [
    ["B-patient_name", "I-patient_name", "O", "B-date", "I-date"],  # name ok; date(3,5) boundary
    ["B-date", "O", "B-total", "B-total"],  # date ok, total ok, total(3,4) spurious
    ["O", "I-patient_name", "I-patient_name", "I-patient_name"],  # I- without B-: no entity
]


# --- classification -------------------------------------------------------------------------


def test_classification_three_classes_by_hand() -> None:
    report = classification_metrics(Y_TRUE, Y_PRED, LABELS)

    assert report.n_documents == 6
    assert report.accuracy == pytest.approx(4 / 6)  # diagonal 2 + 1 + 1
    # invoice: P = 2/2, R = 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8, support 3
    # receipt: P = 1/2 (2 predicted), R = 1/2, F1 = 0.5, support 2
    # letter:  P = 1/2 (2 predicted), R = 1/1, F1 = 2 * 0.5 / 1.5 = 2/3, support 1
    expected = {
        "invoice": (1.0, 2 / 3, 0.8, 3),
        "receipt": (0.5, 0.5, 0.5, 2),
        "letter": (0.5, 1.0, 2 / 3, 1),
    }
    for label, (precision, recall, f1, support) in expected.items():
        metrics = report.per_class[label]
        assert metrics.precision == pytest.approx(precision)
        assert metrics.recall == pytest.approx(recall)
        assert metrics.f1 == pytest.approx(f1)
        assert metrics.support == support
    # macro = (0.8 + 0.5 + 2/3) / 3 = 59/90; weighted = (3 * 0.8 + 2 * 0.5 + 1 * 2/3) / 6 = 61/90
    assert report.macro_f1 == pytest.approx(59 / 90)
    assert report.weighted_f1 == pytest.approx(61 / 90)
    assert report.confusion_matrix == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert list(report.per_class) == LABELS


def test_confusion_matrix_rows_are_true_columns_predicted() -> None:
    report = classification_metrics(["invoice"], ["receipt"], ["invoice", "receipt"])
    assert report.confusion_matrix == [[0, 1], [0, 0]]


def test_class_without_documents_counts_in_macro_f1() -> None:
    report = classification_metrics(["invoice", "receipt"], ["invoice", "receipt"], LABELS)
    assert report.per_class["letter"].support == 0
    assert report.per_class["letter"].f1 == 0.0
    assert report.macro_f1 == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3
    assert report.weighted_f1 == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "named"),
    [
        (["invoice", "memo"], ["invoice", "invoice"], "'memo'"),
        (["invoice", "invoice"], ["invoice", "fax"], "'fax'"),
    ],
)
def test_unknown_label_is_invalid_input(y_true: list[str], y_pred: list[str], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        classification_metrics(y_true, y_pred, LABELS)


def test_classification_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="2 documents but y_pred has 1"):
        classification_metrics(["invoice", "letter"], ["invoice"], LABELS)
    with pytest.raises(InvalidInput, match="labels is empty"):
        classification_metrics([], [], [])
    with pytest.raises(InvalidInput, match="repeats 'letter'"):
        classification_metrics([], [], ["letter", "invoice", "letter"])


def test_classification_without_documents_is_zeros() -> None:
    report = classification_metrics([], [], LABELS)
    assert report.accuracy == report.macro_f1 == report.weighted_f1 == 0.0
    assert report.confusion_matrix == [[0] * 3] * 3


def test_classification_report_flat_json_and_frozen() -> None:
    report = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    flat = report.flat()
    assert flat["accuracy"] == pytest.approx(4 / 6)
    assert flat["macro_f1"] == pytest.approx(59 / 90)
    assert flat["f1.invoice"] == pytest.approx(0.8)
    assert flat["recall.letter"] == 1.0
    assert flat["support.receipt"] == 2.0
    assert all(isinstance(value, float) for value in flat.values())
    assert ClassificationReport.model_validate_json(report.model_dump_json()) == report
    with pytest.raises(ValidationError):
        report.accuracy = 1.0  # type: ignore[misc]


def test_per_document_correct() -> None:
    correct = per_document_correct(Y_TRUE, Y_PRED)
    assert correct.dtype == np.bool_
    assert correct.tolist() == [True, True, False, True, False, True]
    with pytest.raises(InvalidInput):
        per_document_correct(["invoice"], [])


# --- entities --------------------------------------------------------------------------------


def test_entity_metrics_by_hand() -> None:
    report = entity_metrics(TRUE_TAGS, PRED_TAGS)

    # patient_name: gold 2, predicted 1, tp 1 -> P 1, R 1/2, F1 2/3
    # date:         gold 2, predicted 2, tp 1 -> P 1/2, R 1/2, F1 1/2 (doc 0 boundary: FP + FN)
    # total:        gold 1, predicted 2, tp 1 -> P 1/2, R 1, F1 2/3
    expected = {
        "date": (0.5, 0.5, 0.5, 2),
        "patient_name": (1.0, 0.5, 2 / 3, 2),
        "total": (0.5, 1.0, 2 / 3, 1),
    }
    assert list(report.per_entity) == sorted(expected)
    for name, (precision, recall, f1, support) in expected.items():
        metrics = report.per_entity[name]
        assert metrics.precision == pytest.approx(precision)
        assert metrics.recall == pytest.approx(recall)
        assert metrics.f1 == pytest.approx(f1)
        assert metrics.support == support
    # micro: tp 3, predicted 5, gold 5 -> 0.6 each; macro F1 = (1/2 + 2/3 + 2/3) / 3 = 11/18
    assert (report.precision, report.recall, report.f1) == pytest.approx((0.6, 0.6, 0.6))
    assert report.macro_f1 == pytest.approx(11 / 18)
    assert report.support == 5
    assert report.n_documents == 3
    assert report.f1 == pytest.approx(f1_score(TRUE_TAGS, PRED_TAGS, mode="strict", scheme=IOB2))

    counts = entity_counts_per_document(TRUE_TAGS, PRED_TAGS)
    assert counts.tolist() == [[1, 2, 2], [2, 3, 2], [0, 0, 1]]
    assert entity_scores_from_counts(counts) == pytest.approx((0.6, 0.6, 0.6))


@pytest.mark.parametrize(
    ("true", "pred", "tp_predicted_gold"),
    [
        # exact span match
        (["B-name", "I-name", "O", "B-date"], ["B-name", "I-name", "O", "B-date"], (2, 2, 2)),
        # wrong right boundary: the predicted span is a FP and the gold one a FN
        (["B-name", "I-name", "O"], ["B-name", "O", "O"], (0, 1, 1)),
        # wrong left boundary
        (["O", "B-name", "I-name"], ["B-name", "I-name", "I-name"], (0, 1, 1)),
        # right boundary, wrong type
        (["B-name", "I-name"], ["B-date", "I-date"], (0, 1, 1)),
        # I- without B- starts no entity in strict mode
        (["B-name", "I-name"], ["I-name", "I-name"], (0, 0, 1)),
        # an I- of another type ends the entity and starts nothing
        (["B-name", "I-name"], ["B-name", "I-date"], (0, 1, 1)),
        # adjacent entities of one type are two entities
        (["B-name", "B-name"], ["B-name", "I-name"], (0, 1, 2)),
        (["B-name", "B-name"], ["B-name", "B-name"], (2, 2, 2)),
    ],
)
def test_exact_span_cases(
    true: list[str], pred: list[str], tp_predicted_gold: tuple[int, int, int]
) -> None:
    assert entity_counts_per_document([true], [pred]).tolist() == [list(tp_predicted_gold)]
    tp, predicted, gold = tp_predicted_gold
    report = entity_metrics([true], [pred])
    assert report.precision == pytest.approx(tp / predicted if predicted else 0.0)
    assert report.recall == pytest.approx(tp / gold if gold else 0.0)
    assert report.support == gold


def test_wrong_type_reports_both_types() -> None:
    report = entity_metrics([["B-name", "I-name"]], [["B-date", "I-date"]])
    assert report.per_entity["name"].model_dump() == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }
    assert report.per_entity["date"].support == 0
    assert report.macro_f1 == 0.0


def test_entity_spans() -> None:
    tags = ["I-x", "B-x", "I-x", "B-x", "I-y", "O", "B-y"]
    assert entity_spans(tags) == [
        EntitySpan("x", 1, 3),
        EntitySpan("x", 3, 4),
        EntitySpan("y", 6, 7),
    ]
    assert entity_spans([]) == []
    with pytest.raises(InvalidInput, match="tag 1 is 'E-x'"):
        entity_spans(["O", "E-x"])


def test_types_in_neither_are_not_reported() -> None:
    report = entity_metrics([["B-name", "O"]], [["B-name", "O"]])
    assert list(report.per_entity) == ["name"]


@pytest.mark.parametrize(
    ("true", "pred"),
    [([], []), ([["O", "O"]], [["O", "O"]]), ([[]], [[]]), ([["I-x"]], [["I-x"]])],
)
def test_no_entities_is_zeros(true: list[list[str]], pred: list[list[str]]) -> None:
    report = entity_metrics(true, pred)
    assert (report.precision, report.recall, report.f1, report.macro_f1) == (0, 0, 0, 0)
    assert report.per_entity == {}
    assert report.n_documents == len(true)
    assert entity_counts_per_document(true, pred).shape == (len(true), 3)
    assert entity_scores_from_counts(entity_counts_per_document(true, pred)) == (0, 0, 0)


def test_entity_inputs_are_checked() -> None:
    with pytest.raises(InvalidInput, match="document 1: true_tags has 2 tags but pred_tags has 1"):
        entity_metrics([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(InvalidInput, match="2 documents but pred_tags has 1"):
        entity_counts_per_document([["O"], ["O"]], [["O"]])
    with pytest.raises(InvalidInput, match=r"pred_tags\[0\]\[1\] is 'E-x'"):
        entity_metrics([["O", "O"]], [["O", "E-x"]])
    with pytest.raises(InvalidInput, match="is a string"):
        entity_metrics(["O"], ["O"])


def test_entity_report_flat_and_json() -> None:
    report = entity_metrics(TRUE_TAGS, PRED_TAGS)
    flat = report.flat()
    assert flat["entity_f1"] == pytest.approx(0.6)
    assert flat["entity_macro_f1"] == pytest.approx(11 / 18)
    assert flat["f1.patient_name"] == pytest.approx(2 / 3)
    assert flat["support.total"] == 1.0
    assert EntityReport.model_validate_json(report.model_dump_json()) == report
    json.loads(report.model_dump_json())


TAGS = st.sampled_from(["O", "O", "B-a", "I-a", "B-b", "I-b"])
DOCUMENTS = st.lists(st.lists(st.tuples(TAGS, TAGS), max_size=12), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(DOCUMENTS)
def test_counts_reproduce_seqeval(documents: list[list[tuple[str, str]]]) -> None:
    true = [[pair[0] for pair in doc] for doc in documents]
    pred = [[pair[1] for pair in doc] for doc in documents]

    precision, recall, f1 = entity_scores_from_counts(entity_counts_per_document(true, pred))
    strict = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    assert precision == pytest.approx(precision_score(true, pred, **strict))
    assert recall == pytest.approx(recall_score(true, pred, **strict))
    assert f1 == pytest.approx(f1_score(true, pred, **strict))

    report = entity_metrics(true, pred)
    assert (report.precision, report.recall, report.f1) == pytest.approx((precision, recall, f1))
    for tags in true + pred:
        seqeval_spans = [entity.to_tuple()[1:] for entity in Entities([tags], IOB2).entities[0]]
        assert [tuple(span) for span in entity_spans(tags)] == seqeval_spans


# --- KFP shape and plots ---------------------------------------------------------------------


def test_kfp_classification_metrics_matches_kfp() -> None:
    dsl = pytest.importorskip("kfp.dsl")
    report = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    artifact = dsl.ClassificationMetrics(name="confusion")
    artifact.log_confusion_matrix(report.labels, report.confusion_matrix)
    assert kfp_classification_metrics(report) == artifact.metadata["confusionMatrix"]
    assert (
        json.loads(json.dumps(kfp_classification_metrics(report)))
        == (artifact.metadata["confusionMatrix"])
    )


def test_plot_confusion_matrix() -> None:
    report = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    figure = plot_confusion_matrix(report, "holdout")
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    cells = axes.images[0].get_array()
    assert cells is not None
    assert cells.shape == (3, 3)
    assert [text.get_text() for text in axes.texts] == ["2", "1", "0", "0", "1", "1", "0", "0", "1"]
    assert axes.get_title() == "holdout"


def test_plot_f1_bars_groups_per_label_and_model() -> None:
    candidate = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    champion = classification_metrics(Y_TRUE, Y_TRUE, LABELS)
    figure = plot_f1_bars({"candidate": candidate, "champion": champion}, "F1 per class")
    axes = figure.axes[0]
    assert len(axes.patches) == 3 * 2
    assert [label.get_text() for label in axes.get_xticklabels()] == LABELS
    legend = axes.get_legend()
    assert legend is not None
    assert [text.get_text() for text in legend.get_texts()] == ["candidate", "champion"]

    # the champion never predicted "total": its bar is drawn at 0
    entity_candidate = entity_metrics(TRUE_TAGS, PRED_TAGS)
    entity_champion = entity_metrics([["B-date"]], [["B-date"]])
    figure = plot_f1_bars({"candidate": entity_candidate, "champion": entity_champion}, "F1")
    assert len(figure.axes[0].patches) == 3 * 2
    with pytest.raises(InvalidInput):
        plot_f1_bars({}, "nothing")


def test_figure_to_base64_png() -> None:
    figure = plot_confusion_matrix(classification_metrics(Y_TRUE, Y_PRED, LABELS), "holdout")
    encoded = figure_to_base64_png(figure)
    assert isinstance(encoded, str)
    assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")

"""The field protocol (docloop.evaluation.fields): SROIE-style exact value match per field."""

from __future__ import annotations

import pytest

from docloop.documents.examples import DocumentExample
from docloop.evaluation.fields import (
    field_protocol,
    field_values,
    labelled_values,
    normalise_field,
    normalise_value,
)
from docloop.models.inference import EntityPrediction


def entity(kind: str, text: str, confidence: float) -> EntityPrediction:
    return EntityPrediction(type=kind, text=text, page=0, box=[0, 0, 1, 1], confidence=confidence)


def test_normalisation_folds_case_and_whitespace_only() -> None:
    assert normalise_value("  Book TA .K\n SDN   BHD ") == "book ta .k sdn bhd"
    assert normalise_value("RM9.00") != normalise_value("9.00")


def test_the_most_confident_span_is_the_fields_value() -> None:
    values = field_values(
        [entity("total", "8.00", 0.6), entity("total", "9.00", 0.9), entity("date", "x", 0.5)]
    )
    assert values == {"total": "9.00", "date": "x"}
    assert field_values([entity("t", "a", 0.5), entity("t", "b", 0.5)]) == {"t": "a"}


def test_precision_recall_and_f1_per_field_and_overall() -> None:
    gold = {
        "r1": {"company": "ACME SDN BHD", "total": "9.00"},
        "r2": {"company": "FOO", "total": "1.50"},
    }
    predicted = {
        "r1": {"company": "acme  sdn bhd", "total": "RM9.00"},
        "r2": {"total": "1.50", "date": "01/01/2018"},
        "unscored": {"total": "3"},
    }
    report = field_protocol(gold, predicted)
    company, total, date = (report.per_field[k] for k in ("company", "total", "date"))
    assert (company.gold, company.predicted, company.correct) == (2, 1, 1)
    assert (total.gold, total.predicted, total.correct) == (2, 2, 1)
    assert (date.gold, date.predicted, date.correct) == (0, 1, 0)
    assert report.overall.precision == pytest.approx(2 / 4)
    assert report.overall.recall == pytest.approx(2 / 4)
    assert company.f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert ("r1", "total", "9.00", "RM9.00") in report.errors
    assert ("r2", "company", "FOO", "") in report.errors
    assert report.as_dict()["overall"] == {
        "gold": 4,
        "predicted": 4,
        "correct": 2,
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
    }


def test_nothing_predicted_scores_zero_not_an_error() -> None:
    report = field_protocol({"r": {"total": "1"}}, {})
    assert report.overall.f1 == 0.0 and report.per_field["total"].recall == 0.0


def test_dates_and_amounts_compare_as_values_given_their_kinds() -> None:
    gold = {"r1": {"date": "25/12/2018", "total": "9.00", "company": "ACME"}}
    predicted = {"r1": {"date": "25 Dec 2018", "total": "RM9.00", "company": "ACME SDN"}}
    kinded = field_protocol(gold, predicted, {"date": "date", "total": "amount"})
    assert {name: s.correct for name, s in kinded.per_field.items()} == {
        "company": 0,
        "date": 1,
        "total": 1,
    }
    assert field_protocol(gold, predicted).overall.correct == 0  # as text: the SROIE protocol
    assert normalise_field("2018-12-25", "date") == normalise_field("25.12.18", "date")
    assert normalise_field("TOTAL 1,234.50", "amount") == "1234.50"
    assert normalise_field("9.00", "amount") == normalise_field("RM 9.00", "amount") == "9.00"
    assert normalise_field("NO.5,JALAN", "text") == normalise_field("no. 5, jalan", "text")
    assert normalise_field("31/02/2018", "date") == "31022018"  # no such day: read as text
    assert normalise_field("B00K", "text") != normalise_field("BOOK", "text")  # misread: wrong


def test_a_right_value_whose_label_was_not_located_is_not_a_false_positive() -> None:
    words = ["TOTAL", "RM9.0O", "CASH", "10.00"]  # the OCR misread the total: not located
    unlocated = DocumentExample(
        doc_id="r1", source_uri="r1.jpg", doc_type="receipt", words=words,
        boxes=[[0, 0, 1, 1]] * 4, pages=[0] * 4, tags=["O", "O", "O", "O"], page_count=1,
        ocr_pages=1, mean_confidence=0.9, field_values={"total": "9.00"},
    )  # fmt: skip
    assert labelled_values(unlocated) == {"total": "9.00"}
    right = field_protocol({"r1": labelled_values(unlocated)}, {"r1": {"total": "9.00"}})
    assert (right.overall.gold, right.overall.predicted, right.overall.correct) == (1, 1, 1)
    by_tags = unlocated.model_copy(update={"field_values": {}})
    assert labelled_values(by_tags) == {}  # from the tags alone the right answer would be wrong
    located = by_tags.model_copy(update={"tags": ["O", "B-total", "O", "O"]})
    assert labelled_values(located) == {"total": "RM9.0O"}

"""Label Studio JSON exports -> docloop labels by value (docloop.documents.label_studio).

The task shapes follow Label Studio's documented task format (labelstud.io/guide/task_format)
and its OCR template (RectangleLabels + per-region TextArea sharing a result ``id``) and NER
template (``labels`` spans carrying their ``text``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from docloop.documents.label_studio import (
    convert_export,
    convert_task,
    document_source,
    parse_export,
)
from docloop.errors import InvalidInput


def ocr_region(region_id: str, label: str, text: str | None, page: int | None = None) -> list:
    box = {"x": 10.0, "y": 5.0, "width": 30.0, "height": 4.0, "rotation": 0}
    results: list[dict[str, Any]] = [
        {
            "id": region_id,
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "original_width": 463,
            "original_height": 1013,
            "value": {**box, "rectanglelabels": [label]},
        }
    ]
    if text is not None:
        results.append(
            {
                "id": region_id,
                "type": "textarea",
                "from_name": "transcription",
                "to_name": "image",
                "value": {**box, "text": [text]},
            }
        )
    if page is not None:
        for result in results:
            result["value"]["item_index"] = page
    return results


def task(task_id: int, image: str, results: list, **annotation: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "data": {"image": image},
        "annotations": [{"id": task_id * 10, "result": results, **annotation}],
    }


def test_ocr_template_becomes_labels_by_value() -> None:
    results = [
        *ocr_region("a1", "company", "BOOK TA .K (TAMAN DAYA) SDN BHD"),
        *ocr_region("a2", "total", "9.00"),
        *ocr_region("a3", "address", "NO.53 55,57 & 59, JALAN SAGU 18,"),
        *ocr_region("a4", "address", "TAMAN DAYA,"),
        {"id": "c", "type": "choices", "from_name": "t", "value": {"choices": ["receipt"]}},
    ]
    line, skipped = convert_task(task(1, "/data/upload/3/5f1a2b3c-000.jpg", results))
    assert skipped == []
    assert line == {
        "source": "000.jpg",
        "doc_type": "receipt",
        "fields": {
            "address": ["NO.53 55,57 & 59, JALAN SAGU 18,", "TAMAN DAYA,"],
            "company": "BOOK TA .K (TAMAN DAYA) SDN BHD",
            "total": "9.00",
        },
    }


def test_ner_spans_carry_their_text_and_names_can_be_mapped() -> None:
    results = [
        {
            "id": "s1",
            "type": "labels",
            "from_name": "label",
            "to_name": "text",
            "value": {"start": 0, "end": 9, "text": "Jane  Roe", "labels": ["PER"]},
        }
    ]
    data = {"text": "Jane Roe was seen", "document": "s3://bucket/in/letters/a.pdf"}
    line, skipped = convert_task(
        {"id": 7, "data": data, "annotations": [{"result": results}]},
        strip="in",
        field_names={"PER": "patient_name"},
    )
    assert skipped == []
    assert line == {"source": "letters/a.pdf", "fields": {"patient_name": "Jane Roe"}}


def test_every_region_left_out_says_why() -> None:
    results = [
        *ocr_region("r1", "total", None),
        {"id": "k", "type": "keypointlabels", "value": {"x": 1, "y": 2, "keypointlabels": ["x"]}},
        {"id": "t", "type": "textarea", "value": {"text": ["orphan"]}},
        *ocr_region("r2", "date", "25/12/2018", page=1),
    ]
    line, skipped = convert_task(task(2, "/data/local-files/?d=receipts%2F001.jpg", results))
    assert line == {"source": "receipts/001.jpg", "fields": {"date": "25/12/2018"}, "page": 1}
    reasons = {s.region: s.reason for s in skipped}
    assert "no transcription" in reasons["r1"] and "TextArea" in reasons["r1"]
    assert "'keypointlabels' is not read" in reasons["k"]
    assert "has no label" in reasons["t"]


def test_ground_truth_beats_newer_and_cancelled_annotations_are_ignored() -> None:
    old_truth = {"result": ocr_region("a", "total", "1.00"), "ground_truth": True}
    newer = {"result": ocr_region("a", "total", "2.00"), "updated_at": "2030-01-01"}
    cancelled = {"result": ocr_region("a", "total", "3.00"), "was_cancelled": True}
    data = {"image": "000.jpg"}
    line, _ = convert_task({"id": 1, "data": data, "annotations": [newer, old_truth, cancelled]})
    assert line is not None and line["fields"] == {"total": "1.00"}
    line, skipped = convert_task({"id": 1, "data": data, "annotations": [cancelled]})
    assert line is None and "no annotation" in skipped[0].reason


def test_two_tasks_on_one_document_are_both_refused_and_counted() -> None:
    export = [
        task(1, "/data/upload/1/aaaaaaaa-000.jpg", ocr_region("a", "total", "9.00")),
        task(2, "/data/upload/1/bbbbbbbb-000.jpg", ocr_region("a", "total", "8.00")),
        task(3, "/data/upload/1/cccccccc-001.jpg", ocr_region("a", "total", "7.00")),
        {"id": 4, "data": {"text": "no file"}, "annotations": []},
    ]
    result = convert_export(export)
    assert result.tasks == 4
    assert result.lines == [{"source": "001.jpg", "fields": {"total": "7.00"}}]
    assert result.values == {"total": 1}
    assert sorted(str(s.task) for s in result.skipped) == ["1", "2", "4"]
    assert json.loads(result.jsonl()) == result.lines[0]


def test_document_source_forms() -> None:
    assert document_source({"image": "/data/upload/2/0123abcd-a-b.png"}) == "a-b.png"
    assert document_source({"image": "/data/upload/2/plain.png"}) == "plain.png"
    assert document_source({"ocr": "gs://b/x/y.jpg"}, strip="x/") == "y.jpg"
    assert document_source({"f": "docs/z.pdf"}, key="f") == "docs/z.pdf"
    with pytest.raises(InvalidInput, match="--document-key"):
        document_source({"text": "x"})


def test_parse_export_reads_json_and_json_lines_and_refuses_the_rest() -> None:
    tasks = [{"id": 1, "data": {}}, {"id": 2, "data": {}}]
    assert parse_export(json.dumps(tasks)) == tasks
    assert parse_export("\n".join(json.dumps(t) for t in tasks)) == tasks
    with pytest.raises(InvalidInput, match="JSON-MIN"):
        parse_export("[{]")
    with pytest.raises(InvalidInput, match="list of Label Studio tasks"):
        parse_export('{"id": 1}\n[1]')

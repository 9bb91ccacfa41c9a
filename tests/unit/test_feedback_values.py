"""Corrections by value and the declared schema, through the feedback API (TestClient, SQLite).

A reviewer names an entity by its printed value; the API finds the words in the served document
(``docloop.feedback.values``) and stores their positions. A type or field the model does not know
is refused unless the deployment declares it (``schema``), so a new field can be taught.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from docloop.config import DocloopConfig, SchemaConfig
from docloop.documents.examples import DocumentExample
from docloop.feedback.api import create_app
from docloop.feedback.contracts import write_served_document
from docloop.serve.sink import PredictionRecord, SqlSink
from docloop.storage import Storage
from docloop.store import Store, open_store

pytestmark = pytest.mark.unit

WORDS = ["BOOK", "TA", ".K", "SDN", "BHD", "Date:", "25-12-2018", "SUBTOTAL", "8.00",
         "TOTAL", "RM9.00", "Thank", "you"]  # fmt: skip
_keys = itertools.count()


def served() -> DocumentExample:
    boxes = [[10 + 60 * (i % 5), 20 + 40 * (i // 5), 60 + 60 * (i % 5), 40 + 40 * (i // 5)]
             for i in range(len(WORDS))]  # fmt: skip
    return DocumentExample(
        doc_id="doc-rcpt", source_uri="request://r/0", doc_type=None, words=WORDS, boxes=boxes,
        pages=[0] * len(WORDS), tags=["O"] * len(WORDS), page_count=1, ocr_pages=1,
        mean_confidence=90.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> DocloopConfig:
    root: Path = tmp_path_factory.mktemp("data")
    return DocloopConfig(
        data_root=root.as_uri(),
        schema=SchemaConfig(
            doc_types=["receipt", "invoice"],
            fields={"company": "text", "date": "date", "total": "amount", "vendor_id": "id"},
        ),
    )


@pytest.fixture(scope="module")
def client(config: DocloopConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store: Store = open_store(f"sqlite:///{tmp_path_factory.mktemp('db') / 'state.db'}")
    write_served_document(Storage(), config, served())
    record = PredictionRecord(
        timestamp="2026-12-01T10:00:00+00:00", request_id="req-r", instance=0,
        doc_id="doc-rcpt", source_uri="request://r/0", model_name="docloop",
        model_version="v1", model_versions={"classify": "v1"}, protocol="v1",
        input="pages", doc_type="receipt", doc_type_confidence=0.9,
        probabilities={"receipt": 0.9, "other": 0.1},
        entities=[{"type": "company", "text": "BOOK TA", "word_indices": [0, 1]}],
        entity_types=["company", "date", "total"], entity_count=1, pages=1,
        words=len(WORDS), mean_confidence=90.0, ocr_pages=1, latency_ms=3.0,
    )  # fmt: skip
    SqlSink(store).write([record])
    with TestClient(create_app(config, store)) as test_client:
        yield test_client
    store.close()


def correction(entities: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    body = {} if entities is None else {"entities": entities}
    return {
        "idempotency_key": f"key-{next(_keys):06d}",
        "model_name": "docloop",
        "model_version": "v1",
        "request_id": "req-r",
        "reviewer_id": "rev-1",
        "kind": "correction",
        "correction": {**body, **fields},
    }


def test_entities_named_by_value_are_stored_with_their_positions(client: TestClient) -> None:
    body = correction(
        [
            {"type": "company", "value": "book ta .k sdn bhd"},
            {"type": "date", "value": "25/12/2018"},  # printed 25-12-2018: the date kind
            {"type": "total", "value": "9.00"},  # printed RM9.00: the amount kind
        ]
    )
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 201, response.text
    stored = response.json()["correction"]["entities"]
    assert [(e["type"], e["word_indices"]) for e in stored] == [
        ("company", [0, 1, 2, 3, 4]),
        ("date", [6]),
        ("total", [10]),
    ]
    again = client.post("/v1/feedback", json=body)  # a retry resolves the same way
    assert again.status_code == 200, again.text
    assert again.json()["id"] == response.json()["id"]


def test_positions_and_values_mix_and_a_value_never_takes_a_word_twice(
    client: TestClient,
) -> None:
    body = correction(
        [{"type": "total", "word_indices": [10]}, {"type": "company", "value": "BOOK TA"}]
    )
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 201, response.text
    entities = response.json()["correction"]["entities"]
    assert entities[1]["word_indices"] == [0, 1]


def test_a_value_the_document_does_not_print_is_422_with_the_closest_text(
    client: TestClient,
) -> None:
    body = correction([{"type": "company", "value": "ACME HOLDINGS"}])
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "value_not_found"
    assert error["field"] == "correction.entities[0].value"
    assert "closest text is" in error["error"] and "word_indices" in error["error"]


def test_an_entity_needs_positions_or_a_value(client: TestClient) -> None:
    response = client.post("/v1/feedback", json=correction([{"type": "company"}]))
    assert response.status_code == 422
    assert "word_indices, or its value" in response.json()["error"]


def test_declared_fields_and_types_may_be_taught_others_are_refused(client: TestClient) -> None:
    new_field = correction([{"type": "vendor_id", "word_indices": [12]}])
    assert client.post("/v1/feedback", json=new_field).status_code == 201
    new_type = correction(doc_type="invoice")
    assert client.post("/v1/feedback", json=new_type).status_code == 201
    unknown = client.post("/v1/feedback", json=correction([{"type": "iban", "value": "TOTAL"}]))
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["code"] == "unknown_label"
    assert "declared under schema" in unknown.json()["error"]
    assert "vendor_id" in unknown.json()["error"]


def test_a_value_whose_only_occurrence_is_held_is_not_found(client: TestClient) -> None:
    body = correction(
        [{"type": "company", "word_indices": [0, 1]}, {"type": "company", "value": "BOOK TA"}]
    )
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "correction.entities[1].value"


def two_pages() -> DocumentExample:
    words = ["Invoice", "TOTAL", "RM1.00", "Page", "two", "TOTAL", "RM9.00", "25-12-2018"]
    return DocumentExample(
        doc_id="d2", source_uri="request://x/0", doc_type=None, words=words,
        boxes=[[10, 10 + 20 * i, 90, 25 + 20 * i] for i in range(len(words))],
        pages=[0, 0, 0, 1, 1, 1, 1, 1], tags=["O"] * len(words), page_count=2, ocr_pages=2,
        mean_confidence=90.0,
    )  # fmt: skip


def test_positions_on_a_later_page_count_the_earlier_pages_words() -> None:
    from docloop.feedback.contracts import FeedbackEvent
    from docloop.feedback.values import kind_of_value, resolve_values

    event = FeedbackEvent.model_validate(
        correction(
            [
                {"type": "total", "value": "9.00"},  # no declared kind: read off the value
                {"type": "date", "value": "25/12/2018"},
                {"type": "title", "value": "page two"},
            ]
        )
    )
    resolved, missing = resolve_values(event, two_pages(), {}, 0.2)
    assert missing == []
    assert resolved.correction is not None and resolved.correction.entities is not None
    assert [e.word_indices for e in resolved.correction.entities] == [[6], [7], [3, 4]]
    assert (kind_of_value("9.00"), kind_of_value("25/12/2018")) == ("amount", "date")
    # a total held by another entity: the other occurrence is not another amount
    held = FeedbackEvent.model_validate(
        correction([{"type": "x", "word_indices": [6]}, {"type": "total", "value": "9.00"}])
    )
    _, missing = resolve_values(held, two_pages(), {}, 0.2)
    assert [index for index, _ in missing] == [1]

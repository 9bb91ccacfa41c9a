"""The feedback API in-process (FastAPI TestClient) against a real SQLite state store.

Predictions are seeded through the predictor's own ``SqlSink``. Covered: stored verdicts and their
records, idempotent replays and 409 on a reused key, every validation rule (each answered 4xx with
a message naming the field and the fix, and nothing stored), the batch endpoint (all or nothing),
the model status endpoint, health, metrics, the OpenAPI document, a schemathesis property test
against that document, and the store readers (``accepted_feedback``) on both backends.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from docloop.config import DocloopConfig, FeedbackConfig
from docloop.feedback.api import EXAMPLE_REQUEST_ID, create_app
from docloop.feedback.contracts import FeedbackEvent
from docloop.feedback.records import (
    accepted_feedback,
    find_prediction,
    iter_accepted_feedback,
    iter_feedback,
    record_feedback,
)
from docloop.serve.sink import PredictionRecord, SqlSink
from docloop.store import Store, open_store
from docloop.store import versions as vs
from docloop.store.tables import FeedbackEvent as FeedbackRow

pytestmark = pytest.mark.unit

MODEL, VERSION = "docloop", "v1"
DOC_TYPES = {"invoice": 0.7, "letter": 0.2, "referral": 0.1}
ENTITY_TYPES = ["mrn", "patient_name", "dob"]
PREDICTED_ENTITIES = [
    {"type": "mrn", "text": "4821937", "page": 0, "box": [1, 1, 2, 2], "confidence": 0.9,
     "word_indices": [5]},
    {"type": "patient_name", "text": "Jane Doe", "page": 0, "box": [1, 1, 3, 2],
     "confidence": 0.8, "word_indices": [2, 3]},
]  # fmt: skip
WORDS = 6
_keys = itertools.count()


def prediction(
    request_id: str,
    instance: int = 0,
    *,
    version: str = VERSION,
    classifier: bool = True,
    extractor: bool = True,
    doc_id: str | None = None,
    stamp: str = "2026-11-25T10:00:00+00:00",
) -> PredictionRecord:
    return PredictionRecord(
        timestamp=stamp, request_id=request_id, instance=instance,
        doc_id=doc_id or f"doc-{request_id}-{instance}", source_uri="request://x/0",
        model_name=MODEL, model_version=version, model_versions={"classify": version},
        protocol="v1", input="pages",
        doc_type="invoice" if classifier else None,
        doc_type_confidence=0.7 if classifier else None,
        probabilities=DOC_TYPES if classifier else {},
        entities=PREDICTED_ENTITIES if extractor else [],
        entity_types=ENTITY_TYPES if extractor else [],
        entity_count=2 if extractor else 0, pages=1, words=WORDS, mean_confidence=90.0,
        ocr_pages=1, latency_ms=3.0,
    )  # fmt: skip


def seed(store: Store) -> None:
    SqlSink(store).write(
        [
            prediction("req-1", 0),
            prediction("req-1", 1),
            prediction("req-cls", classifier=True, extractor=False),
            prediction("req-ext", classifier=False, extractor=True),
            prediction("req-v2", version="v2", stamp="2026-11-26T10:00:00+00:00"),
            prediction(EXAMPLE_REQUEST_ID),  # the OpenAPI examples' (schemathesis sends them)
        ]
    )


def key() -> str:
    return f"key-{next(_keys):06d}"


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": key(),
        "model_name": MODEL,
        "model_version": VERSION,
        "request_id": "req-1",
        "instance": 0,
        "reviewer_id": "rev-1",
        "kind": "confirmation",
    }
    body.update(overrides)
    return body


def correction(**fields: Any) -> dict[str, Any]:
    return event(kind="correction", correction=fields)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path_factory.mktemp('feedback') / 'state.db'}")
    seed(opened)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> DocloopConfig:
    root = tmp_path_factory.mktemp("data")
    return DocloopConfig(
        data_root=root.as_uri(), feedback=FeedbackConfig(max_payload_kb=8, max_batch=5)
    )


@pytest.fixture(scope="module")
def client(config: DocloopConfig, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(config, store)) as test_client:
        yield test_client


def rows(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(FeedbackRow)) or 0)


def assert_error(response: Any, status: int, code: str, field: str, *fix: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code", "field", "errors"}
    assert body["code"] == code and body["field"] == field, body
    prefix = f"[{body['errors'][0]['index']}]." if code == "invalid_batch" else ""
    assert body["error"].startswith(f"{prefix}{field}: "), body["error"]
    for words in fix:
        assert words in body["error"], body["error"]
    return body


# --- accepted verdicts ------------------------------------------------------------------------
def test_a_confirmation_is_stored_with_its_prediction(client: TestClient, store: Store) -> None:
    body = event()
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["idempotency_key"] == body["idempotency_key"]
    assert (record["request_id"], record["instance"], record["doc_id"]) == (
        "req-1",
        0,
        "doc-req-1-0",
    )
    assert record["status"] == "accepted" and record["correction"] is None
    # issue 19: the answer no longer hands out what was predicted; the store keeps it
    assert record["predicted_doc_type"] is None
    assert record["predicted_probabilities"] == {} and record["predicted_entities"] == []
    assert datetime.fromisoformat(record["received_at"]).tzinfo is not None
    stored = [r for r in accepted_feedback(store) if r.idempotency_key == body["idempotency_key"]]
    assert len(stored) == 1 and stored[0].predicted_doc_type == "invoice"
    assert stored[0].predicted_probabilities == DOC_TYPES
    assert [e.model_dump() for e in stored[0].predicted_entities] == PREDICTED_ENTITIES
    assert stored[0].reviewer_role == record["reviewer_role"] == "reviewer"
    hidden = {"predicted_doc_type", "predicted_probabilities", "predicted_entities"}
    assert {k: v for k, v in stored[0].model_dump().items() if k not in hidden} == {
        k: v for k, v in record.items() if k not in hidden
    }


def test_a_correction_is_stored(client: TestClient) -> None:
    entities = [
        {"type": "mrn", "word_indices": [5], "value": "4821937"},
        {"type": "dob", "word_indices": [0, 1]},
    ]
    body = correction(doc_type="letter", entities=entities)
    body["instance"] = 1
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["kind"] == "correction" and record["instance"] == 1
    assert record["correction"]["doc_type"] == "letter"
    assert record["correction"]["entities"][1] == {
        "type": "dob",
        "word_indices": [0, 1],
        "value": None,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"doc_type": "referral"},  # type only (entities stay as predicted)
        {"entities": []},  # "the document has no entities"
        {"doc_type": "invoice", "entities": [{"type": "mrn", "word_indices": [5]}]},
    ],
)
def test_partial_corrections_are_accepted(client: TestClient, fields: dict[str, Any]) -> None:
    assert client.post("/v1/feedback", json=correction(**fields)).status_code == 201


def test_a_retry_with_the_same_key_and_body_returns_the_stored_record(
    client: TestClient, store: Store
) -> None:
    body = correction(doc_type="letter")
    first = client.post("/v1/feedback", json=body)
    before = rows(store)
    again = client.post("/v1/feedback", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    # the same body spelled differently (defaults written out, other key order) is the same
    spelled = {"instance": 0, **{k: v for k, v in reversed(body.items()) if k != "instance"}}
    spelled["correction"] = {"entities": None, "doc_type": "letter"}
    assert client.post("/v1/feedback", json=spelled).status_code == 200
    assert rows(store) == before


def test_a_reused_key_with_another_body_is_409_and_changes_nothing(
    client: TestClient, store: Store
) -> None:
    body = event()
    assert client.post("/v1/feedback", json=body).status_code == 201
    before = rows(store)
    # a key is scoped to its reviewer (issue 19), so the conflict is the same reviewer's
    response = client.post("/v1/feedback", json={**body, "instance": 1})
    assert_error(response, 409, "idempotency_conflict", "idempotency_key", "new key", "unchanged")
    assert rows(store) == before
    (stored,) = [
        r for r in accepted_feedback(store) if r.idempotency_key == body["idempotency_key"]
    ]
    assert (stored.reviewer_id, stored.instance) == ("rev-1", 0)
    # another reviewer's verdict under the same key is that reviewer's own, and is stored
    other = client.post("/v1/feedback", json={**body, "reviewer_id": "someone-else"})
    assert other.status_code == 201, other.text
    assert rows(store) == before + 1


# --- rejected verdicts ------------------------------------------------------------------------
REJECTIONS: list[tuple[str, dict[str, Any], int, str, str, tuple[str, ...]]] = [
    ("unknown request", event(request_id="req-nope"), 404, "unknown_prediction", "request_id",
     ("'req-nope'", "x-request-id", "client_request_id")),
    ("unknown instance", event(instance=7), 404, "unknown_prediction", "request_id",
     ("instance 7",)),
    ("other model name", event(model_name="other"), 422, "model_mismatch", "model_name",
     ("send model_name 'docloop'",)),
    ("other model version", event(model_version="v9"), 422, "model_mismatch", "model_version",
     ("send model_version 'v1'",)),
    ("unknown doc type", correction(doc_type="memo"), 422, "unknown_label", "correction.doc_type",
     ("'memo'", "use one of: invoice, letter, referral")),
    ("unknown entity type", correction(entities=[{"type": "ssn", "word_indices": [1]}]), 422,
     "unknown_label", "correction.entities[0].type", ("'ssn'", "use one of: dob, mrn")),
    ("doc type without a classifier", correction(doc_type="letter") | {"request_id": "req-ext"},
     422, "unknown_label", "correction.doc_type", ("no classifier", "correct the entities only")),
    ("entities without an extractor",
     correction(entities=[{"type": "mrn", "word_indices": [1]}]) | {"request_id": "req-cls"},
     422, "unknown_label", "correction.entities", ("no extractor",)),
    ("word past the document",
     correction(entities=[{"type": "mrn", "word_indices": [5, 6]}]), 422,
     "word_index_out_of_range", "correction.entities[0].word_indices[1]",
     ("has 6 words", "positions 0-5")),
    ("negative word", correction(entities=[{"type": "mrn", "word_indices": [-1]}]), 422,
     "word_index_out_of_range", "correction.entities[0].word_indices[0]", ("from 0",)),
    ("word twice", correction(entities=[{"type": "mrn", "word_indices": [1, 1]}]), 422,
     "duplicate_word_index", "correction.entities[0].word_indices[1]", ("once",)),
    ("word in two entities",
     correction(entities=[{"type": "mrn", "word_indices": [1]},
                          {"type": "dob", "word_indices": [0, 1]}]), 422,
     "overlapping_entities", "correction.entities[1].word_indices[1]", ("at most one entity",)),
    ("empty correction", correction(), 422, "empty_correction", "correction",
     ("doc_type", "confirmation")),
    ("correction without a correction", event(kind="correction"), 422, "empty_correction",
     "correction", ("correction.entities",)),
    ("correction equal to the type", correction(doc_type="invoice"), 422,
     "correction_matches_prediction", "correction", ("kind 'confirmation'",)),
    ("correction equal to the entities",
     correction(entities=[{"type": "patient_name", "word_indices": [3, 2]},
                          {"type": "mrn", "word_indices": [5], "value": "x"}]), 422,
     "correction_matches_prediction", "correction", ("corrects nothing",)),
    ("confirmation with a correction", event(correction={"doc_type": "letter"}), 422,
     "confirmation_with_correction", "correction", ("drop correction",)),
    ("missing reviewer", {k: v for k, v in event().items() if k != "reviewer_id"}, 422,
     "missing_field", "reviewer_id", ("add it", "who reviewed")),
    ("empty reviewer", event(reviewer_id=""), 422, "invalid_field", "reviewer_id",
     ("at least 1 character",)),
    ("wrong type", event(instance="first"), 422, "invalid_field", "instance", ("integer",)),
    ("unknown kind", event(kind="maybe"), 422, "invalid_field", "kind",
     ("'confirmation' or 'correction'",)),
    ("bad key characters", event(idempotency_key="has space!"), 422, "invalid_field",
     "idempotency_key", ("A-Z a-z 0-9",)),
    ("unknown field", event(score=3), 422, "unknown_field", "score", ("remove it",)),
    ("nested wrong type", correction(entities=[{"type": "mrn", "word_indices": "5"}]), 422,
     "invalid_field", "correction.entities[0].word_indices", ("list",)),
    ("not an object", [event()], 422, "invalid_body", "body", ("JSON object",)),
    ("NUL in a string", event(reviewer_id="rev\u0000"), 422, "invalid_text", "reviewer_id",
     ("NUL", "remove it")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code", "field", "fix"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_invalid_verdicts_are_4xx_naming_field_and_fix_and_store_nothing(
    client: TestClient,
    store: Store,
    body: Any,
    status: int,
    code: str,
    field: str,
    fix: tuple[str, ...],
) -> None:
    before = rows(store)
    response = client.post("/v1/feedback", json=body)
    assert_error(response, status, code, field, *fix)
    assert rows(store) == before


def test_bad_json_is_400(client: TestClient, store: Store) -> None:
    before = rows(store)
    for raw in (b'{"idempotency_key": ', b"not json", b""):
        response = client.post(
            "/v1/feedback", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 422), response.text
        assert response.json()["field"] == "body"
    response = client.post(
        "/v1/feedback", content=b"{bad", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json", "body", "not valid JSON", "Content-Type")
    assert rows(store) == before


def test_an_unpaired_surrogate_is_422_not_500(client: TestClient) -> None:
    raw = json.dumps(event(reviewer_id="PLACEHOLDER")).replace("PLACEHOLDER", "rev\\ud800")
    response = client.post(
        "/v1/feedback", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "invalid_text", "reviewer_id", "surrogate")


def test_an_oversize_payload_is_413_before_parsing(
    client: TestClient, config: DocloopConfig
) -> None:
    limit = config.feedback.max_payload_kb * 1024
    big = b"[" + b" " * limit + b"]"  # not even valid for the endpoint: size is checked first
    response = client.post(
        "/v1/feedback", content=big, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large", "body", f"limit of {limit} bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    response = client.post(
        "/v1/feedback", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large", "body", "max_payload_kb")


def test_unknown_paths_and_methods_answer_in_the_error_format(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "unknown_path", "path", "/openapi.json")
    assert_error(client.get("/v1/feedback"), 405, "method_not_allowed", "method", "GET")


# --- batch ------------------------------------------------------------------------------------
def test_a_batch_is_stored_and_replayed(client: TestClient, store: Store) -> None:
    batch = [event(), correction(doc_type="letter"), event(request_id="req-v2", model_version="v2")]
    before = rows(store)
    response = client.post("/v1/feedback:batch", json=batch)
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["created"], result["replayed"]) == (3, 0)
    assert [r["idempotency_key"] for r in result["records"]] == [
        e["idempotency_key"] for e in batch
    ]
    assert rows(store) == before + 3
    again = client.post("/v1/feedback:batch", json=batch)
    assert again.status_code == 200 and again.json()["replayed"] == 3
    assert again.json()["records"] == result["records"]
    mixed = client.post("/v1/feedback:batch", json=[batch[0], event()])
    assert mixed.status_code == 201 and mixed.json()["created"] == 1
    assert rows(store) == before + 4


def test_one_bad_event_rejects_the_whole_batch_with_every_problem(
    client: TestClient, store: Store
) -> None:
    batch = [
        event(),
        event(request_id="req-nope"),
        correction(doc_type="memo"),
        {k: v for k, v in event().items() if k != "kind"},
    ]
    before = rows(store)
    response = client.post("/v1/feedback:batch", json=batch)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_batch" and "nothing was stored" in body["error"]
    # schema errors are reported first (FastAPI validates the whole body before the handler)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(3, "kind")]
    response = client.post("/v1/feedback:batch", json=batch[:3])
    body = response.json()
    assert response.status_code == 422 and body["code"] == "invalid_batch"
    assert [(e["index"], e["code"], e["status"]) for e in body["errors"]] == [
        (1, "unknown_prediction", 404),
        (2, "unknown_label", 422),
    ]
    only_unknown = client.post("/v1/feedback:batch", json=[event(), event(request_id="x-1")])
    assert only_unknown.status_code == 404
    assert rows(store) == before


def test_a_batch_reusing_a_key_with_another_body_stores_nothing(
    client: TestClient, store: Store
) -> None:
    first = event()
    before = rows(store)
    response = client.post(
        "/v1/feedback:batch", json=[event(), first, {**first, "instance": 1}]
    )  # a key is the reviewer's own (issue 19): the same reviewer reusing it is the conflict
    body = assert_error(response, 409, "invalid_batch", "idempotency_key", "nothing was stored")
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(2, "idempotency_conflict")]
    assert "new key" in body["errors"][0]["error"]
    assert rows(store) == before
    duplicate = client.post("/v1/feedback:batch", json=[first, first])  # same body twice: once
    assert duplicate.status_code == 201
    assert (duplicate.json()["created"], duplicate.json()["replayed"]) == (1, 1)


def test_batch_size_limits(client: TestClient, config: DocloopConfig) -> None:
    too_many = [event() for _ in range(config.feedback.max_batch + 1)]
    assert_error(
        client.post("/v1/feedback:batch", json=too_many),
        413,
        "batch_too_large",
        "body",
        "split them",
    )
    assert_error(
        client.post("/v1/feedback:batch", json=[]), 422, "empty_batch", "body", "send 1 to 5"
    )
    assert_error(
        client.post("/v1/feedback:batch", json=event()),
        422,
        "invalid_body",
        "body",
        "JSON array",
    )


# --- status, health, metrics, OpenAPI ---------------------------------------------------------
def test_model_status_counts_per_served_version(client: TestClient) -> None:
    assert client.post("/v1/feedback", json=event(request_id="req-cls")).status_code == 201
    response = client.get(f"/v1/models/{MODEL}/status")
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["name"] == MODEL and status["registered"] == []
    versions = {v["version"]: v for v in status["served"]}
    assert [v["version"] for v in status["served"]] == ["v1", "v2"]
    assert versions["v1"]["predictions"] == 5 and versions["v2"]["predictions"] == 1
    v1 = versions["v1"]
    assert v1["feedback"] == v1["confirmations"] + v1["corrections"] and v1["corrections"] >= 1
    assert v1["first_prediction_at"].startswith("2026-11-25T10:00:00")


def test_model_status_of_a_registered_model(client: TestClient, store: Store) -> None:
    name = "docloop-classifier"
    with store.write() as session:
        for version in ("1", "2"):
            vs.record_version(
                session, name, version, model_uri=f"file:///models/{version}", run_id=None,
                dataset_digest="sha256:x", gate=None, code_version=None, actor="test",
            )  # fmt: skip
        vs.switch_default(
            session, name, "2", action="promote", reason="test", run_id=None, actor="test"
        )
    status = client.get(f"/v1/models/{name}/status").json()
    assert status["default_version"] == "2" and status["served"] == []
    assert [(v["version"], v["status"]) for v in status["registered"]] == [
        ("1", "candidate"),
        ("2", "default"),
    ]


def test_model_status_of_unknown_or_invalid_names(client: TestClient) -> None:
    assert_error(client.get("/v1/models/nobody/status"), 404, "unknown_model", "name", "docloop")
    assert_error(client.get("/v1/models/-bad/status"), 422, "invalid_path", "name", "letters")


def test_health_and_metrics(client: TestClient, store: Store) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "store": "sqlite"}
    client.post("/v1/feedback", json=event(request_id="req-nope"))
    # its own created verdict: the counter must not depend on which tests ran before (xdist)
    SqlSink(store).write([prediction("req-metrics")])
    assert client.post("/v1/feedback", json=event(request_id="req-metrics")).status_code == 201
    text = client.get("/metrics").text
    assert re.search(r'docloop_feedback_rejected_total\{reason="unknown_prediction"\} [1-9]', text)
    assert re.search(
        r'docloop_feedback_events_total\{kind="confirmation",outcome="created"\}', text
    )
    assert 'docloop_feedback_request_seconds_count{endpoint="feedback"}' in text


def test_the_openapi_document_describes_every_endpoint_and_error(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "docloop feedback API" and spec["info"]["description"]
    paths = spec["paths"]
    assert set(paths) == {
        "/v1/feedback",
        "/v1/feedback:batch",
        "/v1/models/{name}/status",
        "/healthz",
        "/livez",
        "/metrics",
    }
    post = paths["/v1/feedback"]["post"]
    assert {"200", "201", "400", "404", "409", "413", "422", "503"} <= set(post["responses"])
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    event_schema = spec["components"]["schemas"]["FeedbackEvent"]
    assert "description" in event_schema["properties"]["idempotency_key"]
    for path in paths.values():
        for operation in path.values():
            assert operation.get("summary"), operation


# --- schemathesis -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schema_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("schemathesis")
    store = open_store(f"sqlite:///{root / 'state.db'}")
    seed(store)
    yield create_app(DocloopConfig(data_root=root.as_uri()), store)
    store.close()


@pytest.fixture(scope="module")
def api_schema(schema_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", schema_app)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_the_openapi_examples_are_answered_as_documented(api_schema: Any) -> None:
    # the examples name the seeded request EXAMPLE_REQUEST_ID: stored (201), then replayed
    strategies = [
        strategy
        for result in api_schema.get_all_operations()
        for strategy in api_schema.get_strategies_from_examples(result.ok())
    ]
    assert strategies

    @given(case=st.one_of(strategies))
    @settings(max_examples=20, deadline=None, database=None, derandomize=True)
    def run(case: Any) -> None:
        response = case.call_and_validate(checks=CHECKS)
        if case.path == "/v1/feedback":
            assert response.status_code in (200, 201), response.text

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_conforms_to_its_openapi_document(api_schema: Any, mode: GenerationMode) -> None:
    @given(case=api_schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


# --- store readers, on both backends ----------------------------------------------------------
def test_feedback_readers_page_join_and_filter(store_url: str) -> None:
    store = open_store(store_url)
    try:
        seed(store)
        events = []
        for i in range(7):
            body = event(reviewer_id=f"rev-{i}")
            if i % 2:
                body = correction(doc_type="letter") | {"reviewer_id": f"rev-{i}"}
            if i == 6:
                body["instance"] = 1
            parsed = FeedbackEvent.model_validate(body)
            found = find_prediction(store, parsed.request_id, parsed.instance)
            assert found is not None
            record, created = record_feedback(store, parsed, found)
            assert created and record.id > 0
            events.append(record)
        again, created = record_feedback(store, FeedbackEvent.model_validate(body), found)
        assert not created and again == events[-1]
        paged = list(iter_accepted_feedback(store, chunk_size=2))
        assert paged == events
        assert paged[-1].instance == 1 and paged[-1].doc_id == "doc-req-1-1"
        assert paged[1].predicted_doc_type == "invoice"
        # typed entities (PredictedEntity) now; their JSON form is what the log stored
        assert [e.model_dump() for e in paged[1].predicted_entities] == PREDICTED_ENTITIES
        assert list(iter_accepted_feedback(store, after_id=events[4].id)) == events[5:]
        later = datetime.now(UTC) + timedelta(hours=1)
        assert accepted_feedback(store, since=later) == []
        assert accepted_feedback(store, until=later) == events
        assert accepted_feedback(store, model_name="other") == []
        with store.write() as session:
            session.execute(
                FeedbackRow.__table__.update()
                .where(FeedbackRow.id == events[0].id)
                .values(status="quarantined", quarantine_reason="test")
            )
        assert accepted_feedback(store) == events[1:]
        everything = list(iter_feedback(store, statuses=None))
        assert [r.status for r in everything][:2] == ["quarantined", "accepted"]
    finally:
        store.close()


# --- strict parsing (issue 19) ----------------------------------------------------------------
def post_raw(client: TestClient, raw: bytes) -> Any:
    return client.post("/v1/feedback", content=raw, headers={"content-type": "application/json"})


def test_a_duplicated_json_key_is_400_naming_the_key(client: TestClient, store: Store) -> None:
    """Issue 19: a repeated ``reviewer_id`` silently kept the last value (the auditor)."""
    before = rows(store)
    raw = json.dumps(event(reviewer_id="rev-1"))[:-1] + ', "reviewer_id": "auditor"}'
    response = post_raw(client, raw.encode())
    assert_error(response, 400, "invalid_json", "body", "'reviewer_id'", "more than once")
    assert rows(store) == before


def test_deep_nesting_and_invalid_utf8_are_invalid_json(client: TestClient, store: Store) -> None:
    """Issue 19: 10,000-level nesting and invalid UTF-8 got a generic 400, not invalid_json."""
    before = rows(store)
    deep = b'{"correction": ' + b"[" * 3_000 + b"]" * 3_000 + b"}"  # within max_payload_kb
    assert_error(post_raw(client, deep), 400, "invalid_json", "body", "nested deeper")
    bad_utf8 = json.dumps(event(reviewer_id="rev-X")).encode().replace(b"X", b"\xff\xfe")
    assert_error(post_raw(client, bad_utf8), 400, "invalid_json", "body", "UTF-8")
    assert rows(store) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (correction(entities=[{"type": "mrn", "word_indices": [True]}]),
         "correction.entities[0].word_indices[0]"),
        (event(instance="0"), "instance"),
        (event(instance=True), "instance"),
        (event(instance=0.0), "instance"),
    ],
    ids=["word-index-true", "instance-string", "instance-true", "instance-float"],
)  # fmt: skip
def test_booleans_and_strings_are_not_integers(
    client: TestClient, store: Store, body: dict[str, Any], field: str
) -> None:
    """Issue 19: ``word_indices: [true]`` was stored as word 1 and ``instance: "0"`` accepted."""
    before = rows(store)
    assert_error(client.post("/v1/feedback", json=body), 422, "invalid_field", field)
    assert rows(store) == before


@pytest.mark.parametrize(
    ("reviewer", "what"),
    [
        ("rev\u200b-1", "U+200B"),  # zero-width space (Cf)
        ("rev-\u202e1", "U+202E"),  # right-to-left override (bidi)
        ("rev-\x1b[31m1", "U+001B"),  # ANSI escape (Cc)
        ("rev-\u2066x", "U+2066"),  # left-to-right isolate (bidi)
    ],
)
def test_ids_with_control_format_or_bidi_characters_are_refused(
    client: TestClient, store: Store, reviewer: str, what: str
) -> None:
    """Issue 19: reviewer ids with zero-width spaces, RTL overrides or ANSI escapes were stored."""
    before = rows(store)
    response = client.post("/v1/feedback", json=event(reviewer_id=reviewer))
    assert_error(response, 422, "invalid_field", "reviewer_id", what)
    assert rows(store) == before


def test_ids_are_nfkc_normalised(client: TestClient) -> None:
    """A full-width reviewer id is the same reviewer as its plain spelling."""
    full_width = "\uff52\uff45\uff56\uff0d\uff11"  # "rev-1" in full-width forms
    response = client.post("/v1/feedback", json=event(reviewer_id=full_width))
    assert response.status_code == 201, response.text
    assert response.json()["reviewer_id"] == "rev-1"


@pytest.mark.parametrize(
    "reviewer",
    ["josé", "ГОСТ-1", "山田たろう", "ID番号", "김민준金", "陳ㄅ", "rev\u00b71"],
    ids=["latin", "cyrillic", "han-hiragana", "latin-han", "hangul-han", "han-bopomofo", "common"],
)
def test_ids_in_one_script_or_one_cjk_writing_system_are_accepted(
    client: TestClient, reviewer: str
) -> None:
    """UTS #39 "highly restrictive": one script, or Han with Kana, Hangul or Bopomofo."""
    response = client.post("/v1/feedback", json=event(reviewer_id=reviewer))
    assert response.status_code == 201, response.text
    assert response.json()["reviewer_id"] == reviewer


@pytest.mark.parametrize(
    ("reviewer", "named"),
    [
        ("\u0430dmin", "U+0430 CYRILLIC SMALL LETTER A"),
        ("rev-\u03bf1", "U+03BF GREEK SMALL LETTER OMICRON"),
        ("\u0430\u0431\u0432-x", "U+0078 LATIN SMALL LETTER X"),
        ("山田\u0430", "U+0430 CYRILLIC SMALL LETTER A"),
    ],
    ids=["cyrillic-in-latin", "greek-in-latin", "latin-in-cyrillic", "cyrillic-with-han"],
)
def test_ids_mixing_scripts_are_refused_naming_the_letters(
    client: TestClient, store: Store, reviewer: str, named: str
) -> None:
    """Issue 19: reviewer ids with look-alike letters were accepted (Latin admin, Cyrillic a)."""
    before = rows(store)
    response = client.post("/v1/feedback", json=event(reviewer_id=reviewer))
    assert_error(response, 422, "invalid_field", "reviewer_id", named, "one script")
    assert rows(store) == before


def test_an_answer_does_not_hand_out_the_predicted_text(client: TestClient) -> None:
    """Issue 19: a confirmation on a guessed request_id returned the predicted entities' text."""
    response = client.post("/v1/feedback", json=event(request_id="req-1", instance=1))
    assert response.status_code == 201, response.text
    record = response.json()
    assert "Jane Doe" not in response.text and "4821937" not in response.text
    assert record["predicted_entities"] == [] and record["predicted_probabilities"] == {}

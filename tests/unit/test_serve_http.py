"""The predictor over HTTP: these tests start a real ``docloop serve`` subprocess (KServe
ModelServer, HTTP only) on 127.0.0.1 with two tiny trained models, and talk to it with httpx.

V1 and Open Inference Protocol v2, page records and files (born-digital PDF, PNG through OCR),
HTTP 400 for every kind of bad payload, dynamic batching of concurrent requests, the prediction
log and the Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.documents import born_digital_pdf, image_bytes, text_image

if TYPE_CHECKING:  # imported for real by pytest_plugins (so that its asserts are rewritten)
    from tests.serving import Predictor, TinyModels

pytest_plugins = ["tests.serving"]
pytestmark = pytest.mark.local

WORDS = ["Invoice", "Statement", "Patient:", "Jane", "Doe", "MRN", "4821937", "the", "report"]


def page(words: list[str] = WORDS, page_index: int = 0, **extra: Any) -> dict[str, Any]:
    boxes = []
    for i in range(len(words)):
        x0, y0 = 80 + (i % 8) * 100, 60 + (i // 8) * 30
        boxes.append([x0, y0, x0 + 80, y0 + 12])
    return {"page": page_index, "words": words, "boxes": boxes, **extra}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def v1(predictor: Predictor, body: Any, **kwargs: Any) -> httpx.Response:
    url = f"{predictor.url}/v1/models/{predictor.name}:predict"
    return httpx.post(url, json=body, timeout=60, **kwargs)


def v2_body(instances: list[Any], request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "document_json",
                "shape": [len(instances)],
                "datatype": "BYTES",
                "data": [json.dumps(instance) for instance in instances],
            }
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def v2(predictor: Predictor, body: Any) -> httpx.Response:
    return httpx.post(f"{predictor.url}/v2/models/{predictor.name}/infer", json=body, timeout=60)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return 0.0


def check_answer(answer: dict[str, Any], predictor: Predictor) -> None:
    models = predictor.models
    assert answer["model_name"] == predictor.name
    assert answer["model_versions"] == {
        "classify": models.classifier_run,
        "extract": models.extractor_run,
    }
    assert models.classifier_run in answer["model_version"]
    doc_type = answer["doc_type"]
    assert doc_type["label"] in models.doc_types
    assert set(doc_type["probabilities"]) == set(models.doc_types)
    assert sum(doc_type["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert doc_type["confidence"] == max(doc_type["probabilities"].values())
    for entity in answer["entities"]:
        assert set(entity) == {"type", "text", "page", "box", "confidence", "word_indices"}
        assert all(0 <= index < answer["words"] for index in entity["word_indices"])
        assert entity["type"] in models.entity_types
        assert all(0 <= value <= 1000 for value in entity["box"])
        assert 0 <= entity["confidence"] <= 1
    # every field the extractor knows answers once, with the value of one of its spans
    assert set(answer["fields"]) == set(models.entity_types)
    for field in answer["fields"].values():
        assert 0 <= field["confidence"] <= 1
        assert field["word_indices"]
        assert all(0 <= index < answer["words"] for index in field["word_indices"])
        assert field["text"]


def test_readiness_endpoints_and_loopback_binding(predictor: Predictor) -> None:
    assert f"Uvicorn running on http://127.0.0.1:{predictor.port}" in predictor.output.read_text()
    assert httpx.get(f"{predictor.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{predictor.url}/v2/models/{predictor.name}/ready").json()["ready"] is True
    assert httpx.get(f"{predictor.url}/v1/models/{predictor.name}").json() == {
        "name": predictor.name,
        "ready": True,
    }


def test_v1_predicts_page_records(predictor: Predictor) -> None:
    record = page(confidences=[90.0] * len(WORDS), source="ocr", doc_id="d1", page_count=2)
    second = page(["Referral", "letter"], page_index=1, source="text_layer")
    response = v1(
        predictor,
        {"instances": [{"pages": [record, second]}, {"pages": [page()]}]},
        headers={"x-request-id": "req-v1-pages"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-v1-pages"
    first, other = response.json()["predictions"]
    for instance, answer in enumerate((first, other)):
        check_answer(answer, predictor)
        assert answer["client_request_id"] == "req-v1-pages" != answer["request_id"]
        assert answer["instance"] == instance
    uuid.UUID(first["request_id"])  # the server's id, one per request
    assert first["request_id"] == other["request_id"]
    assert (first["pages"], first["words"], first["ocr_pages"]) == (2, len(WORDS) + 2, 1)
    assert first["mean_confidence"] == pytest.approx(90.0)
    assert first["doc_id"] != "d1" and other["mean_confidence"] is None  # a page's doc_id: ignored
    # provenance: one OCR'd and one text-layer page; words sent without a source are unknown
    assert (first["text_source"], other["text_source"]) == ("mixed", "unknown")
    assert other["ocr_pages"] == 0


def test_v1_predicts_a_born_digital_pdf(predictor: Predictor) -> None:
    pdf = born_digital_pdf([["Invoice Statement", "Patient: Jane Doe", "MRN 4821937"]])
    response = v1(predictor, {"instances": [{"document": b64(pdf)}]})
    assert response.status_code == 200, response.text
    (answer,) = response.json()["predictions"]
    check_answer(answer, predictor)
    assert answer["doc_id"] == hashlib.sha256(pdf).hexdigest()
    assert (answer["pages"], answer["words"], answer["ocr_pages"]) == (1, 7, 0)
    assert answer["quarantined_pages"] == []
    assert answer["text_source"] == "text_layer"


def test_v1_predicts_a_png_through_ocr(predictor: Predictor) -> None:
    png = image_bytes(text_image(["Invoice Statement", "MRN 4821937"]), "PNG")
    response = v1(predictor, {"instances": [{"document": f"data:image/png;base64,{b64(png)}"}]})
    assert response.status_code == 200, response.text
    (answer,) = response.json()["predictions"]
    check_answer(answer, predictor)
    assert answer["ocr_pages"] == 1 and answer["words"] >= 3
    assert 50 <= answer["mean_confidence"] <= 100
    assert answer["text_source"] == "ocr"


@pytest.mark.parametrize("request_id", ["req-v2-given", None])
def test_v2_infer_with_and_without_an_id(predictor: Predictor, request_id: str | None) -> None:
    response = v2(predictor, v2_body([{"pages": [page()]}, {"pages": [page()]}], request_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == predictor.name
    if request_id is None:
        uuid.UUID(body["id"])  # KServe 0.21 answers 500 here unless the model sets an id
    else:
        assert body["id"] == request_id  # the client's id, echoed
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == (
        "prediction_json",
        "BYTES",
        [2],
    )
    answers = [json.loads(item) for item in output["data"]]
    for instance, answer in enumerate(answers):
        check_answer(answer, predictor)
        assert answer["instance"] == instance and answer.get("client_request_id") == request_id
        if request_id is None:
            assert answer["request_id"] == body["id"]  # no client id: the server's is echoed
        else:
            uuid.UUID(answer["request_id"])


OVERSIZE = object()  # replaced by a document larger than the server's --max-request-mb
BAD_V1 = [
    ("missing instances", {"predictions": []}, "instances"),
    ("instances not a list", {"instances": {"pages": []}}, "instances"),
    ("instance not an object", {"instances": ["text"]}, "instances[0]"),
    ("neither pages nor document", {"instances": [{}]}, "instances[0]"),
    ("a client's doc_id", {"instances": [{"pages": [], "doc_id": "x"}]}, "instances[0].doc_id"),
    ("bad base64", {"instances": [{"document": "not base64!"}]}, "instances[0].document"),
    ("document not a string", {"instances": [{"document": 12}]}, "instances[0].document"),
    ("not a document", {"instances": [{"document": b64(b"hello world")}]}, "instances[0].document"),
    ("corrupt pdf", {"instances": [{"document": b64(b"%PDF-1.4\n garbage")}]}, "corrupt_pdf"),
    ("empty page list", {"instances": [{"pages": []}]}, "instances[0].pages"),
    ("pages not a list", {"instances": [{"pages": "x"}]}, "instances[0].pages"),
    (
        "box outside 0..1000",
        {"instances": [{"pages": [page(["a"], boxes=[[0, 0, 1200, 10]])]}]},
        "instances[0].pages[0].boxes[0]",
    ),
    (
        "negative box",
        {"instances": [{"pages": [page(["a"], boxes=[[-1, 0, 10, 10]])]}]},
        "instances[0].pages[0].boxes[0]",
    ),
    (
        "box of 3 numbers",
        {"instances": [{"pages": [page(["a"], boxes=[[0, 0, 10]])]}]},
        "instances[0].pages[0].boxes[0]",
    ),
    (
        "words/boxes mismatch",
        {"instances": [{"pages": [page(["a", "b"], boxes=[[0, 0, 1, 1]])]}]},
        "instances[0].pages[0].boxes",
    ),
    (
        "word not a string",
        {"instances": [{"pages": [page([3], boxes=[[0, 0, 1, 1]])]}]},
        "instances[0].pages[0].words[0]",
    ),
    ("no words at all", {"instances": [{"pages": [page([], boxes=[])]}]}, "instances[0].pages"),
    (
        "unknown page field",
        {"instances": [{"pages": [page(colour="red")]}]},
        "instances[0].pages[0].colour",
    ),
    ("too many instances", {"instances": [{"pages": [page()]}] * 33}, "instances"),
    ("oversize payload", OVERSIZE, "payload"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_V1, ids=[c[0] for c in BAD_V1])
def test_v1_bad_payloads_are_400_naming_the_field(
    predictor: Predictor, case: str, body: Any, field: str
) -> None:
    if body is OVERSIZE:
        body = {"instances": [{"document": "A" * (predictor.max_request_bytes + 1024)}]}
    response = v1(predictor, body)
    assert response.status_code == 400, (case, response.status_code, response.text)
    assert field in response.json()["error"], response.text


def test_v1_non_json_body_is_400(predictor: Predictor) -> None:
    url = f"{predictor.url}/v1/models/{predictor.name}:predict"
    response = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400


BAD_V2 = [
    ("no inputs", {"id": "x"}, "inputs"),
    (
        "wrong input name",
        {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["{}"]}]},
        "document_json",
    ),
    (
        "wrong datatype",
        {"inputs": [{"name": "document_json", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
        "inputs[0].datatype",
    ),
    (
        "invalid JSON string",
        {
            "inputs": [
                {"name": "document_json", "shape": [1], "datatype": "BYTES", "data": ["{nope"]}
            ]
        },
        "inputs[0].data[0]",
    ),
    (
        "bad instance",
        v2_body([{"pages": [page(["a"], boxes=[[0, 0, 5000, 1]])]}]),
        "inputs[0].data[0].pages[0].boxes[0]",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_V2, ids=[c[0] for c in BAD_V2])
def test_v2_bad_payloads_are_400_naming_the_field(
    predictor: Predictor, case: str, body: Any, field: str
) -> None:
    response = v2(predictor, body)
    assert response.status_code == 400, (case, response.status_code, response.text)
    assert field in response.json()["error"], response.text


def test_concurrent_requests_are_batched_together(predictor: Predictor) -> None:
    def batch_stats() -> tuple[float, float]:
        text = httpx.get(f"{predictor.url}/metrics").text
        labels = {"model_name": predictor.name}
        return (
            metric(text, "docloop_predictor_batch_size_count", **labels),
            metric(text, "docloop_predictor_batch_size_sum", **labels),
        )

    async def burst(count: int) -> list[httpx.Response]:
        url = f"{predictor.url}/v1/models/{predictor.name}:predict"
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(url, json={"instances": [{"pages": [page(WORDS[: 3 + i % 6])]}]})
                    for i in range(count)
                )
            )

    batches_before, docs_before = batch_stats()
    responses = asyncio.run(burst(32))
    batches_after, docs_after = batch_stats()

    assert [r.status_code for r in responses] == [200] * 32
    ids = {r.json()["predictions"][0]["request_id"] for r in responses}
    assert len(ids) == 32
    assert docs_after - docs_before == 32
    batches = batches_after - batches_before
    assert batches < 32, "no two concurrent documents shared a forward pass"


def read_log(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("predictions-*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def test_predictions_are_logged(predictor: Predictor) -> None:
    response = v1(
        predictor,
        {"instances": [{"pages": [page()]}, {"pages": [page(["Referral"])]}]},
        headers={"x-request-id": "req-logged"},
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 15
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = [
            r for r in read_log(predictor.prediction_log) if r["client_request_id"] == "req-logged"
        ]
        if len(records) == 2:
            break
        time.sleep(0.05)
    assert sorted(r["instance"] for r in records) == [0, 1]
    answers = response.json()["predictions"]
    for record in records:
        answer = answers[record["instance"]]
        assert record["request_id"] == answer["request_id"] != "req-logged"
        assert record["model_name"] == predictor.name
        assert record["model_version"] == answer["model_version"]
        assert record["doc_type"] == answer["doc_type"]["label"]
        assert record["doc_type_confidence"] == answer["doc_type"]["confidence"]
        assert record["entities"] == answer["entities"]
        assert (record["protocol"], record["input"]) == ("v1", "pages")
        assert record["words"] == answer["words"] and record["pages"] == 1
        assert record["text_source"] == answer["text_source"] == "unknown"
        assert record["timestamp"].endswith("+00:00")


def test_metrics_are_exposed_on_kserves_endpoint(predictor: Predictor) -> None:
    assert v1(predictor, {"instances": [{"pages": [page()]}]}).status_code == 200
    assert v1(predictor, {"instances": []}).status_code == 400
    text = httpx.get(f"{predictor.url}/metrics").text
    name = {"model_name": predictor.name}
    assert (
        metric(text, "docloop_predictor_requests_total", protocol="v1", outcome="ok", **name) >= 1
    )
    assert metric(text, "docloop_predictor_requests_total", outcome="invalid", **name) >= 1
    assert metric(text, "docloop_predictor_request_seconds_count", protocol="v1", **name) >= 2
    assert metric(text, "docloop_predictor_forward_seconds_count", **name) >= 1
    assert metric(text, "docloop_predictor_documents_total", input="pages", **name) >= 1
    assert metric(text, "request_predict_seconds_count", **name) >= 1  # KServe's own


def dense_page(words: list[str]) -> dict[str, Any]:
    """A page of many small words, 100 to a line, every box within the 0..1000 grid."""
    boxes = []
    for i in range(len(words)):
        x0, y0 = (i % 100) * 10, (i // 100) % 100 * 10
        boxes.append([x0, y0, x0 + 8, y0 + 8])
    return {"page": 0, "words": words, "boxes": boxes}


def test_a_document_over_max_words_is_413_naming_the_limit(predictor: Predictor) -> None:
    words = ["word"] * 20_001  # the default serve.max_words is 20,000
    response = v1(predictor, {"instances": [{"pages": [dense_page(words)]}]})
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert "20001 words, over the limit of 20000 words per document" in message
    assert "serve.max_words" in message and "--max-words" in message


@pytest.fixture(scope="module")
def roomy_predictor(
    tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Predictor]:
    """A predictor that takes 8 MB requests (a 19,000-word document is about 0.6 MB)."""
    from tests.serving import start_predictor, stop_predictor

    running = start_predictor(
        tiny_models, tmp_path_factory.mktemp("roomy"), "--max-request-mb", "8"
    )
    try:
        yield running
    finally:
        stop_predictor(running)


@pytest.mark.slow  # a 19,000-word document through the model (about a minute)
def test_a_huge_document_does_not_hold_up_a_small_one(roomy_predictor: Predictor) -> None:
    predictor = roomy_predictor
    url = f"{predictor.url}/v1/models/{predictor.name}:predict"
    huge = {"instances": [{"pages": [dense_page((WORDS * 2_200)[:19_000])]}]}
    small = {"instances": [{"pages": [page(WORDS[:3])]}]}

    async def batches(client: httpx.AsyncClient) -> float:
        text = (await client.get(f"{predictor.url}/metrics")).text
        return metric(text, "docloop_predictor_batch_size_count", model_name=predictor.name)

    async def race() -> tuple[bool, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=600) as client:
            before = await batches(client)
            huge_task = asyncio.create_task(client.post(url, json=huge))
            # send the small request once the huge document is in a forward pass
            while await batches(client) == before:
                if huge_task.done():
                    pytest.fail("the huge document was answered before it could be overtaken")
                await asyncio.sleep(0.05)
            small_response = await client.post(url, json=small)
            overtaken = not huge_task.done()
            return overtaken, small_response, await huge_task

    overtaken, small_response, huge_response = asyncio.run(race())
    assert small_response.status_code == 200 and huge_response.status_code == 200
    assert huge_response.json()["predictions"][0]["words"] == 19_000
    assert overtaken, "the 3-word request waited for the 19,000-word one"

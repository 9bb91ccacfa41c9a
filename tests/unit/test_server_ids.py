"""Server-owned identities: the predictor, not the client, names predictions and documents.

Through the real predictor (two tiny trained models, ``build_model`` as ``docloop serve`` builds
it) into the state store's prediction log, and the feedback API on the same store: a reused
``x-request-id`` still gives two predictions a reviewer can tell apart, a client cannot name the
document its words are kept under, and the client's id comes back as a correlation field only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from docloop.config import DocloopConfig
from docloop.feedback.contracts import read_served_document
from docloop.feedback.records import accepted_feedback, find_prediction
from docloop.serve.compat import InferInput, InferRequest, InferResponse, InvalidInput
from docloop.storage import Storage
from docloop.store import Store, open_store
from docloop.store.tables import Prediction

if TYPE_CHECKING:
    from docloop.serve.predictor import DocloopModel
    from tests.serving import TinyModels

pytest_plugins = ["tests.serving"]
pytestmark = pytest.mark.unit

FIRST = ["Invoice", "Patient:", "Jane", "Doe", "MRN", "4821937"]
SECOND = ["Referral", "Patient:", "John", "Roe", "MRN", "1234567"]


def pages_of(words: list[str]) -> dict[str, Any]:
    return {"words": words, "boxes": [[10 * i, 10, 10 * i + 8, 20] for i in range(len(words))]}


@pytest.fixture()
def served(tiny_models: TinyModels, tmp_path: Path) -> Iterator[tuple[DocloopModel, str, Any]]:
    """The predictor logging into a SQLite state store, its URL and its config."""
    from docloop.serve.server import ServeOptions, build_model

    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = DocloopConfig(data_root=(tmp_path / "data").as_uri())
    options = ServeOptions(
        models=(tiny_models.classifier, tiny_models.extractor),
        name="docs",
        model_version="v7",
        prediction_log=url,
        config=config,
    )
    model = build_model(options)
    yield model, url, config
    model.stop()


def ask(model: DocloopModel, body: Any, headers: dict[str, str] | None = None) -> Any:
    return asyncio.run(model.predict(body, headers or {}, {}))


def count(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(Prediction)) or 0)


def test_a_reused_request_id_gives_two_predictions_and_the_correction_hits_the_second(
    served: tuple[DocloopModel, str, DocloopConfig], tiny_models: TinyModels
) -> None:
    model, url, config = served
    reused = {"x-request-id": "req-0001"}
    (first,) = ask(model, {"instances": [{"pages": [pages_of(FIRST)]}]}, reused)["predictions"]
    (second,) = ask(model, {"instances": [{"pages": [pages_of(SECOND)]}]}, reused)["predictions"]
    model.stop()  # everything queued is written
    assert first["request_id"] != second["request_id"], "the client's id keyed both predictions"
    assert "req-0001" not in (first["request_id"], second["request_id"])
    assert first["instance"] == second["instance"] == 0
    store = open_store(url)
    assert count(store) == 2
    logged = find_prediction(store, second["request_id"], 0)
    assert logged is not None and logged.doc_id == second["doc_id"] != first["doc_id"]
    assert read_served_document(Storage(), config, logged.doc_id).words == SECOND

    from fastapi.testclient import TestClient

    from docloop.feedback.api import create_app

    other = next(t for t in tiny_models.doc_types if t != second["doc_type"]["label"])
    verdict = {
        "idempotency_key": "rev-1:second:0",
        "model_name": second["model_name"],
        "model_version": second["model_version"],
        "request_id": second["request_id"],
        "instance": second["instance"],
        "reviewer_id": "rev-1",
        "kind": "correction",
        "correction": {"doc_type": other},
    }
    with TestClient(create_app(config, store)) as client:
        response = client.post("/v1/feedback", json=verdict)
        assert response.status_code == 201, response.text
    now = datetime.now(UTC)
    (stored,) = accepted_feedback(store, now - timedelta(hours=1), now + timedelta(hours=1))
    assert stored.request_id == second["request_id"] and stored.doc_id == second["doc_id"]
    assert read_served_document(Storage(), config, stored.doc_id).words == SECOND
    store.close()


def test_a_client_chosen_doc_id_is_refused_and_cannot_pin_the_first_writers_words(
    served: tuple[DocloopModel, str, DocloopConfig],
) -> None:
    model, url, config = served
    (first,) = ask(model, {"instances": [{"pages": [pages_of(FIRST)]}]})["predictions"]
    hijack = {"instances": [{"pages": [pages_of(SECOND)], "doc_id": first["doc_id"]}]}
    with pytest.raises(InvalidInput, match=r"instances\[0\]\.doc_id: .*assigned by the server"):
        ask(model, hijack)
    named = {"instances": [{"pages": [pages_of(SECOND)], "doc_id": "mine"}]}
    with pytest.raises(InvalidInput, match=r"instances\[0\]\.doc_id"):
        ask(model, named)
    (again,) = ask(model, {"instances": [{"pages": [pages_of(FIRST)]}]})["predictions"]
    (second,) = ask(model, {"instances": [{"pages": [pages_of(SECOND)]}]})["predictions"]
    moved = pages_of(SECOND)
    moved["boxes"][0] = [0, 0, 5, 5]
    (third,) = ask(model, {"instances": [{"pages": [moved]}]})["predictions"]
    model.stop()
    assert again["doc_id"] == first["doc_id"]  # the same content is the same document
    assert len({first["doc_id"], second["doc_id"], third["doc_id"]}) == 3
    store = open_store(url)
    assert count(store) == 4  # the refused requests logged nothing
    for answer, words in ((first, FIRST), (second, SECOND), (third, SECOND)):
        logged = find_prediction(store, answer["request_id"], 0)
        assert logged is not None and logged.doc_id == answer["doc_id"]
        assert read_served_document(Storage(), config, logged.doc_id).words == words
    store.close()


def test_a_file_is_named_by_the_digest_of_its_bytes(
    served: tuple[DocloopModel, str, DocloopConfig],
) -> None:
    import base64

    from tests.documents import image_bytes, text_image

    model, _, _ = served
    png = image_bytes(text_image(["Invoice 4821937"]), "PNG")
    (answer,) = ask(model, {"instances": [{"document": base64.b64encode(png).decode()}]})[
        "predictions"
    ]
    assert answer["doc_id"] == hashlib.sha256(png).hexdigest()


def test_the_clients_request_id_is_echoed_as_a_correlation_field(
    served: tuple[DocloopModel, str, DocloopConfig],
) -> None:
    model, url, _ = served
    echoed: dict[str, str] = {}
    body = {"instances": [{"pages": [pages_of(FIRST)]}, {"pages": [pages_of(SECOND)]}]}
    v1 = asyncio.run(model.predict(body, {"x-request-id": "trace-42"}, echoed))
    answers = v1["predictions"]
    assert echoed["x-request-id"] == "trace-42"
    assert [a["client_request_id"] for a in answers] == ["trace-42", "trace-42"]
    assert [a["instance"] for a in answers] == [0, 1]
    assert answers[0]["request_id"] == answers[1]["request_id"] != "trace-42"

    request = InferRequest(
        model_name="docs",
        infer_inputs=[
            InferInput(
                name="document_json",
                shape=[1],
                datatype="BYTES",
                data=[json.dumps({"pages": [pages_of(FIRST)]})],
            )
        ],
        request_id="trace-v2",
    )
    v2 = asyncio.run(model.predict(request, {}, {}))
    assert isinstance(v2, InferResponse) and v2.id == "trace-v2"
    v2_answer = json.loads(v2.outputs[0].data[0])
    assert v2_answer["client_request_id"] == "trace-v2" and v2_answer["request_id"] != "trace-v2"

    unnamed: dict[str, str] = {}
    (plain,) = asyncio.run(model.predict({"instances": [body["instances"][0]]}, {}, unnamed))[
        "predictions"
    ]
    assert "client_request_id" not in plain
    assert unnamed["x-request-id"] == plain["request_id"]  # no client id: the server's is echoed

    for bad in ("x" * 129, "trace 42", "trace\u202e42", "trace\n42", ""):
        with pytest.raises(InvalidInput, match="x-request-id"):
            ask(model, body, {"x-request-id": bad})
    model.stop()
    store = open_store(url)
    logged = find_prediction(store, answers[1]["request_id"], 1)
    assert logged is not None and logged.outputs["client_request_id"] == "trace-42"
    assert count(store) == 4  # the refused requests logged nothing
    store.close()


def test_the_pages_id_is_the_digest_of_the_canonical_words_boxes_and_pages() -> None:
    from docloop.serve.documents import pages_doc_id
    from docloop.serve.inputs import ServePage

    boxes = [[0, 0, 1, 1], [1, 1, 2, 2]]
    base = ServePage(0, ["ab", "c"], boxes, [90.0, 80.0], "ocr")
    canonical = b'[[0,["ab","c"],[[0,0,1,1],[1,1,2,2]]]]'  # the form kept documents are named by
    assert pages_doc_id([base]) == hashlib.sha256(canonical).hexdigest()
    variants = [
        [base],
        [ServePage(0, ["a", "bc"], boxes, None, None)],  # the same letters, split apart
        [ServePage(0, ["ab", "c"], [[0, 0, 1, 1], [1, 1, 2, 3]], None, None)],
        [ServePage(1, ["ab", "c"], boxes, None, None)],
        [ServePage(0, ["ab", "c\u00e9"], boxes, None, None)],
    ]
    assert len({pages_doc_id(pages) for pages in variants}) == len(variants)
    # OCR metadata is logged per prediction, not part of the document's words
    assert pages_doc_id([ServePage(0, ["ab", "c"], boxes, None, "text_layer")]) == pages_doc_id(
        [base]
    )
    two = [ServePage(1, ["x"], [[0, 0, 1, 1]], None, None), base]
    assert pages_doc_id(two) == pages_doc_id(list(reversed(two)))  # page order, not list order

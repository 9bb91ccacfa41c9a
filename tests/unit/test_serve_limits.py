"""What the predictor answers, the feedback API can review: the shared limits, held on both sides.

Each case was answered 200 and then lost: a page number the served-document file cannot hold, a
request id the feedback API refuses, a v2 ``shape`` that does not describe its data, an
``instance`` given as a string.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from docloop.feedback.contracts import FeedbackEvent
from docloop.serve.compat import InferInput, InferRequest, InvalidInput
from docloop.serve.inputs import ServeLimits, parse_v1, parse_v2

pytestmark = pytest.mark.unit

LIMITS = ServeLimits()


def _page(words: list[str], **extra: Any) -> dict[str, Any]:
    return {"words": words, "boxes": [[0, 0, 10, 10]] * len(words), **extra}


def _verdict(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": "rev-42:req-0001:0",
        "model_name": "docloop",
        "model_version": "v1",
        "request_id": "req-0001",
        "instance": 0,
        "reviewer_id": "rev-42",
        "kind": "confirmation",
    }
    return {**body, **changes}


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"page": 2**40}, "pages[0].page"), ({"page_count": 2**40}, "pages[0].page_count")],
)
def test_a_page_number_no_document_can_hold_is_400(extra: dict[str, int], field: str) -> None:
    payload = {"instances": [{"pages": [_page(["Invoice"], **extra)]}]}
    with pytest.raises(InvalidInput) as caught:
        parse_v1(payload, LIMITS)
    assert f"instances[0].{field}" in str(caught.value)


def test_the_last_page_number_allowed_is_kept_in_the_served_document(tmp_path: Any) -> None:
    from docloop.documents.examples import read_examples, write_examples
    from docloop.limits import MAX_PAGES
    from docloop.serve.inputs import to_example
    from docloop.storage import Storage

    (instance,) = parse_v1(
        {"instances": [{"pages": [_page(["Invoice"], page=MAX_PAGES - 1)]}]}, LIMITS
    )
    example = to_example("doc", "request://r/0", instance.pages, instance.page_count)
    uri = str(tmp_path / "doc.parquet")
    write_examples(Storage(), uri, [example])
    assert read_examples(Storage(), uri)[0].pages == [MAX_PAGES - 1]


def _v2(data: list[Any], shape: list[Any]) -> InferRequest:
    return InferRequest(
        model_name="m",
        infer_inputs=[InferInput(name="document_json", shape=shape, datatype="BYTES", data=data)],
    )


@pytest.mark.parametrize("shape", [[5], [3, 1], [0], [True, True], []])
def test_a_v2_shape_that_does_not_describe_the_data_is_400(shape: list[Any]) -> None:
    instance = json.dumps({"pages": [_page(["a"])]})
    with pytest.raises(InvalidInput, match=r"inputs\[0\]\.shape"):
        parse_v2(_v2([instance, instance], shape), LIMITS)


def test_a_v2_shape_that_describes_the_data_is_accepted() -> None:
    instance = json.dumps({"pages": [_page(["a"])]})
    assert len(parse_v2(_v2([[instance], [instance]], [2, 1]), LIMITS)) == 2


def test_an_instance_given_as_a_string_is_refused() -> None:
    for value in ("0", True, 1.0):
        with pytest.raises(ValidationError, match="instance"):
            FeedbackEvent.model_validate(_verdict(instance=value))  # a decoded JSON body
        with pytest.raises(ValidationError, match="instance"):
            FeedbackEvent.model_validate_json(json.dumps(_verdict(instance=value)))


@pytest.mark.parametrize(
    "request_id",
    ["r" * 129, "req\u200b0001", "req\u202e0001", "req\x1b[31m", "\uff52\uff45\uff51-0001", ""],
)
def test_a_request_id_the_feedback_api_refuses_is_refused_by_the_predictor(
    request_id: str,
) -> None:
    from docloop.feedback.contracts import client_request_id

    with pytest.raises(ValueError, match=r"x-request-id: .* not a usable correlation id"):
        client_request_id(request_id, "x-request-id")


def test_every_request_id_the_predictor_takes_the_feedback_api_takes() -> None:
    from docloop.feedback.contracts import client_request_id
    from docloop.limits import MAX_ID_CHARS

    longest = "r" * MAX_ID_CHARS
    assert client_request_id(longest, "x-request-id") == longest
    assert FeedbackEvent.model_validate(_verdict(request_id=longest)).request_id == longest
    with pytest.raises(ValidationError):
        FeedbackEvent.model_validate(_verdict(request_id=longest + "r"))


# --- strict JSON, the same in both services (issue 19) ---------------------------------------
@pytest.mark.parametrize(
    ("raw", "flaw"),
    [
        (b'{"instances": [], "instances": [1]}', "duplicate_key"),
        (b'{"instances": NaN}', "constant"),
        (b'{"instances": ' + b"[" * 40 + b"]" * 40 + b"}", "depth"),
        (b'{"instances": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "depth"),
        (b'{"instances": "\xff"}', "utf8"),
        (b"{not json", "syntax"),
    ],
    ids=["duplicate-key", "nan", "depth-40", "depth-5000", "utf8", "syntax"],
)
def test_strict_json_refuses_what_json_would_let_through(raw: bytes, flaw: str) -> None:
    from docloop import strict_json

    with pytest.raises(strict_json.StrictJsonError) as caught:
        strict_json.loads(raw)
    assert caught.value.flaw == flaw


def test_a_v1_request_with_an_unknown_field_is_400() -> None:
    with pytest.raises(InvalidInput, match=r"^doc_id: unknown field"):
        parse_v1({"instances": [{"pages": [_page(["a"])]}], "doc_id": "mine"}, LIMITS)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": [], "doc_id": "mine"}, "doc_id"),
        ({"inputs": [{"name": "document_json", "shape": [True]}]}, r"inputs\[0\]\.shape"),
    ],
)
def test_a_raw_v2_body_is_checked_before_kserve_reads_it(body: Any, field: str) -> None:
    from docloop.serve.inputs import check_v2_body

    with pytest.raises(InvalidInput, match=f"^{field}: "):
        check_v2_body(body)
    check_v2_body({"id": "r-1", "parameters": {}, "inputs": [{"shape": [1]}], "outputs": []})


def _through_the_middleware(method: str, path: str, body: bytes) -> tuple[int, Any]:
    import asyncio

    from docloop.serve.server import BodySizeLimit

    sent: list[dict[str, Any]] = []
    reached: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(BodySizeLimit(app, max_bytes=10_000)(scope, receive, send))
    if reached:
        assert reached == [body]  # the app reads the body the middleware read
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_the_predictor_reads_inference_bodies_as_strict_json() -> None:
    predict, infer = "/v1/models/docloop:predict", "/v2/models/docloop/infer"
    status, answer = _through_the_middleware("POST", predict, b'{"instances": 1, "instances": 2}')
    assert status == 400 and answer["error"].startswith("payload: the key 'instances' appears")
    status, answer = _through_the_middleware("POST", infer, b'{"inputs": [], "extra": 1}')
    assert status == 400 and answer["error"].startswith("extra: unknown field")
    status, answer = _through_the_middleware("GET", predict, b"")
    assert status == 405 and answer["error"].startswith("method: GET is not allowed")
    assert _through_the_middleware("POST", predict, b'{"instances": []}')[0] == 200
    assert _through_the_middleware("POST", "/metrics", b"{,}")[0] == 200  # not an inference path

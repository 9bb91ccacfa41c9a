"""A probe corpus of bad requests for the predictor and the feedback API, built at test time.

One table (:data:`CORPUS`) of request kinds that have hurt, or could hurt, the two services: raw
bytes (so duplicate keys, invalid UTF-8 and deep nesting can be sent), headers (forged, expired
or missing credentials, hostile ids) and the answer each must get: a 4xx naming what is wrong,
never a 500. The services run as they run in production, on one SQLite state store: ``docloop
serve`` as a subprocess on 127.0.0.1 (real HTTP, its prediction log in the store's
``predictions`` table), and the feedback API in-process twice, once open (loopback, no
authentication) and once guarded (OIDC with a JWKS served on 127.0.0.1, API tokens, a trusted
proxy). Around every probe the rows of ``predictions``, ``feedback_events`` (which holds the
idempotency keys) and ``api_tokens`` are counted: a refused request stores nothing. After the
corpus, good requests on both services still succeed (nothing is wedged).

The existing tables (``BAD_V1``/``BAD_V2`` of ``test_serve_http``, ``REJECTIONS`` of
``test_feedback_api``, ``FORGERIES`` of ``test_feedback_auth``) are run through the same harness
here rather than copied.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from docloop.config import DocloopConfig, FeedbackConfig
from docloop.feedback.api import create_app
from docloop.feedback.auth import create_token, revoke_token
from docloop.serve.sink import SqlSink
from docloop.store import Store, open_store
from docloop.store.tables import ApiToken, FeedbackEvent, Prediction
from tests.jwks import Issuer, serve_issuer
from tests.unit import test_feedback_api as open_api
from tests.unit import test_feedback_auth as guarded_api
from tests.unit.test_serve_http import BAD_V1, BAD_V2, OVERSIZE, WORDS, page, v2_body

if TYPE_CHECKING:
    from tests.serving import Predictor, TinyModels

pytest_plugins = ["tests.serving"]
# slow: a real `docloop serve` process and two feedback APIs answer 144 probes (about a minute)
pytestmark = [pytest.mark.unit, pytest.mark.slow]

Api = Literal["predictor", "feedback", "guarded"]
"""Which service a probe goes to: the predictor, the open feedback API, the guarded one."""
ALICE = "alice@example.org"  # a reviewer (the default role)
CAROL = "carol@example.org"  # an auditor (guarded_api.auth_config)
SERVICE = "pipeline@example.org"
TABLES = (Prediction, FeedbackEvent, ApiToken)


@dataclass
class Rig:
    """The running services, their store and the credentials probes are built from."""

    store: Store
    predictor: Predictor
    open: TestClient
    guarded: TestClient
    issuer: Issuer
    service_token: str = ""
    revoked_token: str = ""


Part = Callable[[Rig], Any]


@dataclass(frozen=True)
class Probe:
    """One kind of bad request and the answer it must get.

    ``body`` is a JSON-able value, raw ``bytes``, or a function of the :class:`Rig` giving
    either; ``headers`` likewise. ``expect`` are substrings of the answer's ``error``; for the
    feedback API ``code`` and ``field`` are the answer's (checked by ``assert_error``).
    """

    name: str
    api: Api
    status: int
    body: Any = None
    path: str = ""
    method: str = "POST"
    headers: Mapping[str, Any] | Part = field(default_factory=dict)
    code: str | None = None
    field: str | None = None
    expect: tuple[str, ...] = ()


def _raw(body: Any) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def _v1(name: str, body: Any, status: int, *expect: str, **extra: Any) -> Probe:
    return Probe(
        name, "predictor", status, body, "/v1/models/docloop:predict", expect=expect, **extra
    )


def _v2(name: str, body: Any, status: int, *expect: str, **extra: Any) -> Probe:
    return Probe(
        name, "predictor", status, body, "/v2/models/docloop/infer", expect=expect, **extra
    )


def _fb(name: str, body: Any, status: int, code: str, where: str, *fix: str, **extra: Any) -> Probe:
    extra.setdefault("path", "/v1/feedback")
    return Probe(name, "feedback", status, body, code=code, field=where, expect=fix, **extra)


def _guarded(
    name: str,
    headers: Mapping[str, Any] | Part,
    status: int,
    code: str,
    where: str,
    *fix: str,
    body: Any = None,
    path: str = "/v1/feedback",
    method: str = "POST",
) -> Probe:
    if body is None and method == "POST":
        body = _verdict(ALICE)
    return Probe(
        name, "guarded", status, body, path, method, headers, code=code, field=where, expect=fix
    )


def _verdict(reviewer: str, **overrides: Any) -> dict[str, Any]:
    return open_api.event(reviewer_id=reviewer, **overrides)


def _bearer(subject: str, **claims: Any) -> Part:
    return lambda rig: {"authorization": f"Bearer {rig.issuer.token(subject, **claims)}"}


def _forged(case: str) -> Part:
    return lambda rig: {"authorization": f"Bearer {guarded_api._forge(rig.issuer, case)}"}


def _pages(*words: str, **extra: Any) -> dict[str, Any]:
    return {"instances": [{"pages": [page(list(words) or WORDS, **extra)]}]}


def _with_key_twice(body: dict[str, Any], key: str, value: Any) -> bytes:
    """``body`` as JSON with ``key`` repeated at its end (JSON allows it; we refuse it)."""
    return (json.dumps(body)[:-1] + f", {json.dumps(key)}: {json.dumps(value)}}}").encode()


def _nested(levels: int, key: str) -> bytes:
    return b'{"' + key.encode() + b'": ' + b"[" * levels + b"]" * levels + b"}"


GOOD_PAGE = {"pages": [page(WORDS[:4])]}
GOOD_V1 = {"instances": [GOOD_PAGE]}
MIXED_ADMIN = "\u0430dmin"  # a Cyrillic small a (U+0430) before Latin "dmin"

PREDICTOR_PROBES = [
    *(_v1(f"v1 {case}", body, 400, where) for case, body, where in BAD_V1 if body is not OVERSIZE),
    _v1(
        "v1 oversize payload",
        lambda rig: {"instances": [{"document": "A" * (rig.predictor.max_request_bytes + 1024)}]},
        400,
        "payload",
        "over the limit",
    ),
    *(_v2(f"v2 {case}", body, 400, where) for case, body, where in BAD_V2),
    _v1("v1 not JSON", b"{not json", 400, "payload"),
    _v1("v1 invalid UTF-8", b'{"instances": [{"pages": "\xff\xfe"}]}', 400, "payload", "UTF-8"),
    _v1(
        "v1 duplicated key",
        _with_key_twice(GOOD_V1, "instances", [{"pages": [page(["other"])]}]),
        400,
        "payload",
        "'instances'",
        "more than once",
    ),
    _v1("v1 nested 3,000 deep", _nested(3_000, "instances"), 400, "payload", "nested deeper"),
    _v1("v1 nested 40 deep", _nested(40, "instances"), 400, "payload", "nested deeper"),
    _v1("v1 a NaN literal", b'{"instances": NaN}', 400, "payload"),
    _v1("v1 an integer over 64 bits", _pages(boxes=[[2**70, 0, 1, 1]] * len(WORDS)), 400, "boxes"),
    _v1("v1 page 2**40", _pages(page_index=2**40), 400, "instances[0].pages[0].page"),
    _v1("v1 page_count 2**40", _pages(page_count=2**40), 400, "instances[0].pages[0].page_count"),
    _v1("v1 page as a boolean", _pages(page_index=True), 400, "instances[0].pages[0].page"),
    _v1("v1 page as a string", _pages(page_index="0"), 400, "instances[0].pages[0].page"),
    _v1(
        "v1 box of booleans",
        _pages("a", boxes=[[True, 0, 1, 1]]),
        400,
        "instances[0].pages[0].boxes[0]",
    ),
    _v1("v1 confidence over 100", _pages("a", confidences=[101.0]), 400, "confidences[0]"),
    _v1("v1 the same page twice", {"instances": [{"pages": [page(), page()]}]}, 400, "page 0"),
    _v1("v1 unknown top-level field", {**GOOD_V1, "doc_id": "mine"}, 400, "doc_id"),
    _v1(
        "v1 wrong content type",
        b"instances=1",
        400,
        "payload",
        "JSON",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    _v1(
        "v1 one bad document of two",
        {"instances": [GOOD_PAGE, {"pages": []}]},
        400,
        "instances[1].pages",
    ),
    _v1(
        "v1 a good page and a corrupt PDF",
        {"instances": [GOOD_PAGE, {"document": "JVBERi0xLjQKIGdhcmJhZ2U="}]},
        400,
        "corrupt_pdf",
    ),
    _v1(
        "x-request-id of 129 characters",
        GOOD_V1,
        400,
        "x-request-id",
        headers={"x-request-id": "r" * 129},
    ),
    _v1(
        "x-request-id with a zero-width space",
        GOOD_V1,
        400,
        "x-request-id",
        headers={"x-request-id": "req\u200b1".encode()},
    ),
    _v1(
        "x-request-id with a right-to-left override",
        GOOD_V1,
        400,
        "x-request-id",
        headers={"x-request-id": "req\u202e1".encode()},
    ),
    _v1(
        "x-request-id with an ANSI escape",
        GOOD_V1,
        400,
        "Invalid HTTP request",
        headers={"x-request-id": "req\x1b[31m"},
    ),  # refused by the HTTP server (h11)
    _v1(
        "x-request-id with look-alike letters",
        GOOD_V1,
        400,
        "x-request-id",
        headers={"x-request-id": f"{MIXED_ADMIN}-1".encode()},
    ),
    Probe(
        "unknown model", "predictor", 404, GOOD_V1, "/v1/models/nobody:predict", expect=("nobody",)
    ),
    Probe(
        "GET on predict",
        "predictor",
        405,
        None,
        "/v1/models/docloop:predict",
        "GET",
        expect=("GET",),
    ),
    _v2(
        "v2 shape [5] for one item",
        {"inputs": [{**v2_body([GOOD_PAGE])["inputs"][0], "shape": [5]}]},
        400,
        "inputs[0].shape",
    ),
    _v2(
        "v2 shape of booleans",
        {"inputs": [{**v2_body([GOOD_PAGE])["inputs"][0], "shape": [True]}]},
        400,
        "inputs[0].shape",
    ),
    _v2(
        "v2 one bad document of two",
        v2_body([GOOD_PAGE, {"pages": "x"}]),
        400,
        "inputs[0].data[1].pages",
    ),
    _v2(
        "v2 duplicated key in a document",
        {"inputs": [{**v2_body([GOOD_PAGE])["inputs"][0], "data": ['{"pages": [], "pages": []}']}]},
        400,
        "inputs[0].data[0]",
        "more than once",
    ),
    _v2(
        "v2 id with a right-to-left override",
        {**v2_body([GOOD_PAGE]), "id": "req\u202e1"},
        400,
        "id",
    ),
    _v2("v2 id of 129 characters", {**v2_body([GOOD_PAGE]), "id": "r" * 129}, 400, "id"),
    _v2("v2 unknown top-level field", {**v2_body([GOOD_PAGE]), "doc_id": "mine"}, 400, "doc_id"),
    _v2(
        "v2 duplicated key",
        _with_key_twice(v2_body([GOOD_PAGE]), "inputs", []),
        400,
        "'inputs'",
        "more than once",
    ),
    Probe(
        "GET on v2 infer",
        "predictor",
        405,
        None,
        "/v2/models/docloop/infer",
        "GET",
        expect=("GET", "POST"),
    ),
    _v2("v2 not JSON", b'{"inputs": [', 400, "payload", "not valid JSON"),
    _v2("v2 invalid UTF-8", b'{"id": "\xc3\x28", "inputs": []}', 400, "payload", "UTF-8"),
]

FEEDBACK_PROBES = [
    *(
        _fb(f"verdict {case}", body, status, code, where, *fix)
        for case, body, status, code, where, fix in open_api.REJECTIONS
    ),
    _fb(
        "verdict with a duplicated key",
        _with_key_twice(_verdict("rev-1"), "reviewer_id", "auditor"),
        400,
        "invalid_json",
        "body",
        "'reviewer_id'",
        "more than once",
    ),
    _fb(
        "verdict nested 3,000 deep",
        _nested(3_000, "correction"),
        400,
        "invalid_json",
        "body",
        "nested deeper",
    ),
    _fb(
        "verdict in invalid UTF-8",
        json.dumps(_verdict("rev-X")).encode().replace(b"X", b"\xff"),
        400,
        "invalid_json",
        "body",
        "UTF-8",
    ),
    _fb("verdict not JSON", b"{bad", 400, "invalid_json", "body", "not valid JSON"),
    _fb(
        "verdict instance NaN",
        json.dumps(_verdict("rev-1")).replace('"instance": 0', '"instance": NaN').encode(),
        400,
        "invalid_json",
        "body",
        "NaN is not a JSON number",
    ),
    _fb(
        "verdict instance 2**40",
        _verdict("rev-1", instance=2**40),
        422,
        "invalid_field",
        "instance",
    ),
    _fb("verdict instance '0'", _verdict("rev-1", instance="0"), 422, "invalid_field", "instance"),
    _fb(
        "verdict instance true", _verdict("rev-1", instance=True), 422, "invalid_field", "instance"
    ),
    _fb(
        "verdict word index true",
        open_api.correction(entities=[{"type": "mrn", "word_indices": [True]}]),
        422,
        "invalid_field",
        "correction.entities[0].word_indices[0]",
    ),
    _fb(
        "verdict word index 2**70",
        open_api.correction(entities=[{"type": "mrn", "word_indices": [2**70]}]),
        422,
        "word_index_out_of_range",
        "correction.entities[0].word_indices[0]",
    ),
    _fb(
        "verdict request_id of 129 characters",
        _verdict("rev-1", request_id="r" * 129),
        422,
        "invalid_field",
        "request_id",
        "at most 128",
    ),
    _fb(
        "reviewer with a zero-width space",
        _verdict("rev\u200b-1"),
        422,
        "invalid_field",
        "reviewer_id",
        "U+200B",
    ),
    _fb(
        "reviewer with a right-to-left override",
        _verdict("rev-\u202e1"),
        422,
        "invalid_field",
        "reviewer_id",
        "U+202E",
    ),
    _fb(
        "reviewer with an ANSI escape",
        _verdict("rev-\x1b[31m1"),
        422,
        "invalid_field",
        "reviewer_id",
        "U+001B",
    ),
    _fb(
        "reviewer with a Cyrillic look-alike",
        _verdict(MIXED_ADMIN),
        422,
        "invalid_field",
        "reviewer_id",
        "U+0430",
        "CYRILLIC SMALL LETTER A",
    ),
    _fb(
        "reviewer with a Greek look-alike",
        _verdict("rev-\u03bf1"),
        422,
        "invalid_field",
        "reviewer_id",
        "U+03BF",
        "GREEK SMALL LETTER OMICRON",
    ),
    _fb(
        "request_id with look-alike letters",
        _verdict("rev-1", request_id="req-\u04000"),
        422,
        "invalid_field",
        "request_id",
        "U+0400",
    ),
    _fb(
        "verdict as text/plain",
        json.dumps(_verdict("rev-1")).encode(),
        422,
        "invalid_body",
        "body",
        headers={"content-type": "text/plain"},
    ),
    _fb(
        "verdict oversize payload",
        b"[" + b" " * 8 * 1024 + b"]",
        413,
        "payload_too_large",
        "body",
        "limit of 8192 bytes",
    ),
    _fb(
        "batch over the limit",
        [_verdict("rev-1") for _ in range(6)],
        413,
        "batch_too_large",
        "body",
        "split them",
        path="/v1/feedback:batch",
    ),
    _fb("empty batch", [], 422, "empty_batch", "body", "send 1 to 5", path="/v1/feedback:batch"),
    _fb(
        "batch that is an object",
        _verdict("rev-1"),
        422,
        "invalid_body",
        "body",
        "JSON array",
        path="/v1/feedback:batch",
    ),
    _fb(
        "batch with one unknown prediction",
        [_verdict("rev-1"), _verdict("rev-1", request_id="req-nope")],
        404,
        "invalid_batch",
        "request_id",
        "nothing was stored",
        path="/v1/feedback:batch",
    ),
    _fb(
        "batch with one bad label",
        [_verdict("rev-1"), open_api.correction(doc_type="memo")],
        422,
        "invalid_batch",
        "correction.doc_type",
        "nothing was stored",
        path="/v1/feedback:batch",
    ),
    _fb(
        "batch with one look-alike reviewer",
        [_verdict("rev-1"), _verdict(MIXED_ADMIN)],
        422,
        "invalid_batch",
        "reviewer_id",
        "U+0430",
        path="/v1/feedback:batch",
    ),
    _fb(
        "batch reusing a key with another body",
        [
            {**_verdict("rev-1"), "idempotency_key": "probe-key-1"},
            {**_verdict("rev-1", instance=1), "idempotency_key": "probe-key-1"},
        ],
        409,
        "invalid_batch",
        "idempotency_key",
        "nothing was stored",
        path="/v1/feedback:batch",
    ),
    _fb(
        "status of an invalid model name",
        None,
        422,
        "invalid_path",
        "name",
        "letters",
        path="/v1/models/-bad/status",
        method="GET",
    ),
    _fb(
        "status of a 300-character name",
        None,
        422,
        "invalid_path",
        "name",
        path=f"/v1/models/{'m' * 300}/status",
        method="GET",
    ),
    _fb(
        "unknown path",
        None,
        404,
        "unknown_path",
        "path",
        "/openapi.json",
        path="/v1/nothing",
        method="GET",
    ),
    _fb("GET on feedback", None, 405, "method_not_allowed", "method", "GET", method="GET"),
]

GUARDED_PROBES = [
    *(
        _guarded(f"token {case}", _forged(case), 401, "unauthenticated", "authorization")
        for case in guarded_api.FORGERIES
    ),
    _guarded("no credential", {}, 401, "unauthenticated", "authorization", "Bearer"),
    _guarded(
        "a Basic credential",
        {"authorization": "Basic YWxpY2U6cHc="},
        401,
        "unauthenticated",
        "authorization",
    ),
    _guarded(
        "a revoked API token",
        lambda rig: {"authorization": f"Bearer {rig.revoked_token}"},
        401,
        "unauthenticated",
        "authorization",
        "revoked",
    ),
    _guarded(
        "an unknown API token",
        {"authorization": "Bearer dl_" + "x" * 43},
        401,
        "unauthenticated",
        "authorization",
    ),
    _guarded(
        "the proxy header without the proxy secret",
        {"kubeflow-userid": ALICE},
        401,
        "unauthenticated",
        "authorization",
        "secret",
    ),
    _guarded(
        "the proxy header with a wrong secret",
        {"kubeflow-userid": ALICE, "x-docloop-proxy-secret": "guess-" * 5},
        401,
        "unauthenticated",
        "authorization",
    ),
    _guarded(
        "a proxied principal with a right-to-left override",
        {
            "kubeflow-userid": "alice\u202e@example.org".encode(),
            "x-docloop-proxy-secret": guarded_api.PROXY_SECRET,
        },
        401,
        "unauthenticated",
        "authorization",
        "U+202E",
    ),
    _guarded(
        "a token principal with look-alike letters",
        _bearer("\u0430lice@example.org"),
        401,
        "unauthenticated",
        "authorization",
        "U+0430",
    ),
    _guarded(
        "a reviewer posting as another reviewer",
        _bearer("mallory@example.org"),
        403,
        "reviewer_not_caller",
        "reviewer_id",
    ),
    _guarded(
        "a reviewer posting as an auditor",
        _bearer(ALICE),
        403,
        "reviewer_not_caller",
        "reviewer_id",
        body=_verdict(CAROL),
    ),
    _guarded(
        "a reviewer's batch under made-up ids",
        _bearer(ALICE),
        403,
        "invalid_batch",
        "reviewer_id",
        body=[_verdict(f"made-up-{i}") for i in range(3)],
        path="/v1/feedback:batch",
    ),
    _guarded(
        "a service token sending a verdict",
        lambda rig: {"authorization": f"Bearer {rig.service_token}"},
        403,
        "forbidden",
        "authorization",
        body=_verdict(SERVICE),
    ),
    _guarded(
        "a reviewer reading the model status",
        _bearer(ALICE),
        403,
        "forbidden",
        "authorization",
        path="/v1/models/docloop/status",
        method="GET",
    ),
    _guarded(
        "a reviewer reading the metrics",
        _bearer(ALICE),
        403,
        "forbidden",
        "authorization",
        path="/metrics",
        method="GET",
    ),
    _guarded(
        "no credential for the OpenAPI document",
        {},
        401,
        "unauthenticated",
        "authorization",
        path="/openapi.json",
        method="GET",
    ),
    _guarded(
        "a reviewer's batch over its batch limit",
        _bearer(ALICE),
        413,
        "batch_too_large",
        "body",
        "principal_max_batch",
        body=[_verdict(ALICE) for _ in range(101)],
        path="/v1/feedback:batch",
    ),
]

CORPUS: list[Probe] = [*PREDICTOR_PROBES, *FEEDBACK_PROBES, *GUARDED_PROBES]


# --- the services -----------------------------------------------------------------------------
def counts(store: Store) -> dict[str, int]:
    """Rows of every table a request could write."""
    with store.read() as session:
        return {
            table.__tablename__: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in TABLES
        }


@pytest.fixture(scope="module")
def rig(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Both services on one SQLite store: the predictor logs into it, the API reads it."""
    from tests.serving import start_predictor, stop_predictor

    root = tmp_path_factory.mktemp("probes")
    url = f"sqlite:///{root / 'state.db'}"
    store = open_store(url)
    open_api.seed(store)  # predictions req-1, req-cls, ... as test_feedback_api knows them
    SqlSink(store).write([guarded_api.prediction("req-a")])
    open_config = DocloopConfig(
        data_root=(root / "data").as_uri(), feedback=FeedbackConfig(max_payload_kb=8, max_batch=5)
    )
    with serve_issuer() as issuer, pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCLOOP_PROXY_SECRET", guarded_api.PROXY_SECRET)
        guarded_config = guarded_api.auth_config(root, issuer)
        predictor = start_predictor(tiny_models, root / "predictor", "--prediction-log", url)
        try:
            with (
                TestClient(create_app(open_config, store)) as open_client,
                TestClient(create_app(guarded_config, store)) as guarded_client,
            ):
                running = Rig(store, predictor, open_client, guarded_client, issuer)
                running.service_token = create_token(store, SERVICE, "service")[1]
                revoked_id, running.revoked_token = create_token(store, ALICE, "reviewer")
                revoke_token(store, revoked_id)
                yield running
        finally:
            stop_predictor(predictor)
            store.close()


def send(rig: Rig, probe: Probe) -> httpx.Response:
    """Send ``probe`` to its service, as raw bytes."""
    body = probe.body(rig) if callable(probe.body) else probe.body
    raw = _raw(body)
    headers = dict(probe.headers(rig) if callable(probe.headers) else probe.headers)
    if raw is not None:
        headers.setdefault("content-type", "application/json")
    if probe.api == "predictor":
        return httpx.request(
            probe.method,
            f"{rig.predictor.url}{probe.path}",
            content=raw,
            headers=headers,
            timeout=120,
        )
    client = rig.open if probe.api == "feedback" else rig.guarded
    return client.request(probe.method, probe.path, content=raw, headers=headers)


def test_the_corpus_has_at_least_40_kinds() -> None:
    names = [probe.name for probe in CORPUS]
    assert len(names) == len(set(names)), "two probes share a name"
    assert len(set(names)) >= 40
    assert {probe.api for probe in CORPUS} == {"predictor", "feedback", "guarded"}
    assert all(400 <= probe.status < 500 for probe in CORPUS)


@pytest.mark.parametrize("probe", CORPUS, ids=[probe.name for probe in CORPUS])
def test_a_bad_request_is_a_4xx_naming_the_problem_and_stores_nothing(
    rig: Rig, probe: Probe
) -> None:
    before = counts(rig.store)
    response = send(rig, probe)
    if probe.api == "predictor":
        assert response.status_code == probe.status, (response.status_code, response.text)
        plain = not response.headers.get("content-type", "").startswith("application/json")
        error = response.text if plain else response.json().get("error")
        assert isinstance(error, str), response.text
        for words in probe.expect:
            assert words in error, error
    else:
        assert probe.code is not None and probe.field is not None
        open_api.assert_error(response, probe.status, probe.code, probe.field, *probe.expect)
    assert counts(rig.store) == before


def _logged(rig: Rig, expected: int, timeout_s: float = 30.0) -> int:
    """Wait for the prediction log's writer thread to reach ``expected`` rows."""
    deadline = time.monotonic() + timeout_s
    while (found := counts(rig.store)["predictions"]) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_after_the_corpus_good_requests_still_succeed(rig: Rig) -> None:
    before = counts(rig.store)
    answered = httpx.post(
        f"{rig.predictor.url}/v1/models/docloop:predict",
        json={"instances": [GOOD_PAGE, {"pages": [page(WORDS[2:])]}]},
        timeout=120,
    )
    assert answered.status_code == 200, answered.text
    v2 = httpx.post(f"{rig.predictor.url}/v2/models/docloop/infer", json=v2_body([GOOD_PAGE]))
    assert v2.status_code == 200, v2.text
    assert _logged(rig, before["predictions"] + 3) == before["predictions"] + 3
    first, second = answered.json()["predictions"]
    verdicts = [
        {
            "idempotency_key": f"after-probes-{answer['instance']}",
            "model_name": answer["model_name"],
            "model_version": answer["model_version"],
            "request_id": answer["request_id"],
            "instance": answer["instance"],
            "reviewer_id": ALICE,
            "kind": "confirmation",
        }
        for answer in (first, second)
    ]
    token = {"authorization": f"Bearer {rig.issuer.token(ALICE)}"}
    one = rig.guarded.post("/v1/feedback", json=verdicts[0], headers=token)
    assert one.status_code == 201, one.text
    batch = rig.guarded.post("/v1/feedback:batch", json=verdicts, headers=token)
    assert batch.status_code == 201, batch.text
    assert (batch.json()["created"], batch.json()["replayed"]) == (1, 1)
    opened = rig.open.post("/v1/feedback:batch", json=[_verdict("rev-1"), _verdict("rev-2")])
    assert opened.status_code == 201, opened.text
    assert counts(rig.store)["feedback_events"] == before["feedback_events"] + 4
    assert counts(rig.store)["api_tokens"] == before["api_tokens"]

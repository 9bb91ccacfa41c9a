"""Who may speak to the feedback API (issue 19): real JWTs, API tokens, a trusted proxy, roles.

The OIDC issuer is real enough: RSA keys generated at test time, ID tokens signed with PyJWT and
the JWKS served over HTTP on 127.0.0.1 (``tests.jwks``). Every refusal is checked for what it
stores: the feedback row count before and after.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from docloop.config import DocloopConfig, FeedbackAuthConfig, FeedbackConfig
from docloop.errors import ConfigError
from docloop.feedback.api import create_app, run_feedback_api
from docloop.feedback.auth import create_token, list_tokens, revoke_token
from docloop.feedback.contracts import FeedbackEvent
from docloop.feedback.quality import assess_feedback, audited_labels
from docloop.feedback.records import find_prediction, iter_feedback, record_feedback_batch
from docloop.serve.sink import PredictionRecord, SqlSink
from docloop.store import Store, open_store
from docloop.store.tables import ApiToken
from docloop.store.tables import FeedbackEvent as FeedbackRow
from tests.jwks import AUDIENCE, ISSUER, Issuer, serve_issuer

pytestmark = pytest.mark.unit

PROXY_SECRET = "s3cret-of-the-proxy-0123456789"
_keys = itertools.count()


def prediction(request_id: str) -> PredictionRecord:
    return PredictionRecord(
        timestamp="2026-11-25T10:00:00+00:00", request_id=request_id, instance=0,
        doc_id=f"doc-{request_id}", source_uri="request://x/0", model_name="docloop",
        model_version="v1", model_versions={"classify": "v1"}, protocol="v1", input="pages",
        doc_type="invoice", doc_type_confidence=0.9,
        probabilities={"invoice": 0.9, "letter": 0.1},
        entities=[{"type": "mrn", "text": "4821937", "page": 0, "box": [1, 1, 2, 2],
                   "confidence": 0.95, "word_indices": [1]}],
        entity_types=["mrn"], entity_count=1, pages=1, words=4, mean_confidence=90.0,
        ocr_pages=1, latency_ms=3.0,
    )  # fmt: skip


def verdict(reviewer: str, request_id: str = "req-a", **overrides: Any) -> dict[str, Any]:
    return {
        "idempotency_key": f"k-{next(_keys):06d}",
        "model_name": "docloop",
        "model_version": "v1",
        "request_id": request_id,
        "instance": 0,
        "reviewer_id": reviewer,
        "kind": "confirmation",
        **overrides,
    }


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with serve_issuer() as served:
        yield served


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    SqlSink(opened).write([prediction("req-a"), prediction("req-b")])
    yield opened
    opened.close()


def auth_config(tmp_path: Any, issuer: Issuer, **auth: Any) -> DocloopConfig:
    settings: dict[str, Any] = {
        "modes": ["oidc", "token", "proxy"],
        "oidc_issuer": ISSUER,
        "oidc_audience": AUDIENCE,
        "oidc_jwks_url": issuer.url,
        "oidc_jwks_refetch_s": 3600,
        "roles": {"carol@example.org": ["auditor"], "ops@example.org": ["admin"]},
        "group_roles": {"qa-auditors": ["auditor"]},
        **auth,
    }
    return DocloopConfig(
        data_root=(tmp_path / "data").as_uri(),
        feedback=FeedbackConfig(auth=FeedbackAuthConfig(**settings)),
    )


@pytest.fixture
def client(
    tmp_path: Any, issuer: Issuer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("DOCLOOP_PROXY_SECRET", PROXY_SECRET)
    with TestClient(create_app(auth_config(tmp_path, issuer), store)) as test_client:
        yield test_client


def rows(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(FeedbackRow)) or 0)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def stored(store: Store) -> list[tuple[str, str | None]]:
    return [(r.reviewer_id, r.reviewer_role) for r in iter_feedback(store)]


# --- authentication ---------------------------------------------------------------------------
def test_a_valid_id_token_stores_the_verdict_under_its_principal(
    client: TestClient, issuer: Issuer, store: Store
) -> None:
    token = issuer.token("alice@example.org")
    response = client.post("/v1/feedback", json=verdict("alice@example.org"), headers=bearer(token))
    assert response.status_code == 201, response.text
    assert stored(store) == [("alice@example.org", "reviewer")]


def _forge(issuer: Issuer, case: str) -> str:
    now = int(time.time())
    if case == "expired":
        return issuer.token("alice@example.org", iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    if case == "not yet valid":
        return issuer.token("alice@example.org", nbf=now + 3600, exp=now + 7200)
    if case == "wrong audience":
        return issuer.token("alice@example.org", aud="another-app")
    if case == "wrong issuer":
        return issuer.token("alice@example.org", iss="https://evil.test")
    if case == "no expiry":
        return issuer.token("alice@example.org", exp=None)
    if case == "alg none":
        claims = jwt.decode(issuer.token("alice@example.org"), options={"verify_signature": False})
        return jwt.encode(claims, None, algorithm="none", headers={"kid": issuer.current})
    if case == "alg HS256 with the public key":
        pem = (
            issuer.keys[issuer.current]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        claims = jwt.decode(issuer.token("alice@example.org"), options={"verify_signature": False})
        return _hs256(claims, pem, issuer.current)
    if case == "tampered signature":
        head, body, signature = issuer.token("alice@example.org").split(".")
        flipped = ("A" if signature[5] != "A" else "B") + signature[6:]
        return f"{head}.{body}.{signature[:5]}{flipped}"
    if case == "tampered claims":
        head, _, signature = issuer.token("alice@example.org").split(".")
        other = issuer.token("carol@example.org").split(".")[1]
        return f"{head}.{other}.{signature}"
    if case == "unknown kid":
        kid = issuer.rotate(publish=False)
        try:
            return issuer.token("alice@example.org", kid=kid)
        finally:
            issuer.current = issuer.published[-1]
    if case == "garbage":
        return "not-a-jwt"
    raise AssertionError(case)


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 over the public key's PEM: the classic key-confusion forgery (hand-built header)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{part(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}." + part(
        json.dumps(claims).encode()
    )
    signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{part(signature)}"


FORGERIES = [
    "expired", "not yet valid", "wrong audience", "wrong issuer", "no expiry", "alg none",
    "alg HS256 with the public key", "tampered signature", "tampered claims", "unknown kid",
    "garbage",
]  # fmt: skip


@pytest.mark.parametrize("case", FORGERIES)
def test_a_token_that_does_not_verify_is_401_and_stores_nothing(
    client: TestClient, issuer: Issuer, store: Store, case: str
) -> None:
    token = _forge(issuer, case)
    before = rows(store)
    response = client.post("/v1/feedback", json=verdict("alice@example.org"), headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"
    assert rows(store) == before == 0


def test_no_credential_is_401_on_every_endpoint_but_healthz(
    client: TestClient, store: Store
) -> None:
    """Issue 19: status, /docs and /metrics were open, and anyone could post verdicts."""
    for method, path in [
        ("POST", "/v1/feedback"),
        ("POST", "/v1/feedback:batch"),
        ("GET", "/v1/models/docloop/status"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/nowhere"),
    ]:
        response = client.request(method, path, json=verdict("rev-1"))
        assert response.status_code == 401, (path, response.text)
    assert client.get("/healthz").status_code == 200
    assert rows(store) == 0


def test_keys_rotate_by_kid_and_an_unknown_kid_refetches_at_most_once(
    client: TestClient, issuer: Issuer, store: Store
) -> None:
    first = issuer.token("alice@example.org")
    assert client.post("/v1/feedback", json=verdict("alice@example.org"), headers=bearer(first))
    fetched = issuer.fetches
    issuer.rotate()  # the issuer publishes a new key and signs with it
    rotated = issuer.token("alice@example.org")
    response = client.post(
        "/v1/feedback", json=verdict("alice@example.org"), headers=bearer(rotated)
    )
    assert response.status_code == 201, response.text
    assert issuer.fetches == fetched + 1
    for _ in range(5):  # unknown kids do not hammer the issuer (refetch rate-limited)
        stray = _forge(issuer, "unknown kid")
        assert (
            client.post("/v1/feedback", json=verdict("x"), headers=bearer(stray)).status_code == 401
        )
    assert issuer.fetches == fetched + 1


# --- OIDC discovery ---------------------------------------------------------------------------
@pytest.fixture
def discovered(
    tmp_path: Any, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Issuer]]:
    """An app whose JWKS comes from the issuer's discovery document (no oidc_jwks_url)."""
    monkeypatch.setenv("DOCLOOP_PROXY_SECRET", PROXY_SECRET)
    with serve_issuer() as own:
        config = auth_config(
            tmp_path, own, modes=["oidc"], oidc_issuer=own.local_issuer, oidc_jwks_url=None
        )
        with TestClient(create_app(config, store)) as test_client:
            yield test_client, own


def test_discovery_finds_the_issuers_keys(
    discovered: tuple[TestClient, Issuer], store: Store
) -> None:
    client, own = discovered
    for _ in range(2):
        token = own.token("alice@example.org", iss=own.local_issuer)
        response = client.post(
            "/v1/feedback", json=verdict("alice@example.org"), headers=bearer(token)
        )
        assert response.status_code == 201, response.text
    assert (own.discoveries, own.fetches) == (1, 1)  # read once, then cached
    assert stored(store) == [("alice@example.org", "reviewer")] * 2


def test_a_discovery_document_naming_another_issuer_is_refused(
    discovered: tuple[TestClient, Issuer], store: Store
) -> None:
    """OpenID Connect Discovery 1.0 §4.3: the document's issuer must equal the configured one."""
    client, own = discovered
    own.discovered_issuer = "https://evil.test/dex"
    token = own.token("alice@example.org", iss=own.local_issuer)
    response = client.post("/v1/feedback", json=verdict("alice@example.org"), headers=bearer(token))
    assert response.status_code == 401, response.text
    message = response.json()["error"]
    assert f"{own.local_issuer}/.well-known/openid-configuration" in message, message
    assert "'https://evil.test/dex'" in message and "oidc_issuer" in message, message
    again = client.post("/v1/feedback", json=verdict("alice@example.org"), headers=bearer(token))
    assert again.status_code == 401 and again.json()["error"] == message  # until a refetch
    assert own.discoveries == 1 and own.fetches == 0 and rows(store) == 0


def test_keys_rotate_through_discovery(discovered: tuple[TestClient, Issuer], store: Store) -> None:
    """An unknown kid re-reads the discovery document (the JWKS may have moved), rate-limited."""
    client, own = discovered
    first = own.token("alice@example.org", iss=own.local_issuer)
    assert client.post("/v1/feedback", json=verdict("alice@example.org"), headers=bearer(first))
    own.rotate()
    own.jwks_path = "/keys-2026"  # the issuer moves its keys; only discovery says where
    rotated = own.token("alice@example.org", iss=own.local_issuer)
    response = client.post(
        "/v1/feedback", json=verdict("alice@example.org"), headers=bearer(rotated)
    )
    assert response.status_code == 201, response.text
    assert (own.discoveries, own.fetches) == (2, 2)
    for _ in range(5):  # made-up kids do not make the API hammer the issuer
        stray = own.token("alice@example.org", iss=own.local_issuer, kid=own.rotate(publish=False))
        own.current = own.published[-1]
        assert (
            client.post("/v1/feedback", json=verdict("x"), headers=bearer(stray)).status_code == 401
        )
    assert (own.discoveries, own.fetches) == (2, 2)
    assert len(stored(store)) == 2


def test_a_discovered_jwks_uri_must_be_https(
    discovered: tuple[TestClient, Issuer], store: Store
) -> None:
    client, own = discovered
    own.discovered_jwks_uri = "http://dex.example.org/keys"
    token = own.token("alice@example.org", iss=own.local_issuer)
    response = client.post("/v1/feedback", json=verdict("alice@example.org"), headers=bearer(token))
    assert response.status_code == 401, response.text
    message = response.json()["error"]
    assert "'http://dex.example.org/keys'" in message and "https" in message, message
    assert rows(store) == 0


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"oidc_issuer": "http://dex.auth.svc.cluster.local:5556/dex"}, "oidc_issuer"),
        ({"oidc_jwks_url": "http://dex.auth.svc.cluster.local:5556/dex/keys"}, "oidc_jwks_url"),
        ({"oidc_jwks_url": "ftp://127.0.0.1/keys"}, "oidc_jwks_url"),
    ],
)
def test_oidc_urls_must_be_https_off_loopback(
    tmp_path: Any, store: Store, settings: dict[str, Any], refused: str
) -> None:
    """Keys fetched in the clear could be swapped by anyone on the path: every token forged."""
    auth = {"modes": ["oidc"], "oidc_audience": AUDIENCE, "oidc_issuer": ISSUER, **settings}
    config = DocloopConfig(
        data_root=(tmp_path / "d").as_uri(),
        feedback=FeedbackConfig(auth=FeedbackAuthConfig(**auth)),
    )
    with pytest.raises(ConfigError, match=rf"{refused}: .*https"):
        create_app(config, store)
    allowed = config.feedback.auth.model_copy(update={"oidc_allow_http": True})
    if not settings.get("oidc_jwks_url", "").startswith("ftp"):
        create_app(config.model_copy(update={"feedback": FeedbackConfig(auth=allowed)}), store)


# --- authorisation ----------------------------------------------------------------------------
def test_a_reviewer_posting_as_another_reviewer_or_as_an_auditor_is_403(
    client: TestClient, issuer: Issuer, store: Store
) -> None:
    token = bearer(issuer.token("mallory@example.org"))
    for name in ("alice@example.org", "carol@example.org"):
        response = client.post("/v1/feedback", json=verdict(name), headers=token)
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "reviewer_not_caller"
    assert rows(store) == 0


def test_500_verdicts_under_500_made_up_ids_are_refused(
    client: TestClient, issuer: Issuer, store: Store
) -> None:
    """Issue 19: one batch of 500 verdicts from 500 made-up reviewer ids was accepted."""
    events = [verdict(f"made-up-{i}") for i in range(500)]
    response = client.post(
        "/v1/feedback:batch", json=events, headers=bearer(issuer.token("mallory@example.org"))
    )
    assert response.status_code == 403, response.text
    assert len(response.json()["errors"]) == 500
    assert rows(store) == 0


def test_the_forged_auditor_cannot_change_a_label(
    client: TestClient, issuer: Issuer, store: Store
) -> None:
    """Issue 19's scenario: three reviewers confirm two predictions; a forger "corrects" them."""
    for reviewer in ("r1@example.org", "r2@example.org", "r3@example.org"):
        for request_id in ("req-a", "req-b"):
            body = verdict(reviewer, request_id)
            assert client.post("/v1/feedback", json=body, headers=bearer(issuer.token(reviewer)))
    forged = [
        verdict("carol@example.org", rid, kind="correction", correction={"doc_type": "letter"})
        for rid in ("req-a", "req-b")
    ]
    before = rows(store)
    assert client.post("/v1/feedback:batch", json=forged).status_code == 401  # anonymous
    mallory = bearer(issuer.token("mallory@example.org"))
    assert client.post("/v1/feedback:batch", json=forged, headers=mallory).status_code == 403
    # a self-made "auditors" group claim is only as good as the issuer's signature
    assert (
        client.post("/v1/feedback:batch", json=forged, headers=bearer("x." + "y.z")).status_code
        == 401
    )
    assert rows(store) == before == 6
    records = list(iter_feedback(store))
    assert audited_labels(records, ["carol@example.org"]) == {}
    report = assess_feedback(records, FeedbackConfig(), audited_labels(records))
    assert [e.status for e in report.events] == ["accepted"] * 6, report
    # the real auditor (by config mapping, or by the issuer's group claim) does audit
    for who, claims in (
        ("carol@example.org", {}),
        ("dave@example.org", {"groups": ["qa-auditors"]}),
    ):
        body = verdict(who, "req-a", kind="correction", correction={"doc_type": "letter"})
        assert (
            client.post(
                "/v1/feedback", json=body, headers=bearer(issuer.token(who, **claims))
            ).status_code
            == 201
        )
    assert set(audited_labels(list(iter_feedback(store)))) == {"doc-req-a"}


def test_roles_gate_status_and_metrics(client: TestClient, issuer: Issuer, store: Store) -> None:
    reviewer = bearer(issuer.token("alice@example.org"))
    admin = bearer(issuer.token("ops@example.org"))
    for path in ("/v1/models/docloop/status", "/metrics"):
        assert client.get(path, headers=reviewer).status_code == 403
        assert client.get(path, headers=admin).status_code == 200
    assert client.get("/openapi.json", headers=reviewer).status_code == 200


def test_idempotency_keys_belong_to_their_reviewer(
    client: TestClient, issuer: Issuer, store: Store
) -> None:
    """Issue 19: a stranger claimed a reviewer's guessable key first; the real verdict got 409."""
    key = "rev-42:req-a:0"
    stranger = verdict("mallory@example.org", idempotency_key=key)
    real = verdict("alice@example.org", idempotency_key=key)
    assert (
        client.post(
            "/v1/feedback", json=stranger, headers=bearer(issuer.token("mallory@example.org"))
        ).status_code
        == 201
    )
    response = client.post(
        "/v1/feedback", json=real, headers=bearer(issuer.token("alice@example.org"))
    )
    assert response.status_code == 201, response.text
    assert sorted(stored(store)) == [
        ("alice@example.org", "reviewer"),
        ("mallory@example.org", "reviewer"),
    ]


def test_a_principal_over_its_rate_gets_429_with_retry_after(
    tmp_path: Any, issuer: Issuer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCLOOP_PROXY_SECRET", PROXY_SECRET)
    config = auth_config(tmp_path, issuer, events_per_minute=3, principal_max_batch=2)
    token = bearer(issuer.token("alice@example.org"))
    with TestClient(create_app(config, store)) as client:
        batch = [verdict("alice@example.org") for _ in range(3)]
        assert client.post("/v1/feedback:batch", json=batch, headers=token).status_code == 413
        assert client.post("/v1/feedback:batch", json=batch[:2], headers=token).status_code == 201
        assert client.post("/v1/feedback", json=batch[2], headers=token).status_code == 201
        over = client.post("/v1/feedback", json=verdict("alice@example.org"), headers=token)
        assert over.status_code == 429, over.text
        assert int(over.headers["retry-after"]) >= 1
        other = bearer(issuer.token("bob@example.org"))  # the limit is per principal
        assert (
            client.post("/v1/feedback", json=verdict("bob@example.org"), headers=other).status_code
            == 201
        )
    assert rows(store) == 4


def test_a_batch_over_the_rate_itself_is_413_not_a_429_that_never_passes(
    tmp_path: Any, issuer: Issuer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch larger than a whole minute's rate can never be taken: retrying it is futile."""
    monkeypatch.setenv("DOCLOOP_PROXY_SECRET", PROXY_SECRET)
    config = auth_config(tmp_path, issuer, events_per_minute=3, principal_max_batch=10)
    token = bearer(issuer.token("alice@example.org"))
    with TestClient(create_app(config, store)) as client:
        batch = [verdict("alice@example.org") for _ in range(4)]
        response = client.post("/v1/feedback:batch", json=batch, headers=token)
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "batch_too_large"
        assert "events_per_minute" in response.json()["error"]
        assert client.post("/v1/feedback:batch", json=batch[:3], headers=token).status_code == 201
    assert rows(store) == 3


# --- API tokens and the proxy -----------------------------------------------------------------
def test_api_tokens_authenticate_until_revoked_or_expired(client: TestClient, store: Store) -> None:
    token_id, token = create_token(store, "labeller-bot", "reviewer")
    assert (
        client.post("/v1/feedback", json=verdict("labeller-bot"), headers=bearer(token)).status_code
        == 201
    )
    with store.read() as session:
        digests = session.execute(select(FeedbackRow.reviewer_id)).scalars().all()
    assert digests == ["labeller-bot"]
    (listed,) = list_tokens(store)
    assert (listed.id, listed.principal, listed.role, listed.revoked_at) == (
        token_id,
        "labeller-bot",
        "reviewer",
        None,
    )
    assert token not in repr(listed.model_dump())
    assert revoke_token(store, token_id) and not revoke_token(store, token_id)
    before = rows(store)
    assert (
        client.post("/v1/feedback", json=verdict("labeller-bot"), headers=bearer(token)).status_code
        == 401
    )
    _, old = create_token(store, "old-bot", "reviewer", datetime.now(UTC) - timedelta(seconds=1))
    assert (
        client.post("/v1/feedback", json=verdict("old-bot"), headers=bearer(old)).status_code == 401
    )
    assert (
        client.post("/v1/feedback", json=verdict("x"), headers=bearer("dlt_made-up")).status_code
        == 401
    )
    assert rows(store) == before


def test_a_service_token_reads_status_and_metrics_but_sends_no_verdicts(
    client: TestClient, store: Store
) -> None:
    _, token = create_token(store, "drift-check", "service")
    assert client.get("/metrics", headers=bearer(token)).status_code == 200
    assert client.get("/v1/models/docloop/status", headers=bearer(token)).status_code == 200
    response = client.post("/v1/feedback", json=verdict("drift-check"), headers=bearer(token))
    assert response.status_code == 403 and rows(store) == 0


def test_the_proxy_header_is_believed_only_with_the_proxy_secret(
    client: TestClient, store: Store
) -> None:
    body = verdict("alice@example.org")
    for headers in (
        {"kubeflow-userid": "alice@example.org"},
        {"kubeflow-userid": "alice@example.org", "x-docloop-proxy-secret": "guess"},
    ):
        assert client.post("/v1/feedback", json=body, headers=headers).status_code == 401
    assert rows(store) == 0
    proven = {"kubeflow-userid": "alice@example.org", "x-docloop-proxy-secret": PROXY_SECRET}
    assert client.post("/v1/feedback", json=body, headers=proven).status_code == 201
    assert stored(store) == [("alice@example.org", "reviewer")]


def test_a_proxied_principal_is_read_as_utf8(client: TestClient, store: Store) -> None:
    """A proxy's ``josé@example.org`` was read as Latin-1 (``josÃ©``): never the reviewer."""
    name = "jos\u00e9@example.org"
    proven = {"kubeflow-userid": name.encode(), "x-docloop-proxy-secret": PROXY_SECRET}
    response = client.post("/v1/feedback", json=verdict(name), headers=proven)
    assert response.status_code == 201, response.text
    assert stored(store) == [(name, "reviewer")]


def test_proxy_mode_without_a_secret_is_a_config_error(
    tmp_path: Any, issuer: Issuer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCLOOP_PROXY_SECRET", raising=False)
    with pytest.raises(ConfigError, match="shared secret"):
        create_app(auth_config(tmp_path, issuer, modes=["proxy"]), store)


def test_unsafe_algorithms_and_mixed_none_are_config_errors() -> None:
    for algorithms in (["none"], ["HS256"], ["RS256", "hs512"]):
        with pytest.raises(ValueError, match="refused"):
            FeedbackAuthConfig(oidc_algorithms=algorithms)
    with pytest.raises(ValueError, match="cannot be combined"):
        FeedbackAuthConfig(modes=["none", "token"])


def test_without_authentication_only_loopback_is_served(tmp_path: Any) -> None:
    config = DocloopConfig(data_root=(tmp_path / "d").as_uri())
    with pytest.raises(ConfigError, match="--insecure"):
        run_feedback_api(config, "0.0.0.0", 8081)


# --- the CLI ----------------------------------------------------------------------------------
def test_tokens_create_list_revoke_through_the_cli(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from docloop.cli import app

    config = tmp_path / "docloop.yaml"
    config.write_text(f"store:\n  url: sqlite:///{tmp_path / 'state.db'}\n", encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(
        app,
        ["tokens", "create", "--principal", "bot", "--role", "service", "--config", str(config)],
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("dlt_") and len(token) > 40
    listed = runner.invoke(app, ["tokens", "list", "--config", str(config)])
    assert listed.exit_code == 0 and "bot\tservice" in listed.stdout and token not in listed.stdout
    assert runner.invoke(app, ["tokens", "revoke", "1", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["tokens", "revoke", "1", "--config", str(config)]).exit_code == 1
    bad = runner.invoke(
        app, ["tokens", "create", "--principal", "x", "--role", "root", "--config", str(config)]
    )
    assert bad.exit_code == 2 and "not one of" in bad.output


def test_feedback_api_without_auth_refuses_a_public_address_without_insecure(
    tmp_path: Any,
) -> None:
    from typer.testing import CliRunner

    from docloop.cli import app

    result = CliRunner().invoke(app, ["feedback-api", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--insecure" in " ".join(result.output.split())


def test_api_tokens_and_reviewer_scoped_keys_on_both_databases(store_url: str) -> None:
    """The token table and the per-reviewer key constraint on SQLite and PostgreSQL."""
    opened = open_store(store_url)
    try:
        token_id, token = create_token(opened, "bot", "service")
        with opened.read() as session:
            kept = session.execute(select(ApiToken.token_sha256, ApiToken.principal)).one()
        assert kept == (hashlib.sha256(token.encode()).hexdigest(), "bot")
        assert token not in kept.token_sha256
        assert revoke_token(opened, token_id) and list_tokens(opened)[0].revoked_at is not None
        SqlSink(opened).write([prediction("req-pg")])
        found = find_prediction(opened, "req-pg")
        assert found is not None
        mine = FeedbackEvent.model_validate(verdict("alice", "req-pg", idempotency_key="shared-k"))
        theirs = mine.model_copy(update={"reviewer_id": "mallory"})
        assert record_feedback_batch(opened, [(theirs, found)])[0][1]
        assert record_feedback_batch(opened, [(mine, found)], roles=["auditor"])[0][1]
        assert sorted(stored(opened)) == [("alice", "auditor"), ("mallory", None)]
    finally:
        opened.close()


def test_auth_settings_come_from_the_environment_too(tmp_path: Any) -> None:
    from docloop.config import load_config

    environ = {
        "DOCLOOP__FEEDBACK__AUTH__MODES": "proxy,token",
        "DOCLOOP__FEEDBACK__AUTH__PROXY_SECRET_FILE": "/var/run/secrets/proxy",
    }
    auth = load_config(None, environ=environ).feedback.auth
    assert auth.modes == ["proxy", "token"] and auth.proxy_secret_file == "/var/run/secrets/proxy"


def test_the_old_auditors_list_becomes_the_auditor_role() -> None:
    with pytest.warns(DeprecationWarning, match="feedback.auth.roles"):
        feedback = FeedbackConfig(
            auditors=["carol"], auth=FeedbackAuthConfig(roles={"x": ["admin"]})
        )
    assert feedback.auth.roles == {"x": ["admin"], "carol": ["reviewer", "auditor"]}

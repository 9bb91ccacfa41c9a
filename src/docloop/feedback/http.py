"""The feedback API's HTTP plumbing: error bodies, exception handlers and three ASGI middlewares.

Every error answer is built in one place (``_error_response``: an :class:`ErrorBody`, counted in
``docloop_feedback_rejected_total`` by code). The handlers turn FastAPI's request-validation
errors into one problem per pydantic error (the field dotted, a batch event's ``index`` split
off, 400 only for unparsable JSON), unknown paths and methods into 404/405,
:class:`~docloop.feedback.validation.FeedbackRejected` into its own status, and a failing state
store into 503 with ``Retry-After``. :class:`AuthGate` authenticates every request but the
probes' (``/healthz``, ``/livez``) before its body is read (401). :class:`PayloadLimit` runs
before routing, so an oversized body is refused without being parsed, and a body that is not
strict JSON (:func:`~docloop.feedback.validation.check_json`) before the framework parses it;
:class:`RequestTimer` labels latency by endpoint from a fixed set. :func:`install` puts all of
them on an app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from docloop.asgi import ASGIApp, BodyTooLarge, Receive, Scope, Send, read_body, replaying
from docloop.errors import StoreBusy, StoreError
from docloop.feedback.auth import AuthenticationFailed, Authenticator, Principal
from docloop.feedback.validation import FeedbackRejected, Problem, check_json

logger = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

REJECTED = Counter(
    "docloop_feedback_rejected",
    "Feedback events (or requests) rejected, by reason (the error code of the answer).",
    ["reason"],
)
REQUEST_SECONDS = Histogram(
    "docloop_feedback_request_seconds",
    "Time to answer a feedback-API request, by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)


# --- error bodies -----------------------------------------------------------------------------
class ItemError(BaseModel):
    """One problem with one event (or with the request)."""

    index: int | None = Field(
        default=None, description="Position of the event in a batch; null for a single event."
    )
    field: str = Field(description="The field at fault, dotted (`correction.entities[0].type`).")
    code: str = Field(description="Stable reason code, e.g. `unknown_label`.")
    status: int = Field(description="The HTTP status this problem alone would get.")
    error: str = Field(description="`<field>: <what is wrong>; <how to fix it>`.")


class ErrorBody(BaseModel):
    """The body of every error answer: nothing was stored."""

    error: str = Field(description="The first problem: names the field, says what to fix.")
    code: str = Field(description="Its reason code (`invalid_batch` for a batch).")
    field: str | None = Field(default=None, description="The field at fault, if one is.")
    errors: list[ItemError] = Field(default_factory=list, description="Every problem found.")


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: {
        "model": ErrorBody,
        "description": "The body is not valid JSON (or not UTF-8, repeats a key, nests too deep).",
    },
    401: {"model": ErrorBody, "description": "No valid credential (see feedback.auth)."},
    403: {
        "model": ErrorBody,
        "description": "The caller's role does not allow this, or reviewer_id is not the caller.",
    },
    404: {"model": ErrorBody, "description": "No prediction has that request_id/instance."},
    409: {"model": ErrorBody, "description": "The idempotency_key was used for another body."},
    413: {
        "model": ErrorBody,
        "description": "The body is over feedback.max_payload_kb, or the batch over max_batch.",
    },
    422: {
        "model": ErrorBody,
        "description": "A field has the wrong type, is missing or unknown, or the event does "
        "not fit its prediction (model, labels, word positions, empty or identical correction).",
    },
    429: {"model": ErrorBody, "description": "Over the caller's rate; retry after Retry-After."},
    503: {"model": ErrorBody, "description": "The state store is unavailable; retry."},
}


# --- errors -----------------------------------------------------------------------------------
def _error_response(
    status: int,
    problems: Sequence[Problem],
    *,
    batch: bool = False,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    for problem in problems:
        REJECTED.labels(problem.code).inc()
    first = problems[0]
    if batch:
        indices = sorted({p.index for p in problems if p.index is not None})
        error = (
            f"[{first.index}].{first.message} ({len(indices)} event(s) of the batch are "
            "invalid, so nothing was stored: fix them and resend the whole batch)"
            if indices
            else first.message
        )
        code = "invalid_batch" if indices else first.code
    else:
        error, code = first.message, first.code
    body = ErrorBody(
        error=error,
        code=code,
        field=first.field,
        errors=[
            ItemError(index=p.index, field=p.field, code=p.code, status=p.status, error=p.message)
            for p in problems
        ],
    )
    logger.info("rejected (HTTP %d): %s", status, error)
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


def _location(loc: Sequence[int | str], batch: bool) -> tuple[int | None, str]:
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    index: int | None = None
    if batch and parts and isinstance(parts[0], int):
        index, parts = parts[0], parts[1:]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return index, path


_FIELD_HINTS: Final = {
    "idempotency_key": "a unique key per verdict, 8-128 of A-Z a-z 0-9 . _ : -",
    "model_name": "the answer's model_name",
    "model_version": "the answer's model_version",
    "request_id": "the answer's request_id (the server's id, not the x-request-id you sent)",
    "reviewer_id": "who reviewed the prediction",
    "kind": "'confirmation' or 'correction'",
}


def _pydantic_problem(error: Mapping[str, Any], batch: bool, path_param: bool) -> Problem:
    kind = str(error.get("type", "invalid"))
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid value"))
    if path_param:
        field = ".".join(str(part) for part in loc[1:]) or "path"
        return Problem(
            422,
            "invalid_path",
            field,
            f"{field}: {message}; use 1-200 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
        )
    if kind == "json_invalid":  # loc is ("body", <character position>)
        detail = (error.get("ctx") or {}).get("error", "malformed")
        what = "a JSON array of feedback events" if batch else "one JSON object (a feedback event)"
        return Problem(
            400,
            "invalid_json",
            "body",
            f"body: not valid JSON ({detail}); send {what} with Content-Type: application/json",
        )
    index, field = _location(loc, batch)
    if not field:
        what = "a JSON array of feedback events" if batch else "a JSON object (a feedback event)"
        return Problem(
            422,
            "invalid_body",
            "body",
            f"body: {message}; send {what} with Content-Type: application/json",
            index,
        )
    code, text = _field_problem(kind, field, message)
    return Problem(422, code, field, text, index)


def _field_problem(kind: str, field: str, message: str) -> tuple[str, str]:
    """The code and message of a pydantic error on one field."""
    name = field.rsplit(".", 1)[-1]
    if kind == "string_unicode":
        code = "invalid_text"
        text = (
            f"{field}: not valid Unicode text (an unpaired surrogate escape such as \\ud800); "
            "send valid UTF-8, escaping only whole characters"
        )
    elif kind == "missing":
        hint = _FIELD_HINTS.get(name, "see the FeedbackEvent schema at /openapi.json")
        code, text = "missing_field", f"{field}: required but missing; add it ({hint})"
    elif kind == "extra_forbidden":
        code = "unknown_field"
        text = (
            f"{field}: not a field of this object; remove it (fields: see the schema at "
            "/openapi.json)"
        )
    else:
        hint = _FIELD_HINTS.get(name, "fix the value")
        code, text = "invalid_field", f"{field}: {message}; send {hint}"
    return code, text


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    batch = request.url.path.endswith(":batch")
    problems = [
        _pydantic_problem(error, batch, bool(error.get("loc")) and error["loc"][0] == "path")
        for error in errors
    ] or [Problem(422, "invalid_body", "body", f"body: {exc}; send a valid feedback event")]
    status = 400 if any(p.status == 400 for p in problems) else 422
    problems.sort(key=lambda p: p.status != status)
    return _error_response(status, problems, batch=batch)


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    if status == 404:
        message = (
            f"path: {request.url.path!r} is not an endpoint of the feedback API; see "
            "/openapi.json for the endpoints"
        )
    elif status == 405:
        message = f"method: {request.method} is not allowed here; see /openapi.json"
    else:
        message = f"request: {detail}"
    code, field = {404: ("unknown_path", "path"), 405: ("method_not_allowed", "method")}.get(
        status, ("http_error", "request")
    )
    return _error_response(status, [Problem(status, code, field, message)])


async def _rejected_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FeedbackRejected)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return _error_response(exc.status, exc.problems, batch=exc.batch, headers=headers)


async def _store_handler(_: Request, exc: Exception) -> JSONResponse:
    busy = isinstance(exc, StoreBusy)
    logger.error("state store failure: %s", exc)
    message = (
        f"store: the state store is {'busy' if busy else 'unavailable'} ({exc}); nothing was "
        "stored: retry the same request (same idempotency_key) in a moment"
    )
    problem = Problem(503, "store_busy" if busy else "store_unavailable", "store", message)
    return _error_response(503, [problem], headers={"Retry-After": "1"})


# --- middleware -------------------------------------------------------------------------------
class PayloadLimit:
    """ASGI middleware: request bodies over ``max_bytes`` get HTTP 413 before they are parsed.

    A declared ``Content-Length`` over the limit is refused without reading; otherwise the body
    is read (at most ``max_bytes`` + one chunk) and handed on to the app.

    Args:
        app: the wrapped application.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, size: int | None) -> None:
        got = f"{size} bytes" if size is not None else f"over {self.max_bytes} bytes"
        problem = Problem(
            413,
            "payload_too_large",
            "body",
            f"body: the request body is {got}, over the limit of {self.max_bytes} bytes "
            "(feedback.max_payload_kb); send fewer events per batch, or shorter values",
        )
        await _send_error(send, 413, problem, close=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse oversized bodies; pass the others through (body already read)."""
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    continue
                if declared > self.max_bytes:
                    await self._refuse(send, declared)
                    return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            await self._refuse(send, None)
            return
        if body is None:
            return  # the client went away before sending its body
        problem = check_json(body) if body else None
        if problem is not None:
            await _send_error(send, 400, problem)
            return
        await self.app(scope, replaying(body, receive), send)


async def _send_error(
    send: Send,
    status: int,
    problem: Problem,
    *,
    close: bool = False,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer an error from a middleware (before routing)."""
    response = _error_response(status, [problem])
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(response.body)).encode()),
        *headers,
    ]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": bytes(response.body)})


# Kubernetes probes carry no credentials: readiness (/healthz) and liveness (/livez).
UNAUTHENTICATED_PATHS: Final = frozenset({"/healthz", "/livez"})


def _header_text(value: bytes) -> str:
    """A header value as text: UTF-8 (a proxy's ``josé@example.org``), else Latin-1 (RFC 9110)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class AuthGate:
    """ASGI middleware: every request but the probes' names its principal, or is 401.

    The principal goes to ``scope["state"]["principal"]`` (``request.state.principal``); the
    routes check roles. Credentials are checked in a worker thread (JWKS and token lookups block).

    Args:
        app: the wrapped application.
        authenticator: the configured :class:`~docloop.feedback.auth.Authenticator`.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, then pass the request on."""
        if scope["type"] != "http" or scope.get("path") in UNAUTHENTICATED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1").lower(): _header_text(value)
            for key, value in scope.get("headers", [])
        }
        try:
            principal: Principal = await anyio.to_thread.run_sync(
                self.authenticator.authenticate, headers
            )
        except AuthenticationFailed as exc:
            problem = Problem(401, "unauthenticated", "authorization", str(exc))
            await _send_error(send, 401, problem, headers=[(b"www-authenticate", b"Bearer")])
            return
        except StoreError as exc:
            logger.error("state store failure while authenticating: %s", exc)
            problem = Problem(
                503, "store_unavailable", "store", "store: cannot check the API token now; retry"
            )
            await _send_error(send, 503, problem, headers=[(b"retry-after", b"1")])
            return
        if not principal.roles:
            problem = Problem(403, "forbidden", "authorization", "authorization: no role")
            await _send_error(send, 403, problem)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


class RequestTimer:
    """ASGI middleware: request latency by endpoint (a fixed, small set of label values)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def endpoint(path: str) -> str:
        """The metric label of a path."""
        if path == "/v1/feedback":
            return "feedback"
        if path == "/v1/feedback:batch":
            return "feedback_batch"
        if path.startswith("/v1/models/") and path.endswith("/status"):
            return "model_status"
        if path in ("/healthz", "/livez", "/metrics", "/openapi.json"):
            return path.strip("/").replace(".", "_")
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_SECONDS.labels(self.endpoint(scope.get("path", ""))).observe(
                time.perf_counter() - started
            )


# --- installing -------------------------------------------------------------------------------
def install(app: FastAPI, *, max_payload_bytes: int, authenticator: Authenticator) -> None:
    """Put the middlewares and exception handlers on ``app``.

    Order of a request: timer, authentication, payload limit and strict JSON, routing.

    Args:
        app: the feedback API application.
        max_payload_bytes: the largest request body accepted (413 above).
        authenticator: who may call (401 before the body is read).
    """
    app.add_middleware(PayloadLimit, max_bytes=max_payload_bytes)
    app.add_middleware(AuthGate, authenticator=authenticator)
    app.add_middleware(RequestTimer)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(FeedbackRejected, _rejected_handler)
    app.add_exception_handler(StoreError, _store_handler)

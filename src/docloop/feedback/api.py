"""The feedback API (FastAPI): reviewers' verdicts on predictions, stored once each.

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``):

``POST /v1/feedback``
    One :class:`~docloop.feedback.contracts.FeedbackEvent`. ``201`` with the stored record, or
    ``200`` with the record stored earlier when the same ``idempotency_key`` is sent again with
    the same body (a retry); ``409`` when the key was used for a different body.
``POST /v1/feedback:batch``
    A JSON array of events (at most ``feedback.max_batch``), all or nothing: if any event is
    invalid nothing is stored and the answer lists every problem with the event's index.
``GET /v1/models/{name}/status``
    For a served model name: the versions seen in the prediction log with their counts of
    predictions, feedback and corrections; for a registered model name: its versions and
    statuses from the state store (``model_versions``) and the default version.
``GET /healthz``
    ``200`` when the state store answers, ``503`` otherwise.
``GET /metrics``
    Prometheus: ``docloop_feedback_events_total{kind,outcome}``,
    ``docloop_feedback_rejected_total{reason}``, ``docloop_feedback_request_seconds{endpoint}``.

Every 4xx has the body ``{"error": "<field>: <what is wrong>; <fix>", "code", "field",
"errors": [...]}`` and stores nothing: ``400`` bad JSON; ``404`` no prediction with that
``request_id``/``instance``; ``409`` idempotency key reused with another body; ``413`` body over
``feedback.max_payload_kb`` (checked before the body is parsed) or a batch over
``feedback.max_batch``; ``422`` wrong types, missing or unknown fields, and every rule of
``docloop.feedback.validation``. ``503`` means the state store is unavailable (retry).

Handlers are plain functions, so FastAPI runs them in its worker threads and the event loop never
waits on the database.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Annotated, Any, Final, Literal

import anyio.to_thread
from fastapi import Body, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, text
from starlette.exceptions import HTTPException as StarletteHTTPException

import docloop
from docloop.config import DocloopConfig, store_url
from docloop.errors import StorageError, StoreBusy, StoreError
from docloop.feedback.contracts import FeedbackEvent, FeedbackRecord, read_served_document
from docloop.feedback.records import (
    IdempotencyConflict,
    PredictionKey,
    StoredPrediction,
    find_predictions,
    record_feedback_batch,
)
from docloop.feedback.validation import FeedbackRejected, Problem, check_text, validate_event
from docloop.storage import Storage
from docloop.store import versions as vs
from docloop.store.db import Store, open_store
from docloop.store.tables import FeedbackEvent as FeedbackRow
from docloop.store.tables import ModelVersion, Prediction

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8081
MODEL_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
WORD_COUNT_CACHE: Final = 4096
PREDICTION_CACHE: Final = 20_000
DEFAULT_WORKER_THREADS: Final = 8

EVENTS = Counter(
    "docloop_feedback_events",
    "Feedback events answered with success: created (stored now) or replayed (stored before).",
    ["kind", "outcome"],
)
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

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- response bodies --------------------------------------------------------------------------
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


class BatchResult(BaseModel):
    """The answer to a stored batch."""

    created: int = Field(description="Events stored by this request.")
    replayed: int = Field(description="Events whose key was stored before with the same body.")
    records: list[FeedbackRecord] = Field(description="The stored records, in request order.")


class ServedVersion(BaseModel):
    """One model version as the prediction log and the feedback table know it."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    predictions: int = Field(description="Logged predictions.")
    feedback: int = Field(description="Feedback events on them (every status).")
    confirmations: int
    corrections: int
    quarantined: int = Field(description="Feedback events quarantined by the quality rules.")
    first_prediction_at: str | None = None
    last_prediction_at: str | None = None


class RegisteredVersion(BaseModel):
    """One registered version (``model_versions``)."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    status: str = Field(description="candidate, canary, default, retired or rejected.")
    status_reason: str | None = None
    run_id: str | None = None
    model_uri: str
    dataset_digest: str | None = None
    created_at: str
    updated_at: str


class ModelStatus(BaseModel):
    """What the store knows about a model name."""

    name: str
    served: list[ServedVersion] = Field(
        description="Versions seen in the prediction log under this served name, oldest first."
    )
    registered: list[RegisteredVersion] = Field(
        description="Registered versions under this registry name, oldest first."
    )
    default_version: str | None = Field(
        default=None, description="The registered default version, if any."
    )


class Health(BaseModel):
    """The service and its state store are up."""

    status: Literal["ok"] = "ok"
    store: str = Field(description="The store's database: sqlite or postgresql.")


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON."},
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
    503: {"model": ErrorBody, "description": "The state store is unavailable; retry."},
}

EVENT_EXAMPLES: Final = {
    "confirmation": {
        "summary": "The prediction was right",
        "value": {
            "idempotency_key": "rev-42:req-0001:0",
            "model_name": "docloop",
            "model_version": "v1",
            "request_id": "req-0001",
            "instance": 0,
            "reviewer_id": "rev-42",
            "kind": "confirmation",
        },
    },
    "correction": {
        "summary": "The type and one entity were wrong",
        "value": {
            "idempotency_key": "rev-42:req-0001:0:fix",
            "model_name": "docloop",
            "model_version": "v1",
            "request_id": "req-0001",
            "instance": 0,
            "reviewer_id": "rev-42",
            "kind": "correction",
            "correction": {
                "doc_type": "letter",
                "entities": [{"type": "mrn", "word_indices": [3], "value": "4821937"}],
            },
        },
    },
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
    "request_id": "the predicted request's id (x-request-id)",
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
    return _error_response(exc.status, exc.problems, batch=exc.batch)


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
        response = _error_response(413, [problem])
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(response.body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": bytes(response.body)})

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
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
        if path in ("/healthz", "/metrics", "/openapi.json"):
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


# --- the app ----------------------------------------------------------------------------------
class _Service:
    """What the handlers share: config, store, a cache of served-document word counts."""

    def __init__(self, config: DocloopConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self._storage: Storage | None = None
        self.word_count = functools.lru_cache(maxsize=WORD_COUNT_CACHE)(self._word_count)
        # Logged predictions never change, so found ones are remembered (retries and several
        # reviewers of one document skip the lookup); a miss is never cached, since the
        # prediction log may write the row a moment later.
        self._predictions: OrderedDict[PredictionKey, StoredPrediction] = OrderedDict()
        self._predictions_lock = threading.Lock()

    def predictions(self, keys: Sequence[PredictionKey]) -> dict[PredictionKey, StoredPrediction]:
        """The logged predictions among ``keys``, from memory or the store."""
        found: dict[PredictionKey, StoredPrediction] = {}
        with self._predictions_lock:
            for key in keys:
                cached = self._predictions.get(key)
                if cached is not None:
                    self._predictions.move_to_end(key)
                    found[key] = cached
        missing = [key for key in keys if key not in found]
        if missing:
            loaded = find_predictions(self.store, missing)
            found.update(loaded)
            with self._predictions_lock:
                self._predictions.update(loaded)
                while len(self._predictions) > PREDICTION_CACHE:
                    self._predictions.popitem(last=False)
        return found

    def _word_count(self, doc_id: str) -> int | None:
        """Words of a served document, for predictions logged without ``ocr.words``."""
        if self._storage is None:
            self._storage = Storage(self.config.storage)
        try:
            return len(read_served_document(self._storage, self.config, doc_id).words)
        except (StorageError, OSError, ValueError) as exc:
            logger.warning("served document %s unreadable (%s); positions unchecked", doc_id, exc)
            return None

    def validate(
        self, events: Sequence[FeedbackEvent], *, batch: bool
    ) -> list[tuple[FeedbackEvent, StoredPrediction]]:
        """Check every event; raise ``FeedbackRejected`` with every problem found."""
        problems: list[Problem] = []
        clean: list[int] = []
        for index, event in enumerate(events):
            found = check_text(event)
            problems.extend(p.at(index) if batch else p for p in found)
            if not found:
                clean.append(index)
        keys = [(events[i].request_id, events[i].instance) for i in clean]
        predictions = self.predictions(keys)
        pairs: list[tuple[FeedbackEvent, StoredPrediction]] = []
        for index in clean:
            event = events[index]
            prediction = predictions.get((event.request_id, event.instance))
            words = None
            if prediction is not None and prediction.word_count is None:
                words = self.word_count(prediction.doc_id)
            found = validate_event(event, prediction, word_count=words)
            problems.extend(p.at(index) if batch else p for p in found)
            if not found and prediction is not None:
                pairs.append((event, prediction))
        if problems:
            problems.sort(key=lambda p: p.index if p.index is not None else -1)
            raise FeedbackRejected(problems, batch=batch)
        return pairs

    def store_events(
        self, pairs: Sequence[tuple[FeedbackEvent, StoredPrediction]], *, batch: bool
    ) -> list[tuple[FeedbackRecord, bool]]:
        """Store validated events; an idempotency conflict becomes a 409 ``FeedbackRejected``."""
        try:
            results = record_feedback_batch(self.store, pairs)
        except IdempotencyConflict as exc:
            problem = Problem(409, "idempotency_conflict", "idempotency_key", f"{exc}")
            raise FeedbackRejected(
                [problem.at(exc.index) if batch else problem], batch=batch
            ) from exc
        for record, created in results:
            EVENTS.labels(record.kind, "created" if created else "replayed").inc()
        return results

    def model_status(self, name: str) -> ModelStatus | None:
        """The status of a served and/or registered model name (None: the store knows neither)."""
        with self.store.read() as session:
            served_rows = session.execute(
                select(
                    Prediction.model_version,
                    func.count(),
                    func.min(Prediction.created_at),
                    func.max(Prediction.created_at),
                )
                .where(Prediction.model_name == name)
                .group_by(Prediction.model_version)
            ).all()
            feedback_rows = session.execute(
                select(
                    FeedbackRow.model_version, FeedbackRow.kind, FeedbackRow.status, func.count()
                )
                .where(FeedbackRow.model_name == name)
                .group_by(FeedbackRow.model_version, FeedbackRow.kind, FeedbackRow.status)
            ).all()
            registered = vs.list_versions(session, name)
            default = vs.default_version(session, name)
        if not served_rows and not feedback_rows and not registered:
            return None
        served: dict[str, ServedVersion] = {}
        for version, count, first, last in served_rows:
            served[version] = ServedVersion(
                version=version,
                predictions=count,
                feedback=0,
                confirmations=0,
                corrections=0,
                quarantined=0,
                first_prediction_at=first.isoformat() if first is not None else None,
                last_prediction_at=last.isoformat() if last is not None else None,
            )
        for version, kind, status, count in feedback_rows:
            entry = served.setdefault(
                version,
                ServedVersion(
                    version=version,
                    predictions=0,
                    feedback=0,
                    confirmations=0,
                    corrections=0,
                    quarantined=0,
                ),
            )
            entry.feedback += count
            if kind == "correction":
                entry.corrections += count
            else:
                entry.confirmations += count
            if status == "quarantined":
                entry.quarantined += count
        return ModelStatus(
            name=name,
            served=sorted(served.values(), key=lambda v: (v.first_prediction_at or "", v.version)),
            registered=[
                RegisteredVersion(
                    version=v.version,
                    status=v.status,
                    status_reason=v.status_reason,
                    run_id=v.run_id,
                    model_uri=v.model_uri,
                    dataset_digest=v.dataset_digest,
                    created_at=v.created_at.isoformat(),
                    updated_at=v.updated_at.isoformat(),
                )
                for v in registered
            ],
            default_version=default.version if default is not None else None,
        )

    def known_names(self, limit: int = 20) -> tuple[list[str], list[str]]:
        """Some served and registered model names (for a 404's message)."""
        with self.store.read() as session:
            served = session.scalars(
                select(Prediction.model_name)
                .distinct()
                .order_by(Prediction.model_name)
                .limit(limit)
            ).all()
            registered = session.scalars(
                select(ModelVersion.model_name)
                .distinct()
                .order_by(ModelVersion.model_name)
                .limit(limit)
            ).all()
        return list(served), list(registered)


API_DESCRIPTION: Final = """\
Reviewers' verdicts on the predictions of docloop's served models. A verdict names the
prediction it judges by the predictor's `request_id` and the document's position in that request
(`instance`), and either **confirms** the prediction or **corrects** it: the right document type
and/or the document's complete entity list, each entity given by the positions of its words in
the document (`word_indices`, 0-based, reading order, as in the prediction's entities).

Every verdict carries an `idempotency_key`: sending it again with the same body is safe (`200`,
the stored record), so clients retry freely; a key reused with another body is `409`.

Errors (`4xx`) store nothing and answer `{"error", "code", "field", "errors": [...]}`, where
`error` names the field at fault and how to fix it.
"""


def create_app(
    config: DocloopConfig, store: Store, *, worker_threads: int = DEFAULT_WORKER_THREADS
) -> FastAPI:
    """The feedback API over ``store`` (see the module docstring for the endpoints).

    Args:
        config: the configuration (``feedback`` limits, ``data_root`` for served documents).
        store: an open, migrated state store; the caller closes it.
        worker_threads: threads that run the handlers (set when the app starts). A handful
            keeps the database busy; dozens (anyio's default is 40) only fight over the GIL,
            the connection pool and, on SQLite, the single write lock.

    Returns:
        The FastAPI application (serve it with uvicorn, or test it with a TestClient).
    """
    service = _Service(config, store)
    limits = config.feedback

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="docloop feedback API",
        version=docloop.__version__,
        description=API_DESCRIPTION,
        openapi_tags=[
            {"name": "feedback", "description": "Reviewers' verdicts on predictions."},
            {"name": "models", "description": "What the store knows about a model."},
            {"name": "operations", "description": "Health and metrics."},
        ],
    )
    app.state.docloop = service
    app.add_middleware(PayloadLimit, max_bytes=limits.max_payload_kb * 1024)
    app.add_middleware(RequestTimer)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(FeedbackRejected, _rejected_handler)
    app.add_exception_handler(StoreError, _store_handler)

    @app.post(
        "/v1/feedback",
        tags=["feedback"],
        summary="Submit one verdict",
        status_code=201,
        response_model=FeedbackRecord,
        responses={
            201: {"description": "Stored now: the stored record."},
            200: {
                "model": FeedbackRecord,
                "description": "Stored before under this idempotency_key with the same body "
                "(a retry): the stored record.",
            },
            **ERROR_RESPONSES,
        },
        description="Store a reviewer's confirmation or correction of one predicted document. "
        f"Bodies over {limits.max_payload_kb} KiB are refused (413).",
    )
    def post_feedback(
        event: Annotated[FeedbackEvent, Body(openapi_examples=EVENT_EXAMPLES)],
        response: Response,
    ) -> FeedbackRecord:
        pairs = service.validate([event], batch=False)
        ((record, created),) = service.store_events(pairs, batch=False)
        response.status_code = 201 if created else 200
        return record

    @app.post(
        "/v1/feedback:batch",
        tags=["feedback"],
        summary="Submit many verdicts, all or nothing",
        status_code=201,
        response_model=BatchResult,
        responses={
            201: {"description": "At least one event was stored now."},
            200: {
                "model": BatchResult,
                "description": "Every event was stored before (a retried batch).",
            },
            **ERROR_RESPONSES,
        },
        description=f"A JSON array of 1 to {limits.max_batch} feedback events. Every event is "
        "validated first; if any is invalid, nothing is stored and `errors` lists each problem "
        "with the event's `index`. Otherwise all are stored in one transaction (events whose "
        "key was stored before with the same body count as `replayed`).",
    )
    def post_feedback_batch(
        events: Annotated[list[FeedbackEvent], Body()],
        response: Response,
    ) -> BatchResult:
        if not events:
            raise FeedbackRejected(
                [
                    Problem(
                        422,
                        "empty_batch",
                        "body",
                        f"body: the batch is empty; send 1 to {limits.max_batch} events",
                    )
                ]
            )
        if len(events) > limits.max_batch:
            raise FeedbackRejected(
                [
                    Problem(
                        413,
                        "batch_too_large",
                        "body",
                        f"body: {len(events)} events, over the limit of {limits.max_batch} per "
                        "batch (feedback.max_batch); split them into smaller batches",
                    )
                ]
            )
        pairs = service.validate(events, batch=True)
        results = service.store_events(pairs, batch=True)
        created = sum(1 for _, new in results if new)
        response.status_code = 201 if created else 200
        return BatchResult(
            created=created,
            replayed=len(results) - created,
            records=[record for record, _ in results],
        )

    @app.get(
        "/v1/models/{name}/status",
        tags=["models"],
        summary="Versions, predictions and feedback of a model",
        response_model=ModelStatus,
        responses={
            404: {"model": ErrorBody, "description": "The store knows no model by this name."},
            422: {"model": ErrorBody, "description": "The name is not a valid model name."},
            503: ERROR_RESPONSES[503],
        },
        description="For a served model name (`docloop serve --name`): each version seen in "
        "the prediction log with its counts of predictions, feedback, confirmations, "
        "corrections and quarantined feedback. For a registered model name (e.g. "
        "`docloop-classifier`): its versions with their statuses and the default version.",
    )
    def get_model_status(
        name: Annotated[
            str,
            Path(
                pattern=MODEL_NAME_PATTERN,
                description="A served model name or a registered model name.",
            ),
        ],
    ) -> ModelStatus:
        status = service.model_status(name)
        if status is None:
            served, registered = service.known_names()
            raise FeedbackRejected(
                [
                    Problem(
                        404,
                        "unknown_model",
                        "name",
                        f"name: no model {name!r} has logged predictions or registered versions; "
                        f"use a served name ({', '.join(served) or 'none yet'}) or a registered "
                        f"name ({', '.join(registered) or 'none yet'})",
                    )
                ]
            )
        return status

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness and store reachability",
        response_model=Health,
        responses={503: ERROR_RESPONSES[503]},
    )
    def healthz() -> Health:
        with store.read() as session:
            session.execute(text("SELECT 1"))
        return Health(store=store.dialect)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    )
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _configure_logging() -> None:
    """One-line logs for a long-running server, unless logging is already set up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )


def run_feedback_api(
    config: DocloopConfig,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    access_log: bool = False,
    worker_threads: int = DEFAULT_WORKER_THREADS,
) -> None:
    """Serve the feedback API with uvicorn until SIGTERM/SIGINT (blocks).

    Opens (and migrates) the store at ``store_url(config.store)``; one process, handlers in its
    thread pool.

    Args:
        config: the configuration.
        host: the interface to bind (``0.0.0.0`` in a pod, ``127.0.0.1`` locally).
        port: the TCP port.
        access_log: log every request (uvicorn's access log).
        worker_threads: threads that run the handlers (see :func:`create_app`).

    Raises:
        StoreError: the state store cannot be reached or migrated.
    """
    import uvicorn

    _configure_logging()
    store = open_store(store_url(config.store))
    try:
        app = create_app(config, store, worker_threads=worker_threads)
        logger.info("feedback API on http://%s:%d (store %s)", host, port, store.url)
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=access_log,
            timeout_graceful_shutdown=10,
        )
    finally:
        store.close()

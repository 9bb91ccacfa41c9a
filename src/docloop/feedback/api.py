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
    ``200`` when the state store answers, ``503`` otherwise (readiness).
``GET /livez``
    ``200`` while the process serves requests; never touches the store (liveness).
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
waits on the database. Error bodies, handlers and middlewares are in :mod:`docloop.feedback.http`;
the status queries in :mod:`docloop.feedback.records`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Final, Literal

import anyio.to_thread
from fastapi import Body, FastAPI, Path, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text

import docloop
from docloop.config import DocloopConfig, store_url
from docloop.documents.label_schema import schema_from_config
from docloop.errors import ConfigError, StorageError
from docloop.feedback.auth import Authenticator, Principal, RateLimiter
from docloop.feedback.contracts import FeedbackEvent, FeedbackRecord, read_served_document
from docloop.feedback.http import ERROR_RESPONSES, ErrorBody, install
from docloop.feedback.records import (
    IdempotencyConflict,
    ModelStatus,
    PredictionKey,
    StoredPrediction,
    find_predictions,
    known_model_names,
    model_status,
    record_feedback_batch,
)
from docloop.feedback.validation import (
    FeedbackRejected,
    Problem,
    check_shape,
    check_text,
    document_unreadable,
    validate_event,
    value_not_found,
)
from docloop.feedback.values import resolve_values
from docloop.storage import Storage
from docloop.store.db import Store, open_store

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8081
MODEL_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
WORD_COUNT_CACHE: Final = 4096
PREDICTION_CACHE: Final = 20_000
DEFAULT_WORKER_THREADS: Final = 8

EVENTS = Counter(
    "docloop_feedback_events",
    "Feedback events answered with success: created (stored now) or replayed (stored before).",
    ["kind", "outcome"],
)


# --- response bodies --------------------------------------------------------------------------
class BatchResult(BaseModel):
    """The answer to a stored batch."""

    created: int = Field(description="Events stored by this request.")
    replayed: int = Field(description="Events whose key was stored before with the same body.")
    records: list[FeedbackRecord] = Field(description="The stored records, in request order.")


class Health(BaseModel):
    """The service and its state store are up."""

    status: Literal["ok"] = "ok"
    store: str = Field(description="The store's database: sqlite or postgresql.")


EXAMPLE_REQUEST_ID: Final = "3f2b8c1e-9d4a-4e6b-8f0c-5a7d2e1b9c64"
"""The examples' request: a server request id, as the predictor draws them (a UUID)."""
EVENT_EXAMPLES: Final = {
    "confirmation": {
        "summary": "The prediction was right",
        "value": {
            "idempotency_key": f"rev-42:{EXAMPLE_REQUEST_ID}:0",
            "model_name": "docloop",
            "model_version": "v1",
            "request_id": EXAMPLE_REQUEST_ID,
            "instance": 0,
            "reviewer_id": "rev-42",
            "kind": "confirmation",
        },
    },
    "correction": {
        "summary": "The type and one entity were wrong",
        "value": {
            "idempotency_key": f"rev-42:{EXAMPLE_REQUEST_ID}:0:fix",
            "model_name": "docloop",
            "model_version": "v1",
            "request_id": EXAMPLE_REQUEST_ID,
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


# --- the app ----------------------------------------------------------------------------------
class _Service:
    """What the handlers share: config, store, a cache of served-document word counts."""

    def __init__(self, config: DocloopConfig, store: Store, authenticator: Authenticator) -> None:
        self.config = config
        self.store = store
        self.authenticator = authenticator
        self.rate = RateLimiter(store, config.feedback.auth.events_per_minute)
        self.schema = schema_from_config(config.label_schema)
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

    @property
    def storage(self) -> Storage:
        """The object store of served documents (made on first use)."""
        if self._storage is None:
            self._storage = Storage(self.config.storage)
        return self._storage

    def _word_count(self, doc_id: str) -> int | None:
        """Words of a served document, for predictions logged without ``ocr.words``."""
        try:
            return len(read_served_document(self.storage, self.config, doc_id).words)
        except (StorageError, OSError, ValueError) as exc:
            logger.warning("served document %s unreadable (%s); positions unchecked", doc_id, exc)
            return None

    def resolve_values(
        self, event: FeedbackEvent, prediction: StoredPrediction
    ) -> tuple[FeedbackEvent, list[Problem]]:
        """Give entities named by value their word positions in the served document."""
        entities = event.correction.entities if event.correction else None
        if not entities or all(e.word_indices is not None for e in entities):
            return event, []
        try:
            document = read_served_document(self.storage, self.config, prediction.doc_id)
        except (StorageError, OSError, ValueError) as exc:
            logger.warning("served document %s unreadable (%s)", prediction.doc_id, exc)
            by_value = [i for i, e in enumerate(entities) if e.word_indices is None]
            return event, [document_unreadable(i) for i in by_value]
        kinds = self.schema.kinds if self.schema is not None else {}
        rate = self.config.label_schema.max_char_error_rate
        resolved, missing = resolve_values(event, document, kinds, rate)
        return resolved, [value_not_found(i, str(entities[i].value), why) for i, why in missing]

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
            if prediction is not None and not check_shape(event):
                event, unresolved = self.resolve_values(event, prediction)
                if unresolved:
                    problems.extend(p.at(index) if batch else p for p in unresolved)
                    continue
            found = validate_event(event, prediction, word_count=words, declared=self.schema)
            problems.extend(p.at(index) if batch else p for p in found)
            if not found and prediction is not None:
                pairs.append((event, prediction))
        if problems:
            problems.sort(key=lambda p: p.index if p.index is not None else -1)
            raise FeedbackRejected(problems, batch=batch)
        return pairs

    def admit(self, principal: Principal, events: Sequence[FeedbackEvent], *, batch: bool) -> None:
        """May ``principal`` send these verdicts? Raise 403 / 413 / 429 ``FeedbackRejected``.

        An authenticated principal sends verdicts as itself (``reviewer_id`` is its name), within
        its batch limit and rate; without authentication (loopback only) everyone is trusted.
        """
        if not principal.authenticated:
            return
        if not principal.has_any(SENDERS):
            raise FeedbackRejected(
                [
                    Problem(
                        403,
                        "forbidden",
                        "authorization",
                        f"authorization: {principal.name!r} has the role(s) "
                        f"{', '.join(sorted(principal.roles))}, and only a reviewer, auditor "
                        "or admin sends verdicts",
                    )
                ]
            )
        problems = [
            Problem(
                403,
                "reviewer_not_caller",
                "reviewer_id",
                f"reviewer_id: {event.reviewer_id!r} is not the authenticated caller "
                f"{principal.name!r}; send your verdicts as reviewer_id {principal.name!r}",
                index if batch else None,
            )
            for index, event in enumerate(events)
            if event.reviewer_id != principal.name
        ]
        if problems:
            raise FeedbackRejected(problems, batch=batch)
        auth = self.config.feedback.auth
        # a batch over a whole minute's rate could never be taken: 413, not a 429 forever
        limit = min(auth.principal_max_batch, auth.events_per_minute)
        if len(events) > limit:
            raise FeedbackRejected(
                [
                    Problem(
                        413,
                        "batch_too_large",
                        "body",
                        f"body: {len(events)} events, over the limit of {limit} per batch for "
                        "one caller (feedback.auth.principal_max_batch, at most "
                        "feedback.auth.events_per_minute); send smaller batches",
                    )
                ]
            )
        wait = self.rate.take(principal.name, len(events))
        if wait:
            raise FeedbackRejected(
                [
                    Problem(
                        429,
                        "rate_limited",
                        "body",
                        f"body: {principal.name!r} is over its rate of "
                        f"{self.config.feedback.auth.events_per_minute} verdicts a minute "
                        "(feedback.auth.events_per_minute); retry after the Retry-After seconds",
                    )
                ],
                retry_after=wait,
            )

    def role_of(self, principal: Principal, event: FeedbackEvent) -> str:
        """The role a verdict is stored with (``auditor`` verdicts are audits)."""
        roles = (
            principal.roles
            if principal.authenticated
            else frozenset(self.config.feedback.auth.roles.get(event.reviewer_id, ["reviewer"]))
        )
        return next(
            (role for role in ("auditor", "admin", "reviewer") if role in roles), "reviewer"
        )

    def store_events(
        self,
        pairs: Sequence[tuple[FeedbackEvent, StoredPrediction]],
        principal: Principal,
        *,
        batch: bool,
    ) -> list[tuple[FeedbackRecord, bool]]:
        """Store validated events; an idempotency conflict becomes a 409 ``FeedbackRejected``."""
        roles = [self.role_of(principal, event) for event, _ in pairs]
        try:
            results = record_feedback_batch(self.store, pairs, roles=roles)
        except IdempotencyConflict as exc:
            problem = Problem(409, "idempotency_conflict", "idempotency_key", f"{exc}")
            raise FeedbackRejected(
                [problem.at(exc.index) if batch else problem], batch=batch
            ) from exc
        for record, created in results:
            EVENTS.labels(record.kind, "created" if created else "replayed").inc()
        return [(answered(record), created) for record, created in results]


SENDERS: Final = ("reviewer", "auditor", "admin")
STATUS_READERS: Final = ("auditor", "admin", "service")
METRICS_READERS: Final = ("admin", "service")


def answered(record: FeedbackRecord) -> FeedbackRecord:
    """A stored record as the API answers it: without what the model predicted.

    The caller names a prediction by its ids; echoing the predicted text would hand it to
    anyone who knows or guesses an id.
    """
    return record.model_copy(
        update={"predicted_doc_type": None, "predicted_probabilities": {}, "predicted_entities": []}
    )


def caller(request: Request) -> Principal:
    """The request's principal (set by the authentication middleware)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise RuntimeError("the feedback API runs without its authentication middleware")
    return principal


def require(request: Request, roles: Sequence[str], what: str) -> Principal:
    """The caller, if it holds one of ``roles``; else a 403 ``FeedbackRejected``."""
    principal = caller(request)
    if not principal.has_any(roles):
        raise FeedbackRejected(
            [
                Problem(
                    403,
                    "forbidden",
                    "authorization",
                    f"authorization: {what} needs the role {' or '.join(roles)}; "
                    f"{principal.name!r} has {', '.join(sorted(principal.roles))}",
                )
            ]
        )
    return principal


OPENAPI_TAGS: Final = [
    {"name": "feedback", "description": "Reviewers' verdicts on predictions."},
    {"name": "models", "description": "What the store knows about a model."},
    {"name": "operations", "description": "Health and metrics."},
]

API_DESCRIPTION: Final = """\
Reviewers' verdicts on the predictions of docloop's served models. A verdict names the
prediction it judges by the `request_id` and `instance` of the predictor's answer (the server's
id of the request and the document's position in it; not the client's `x-request-id`), and
either **confirms** the prediction or **corrects** it: the right document type and/or the
document's complete entity list, each entity given by the positions of its words in
the document (`word_indices`, 0-based, reading order, as in the prediction's entities) or by its
printed `value` alone: the API then finds the words in the served document and stores their
positions (`422 value_not_found`, with the closest text, when the document does not print it).

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

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="docloop feedback API",
        version=docloop.__version__,
        description=API_DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
    )
    authenticator = Authenticator(config.feedback.auth, store)
    service = app.state.docloop = _Service(config, store, authenticator)
    install(
        app,
        max_payload_bytes=config.feedback.max_payload_kb * 1024,
        authenticator=authenticator,
    )
    _feedback_routes(app, service)
    _model_routes(app, service)
    _operation_routes(app, service)
    return app


def _feedback_routes(app: FastAPI, service: _Service) -> None:
    """``POST /v1/feedback`` and ``POST /v1/feedback:batch``."""
    limits = service.config.feedback

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
        request: Request,
        response: Response,
    ) -> FeedbackRecord:
        principal = caller(request)
        service.admit(principal, [event], batch=False)
        pairs = service.validate([event], batch=False)
        ((record, created),) = service.store_events(pairs, principal, batch=False)
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
        request: Request,
        response: Response,
    ) -> BatchResult:
        principal = caller(request)
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
        service.admit(principal, events, batch=True)
        pairs = service.validate(events, batch=True)
        results = service.store_events(pairs, principal, batch=True)
        created = sum(1 for _, new in results if new)
        response.status_code = 201 if created else 200
        return BatchResult(
            created=created,
            replayed=len(results) - created,
            records=[record for record, _ in results],
        )


def _model_routes(app: FastAPI, service: _Service) -> None:
    """``GET /v1/models/{name}/status``."""

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
        request: Request,
    ) -> ModelStatus:
        require(request, STATUS_READERS, "the model status")
        status = model_status(service.store, name)
        if status is None:
            served, registered = known_model_names(service.store)
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


def _operation_routes(app: FastAPI, service: _Service) -> None:
    """``GET /healthz``, ``GET /livez`` and ``GET /metrics``."""

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness and store reachability",
        response_model=Health,
        responses={503: ERROR_RESPONSES[503]},
    )
    def healthz() -> Health:
        with service.store.read() as session:
            session.execute(text("SELECT 1"))
        return Health(store=service.store.dialect)

    @app.get("/livez", tags=["operations"], summary="Liveness: the process answers (no I/O)")
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    )
    def metrics(request: Request) -> Response:
        require(request, METRICS_READERS, "the metrics")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _configure_logging() -> None:
    """One-line logs for a long-running server, unless logging is already set up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_feedback_api(
    config: DocloopConfig,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    access_log: bool = False,
    worker_threads: int = DEFAULT_WORKER_THREADS,
    insecure: bool = False,
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
        insecure: serve a non-loopback address without authentication (everyone who can reach
            it may then post verdicts as anyone).

    Raises:
        ConfigError: no authentication (``feedback.auth.modes: [none]``) on a non-loopback
            ``host`` without ``insecure``.
        StoreError: the state store cannot be reached or migrated.
    """
    import uvicorn

    _configure_logging()
    if "none" in config.feedback.auth.modes:
        if not _loopback(host) and not insecure:
            raise ConfigError(
                f"the feedback API has no authentication (feedback.auth.modes: [none]) and "
                f"would serve {host}, where anyone who reaches it could post verdicts as any "
                "reviewer or auditor; configure feedback.auth (oidc, proxy or token), bind "
                "127.0.0.1, or pass --insecure to accept that"
            )
        logger.warning(
            "feedback API WITHOUT authentication (feedback.auth.modes: [none]): %s",
            "serving loopback only" if _loopback(host) else f"INSECURE on {host} (--insecure)",
        )
    else:
        logger.info("feedback API authentication: %s", ", ".join(config.feedback.auth.modes))
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

"""``docloop serve``: a KServe ``ModelServer`` with one ``DocloopModel``.

HTTP only (gRPC off), one uvicorn worker (the micro-batcher and the prediction log live in the
process, and one process keeps one copy of the weights). Endpoints, all from KServe on one port:
``POST /v1/models/<name>:predict``, ``POST /v2/models/<name>/infer``, ``GET /v1/models/<name>``,
``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/<name>/ready`` and
``GET /metrics`` (KServe's metrics and docloop's ``docloop_predictor_*``).

Binding: KServe 0.21 hard-codes the HTTP host to ``0.0.0.0`` (every interface), which is what a
pod needs: the kubelet's probes and the Knative/Istio sidecars reach the container on its pod IP.
Outside a cluster that also exposes the model to the whole network, so ``--host 127.0.0.1`` binds
loopback only; it is applied deliberately by ``_DocloopModelServer``, which sets the host on the
uvicorn config KServe builds, just before the server starts. The local deploy target and the tests
use it.

docloop also adds to KServe's FastAPI app, before it starts: a request-size cap (``payload: ...``
HTTP 400 before the body is read when Content-Length is too large, or as soon as a streamed body
goes over), strict JSON on the inference endpoints (HTTP 400 for a repeated key, invalid UTF-8,
``NaN``, deep nesting or an unknown field, by the feedback API's rules), HTTP 405 for another
method than POST there, HTTP 413 for a document over ``serve.max_words`` or over a preprocess
cap (pixels, pages, file size, inflated content), and a handler that turns request-schema errors
(a v2 body without ``inputs``, say) into HTTP 400 naming the field, where FastAPI would answer 422.

The prediction log (``--prediction-log``) is a directory (JSONL or Parquet files) or a SQLAlchemy
URL (``sqlite:///...``, ``postgresql+psycopg://...``: the state store's ``predictions`` table,
which the feedback API checks verdicts against). Either way, each served document is kept under
``<data_root>/served-documents/`` by the log's writer thread.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from docloop import strict_json
from docloop.asgi import ASGIApp, BodyTooLarge, Message, Receive, Scope, Send, read_body, replaying
from docloop.config import DocloopConfig, PreprocessConfig, load_config
from docloop.serve import metrics
from docloop.serve.batching import BatchingConfig
from docloop.serve.compat import InvalidInput, kserve, model_server
from docloop.serve.inputs import ServeLimits, TooLarge, check_v2_body
from docloop.serve.predictor import SERVE_DEFAULTS, DocloopModel, resolve_model_folders
from docloop.serve.runtime import Inference
from docloop.serve.sink import (
    BackgroundWriter,
    LogFormat,
    ServedDocuments,
    SqlSink,
    open_prediction_log,
)

logger = logging.getLogger(__name__)

DEFAULT_HOST = "0.0.0.0"  # KServe's own choice; see the module docstring
DEFAULT_PORT = 8080
DEFAULT_NAME = "docloop"


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``docloop serve`` takes.

    Attributes:
        models: model folders and/or bundle folders (see ``resolve_model_folders``).
        port: the HTTP port.
        host: the interface to bind (KServe's default ``0.0.0.0``; ``127.0.0.1`` for loopback).
        name: the model name in URLs.
        model_version: overrides the versions read from the model cards.
        batching: dynamic batching settings.
        limits: request caps.
        preprocess: render/OCR settings for files sent as ``document``.
        prediction_log: the prediction log: a directory (a ``Path`` is always one) or a
            SQLAlchemy URL of the state store (None: no log, and no served documents kept).
        prediction_log_format: ``jsonl`` or ``parquet`` (for a directory).
        device: ``auto`` (a CUDA GPU when present), ``cpu`` or ``cuda``.
        inference: how the networks run on the CPU (``fp32``, ``onnx``, ``onnx-int8``).
        bulk_words: documents with more words run in a lane of their own.
        config: the configuration whose ``data_root``/``storage`` keep the served documents
            (None: ``load_config()``, i.e. ``$DOCLOOP_CONFIG``, ``./docloop.yaml`` or defaults).
    """

    models: tuple[Path, ...]
    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    name: str = DEFAULT_NAME
    model_version: str | None = None
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    limits: ServeLimits = field(default_factory=ServeLimits)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    prediction_log: str | Path | None = None
    prediction_log_format: LogFormat = "jsonl"
    device: str = "auto"
    inference: Inference = SERVE_DEFAULTS.inference
    bulk_words: int = SERVE_DEFAULTS.bulk_words
    config: DocloopConfig | None = None


PREDICT_PATH = re.compile(r"^/v1/models/[^/]+:predict$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
"""The inference endpoints, whose bodies are read as strict JSON before KServe parses them."""
JSON_TYPES = ("", "application/json")


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` is HTTP 400 naming ``payload``.

    On the inference endpoints (:data:`PREDICT_PATH`) the body is also read whole (at most
    ``max_bytes`` and one chunk) and refused with HTTP 400 unless it is strict JSON
    (:func:`docloop.strict_json.loads`, as the feedback API reads its bodies) and, for v2, a
    request with only the protocol's fields (``check_v2_body``); another method than POST there
    is HTTP 405. KServe would keep the last of a repeated key, answer a generic message for
    invalid UTF-8 or deep nesting, and route ``GET .../docloop:predict`` as a model named
    ``docloop:predict`` (404).

    Args:
        app: the wrapped application.
        max_bytes: the largest request body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: int | None) -> str:
        got = f"{size} bytes" if size is not None else "more"
        return (
            f"payload: the request body is {got}, over the limit of {self.max_bytes} bytes "
            "(--max-request-mb); send fewer or smaller documents per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Reject oversized, non-strict or misdirected requests, pass the others through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        content_type = ""
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
            elif key == b"content-type":
                content_type = value.decode("latin-1").split(";")[0].strip().lower()
        if declared is not None and declared > self.max_bytes:
            await _answer(send, 400, self._message(declared))
            return
        path = str(scope.get("path", ""))
        if PREDICT_PATH.match(path):
            method = scope.get("method", "POST")
            if method != "POST":
                await _answer(
                    send, 405, f"method: {method} is not allowed on {path}; send a POST request"
                )
                return
            if content_type in JSON_TYPES:
                await self._strict(scope, receive, send, v2=path.endswith("/infer"))
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # raised inside the route: KServe's InvalidInput handler answers 400
                    raise InvalidInput(self._message(None))
            return message

        await self.app(scope, limited, send)

    async def _strict(self, scope: Scope, receive: Receive, send: Send, *, v2: bool) -> None:
        """Read the whole body, check it, and hand it on to the app."""
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            await _answer(send, 400, self._message(None))
            return
        if body is None:
            return  # the client went away before sending its body
        try:
            parsed = strict_json.loads(body)
            if v2:
                check_v2_body(parsed)
        except strict_json.StrictJsonError as exc:
            what = "an inference request" if v2 else '{"instances": [...]}'
            await _answer(send, 400, f"payload: {exc.what}; {exc.fix} ({what})")
            return
        except InvalidInput as exc:
            await _answer(send, 400, str(exc))
            return
        await self.app(scope, replaying(body, receive), send)


async def _answer(send: Send, status: int, error: str) -> None:
    """An error answer from the middleware, in KServe's error format (``{"error": ...}``)."""
    logger.info("invalid request (HTTP %d): %s", status, error)
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _location(loc: tuple[int | str, ...]) -> str:
    # FastAPI prefixes "body"; KServe's Union[InferenceRequest, bytes] body adds the union member.
    parts = [
        part
        for part in loc
        if part != "body" and not (isinstance(part, str) and part[:1].isupper())
    ]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "payload"


async def _request_validation_handler(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    if errors:
        first = errors[0]
        message = f"{_location(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid')}"
    else:
        message = f"payload: {exc}"
    logger.info("invalid request: %s", message)
    return JSONResponse(status_code=400, content={"error": message})


async def _too_large_handler(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("request too large (HTTP 413): %s", exc)
    return JSONResponse(status_code=413, content={"error": str(exc)})


class InvalidInputLogFilter(logging.Filter):
    """Log KServe's HTTP 400s as one WARNING line instead of an ERROR with a traceback.

    KServe's ``invalid_input_handler`` logs every ``InvalidInput`` with ``logger.error(...,
    exc_info=exc)``; a client's bad payload is not a server error, and rendering a traceback per
    bad request costs more than answering it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records that carry an ``InvalidInput``; keep everything else as is."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, InvalidInput):
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
            record.msg = "invalid request (HTTP 400): %s"
            record.args = (str(error),)
        return True


def configure_server_logging() -> None:
    """Plain one-line logs for a long-running server (container logs), at the CLI's level.

    KServe skips its own logging setup when the root logger has handlers, so its loggers,
    uvicorn's and docloop's all end up here. KServe's per-request timing lines (``kserve.trace``)
    are kept for ``--verbose`` only; Prometheus has the same figures.
    """
    root = logging.getLogger()
    level = root.level if root.level != logging.NOTSET else logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("kserve").addFilter(InvalidInputLogFilter())
    if level > logging.DEBUG:
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)


def install_app_extras(app: FastAPI, limits: ServeLimits) -> None:
    """Add the size cap and the 400-for-schema-errors handler to KServe's app (once)."""
    if getattr(app.state, "docloop_extras", False):
        return
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_request_bytes)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(TooLarge, _too_large_handler)
    app.state.docloop_extras = True


class _DocloopModelServer(kserve.ModelServer):  # type: ignore[misc]
    """KServe's ModelServer, binding ``host`` instead of the hard-coded ``0.0.0.0``."""

    def __init__(self, *, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_host = host

    async def _serve(self) -> None:
        # ModelServer.start() builds the RESTServer (and its uvicorn.Config) and only then runs
        # this coroutine; uvicorn reads config.host when it binds, inside serve().
        rest = getattr(self, "_rest_server", None)
        config = getattr(rest, "config", None)
        if config is not None:
            config.host = self.bind_host
        elif self.bind_host != DEFAULT_HOST:
            # Fail closed: never fall back to every interface when loopback was asked for.
            raise RuntimeError(
                f"cannot bind {self.bind_host}: this KServe version builds its HTTP server "
                "differently (docloop supports kserve 0.21); leave --host at its default"
            )
        logger.info("listening on http://%s:%s", self.bind_host, self.http_port)
        await super()._serve()


def build_model(options: ServeOptions) -> DocloopModel:
    """Resolve, construct and load the model (ready to register with a server).

    Raises:
        InvalidInput: the model paths are not usable (see ``resolve_model_folders``).
        StoreError: the prediction log is a database URL that cannot be opened.
    """
    writer: BackgroundWriter | None = None
    if options.prediction_log is not None:
        config = options.config if options.config is not None else load_config()
        writer = BackgroundWriter(
            open_prediction_log(options.prediction_log, options.prediction_log_format),
            on_drop=lambda count: metrics.PREDICTION_LOG_DROPPED.labels(options.name).inc(count),
            documents=ServedDocuments.from_config(config),
        )
    model = DocloopModel(
        options.name,
        resolve_model_folders(options.models),
        model_version=options.model_version,
        batching=options.batching,
        limits=options.limits,
        preprocess=options.preprocess,
        prediction_log=writer,
        device=options.device,
        inference=options.inference,
        bulk_words=options.bulk_words,
    )
    model.load()
    return model


def _describe_log(writer: BackgroundWriter | None) -> str:
    """Where the prediction log goes, for the startup line (a database password is masked)."""
    if writer is None:
        return "off"
    sink = writer.sink
    if isinstance(sink, SqlSink):
        return f"{sink.store.url} (predictions table)"
    directory = getattr(sink, "directory", None)
    return str(directory) if directory is not None else type(sink).__name__


def run_server(options: ServeOptions) -> None:
    """Load the model and serve it until SIGTERM/SIGINT (blocks).

    Raises:
        InvalidInput: the model paths are not usable.
        StoreError: the prediction log is a database URL that cannot be opened.
    """
    # KServe 0.21 answers with ORJSONResponse, which FastAPI >= 0.120 deprecates on every call.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    configure_server_logging()
    model = build_model(options)
    install_app_extras(model_server.app, options.limits)
    server = _DocloopModelServer(
        host=options.host,
        http_port=options.port,
        enable_grpc=False,
        workers=1,
        enable_latency_logging=False,
    )
    logger.info(
        "serving %r (version %s) on port %d; inference %s; batching %s; prediction log %s",
        model.name,
        model.model_version,
        options.port,
        options.inference,
        f"max {options.batching.max_batch_size} docs / {options.batching.max_wait_s * 1000:g} ms"
        if options.batching.enabled
        else "off",
        _describe_log(model.prediction_log),
    )
    try:
        server.start([model])
    finally:
        model.stop()

"""A fake KFP v2beta1 API server on 127.0.0.1 for contract tests (there is none on these machines).

It implements only the REST endpoints that the real ``kfp.Client`` 2.17.3 calls to upload pipelines
and versions, find or create experiments, and create / list / enable / disable / delete recurring
runs. Request bodies are parsed with the client's own generated models (``kfp_server_api``:
``V2beta1Experiment``, ``V2beta1RecurringRun``) and responses are those models serialised by
``kfp_server_api.ApiClient.sanitize_for_serialization``, so the JSON field names (``recurringRuns``,
``pipeline_versions``...) are the ones the client deserialises. State is kept in memory; every
request is recorded (method, path, query, headers, body) for tests to assert on.

Behaviour copied from the KFP backend: ``POST /pipelines/upload`` creates the pipeline *and* its
first version, named after the pipeline; pipeline names (per namespace) and version names (per
pipeline) are unique (HTTP 409); lists omit empty repeated fields and page with
``page_size`` / ``next_page_token``; ``filter`` is a JSON ``Filter`` whose ``EQUALS`` predicates on
``display_name`` / ``name`` are honoured (others: HTTP 400); ``max_concurrency`` is an int64 and so
a JSON string; disabling sets ``mode=DISABLE`` and ``status=DISABLED``.
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp_server_api
import yaml

API = "/apis/v2beta1"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_GRPC_CODES = {400: 3, 404: 5, 409: 6, 500: 13}


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def param(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def model(self, klass: str) -> Any:
        """The JSON body parsed into a ``kfp_server_api`` model, as the real server would."""
        return parse_model(self.body, klass)

    def upload(self) -> tuple[str, str, bytes]:
        """The multipart ``uploadfile`` part: (field name, file name, content)."""
        return _multipart_file(self.headers.get("content-type", ""), self.body)


class _Raw:
    def __init__(self, data: bytes | str) -> None:
        self.data = data


_API_CLIENT = kfp_server_api.ApiClient()


def parse_model(body: bytes | str | dict[str, Any], klass: str) -> Any:
    """Deserialise JSON into a ``kfp_server_api`` model with the client's own deserialiser."""
    data = json.dumps(body) if isinstance(body, dict) else body
    return _API_CLIENT.deserialize(_Raw(data), klass)


def to_json(model: Any) -> Any:
    """A model as the JSON the client expects (its attribute map, ISO timestamps)."""
    return _API_CLIENT.sanitize_for_serialization(model)


def _multipart_file(content_type: str, body: bytes) -> tuple[str, str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        if filename is not None:
            return str(name), str(filename), part.get_payload(decode=True) or b""
    raise ValueError("no file part in the multipart body")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FakeKFP:
    """The fake server; use as a context manager (``with FakeKFP() as kfp: kfp.url``)."""

    multi_user: bool = False
    requests: list[Recorded] = field(default_factory=list)
    pipelines: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, list[Any]] = field(default_factory=dict)
    experiments: dict[str, Any] = field(default_factory=dict)
    recurring_runs: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FakeKFP:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- test helpers ----------------------------------------------------------------------------

    def calls(self, method: str, path: str) -> list[Recorded]:
        """Recorded requests with this method whose path matches the regex ``path`` fully."""
        return [r for r in self.requests if r.method == method and re.fullmatch(path, r.path)]

    def fail_next(self, method: str, path: str, status: int) -> None:
        """Answer the next request matching (method, path regex) with HTTP ``status``."""
        self.failures.append((method, path, status))

    def forget_requests(self) -> None:
        self.requests.clear()

    # -- dispatch --------------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [
            ("GET", f"{API}/healthz", self._healthz),
            ("POST", f"{API}/pipelines/upload", self._upload),
            ("POST", f"{API}/pipelines/upload_version", self._upload_version),
            ("GET", f"{API}/pipelines", self._list_pipelines),
            ("GET", f"{API}/pipelines/(?P<pipeline_id>[^/:]+)", self._get_pipeline),
            ("GET", f"{API}/pipelines/(?P<pipeline_id>[^/:]+)/versions", self._list_versions),
            ("GET", f"{API}/experiments", self._list_experiments),
            ("POST", f"{API}/experiments", self._create_experiment),
            ("GET", f"{API}/experiments/(?P<experiment_id>[^/:]+)", self._get_experiment),
            ("POST", f"{API}/recurringruns", self._create_recurring_run),
            ("GET", f"{API}/recurringruns", self._list_recurring_runs),
            ("GET", f"{API}/recurringruns/(?P<run_id>[^/:]+)", self._get_recurring_run),
            ("DELETE", f"{API}/recurringruns/(?P<run_id>[^/:]+)", self._delete_recurring_run),
            ("POST", f"{API}/recurringruns/(?P<run_id>[^/:]+):enable", self._enable),
            ("POST", f"{API}/recurringruns/(?P<run_id>[^/:]+):disable", self._disable),
        ]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        recorded = Recorded(
            method=method,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={key.lower(): value for key, value in handler.headers.items()},
            body=handler.rfile.read(length) if length else b"",
        )
        status, payload = 200, {}
        with self._lock:
            self.requests.append(recorded)
            try:
                for index, (fail_method, fail_path, fail_status) in enumerate(self.failures):
                    if fail_method == method and re.fullmatch(fail_path, url.path):
                        del self.failures[index]
                        raise ApiError(fail_status, "injected failure")
                for route_method, pattern, action in self._routes():
                    match = re.fullmatch(pattern, url.path)
                    if route_method == method and match:
                        payload = action(recorded, **match.groupdict())
                        break
                else:
                    raise ApiError(404, f"the fake KFP API has no {method} {url.path}")
            except ApiError as exc:
                status = exc.status
                payload = {
                    "code": _GRPC_CODES.get(status, 2),
                    "message": exc.message,
                    "details": [],
                }
        recorded.status = status
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # -- pipelines -------------------------------------------------------------------------------

    def _healthz(self, request: Recorded) -> Any:
        return to_json(
            kfp_server_api.V2beta1GetHealthzResponse(
                multi_user=self.multi_user, pipeline_store="database"
            )
        )

    @staticmethod
    def _spec_of(content: bytes) -> Any:
        try:
            docs = [doc for doc in yaml.load_all(content, Loader=_LOADER) if doc is not None]
        except yaml.YAMLError as exc:
            raise ApiError(400, f"invalid pipeline spec: {exc}") from exc
        if not docs or not isinstance(docs[0], dict) or "pipelineInfo" not in docs[0]:
            raise ApiError(400, "invalid pipeline spec: no pipelineInfo")
        if len(docs) == 1:
            return docs[0]
        platform: dict[str, Any] = {}
        for doc in docs[1:]:
            platform.update(doc)
        return {"pipeline_spec": docs[0], "platform_spec": platform}

    def _new_version(
        self, pipeline: Any, name: str, display_name: str, description: str | None, content: bytes
    ) -> Any:
        if any(v.name == name for v in self.versions[pipeline.pipeline_id]):
            raise ApiError(409, f"pipeline version {name!r} already exists: AlreadyExists")
        version = kfp_server_api.V2beta1PipelineVersion(
            pipeline_id=pipeline.pipeline_id,
            pipeline_version_id=str(uuid.uuid4()),
            name=name,
            display_name=display_name,
            description=description,
            created_at=_now(),
            pipeline_spec=self._spec_of(content),
        )
        self.versions[pipeline.pipeline_id].append(version)
        return version

    def _upload(self, request: Recorded) -> Any:
        _, filename, content = request.upload()
        name = request.param("name") or filename.rsplit(".", 1)[0]
        display_name = request.param("display_name") or name
        namespace = request.param("namespace") or ""
        self._spec_of(content)
        if any(p.name == name and p.namespace == namespace for p in self.pipelines.values()):
            raise ApiError(
                409,
                "Failed to create a pipeline and a pipeline version. The pipeline already exists.",
            )
        pipeline = kfp_server_api.V2beta1Pipeline(
            pipeline_id=str(uuid.uuid4()),
            name=name,
            display_name=display_name,
            description=request.param("description"),
            created_at=_now(),
            namespace=namespace,
        )
        self.pipelines[pipeline.pipeline_id] = pipeline
        self.versions[pipeline.pipeline_id] = []
        self._new_version(pipeline, name, display_name, pipeline.description, content)
        return to_json(pipeline)

    def _upload_version(self, request: Recorded) -> Any:
        _, filename, content = request.upload()
        pipeline = self._pipeline(request.param("pipelineid") or "")
        name = request.param("name") or filename.rsplit(".", 1)[0]
        version = self._new_version(
            pipeline,
            name,
            request.param("display_name") or name,
            request.param("description"),
            content,
        )
        return to_json(version)

    def _pipeline(self, pipeline_id: str) -> Any:
        if pipeline_id not in self.pipelines:
            raise ApiError(404, f"pipeline {pipeline_id!r} not found")
        return self.pipelines[pipeline_id]

    def _get_pipeline(self, request: Recorded, pipeline_id: str) -> Any:
        return to_json(self._pipeline(pipeline_id))

    def _list_pipelines(self, request: Recorded) -> Any:
        namespace = request.param("namespace") or ""
        items = [p for p in self.pipelines.values() if p.namespace == namespace]
        return self._page(request, items, "pipelines", kfp_server_api.V2beta1ListPipelinesResponse)

    def _list_versions(self, request: Recorded, pipeline_id: str) -> Any:
        items = list(self.versions[self._pipeline(pipeline_id).pipeline_id])
        return self._page(
            request, items, "pipeline_versions", kfp_server_api.V2beta1ListPipelineVersionsResponse
        )

    # -- experiments -----------------------------------------------------------------------------

    def _list_experiments(self, request: Recorded) -> Any:
        items = list(self.experiments.values())
        return self._page(
            request, items, "experiments", kfp_server_api.V2beta1ListExperimentsResponse
        )

    def _create_experiment(self, request: Recorded) -> Any:
        experiment = request.model("V2beta1Experiment")
        if not experiment.display_name:
            raise ApiError(400, "experiment name is empty")
        if any(e.display_name == experiment.display_name for e in self.experiments.values()):
            raise ApiError(409, f"experiment {experiment.display_name!r} already exists")
        experiment.experiment_id = str(uuid.uuid4())
        experiment.created_at = _now()
        experiment.storage_state = "AVAILABLE"
        self.experiments[experiment.experiment_id] = experiment
        return to_json(experiment)

    def _get_experiment(self, request: Recorded, experiment_id: str) -> Any:
        if experiment_id not in self.experiments:
            raise ApiError(404, f"experiment {experiment_id!r} not found")
        return to_json(self.experiments[experiment_id])

    # -- recurring runs --------------------------------------------------------------------------

    def _create_recurring_run(self, request: Recorded) -> Any:
        run = request.model("V2beta1RecurringRun")
        if not run.display_name:
            raise ApiError(400, "recurring run name is empty")
        if run.experiment_id not in self.experiments:
            raise ApiError(404, f"experiment {run.experiment_id!r} not found")
        reference = run.pipeline_version_reference
        if reference is None or not any(
            v.pipeline_version_id == reference.pipeline_version_id
            for v in self.versions.get(reference.pipeline_id, [])
        ):
            raise ApiError(404, "pipeline version not found")
        if run.trigger is None or not (run.trigger.cron_schedule or run.trigger.periodic_schedule):
            raise ApiError(400, "a trigger is required")
        run.recurring_run_id = str(uuid.uuid4())
        run.created_at = run.updated_at = _now()
        run.status = "ENABLED" if run.mode == "ENABLE" else "DISABLED"
        run.namespace = self.experiments[run.experiment_id].namespace
        self.recurring_runs[run.recurring_run_id] = run
        return to_json(run)

    def _recurring_run(self, run_id: str) -> Any:
        if run_id not in self.recurring_runs:
            raise ApiError(404, f"recurring run {run_id!r} not found")
        return self.recurring_runs[run_id]

    def _list_recurring_runs(self, request: Recorded) -> Any:
        experiment_id = request.param("experiment_id")
        items = [
            r
            for r in self.recurring_runs.values()
            if experiment_id is None or r.experiment_id == experiment_id
        ]
        return self._page(
            request, items, "recurring_runs", kfp_server_api.V2beta1ListRecurringRunsResponse
        )

    def _get_recurring_run(self, request: Recorded, run_id: str) -> Any:
        return to_json(self._recurring_run(run_id))

    def _delete_recurring_run(self, request: Recorded, run_id: str) -> Any:
        self._recurring_run(run_id)
        del self.recurring_runs[run_id]
        return {}

    def _enable(self, request: Recorded, run_id: str) -> Any:
        run = self._recurring_run(run_id)
        run.mode, run.status, run.updated_at = "ENABLE", "ENABLED", _now()
        return {}

    def _disable(self, request: Recorded, run_id: str) -> Any:
        run = self._recurring_run(run_id)
        run.mode, run.status, run.updated_at = "DISABLE", "DISABLED", _now()
        return {}

    # -- lists -----------------------------------------------------------------------------------

    def _page(self, request: Recorded, items: list[Any], attr: str, response: Any) -> Any:
        items = [item for item in items if _matches(item, request.param("filter"))]
        size = int(request.param("page_size") or 20) or 20
        start = int(request.param("page_token") or 0)
        page = items[start : start + size]
        following = str(start + size) if start + size < len(items) else None
        result = to_json(response(**{attr: page or None}, total_size=len(items)))
        if following:
            result["next_page_token"] = following
        return {key: value for key, value in result.items() if value not in (None, [])}


def _matches(item: Any, filter_json: str | None) -> bool:
    if not filter_json:
        return True
    try:
        predicates = json.loads(filter_json).get("predicates") or []
    except (ValueError, AttributeError) as exc:
        raise ApiError(400, f"invalid filter: {exc}") from exc
    for predicate in predicates:
        operation = predicate.get("operation")
        key = predicate.get("key")
        value = predicate.get("stringValue", predicate.get("string_value"))
        if operation not in (1, "EQUALS") or key not in ("display_name", "name") or value is None:
            raise ApiError(400, f"the fake KFP API does not support the predicate {predicate}")
        if getattr(item, key, None) != value:
            return False
    return True


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)

"""A fake Kubernetes API server for KServe ``InferenceService`` objects, on 127.0.0.1.

There is no Kubernetes cluster on these machines. This module serves the real REST surface of
``serving.kserve.io/v1beta1`` ``inferenceservices`` over HTTP from a background thread of the test
process, so that the real ``kserve.KServeClient`` and ``kubernetes.client.CustomObjectsApi`` run
unmodified against it. A small in-process "controller" stands in for KServe and Knative and
writes ``status`` the way they document it. Start it with the :func:`kube_apiserver` fixture
(or ``with FakeKubeApiServer() as server:``) and build clients with
:meth:`FakeKubeApiServer.kserve_client`, :meth:`~FakeKubeApiServer.custom_objects_api` or
:meth:`~FakeKubeApiServer.api_client`.

REST surface (what ``CustomObjectsApi`` sends for group ``serving.kserve.io``, version ``v1beta1``,
plural ``inferenceservices``; ``{c}`` is ``/apis/serving.kserve.io/v1beta1/namespaces/{ns}/
inferenceservices``):

* ``POST {c}`` creates (201; 409 ``AlreadyExists``; 400 if ``metadata.resourceVersion`` is set
  or the body's namespace differs from the URL's). ``metadata.generateName`` is honoured.
* ``GET {c}`` lists (``InferenceServiceList`` with ``metadata.resourceVersion``);
  ``labelSelector`` (``k=v``, ``k!=v``, ``k``, ``!k``) and ``fieldSelector`` (``metadata.name``,
  ``metadata.namespace``) filter. ``GET /apis/serving.kserve.io/v1beta1/inferenceservices``
  lists all namespaces.
* ``GET {c}?watch=true`` (what ``KServeClient.create/get/patch/replace(..., watch=True)`` and
  ``wait_isvc_ready(watch=True)`` use via ``kubernetes.watch``) streams ``ADDED``/``MODIFIED``/
  ``DELETED`` events as chunked JSON lines until ``timeoutSeconds``; without ``resourceVersion`` (or
  with ``"0"``) it starts with synthetic ``ADDED`` events, with one it replays later events.
* ``GET {c}/{name}`` reads; 404 is a Kubernetes ``Status`` with reason ``NotFound``.
* ``PUT {c}/{name}`` replaces. Custom resources have no unconditional update: a missing
  ``metadata.resourceVersion`` is 422 ``Invalid``, a stale one 409 ``Conflict`` with the real
  message ("Operation cannot be fulfilled on inferenceservices.serving.kserve.io ...").
* ``PATCH {c}/{name}`` with ``application/merge-patch+json`` (RFC 7386: ``null`` removes a field)
  or ``application/json-patch+json`` (RFC 6902: add/remove/replace/move/copy/test). A patch that
  carries ``metadata.resourceVersion`` must match it (409 otherwise), as on a real server.
  ``application/strategic-merge-patch+json`` is 415, as for every custom resource.
* ``DELETE {c}/{name}`` deletes at once and answers a ``Status`` ``Success`` (KServe's finalizer and
  graceful deletion are not modelled).
* ``dryRun=All`` validates and answers without storing. ``/version``, ``/api``, ``/apis``,
  ``/apis/serving.kserve.io`` and ``/apis/serving.kserve.io/v1beta1`` answer discovery documents.
  Anything else is a 404 ``Status``. The ``status`` subresource is not served; ``status`` sent in a
  PUT or PATCH body is ignored, as the InferenceService CRD's status subresource does.

Object semantics (apiserver): ``metadata.uid`` and ``creationTimestamp`` are set on create;
``resourceVersion`` is one global counter (a string), bumped by every write that changes
something, including the controller's status writes; a write that changes nothing is a no-op and
keeps the ``resourceVersion``; ``generation`` starts at 1 and grows only when ``spec`` changes.
Validation answers 422 ``Invalid`` Status objects for: a missing ``spec.predictor``; a name that
is not a DNS-1035 label (KServe's rule); an unknown ``serving.kserve.io/deploymentMode``; a
change of deployment mode on update. Then the upstream rules, ported in
:mod:`docloop.deploy.admission` (the fake holds no rule of its own for them): the CRD's structural
schema from ``../shared/upstream/kserve`` (422 ``Invalid``; an unknown field is 400
``BadRequest`` "strict decoding error", as with ``fieldValidation=Strict``) and KServe's
validating webhook, ``inference_service_validation.go`` (403 ``Forbidden`` with the webhook's
message: a canary outside Standard mode, a canary on a multi-model stable predictor, a canary
without ``predictor.name``, a ``predictor.name`` change without a storage change, ...). A body whose
``apiVersion``/``kind`` is not ``serving.kserve.io/v1beta1``/``InferenceService`` is 400
``BadRequest``, as the real apiserver answers a kind or version mismatch. Not modelled: KServe's
mutating webhook (which adds defaults such as resources to the stored spec), ``managedFields``,
server-side apply, finalizers.

Rollout semantics (controller), from KServe's documentation and code:

* Every spec generation "rolls out": immediately within the write (one ``resourceVersion``), or
  after :meth:`FakeKubeApiServer.set_ready_delay` seconds as a separate status write (a new
  ``resourceVersion`` and a ``MODIFIED`` event), or never
  (:meth:`~FakeKubeApiServer.fail_readiness`).
  Until it has, ``status.observedGeneration`` stays at the last rolled-out generation and the
  ``Ready`` condition is ``"False"`` (reason ``RevisionMissing`` while waiting, ``RevisionFailed``
  after a failure in Knative mode; ``PredictorNotReady`` in Standard mode); once it has,
  ``observedGeneration == metadata.generation``, ``Ready``/``PredictorReady``/``IngressReady`` are
  ``"True"``, ``status.url`` is ``http://{name}.{ns}.example.com`` and ``status.address.url`` is
  ``http://{name}.{ns}.svc.cluster.local``. A generation written while an earlier one is still
  waiting supersedes it.
* Knative mode (annotation ``serving.kserve.io/deploymentMode`` ``Knative`` or its legacy name
  ``Serverless``; also the default of this fake, see ``default_deployment_mode``: KServe's own
  fallback when neither the annotation nor the cluster's ``inferenceservice-config`` says is
  ``Standard``, so real deploy code should set the annotation). Knative revisions are named
  ``{name}-predictor-00001``, ``-00002``, ...; a new one is created when the predictor's revision
  template changes, i.e. the predictor spec without ``canaryTrafficPercent``, which KServe puts
  in the Knative route and not the template (so promoting or rolling back creates no revision).
  ``status.components.predictor`` has ``latestCreatedRevision``, ``latestReadyRevision``,
  ``latestRolledoutRevision``, ``previousRolledoutRevision`` and ``traffic`` (Knative
  ``TrafficTarget`` objects: ``revisionName``, ``percent``, ``latestRevision``, ``tag``, ``url``).
  Traffic follows KServe's ksvc reconciler and ``PropagateStatus``, iterated to a fixed point:
  with ``canaryTrafficPercent: p`` and a rolled-out revision, ``p`` % goes to the latest ready
  revision (``latestRevision: true``) and ``100 - p`` % to ``latestRolledoutRevision`` (tag
  ``prev``); without the field (or with 100) the latest ready revision gets 100 % and becomes
  ``latestRolledoutRevision``, the one before it ``previousRolledoutRevision``; ``p = 0`` is a
  rollback: 100 % on the last good revision (and after a promotion KServe moves
  ``latestRolledoutRevision`` back to ``previousRolledoutRevision``). A revision that never
  becomes ready receives no traffic; the latest-revision target keeps pointing at the latest
  *ready* one. The ``latest`` tag is set only with annotation
  ``serving.kserve.io/enable-tag-routing: "true"``, as in KServe. Sources:
  https://kserve.github.io/website/docs/model-serving/predictive-inference/rollout-strategies/canary
  ("Canary Rollout Strategy", serverless only) and KServe's ``ksvc_reconciler.go`` /
  ``inference_service_status.go``.
* Knative's webhook refuses the Knative Service KServe builds from a predictor with a pod-level
  ``securityContext`` (``fieldmask.go`` ``PodSecurityContextMask``; the
  :attr:`FakeKubeApiServer.podspec_securitycontext` flag is off, as by default): the
  InferenceService is stored but that generation never becomes ready, and its ``Ready``
  condition carries Knative's message.
* ``GET /api/v1/namespaces/{ns}/configmaps/{name}`` serves the ConfigMaps set with
  :meth:`FakeKubeApiServer.set_configmap`; ``kserve/inferenceservice-config`` is there from the
  start with ``enableGatewayApi`` as the ``gateway_api`` argument says (false, upstream's
  default); :meth:`~FakeKubeApiServer.forbid_configmaps` answers 403 instead.
* Standard mode (``Standard`` or legacy ``RawDeployment``): no Knative revisions;
  ``spec.canary`` is a list of ``{predictor, trafficPercent}`` (kserve 0.21 ``V1beta1CanarySpec``:
  each ``predictor.name`` names a variant, the sum of ``trafficPercent`` must be <= 100, 0 is a
  dark launch); after rollout ``status.canaryStatuses`` lists ``{name, ready, trafficPercent}``
  (``V1beta1CanaryStatus``) and the main predictor serves the remainder — with Gateway API on
  (:attr:`FakeKubeApiServer.gateway_api`); without it the weights are never applied and the main
  predictor serves everything. ``canaryTrafficPercent``
  has no effect in Standard mode (KServe: canary rollout is serverless-only).

Test hooks are Python methods, not HTTP: :meth:`~FakeKubeApiServer.objects`,
:meth:`~FakeKubeApiServer.get`, :meth:`~FakeKubeApiServer.revisions`,
:meth:`~FakeKubeApiServer.revision_spec`, :meth:`~FakeKubeApiServer.traffic_by_revision`,
:meth:`~FakeKubeApiServer.traffic_by_storage_uri`, :meth:`~FakeKubeApiServer.fail_readiness`,
:meth:`~FakeKubeApiServer.set_ready_delay`, :meth:`~FakeKubeApiServer.conflict_next_write`,
:attr:`~FakeKubeApiServer.requests`.

Client notes (kubernetes 30.1.0, kserve 0.21.0): ``KServeClient(client_configuration=cfg)`` does
not work without a kubeconfig: outside a pod the constructor always loads a kubeconfig, and its
API objects use the process-wide default ``Configuration``, never ``cfg``. The working way is
``KServeClient(config_dict=kubeconfig)``, which installs that kubeconfig as the process default
(:meth:`FakeKubeApiServer.kserve_client` does it and restores the previous default on stop).
``KServeClient`` turns every ``ApiException`` into ``RuntimeError`` (the original is the
exception's ``__context__``). ``CustomObjectsApi.patch_namespaced_custom_object`` always sends
``application/merge-patch+json``; the client drops ``None`` attributes of SDK model objects but
keeps ``None`` values inside plain dicts, so only a dict patch can remove a field.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from docloop.deploy.admission import Refusal, admission_refusal, knative_denial, upstream_dir

needs_upstream = pytest.mark.skipif(
    upstream_dir() is None,
    reason="the fake applies KServe's CRDs, which are not here: ../shared/upstream/kserve beside "
    "the repository (or DOCLOOP_UPSTREAM_DIR) is missing",
)
"""Mark for tests that use this fake: it needs the upstream CRDs to answer as a cluster does."""

if TYPE_CHECKING:
    from kserve import KServeClient

JSON = dict[str, Any]

HOST = "127.0.0.1"
GROUP = "serving.kserve.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
RESOURCE = f"{PLURAL}.{GROUP}"  # how Kubernetes names the resource in messages

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
KNATIVE = "Knative"
STANDARD = "Standard"
# KServe's accepted annotation values; the legacy names are normalised (constants.go).
DEPLOYMENT_MODES = {
    "Knative": KNATIVE,
    "Serverless": KNATIVE,
    "Standard": STANDARD,
    "RawDeployment": STANDARD,
}
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
FAKE_KUBE_VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "platform": "fake"}

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_COLLECTION = re.compile(rf"^/apis/{re.escape(GROUP)}/{VERSION}/namespaces/([^/]+)/{PLURAL}/?$")
_ITEM = re.compile(rf"^/apis/{re.escape(GROUP)}/{VERSION}/namespaces/([^/]+)/{PLURAL}/([^/]+)$")
_CONFIGMAP = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps/([^/]+)$")
_ALL_NAMESPACES = re.compile(rf"^/apis/{re.escape(GROUP)}/{VERSION}/{PLURAL}/?$")
_UNSET: Any = object()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _drop_none(value: Any) -> Any:
    """A copy of ``value`` without ``None`` entries in dicts (Go's ``omitempty``)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


class KubeApiError(Exception):
    """A failure answered as a Kubernetes ``Status`` object.

    Attributes:
        code: HTTP status code.
        reason: Kubernetes ``StatusReason`` (``NotFound``, ``Conflict``, ``Invalid``, ...).
        message: Human-readable message, worded like the real apiserver's.
        details: ``Status.details`` (name, group, kind, causes), if any.
    """

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        """The Kubernetes ``Status`` object for this error."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(name: str) -> JSON:
    return {"name": name, "group": GROUP, "kind": PLURAL}


def not_found(name: str) -> KubeApiError:
    """404 ``NotFound`` for an InferenceService."""
    return KubeApiError(404, "NotFound", f'{RESOURCE} "{name}" not found', _details(name))


def already_exists(name: str) -> KubeApiError:
    """409 ``AlreadyExists`` for an InferenceService."""
    return KubeApiError(409, "AlreadyExists", f'{RESOURCE} "{name}" already exists', _details(name))


def conflict(name: str) -> KubeApiError:
    """409 ``Conflict``: the optimistic-concurrency failure of a stale ``resourceVersion``."""
    message = (
        f'Operation cannot be fulfilled on {RESOURCE} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return KubeApiError(409, "Conflict", message, _details(name))


def invalid(name: str, causes: list[tuple[str, str, str]]) -> KubeApiError:
    """422 ``Invalid`` with ``(field, reason, message)`` causes, worded like the apiserver."""
    text = ", ".join(f"{f}: {m}" for f, _, m in causes)
    details = {
        "name": name,
        "group": GROUP,
        "kind": KIND,
        "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes],
    }
    return KubeApiError(422, "Invalid", f'{KIND}.{GROUP} "{name}" is invalid: {text}', details)


def refused(name: str, refusal: Refusal) -> KubeApiError:
    """The API server's answer for a refusal of :mod:`docloop.deploy.admission`."""
    details: JSON | None = None
    if refusal.causes:
        details = {
            "name": name,
            "group": GROUP,
            "kind": KIND,
            "causes": [{"reason": r, "message": m, "field": f} for f, r, m in refusal.causes],
        }
    return KubeApiError(refusal.code, refusal.reason, refusal.message, details)


def bad_request(message: str) -> KubeApiError:
    """400 ``BadRequest``."""
    return KubeApiError(400, "BadRequest", message)


# --- RFC 7386 / RFC 6902 ------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: objects merge recursively, ``null`` removes a key.

    Args:
        target: The document to patch (not modified).
        patch: The merge patch.

    Returns:
        The patched document.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise ValueError(f"invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (not adding and index == len(container)):
        raise ValueError(f"array index {index} out of range")
    return index


def _walk(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise ValueError(f"missing path element {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, adding=False)]
        else:
            raise ValueError(f"cannot descend into {type(node).__name__} at {token!r}")
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, adding=True), value)
    else:
        raise ValueError(f"cannot add to {type(parent).__name__}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise ValueError("cannot remove the whole document")
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ValueError(f"missing path element {last!r}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, adding=False))
    raise ValueError(f"cannot remove from {type(parent).__name__}")


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch.

    Args:
        doc: The document to patch (not modified).
        operations: The list of operations.

    Returns:
        The patched document.

    Raises:
        ValueError: An operation is malformed, a path is missing, or a ``test`` fails.
    """
    if not isinstance(operations, list):
        raise ValueError("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise ValueError(f"malformed operation {operation!r}")
        op, tokens = operation["op"], _pointer(operation["path"])
        if op == "add":
            result = _add(result, tokens, copy.deepcopy(operation["value"]))
        elif op == "remove":
            result, _ = _remove(result, tokens)
        elif op == "replace":
            _walk(result, tokens)  # must exist
            if tokens:
                result, _ = _remove(result, tokens)
            result = _add(result, tokens, copy.deepcopy(operation["value"]))
        elif op == "move":
            result, value = _remove(result, _pointer(operation["from"]))
            result = _add(result, tokens, value)
        elif op == "copy":
            value = copy.deepcopy(_walk(result, _pointer(operation["from"])))
            result = _add(result, tokens, value)
        elif op == "test":
            if _walk(result, tokens) != operation.get("value"):
                raise ValueError(f"testing value {operation['path']} failed")
        else:
            raise ValueError(f"unknown operation {op!r}")
    return result


# --- the stored state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake answered.

    Attributes:
        method: HTTP method.
        path: URL path, without the query.
        body: The JSON body, decoded (``None`` if there was none).
        query: Query parameters (each a list of values).
        content_type: The request's ``Content-Type`` header, if any.
        status: The HTTP status code answered.
    """

    method: str
    path: str
    body: Any
    query: dict[str, list[str]]
    content_type: str | None
    status: int


@dataclass
class _Revision:
    """A Knative revision: the predictor spec it was created from, and whether it became ready."""

    name: str
    generation: int
    predictor: JSON
    template: JSON
    ready: bool = False
    doomed: bool = False  # never becomes ready (fail_readiness)


@dataclass
class _Pending:
    generation: int
    due: float
    fail: bool


@dataclass
class _Record:
    """An InferenceService as stored, plus the controller's view of it."""

    obj: JSON
    mode: str
    revisions: list[_Revision] = field(default_factory=list)
    latest_ready: str | None = None
    latest_rolledout: str | None = None
    previous_rolledout: str | None = None
    traffic: list[JSON] = field(default_factory=list)
    rolled_out_generation: int = 0
    rolled_out_spec: JSON | None = None
    phase: str = "pending"  # "pending" | "ready" | "failed" (of the newest generation)
    refused: str | None = None  # Knative's webhook refused the revision KServe built from it
    pending: _Pending | None = None
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"]["generation"])


def _template(predictor: JSON) -> JSON:
    """The Knative revision template of a predictor: all but the route's traffic percent."""
    return {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}


def _storage_uri(predictor: JSON) -> str | None:
    """The ``storageUri`` a predictor serves (``model.storageUri`` or a framework's)."""
    model = predictor.get("model")
    if isinstance(model, dict) and model.get("storageUri"):
        return str(model["storageUri"])
    if predictor.get("storageUri"):
        return str(predictor["storageUri"])
    uris = predictor.get("storageUris")  # KServe's multi-model form: the first mount names it
    if isinstance(uris, list) and uris and isinstance(uris[0], dict) and uris[0].get("uri"):
        return str(uris[0]["uri"])
    for value in predictor.values():
        if isinstance(value, dict) and value.get("storageUri"):
            return str(value["storageUri"])
    return None


def _knative_route(record: _Record, percent: int | None, tag_latest: bool) -> list[JSON]:
    """KServe's ksvc traffic targets, resolved by Knative against the latest ready revision."""
    latest = record.latest_ready
    targets: list[JSON] = []
    if latest is None:
        return targets
    name, ns = record.name, record.namespace

    def target(revision: str, pct: int, latest_revision: bool, tag: str | None) -> JSON:
        entry: JSON = {"revisionName": revision, "percent": pct, "latestRevision": latest_revision}
        if tag:
            entry["tag"] = tag
            entry["url"] = f"http://{tag}-{name}-predictor.{ns}.example.com"
        return entry

    latest_tag = "latest" if tag_latest else None
    if percent is not None and record.latest_rolledout:
        targets.append(target(latest, percent, True, latest_tag))
        if percent < 100:
            targets.append(target(record.latest_rolledout, 100 - percent, False, "prev"))
    else:
        targets.append(target(latest, 100, True, latest_tag))
    return targets


def _propagate(record: _Record, traffic: list[JSON]) -> None:
    """KServe's ``PropagateStatus``: track the rolled-out revisions from the route's traffic."""
    latest_created = record.revisions[-1].name if record.revisions else None
    per_revision: dict[str, int] = {}
    for target in traffic:
        per_revision[target["revisionName"]] = (
            per_revision.get(target["revisionName"], 0) + target["percent"]
        )
    for target in traffic:
        if target["revisionName"] != record.latest_ready or not target["latestRevision"]:
            continue
        if record.latest_rolledout != record.latest_ready:
            if target["percent"] == 100:
                record.previous_rolledout = record.latest_rolledout
                record.latest_rolledout = record.latest_ready
        elif (
            record.latest_ready == latest_created
            and target["percent"] < 100
            and per_revision.get(target["revisionName"]) == 100
            and record.previous_rolledout
        ):
            # rolled out at 100 % and then rolled back: back to the previous rolled-out one
            record.latest_rolledout = record.previous_rolledout
    record.traffic = traffic


class FakeKubeApiServer:
    """The fake apiserver: HTTP on 127.0.0.1 (port chosen by the OS) plus test hooks.

    Use as a context manager or call :meth:`start` / :meth:`stop`. All hooks are thread-safe.

    Args:
        default_deployment_mode: Mode of objects without the ``serving.kserve.io/deploymentMode``
            annotation (what the cluster's ``inferenceservice-config`` would say): ``"Knative"``
            (alias ``"Serverless"``) or ``"Standard"`` (alias ``"RawDeployment"``).
        ready_delay: Initial value of :meth:`set_ready_delay`.
        gateway_api: ``enableGatewayApi`` in the ``ingress`` entry of the
            ``kserve/inferenceservice-config`` ConfigMap the fake serves (upstream's default,
            ``config/configmap/inferenceservice.yaml``, is false). Standard-mode canaries get
            traffic only with it.
    """

    def __init__(
        self,
        default_deployment_mode: str = KNATIVE,
        ready_delay: float = 0.0,
        *,
        gateway_api: bool = False,
    ) -> None:
        if default_deployment_mode not in DEPLOYMENT_MODES:
            raise ValueError(f"unknown deployment mode {default_deployment_mode!r}")
        self.default_deployment_mode = DEPLOYMENT_MODES[default_deployment_mode]
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._records: dict[tuple[str, str], _Record] = {}
        self._resource_version = 0
        self._events: list[tuple[int, str, JSON]] = []
        self._requests: list[RecordedRequest] = []
        self._ready_delay = float(ready_delay)
        self._conflicts = 0
        self._failing: dict[tuple[str, str], set[int]] = {}
        self._timers: list[threading.Timer] = []
        self._stopping = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._saved_default: Any = _UNSET
        self._configmaps: dict[tuple[str, str], JSON] = {}
        self._forbidden_configmaps = False
        self.podspec_securitycontext = False  # Knative's kubernetes.podspec-securitycontext
        self.gateway_api = gateway_api
        self.set_configmap(
            "kserve",
            "inferenceservice-config",
            {"ingress": json.dumps({"enableGatewayApi": gateway_api, "ingressClassName": "istio"})},
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeKubeApiServer:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread.

        Returns:
            This server.
        """
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((HOST, 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # stop() waits for one poll
            name="fake-kube-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open watches and restore the default ``Configuration`` if changed."""
        with self._lock:
            self._stopping = True
            for timer in self._timers:
                timer.cancel()
            self._changed.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._saved_default is not _UNSET:
            k8s.Configuration.set_default(self._saved_default)
            self._saved_default = _UNSET

    def __enter__(self) -> FakeKubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the apiserver's base URL."""
        if self._httpd is None:
            raise RuntimeError("the fake apiserver is not running")
        return f"http://{HOST}:{self._httpd.server_address[1]}"

    # --- clients --------------------------------------------------------------------------------

    def configuration(self) -> k8s.Configuration:
        """A ``kubernetes.client.Configuration`` for this server: no auth, no TLS, no proxy."""
        cfg = k8s.Configuration(host=self.url)
        cfg.verify_ssl = False
        cfg.proxy = None
        return cfg

    def api_client(self) -> k8s.ApiClient:
        """A ``kubernetes.client.ApiClient`` bound to :meth:`configuration`."""
        return k8s.ApiClient(self.configuration())

    def custom_objects_api(self) -> k8s.CustomObjectsApi:
        """A ``CustomObjectsApi`` bound to this server (the process default is not touched)."""
        return k8s.CustomObjectsApi(self.api_client())

    def kubeconfig(self, namespace: str = "default") -> JSON:
        """A kubeconfig (as a dict) whose current context points at this server without auth."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }

    def kserve_client(self) -> KServeClient:
        """A real ``kserve.KServeClient`` talking to this server.

        Built as ``KServeClient(config_dict=self.kubeconfig())``: that is the one constructor path
        that works without a kubeconfig file (``client_configuration=`` alone still loads
        ``~/.kube/config`` and is then ignored). It installs this server as the process-wide
        default ``kubernetes.client.Configuration``, which ``KServeClient``'s ``watch=True`` paths
        need (they build ``CustomObjectsApi()`` themselves); :meth:`stop` restores the previous
        default.

        Returns:
            The client.
        """
        from kserve import KServeClient

        self.use_as_default()
        return KServeClient(config_dict=self.kubeconfig())

    def use_as_default(self) -> None:
        """Make this server the process-wide default ``Configuration`` until :meth:`stop`."""
        if self._saved_default is _UNSET:
            # Configuration has no public getter that tells "unset" from a default; read it.
            self._saved_default = copy.deepcopy(k8s.Configuration._default)
        k8s.Configuration.set_default(self.configuration())

    # --- test hooks -----------------------------------------------------------------------------

    def objects(self) -> list[JSON]:
        """Every stored InferenceService, as the apiserver would return it (copies)."""
        with self._lock:
            self._apply_due()
            return [copy.deepcopy(r.obj) for r in self._records.values()]

    def get(self, namespace: str, name: str) -> JSON | None:
        """The stored InferenceService ``namespace/name`` (a copy), or ``None``."""
        with self._lock:
            self._apply_due()
            record = self._records.get((namespace, name))
            return copy.deepcopy(record.obj) if record else None

    def revisions(self, namespace: str, name: str) -> list[str]:
        """Names of the Knative revisions of ``namespace/name``, oldest first."""
        with self._lock:
            return [r.name for r in self._record(namespace, name).revisions]

    def revision_spec(self, namespace: str, name: str, revision: str) -> JSON:
        """The predictor spec Knative revision ``revision`` was created from (a copy).

        Raises:
            KeyError: No such object or revision.
        """
        with self._lock:
            for candidate in self._record(namespace, name).revisions:
                if candidate.name == revision:
                    return copy.deepcopy(candidate.predictor)
        raise KeyError(revision)

    def traffic_by_revision(self, namespace: str, name: str) -> dict[str, int]:
        """Percent of traffic per Knative revision (summed over targets; 0 % left out)."""
        with self._lock:
            self._apply_due()
            totals: dict[str, int] = {}
            for target in self._record(namespace, name).traffic:
                rev = target["revisionName"]
                totals[rev] = totals.get(rev, 0) + int(target["percent"])
            return {rev: pct for rev, pct in totals.items() if pct > 0}

    def traffic_by_storage_uri(self, namespace: str, name: str) -> dict[str, int]:
        """Percent of traffic per served ``storageUri`` (0 % left out), in either mode.

        Knative mode maps the traffic of each revision to the storage URI of the predictor spec it
        was created from; Standard mode gives the rolled-out canaries their ``trafficPercent`` and
        the main predictor the rest.
        """
        with self._lock:
            self._apply_due()
            record = self._record(namespace, name)
            totals: dict[str, int] = {}

            def add(uri: str | None, pct: int) -> None:
                key = uri or ""
                totals[key] = totals.get(key, 0) + pct

            if record.mode == KNATIVE:
                for rev, pct in self.traffic_by_revision(namespace, name).items():
                    add(_storage_uri(self.revision_spec(namespace, name, rev)), pct)
            elif record.rolled_out_spec is not None:
                spec = record.rolled_out_spec
                # KServe's HTTPRoute reconciler applies the weights; without Gateway API the
                # Service selects the stable predictor only
                canaries = (spec.get("canary") or []) if self.gateway_api else []
                rest = 100 - sum(int(c.get("trafficPercent", 0)) for c in canaries)
                add(_storage_uri(spec["predictor"]), rest)
                for canary in canaries:
                    add(_storage_uri(canary["predictor"]), int(canary.get("trafficPercent", 0)))
            return {uri: pct for uri, pct in totals.items() if pct > 0}

    def fail_readiness(self, namespace: str, name: str, generation: int | None = None) -> None:
        """Make a rollout of ``namespace/name`` never become ready.

        Its Knative revision (if it creates one) never becomes ready, ``Ready`` stays ``"False"``
        and ``observedGeneration`` behind; traffic stays where it was. A failed revision stays
        failed, as in Knative: a later generation that only changes ``canaryTrafficPercent``
        keeps it as the latest revision and fails too; a predictor change creates a new one.

        Args:
            namespace: Namespace of the object (it need not exist yet).
            name: Name of the object.
            generation: The ``metadata.generation`` that fails; ``None`` means the next one
                written (1 if the object does not exist yet). A generation still waiting on the
                ready delay may be named too.

        Raises:
            ValueError: ``generation`` has already rolled out.
        """
        with self._lock:
            self._apply_due()
            record = self._records.get((namespace, name))
            if generation is None:
                generation = record.generation + 1 if record else 1
            if record is not None:
                if generation <= record.rolled_out_generation:
                    raise ValueError(f"generation {generation} of {name} has already rolled out")
                if record.pending and record.pending.generation == generation:
                    record.pending.fail = True
                    if record.revisions and record.revisions[-1].generation == generation:
                        record.revisions[-1].doomed = True
            self._failing.setdefault((namespace, name), set()).add(generation)

    def set_ready_delay(self, seconds: float) -> None:
        """Let rollouts of later writes become ready ``seconds`` after the write (0: at once)."""
        with self._lock:
            self._ready_delay = max(0.0, float(seconds))

    def conflict_next_write(self, n: int = 1) -> None:
        """Answer the next ``n`` PUT/PATCH requests to existing objects with 409 ``Conflict``.

        As if another writer had just updated the object: its ``resourceVersion`` is really bumped
        (with a ``MODIFIED`` event), so re-reading and retrying succeeds. A real server answers
        409 to a PATCH only when it carries ``metadata.resourceVersion``; this hook forces it for
        any PATCH, to exercise retry paths.
        """
        with self._lock:
            self._conflicts += n

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered so far, oldest first (a copy of the log)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._requests.clear()

    # --- internals: storage ---------------------------------------------------------------------

    def _record(self, namespace: str, name: str) -> _Record:
        record = self._records.get((namespace, name))
        if record is None:
            raise KeyError(f"{namespace}/{name}")
        return record

    def _bump(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _emit(self, kind: str, obj: JSON) -> None:
        self._events.append((self._resource_version, kind, copy.deepcopy(obj)))
        self._changed.notify_all()

    def _mode_of(self, obj: JSON) -> str | None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        value = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
        if value is None:
            return self.default_deployment_mode
        return DEPLOYMENT_MODES.get(value)

    def _validate(self, obj: Any, name: str, old: JSON | None = None) -> str:
        """Check an incoming object; return its deployment mode.

        After this fake's own apiserver checks, the object goes through
        :func:`docloop.deploy.admission.admission_refusal`: the upstream CRD's structural schema
        (unknown fields refused as with ``fieldValidation=Strict``) and KServe's validating
        webhook (``inference_service_validation.go``: ``ValidateCreate`` / ``ValidateUpdate``),
        answered as the real server answers them.
        """
        if not isinstance(obj, dict):
            raise bad_request("the request body must be a JSON object")
        if obj.get("apiVersion") != API_VERSION:
            raise bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({API_VERSION})"
            )
        if obj.get("kind") != KIND:
            raise bad_request(
                f"the kind in the data ({obj.get('kind')}) does not match the expected kind "
                f"({KIND})"
            )
        causes: list[tuple[str, str, str]] = []
        if not _DNS1035.match(name) or len(name) > 63:
            causes.append(
                (
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": a DNS-1035 label must consist of lower case '
                    "alphanumeric characters or '-', start with an alphabetic character, and end "
                    "with an alphanumeric character",
                )
            )
        mode = self._mode_of(obj)
        if mode is None:
            value = obj["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION]
            causes.append(
                (
                    f"metadata.annotations[{DEPLOYMENT_MODE_ANNOTATION}]",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{value}": supported values: "Knative", "Serverless", '
                    '"Standard", "RawDeployment"',
                )
            )
        spec = obj.get("spec")
        predictor = spec.get("predictor") if isinstance(spec, dict) else None
        if not isinstance(predictor, dict):
            causes.append(("spec.predictor", "FieldValueRequired", "Required value"))
        else:
            percent = predictor.get("canaryTrafficPercent")
            if percent is not None and (not isinstance(percent, int) or not 0 <= percent <= 100):
                causes.append(
                    (
                        "spec.predictor.canaryTrafficPercent",
                        "FieldValueInvalid",
                        f"Invalid value: {percent}: must be between 0 and 100",
                    )
                )
        if causes:
            raise invalid(name, causes)
        refusal = admission_refusal(obj, old)
        if refusal is not None:
            raise refused(name, refusal)
        assert mode is not None
        return mode

    def _create(self, namespace: str, body: Any, dry_run: bool) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        metadata = dict(body.get("metadata") or {})
        name = metadata.get("name")
        if not name and metadata.get("generateName"):
            name = f"{metadata['generateName']}{uuid.uuid4().hex[:5]}"
        if not name:
            raise invalid(
                "", [("metadata.name", "FieldValueRequired", "name or generateName is required")]
            )
        if metadata.get("namespace") not in (None, namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if metadata.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        obj = copy.deepcopy(body)
        obj["metadata"] = {**metadata, "name": name, "namespace": namespace}
        mode = self._validate(obj, name)
        if (namespace, name) in self._records:
            raise already_exists(name)
        obj.pop("status", None)
        obj["metadata"].update(
            {
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "generation": 1,
            }
        )
        if dry_run:
            return obj
        obj["metadata"]["resourceVersion"] = self._bump()
        record = _Record(obj=obj, mode=mode)
        self._records[(namespace, name)] = record
        self._start_rollout(record)
        self._emit("ADDED", record.obj)
        return copy.deepcopy(record.obj)

    def _take_conflict(self, record: _Record) -> None:
        if self._conflicts > 0:
            self._conflicts -= 1
            record.obj["metadata"]["resourceVersion"] = self._bump()
            self._emit("MODIFIED", record.obj)
            raise conflict(record.name)

    def _update(self, record: _Record, new: JSON, dry_run: bool) -> JSON:
        """Store ``new`` (a full object) over ``record``: the PUT/PATCH common path."""
        name = record.name
        new_meta = new.get("metadata")
        if not isinstance(new_meta, dict):
            raise bad_request("metadata is required")
        if new_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({new_meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        if new_meta.get("namespace") not in (None, record.namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        version = new_meta.get("resourceVersion")
        if not version:
            raise invalid(
                name,
                [
                    (
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if str(version) != record.obj["metadata"]["resourceVersion"]:
            raise conflict(name)
        mode = self._mode_of(new) or self._validate(new, name, record.obj)
        if mode != record.mode:
            raise invalid(
                name,
                [
                    (
                        f"metadata.annotations[{DEPLOYMENT_MODE_ANNOTATION}]",
                        "FieldValueForbidden",
                        f'Forbidden: the deployment mode cannot change from "{record.mode}" to '
                        f'"{mode}"',
                    )
                ],
            )
        self._validate(new, name, record.obj)
        old = record.obj
        stored = copy.deepcopy(new)
        stored.pop("status", None)
        keep = ("uid", "creationTimestamp", "generation", "resourceVersion")
        stored["metadata"] = {
            **{k: v for k, v in new_meta.items() if k not in keep},
            **{k: old["metadata"][k] for k in keep},
            "name": name,
            "namespace": record.namespace,
        }
        spec_changed = stored.get("spec") != old.get("spec")
        if spec_changed:
            stored["metadata"]["generation"] = record.generation + 1
        if "status" in old:
            stored["status"] = old["status"]
        if stored == old:
            return copy.deepcopy(old)  # no-op: nothing written, resourceVersion kept
        if dry_run:
            return stored
        stored["metadata"]["resourceVersion"] = self._bump()
        record.obj = stored
        if spec_changed:
            self._start_rollout(record)
        self._emit("MODIFIED", record.obj)
        return copy.deepcopy(record.obj)

    def _replace(self, record: _Record, body: Any, dry_run: bool) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        self._take_conflict(record)
        return self._update(record, body, dry_run)

    def _patch(self, record: _Record, body: Any, content_type: str, dry_run: bool) -> JSON:
        if content_type == MERGE_PATCH:
            if not isinstance(body, dict):
                raise bad_request("Invalid JSON Patch")
            patched = merge_patch(record.obj, body)
        elif content_type == JSON_PATCH:
            if not isinstance(body, list):
                raise bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            try:
                patched = json_patch(record.obj, body)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise KubeApiError(422, "Invalid", str(exc)) from exc
        else:
            raise KubeApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, application/apply-patch+yaml (apply-patch is not "
                "served by this fake)",
            )
        self._take_conflict(record)
        if not isinstance(patched, dict):
            raise bad_request("the patched object must be a JSON object")
        patched_meta = patched.setdefault("metadata", {})
        # The patched object keeps the stored resourceVersion unless the patch set one: then it is
        # checked like a PUT's. A patch without one applies to the current object (the server
        # retries internally), so it never conflicts by itself.
        if not patched_meta.get("resourceVersion"):
            patched_meta["resourceVersion"] = record.obj["metadata"]["resourceVersion"]
        return self._update(record, patched, dry_run)

    def _delete(self, record: _Record, dry_run: bool) -> JSON:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {**_details(record.name), "uid": record.obj["metadata"]["uid"]},
        }
        if dry_run:
            return status
        del self._records[(record.namespace, record.name)]
        self._failing.pop((record.namespace, record.name), None)
        record.obj["metadata"]["resourceVersion"] = self._bump()
        self._emit("DELETED", record.obj)
        return status

    def set_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Store a ConfigMap (served read-only at ``/api/v1/namespaces/{ns}/configmaps/{name}``)."""
        with self._lock:
            self._configmaps[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace},
                "data": dict(data),
            }

    def forbid_configmaps(self, forbidden: bool = True) -> None:
        """Answer ConfigMap reads with 403, as for a Role without ``get`` on them."""
        with self._lock:
            self._forbidden_configmaps = forbidden

    def _configmap(self, namespace: str, name: str) -> tuple[int, JSON]:
        if self._forbidden_configmaps:
            raise KubeApiError(
                403,
                "Forbidden",
                f'configmaps "{name}" is forbidden: User "system:serviceaccount:docloop:'
                f'docloop-pipeline" cannot get resource "configmaps" in API group "" in the '
                f'namespace "{namespace}"',
            )
        found = self._configmaps.get((namespace, name))
        if found is None:
            raise KubeApiError(404, "NotFound", f'configmaps "{name}" not found')
        return 200, copy.deepcopy(found)

    # --- internals: the controller --------------------------------------------------------------

    def _start_rollout(self, record: _Record) -> None:
        """A new spec generation was stored: create its revision and schedule its rollout."""
        generation = record.generation
        spec = record.obj["spec"]
        fail = generation in self._failing.get((record.namespace, record.name), set())
        record.refused = None
        if record.mode == KNATIVE:
            # KServe builds a Knative Service from the predictor; Knative's webhook refuses it
            # (PodSecurityContextMask) and the InferenceService never becomes ready
            record.refused = knative_denial(
                record.obj, podspec_securitycontext=self.podspec_securitycontext
            )
            fail = fail or record.refused is not None
            predictor = spec["predictor"]
            template = _template(predictor)
            if not record.revisions or record.revisions[-1].template != template:
                number = len(record.revisions) + 1
                record.revisions.append(
                    _Revision(
                        name=f"{record.name}-predictor-{number:05d}",
                        generation=generation,
                        predictor=copy.deepcopy(predictor),
                        template=copy.deepcopy(template),
                        doomed=fail,
                    )
                )
        record.phase = "pending"
        delay = self._ready_delay
        record.pending = _Pending(generation, time.monotonic() + delay, fail)
        if delay <= 0:
            self._finish_rollout(record)
        else:
            timer = threading.Timer(delay + 0.005, self._on_timer)
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        self._render(record)

    def _on_timer(self) -> None:
        with self._lock:
            if not self._stopping:
                self._apply_due()

    def _apply_due(self) -> None:
        """Finish every rollout whose ready delay has passed (as the controller's status writes)."""
        now = time.monotonic()
        for record in list(self._records.values()):
            if record.pending is not None and record.pending.due <= now:
                self._finish_rollout(record)
                self._render(record)
                record.obj["metadata"]["resourceVersion"] = self._bump()
                self._emit("MODIFIED", record.obj)

    def _finish_rollout(self, record: _Record) -> None:
        pending = record.pending
        assert pending is not None
        record.pending = None
        spec = record.obj["spec"]
        latest = record.revisions[-1] if record.revisions else None
        if pending.fail or (latest is not None and latest.doomed):
            record.phase = "failed"
            return
        record.phase = "ready"
        record.rolled_out_generation = pending.generation
        record.rolled_out_spec = copy.deepcopy(spec)
        if record.mode != KNATIVE:
            return
        assert latest is not None
        latest.ready = True
        record.latest_ready = latest.name
        percent = spec["predictor"].get("canaryTrafficPercent")
        annotations = record.obj["metadata"].get("annotations") or {}
        tag_latest = annotations.get(TAG_ROUTING_ANNOTATION) == "true"
        for _ in range(5):  # the controller's reconcile loop, until the status is stable
            before = (record.latest_rolledout, record.previous_rolledout, record.traffic)
            _propagate(record, _knative_route(record, percent, tag_latest))
            if (record.latest_rolledout, record.previous_rolledout, record.traffic) == before:
                break

    def _condition(self, record: _Record, kind: str, ok: bool, reason: str, message: str) -> JSON:
        status = "True" if ok else "False"
        previous = record.transitions.get(kind)
        when = previous[1] if previous and previous[0] == status else _now()
        record.transitions[kind] = (status, when)
        condition: JSON = {"type": kind, "status": status, "lastTransitionTime": when}
        if not ok:
            condition.update({"reason": reason, "message": message})
        return condition

    def _render(self, record: _Record) -> None:
        """Write ``record.obj['status']`` from the controller's state."""
        name, ns = record.name, record.namespace
        serving = record.rolled_out_generation > 0
        ready = record.phase == "ready"
        knative = record.mode == KNATIVE
        latest_created = record.revisions[-1].name if record.revisions else None
        if knative:
            reason = "RevisionMissing" if record.phase == "pending" else "RevisionFailed"
            if record.phase == "pending":
                message = (
                    f'Configuration "{name}-predictor" is waiting for a Revision to become ready.'
                )
            elif record.refused is not None:
                reason, message = "InternalError", f"fails to reconcile predictor: {record.refused}"
            else:
                message = (
                    f'Revision "{latest_created}" failed with message: Container failed to become '
                    "ready (fake readiness failure)."
                )
        else:
            reason = "PredictorNotReady"
            message = (
                f'Deployment "{name}-predictor" has not yet become available.'
                if record.phase == "pending"
                else f'Deployment "{name}-predictor" failed to become available (fake readiness '
                "failure)."
            )
        waiting = "RevisionMissing" if knative else "PredictorNotReady"
        conditions = [self._condition(record, "IngressReady", serving, waiting, message)]
        if knative:
            for kind in ("LatestDeploymentReady", "PredictorConfigurationReady"):
                conditions.append(self._condition(record, kind, ready, reason, message))
        conditions.append(self._condition(record, "PredictorReady", ready, reason, message))
        if knative:
            conditions.append(
                self._condition(record, "PredictorRouteReady", serving, waiting, message)
            )
        conditions.append(self._condition(record, "Ready", ready, reason, message))
        if knative:
            conditions.append(self._condition(record, "RoutesReady", serving, waiting, message))

        component: JSON = {}
        if knative:
            component.update(
                {
                    "latestCreatedRevision": latest_created,
                    "latestReadyRevision": record.latest_ready,
                    "latestRolledoutRevision": record.latest_rolledout,
                    "previousRolledoutRevision": record.previous_rolledout,
                    "traffic": copy.deepcopy(record.traffic) or None,
                }
            )
        if serving:
            component["url"] = f"http://{name}-predictor.{ns}.example.com"
            component["address"] = {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"}

        target_state = {"ready": "Loaded", "pending": "Pending", "failed": "FailedToLoad"}
        transition = {"ready": "UpToDate", "pending": "InProgress", "failed": "BlockedByFailedLoad"}
        model_status: JSON = {
            "states": {
                "activeModelState": "Loaded" if serving else "Pending",
                "targetModelState": target_state[record.phase],
            },
            "transitionStatus": transition[record.phase],
        }
        if record.phase == "failed":
            model_status["lastFailureInfo"] = {"reason": "ModelLoadFailed", "message": message}

        status: JSON = {
            "observedGeneration": record.rolled_out_generation or None,
            "conditions": conditions,
            "components": {"predictor": _drop_none(component)},
            "deploymentMode": record.mode,
            "modelStatus": model_status,
        }
        if serving:
            status["url"] = f"http://{name}.{ns}.example.com"
            status["address"] = {"url": f"http://{name}.{ns}.svc.cluster.local"}
        if not knative and record.rolled_out_spec and record.rolled_out_spec.get("canary"):
            status["canaryStatuses"] = [
                {
                    "name": canary["predictor"]["name"],
                    "ready": True,
                    "trafficPercent": int(canary.get("trafficPercent", 0)),
                }
                for canary in record.rolled_out_spec["canary"]
            ]
        record.obj["status"] = _drop_none(status)

    # --- internals: HTTP ------------------------------------------------------------------------

    def _log(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        ctype: str | None,
        body: Any,
        code: int,
    ) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(method, path, body, query, ctype, code))

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], content_type: str, body: Any
    ) -> tuple[int, Any]:
        """Answer one non-watch request (the HTTP layer calls this; tests need not).

        Args:
            method: HTTP method.
            path: URL path.
            query: Parsed query string.
            content_type: Media type of the body, without parameters.
            body: Decoded JSON body, or ``None``.

        Returns:
            ``(status code, JSON-serialisable body)``.
        """
        try:
            return self._dispatch(method, path, query, content_type, body)
        except KubeApiError as exc:
            return exc.code, exc.status()

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], content_type: str, body: Any
    ) -> tuple[int, Any]:
        dry_run = "All" in query.get("dryRun", [])
        with self._lock:
            self._apply_due()
            if match := _COLLECTION.match(path):
                namespace = match.group(1)
                if method == "GET":
                    return 200, self._list(namespace, query)
                if method == "POST":
                    return 201, self._create(namespace, body, dry_run)
                raise _method_not_allowed(method)
            if match := _ITEM.match(path):
                namespace, name = match.group(1), match.group(2)
                record = self._records.get((namespace, name))
                if record is None:
                    raise not_found(name)
                if method == "GET":
                    return 200, copy.deepcopy(record.obj)
                if method == "PUT":
                    return 200, self._replace(record, body, dry_run)
                if method == "PATCH":
                    return 200, self._patch(record, body, content_type, dry_run)
                if method == "DELETE":
                    return 200, self._delete(record, dry_run)
                raise _method_not_allowed(method)
            if _ALL_NAMESPACES.match(path) and method == "GET":
                return 200, self._list(None, query)
            if (match := _CONFIGMAP.match(path)) and method == "GET":
                return self._configmap(match.group(1), match.group(2))
        if method == "GET" and path in _DISCOVERY:
            return 200, _DISCOVERY[path]
        raise KubeApiError(404, "NotFound", "the server could not find the requested resource", {})

    def _selected(
        self, namespace: str | None, query: dict[str, list[str]]
    ) -> Callable[[JSON], bool]:
        label_selector = (query.get("labelSelector") or [""])[0]
        field_selector = (query.get("fieldSelector") or [""])[0]
        fields: dict[str, str] = {}
        for term in filter(None, field_selector.split(",")):
            key, _, value = term.partition("=")
            fields[key.strip()] = value.lstrip("=").strip()

        def matches(obj: JSON) -> bool:
            meta = obj["metadata"]
            if namespace is not None and meta["namespace"] != namespace:
                return False
            if "metadata.name" in fields and meta["name"] != fields["metadata.name"]:
                return False
            if "metadata.namespace" in fields and meta["namespace"] != fields["metadata.namespace"]:
                return False
            return _labels_match(meta.get("labels") or {}, label_selector)

        return matches

    def _list(self, namespace: str | None, query: dict[str, list[str]]) -> JSON:
        matches = self._selected(namespace, query)
        items = [copy.deepcopy(r.obj) for r in self._records.values() if matches(r.obj)]
        items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        return {
            "apiVersion": API_VERSION,
            "kind": f"{KIND}List",
            "items": items,
            "metadata": {"resourceVersion": str(self._resource_version)},
        }

    def _watch(self, namespace: str | None, query: dict[str, list[str]]) -> Iterator[JSON]:
        """Yield watch events until ``timeoutSeconds`` passes or the server stops."""
        matches = self._selected(namespace, query)
        timeout = float((query.get("timeoutSeconds") or ["1800"])[0])
        deadline = time.monotonic() + timeout
        since = (query.get("resourceVersion") or ["0"])[0] or "0"
        with self._lock:
            self._apply_due()
            if since == "0":
                cursor = self._resource_version
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(r.obj)}
                    for r in self._records.values()
                    if matches(r.obj)
                ]
            else:
                cursor = int(since)
                initial = []
        yield from initial
        while True:
            with self._lock:
                while not self._stopping:
                    fresh = [e for e in self._events if e[0] > cursor]
                    left = deadline - time.monotonic()
                    if fresh or left <= 0:
                        break
                    self._changed.wait(timeout=min(left, 0.5))
                    self._apply_due()
                if self._stopping:
                    return
                fresh = [e for e in self._events if e[0] > cursor]
                if not fresh and time.monotonic() >= deadline:
                    return
            for version, kind, obj in fresh:
                cursor = max(cursor, version)
                if matches(obj):
                    yield {"type": kind, "object": obj}


def _method_not_allowed(method: str) -> KubeApiError:
    return KubeApiError(
        405, "MethodNotAllowed", f"the server does not allow this method ({method})"
    )


def _labels_match(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.strip()) != value.lstrip("=").strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


_DISCOVERY: dict[str, JSON] = {
    "/version": FAKE_KUBE_VERSION,
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": GROUP,
                "versions": [{"groupVersion": API_VERSION, "version": VERSION}],
                "preferredVersion": {"groupVersion": API_VERSION, "version": VERSION},
            }
        ],
    },
    f"/apis/{GROUP}": {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [{"groupVersion": API_VERSION, "version": VERSION}],
        "preferredVersion": {"groupVersion": API_VERSION, "version": VERSION},
    },
    f"/apis/{API_VERSION}": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            {
                "name": PLURAL,
                "singularName": "inferenceservice",
                "namespaced": True,
                "kind": KIND,
                "shortNames": ["isvc"],
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
        ],
    },
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, fake: FakeKubeApiServer) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (the fake keeps its own request log)."""

    def _serve(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        raw_type = self.headers.get("Content-Type")
        content_type = (raw_type or "application/json").split(";")[0].strip().lower()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                error = bad_request("the request body is not valid JSON")
                fake._log(
                    self.command, parts.path, query, raw_type, raw.decode(errors="replace"), 400
                )
                self._send(400, error.status())
                return
        watch = (query.get("watch") or ["false"])[0].lower() in ("true", "1")
        if self.command == "GET" and watch:
            scope = _COLLECTION.match(parts.path)
            if scope or _ALL_NAMESPACES.match(parts.path):
                fake._log("GET", parts.path, query, raw_type, None, 200)
                self._stream(fake._watch(scope.group(1) if scope else None, query))
                return
        code, payload = fake.handle(self.command, parts.path, query, content_type, body)
        fake._log(self.command, parts.path, query, raw_type, body, code)
        self._send(code, payload)

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code, HTTPStatus(code).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: Iterator[JSON]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


@pytest.fixture
def kube_apiserver() -> Iterator[FakeKubeApiServer]:
    """A fresh :class:`FakeKubeApiServer` (Knative default mode, no ready delay) per test."""
    with FakeKubeApiServer() as server:
        yield server


@pytest.fixture
def kserve_client(kube_apiserver: FakeKubeApiServer) -> KServeClient:
    """A real ``kserve.KServeClient`` bound to :func:`kube_apiserver` (its ``kserve_client``)."""
    return kube_apiserver.kserve_client()

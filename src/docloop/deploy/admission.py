"""What a cluster refuses before an InferenceService serves: upstream admission rules, ported.

Three layers, each ported from the upstream file named here (never copied):

* **Structural schema** — the ``openAPIV3Schema`` of KServe's CRDs (``config/crd/full/`` of
  ``kserve/kserve`` at ``aaac4e294dae2c7b1aa1886447793f3aa1c30912``, read from the folder
  :func:`upstream_dir` finds) turned into JSON Schema and checked with ``jsonschema``:
  ``x-kubernetes-int-or-string`` (already an ``anyOf`` in the CRD), ``nullable`` (``null``
  admitted), and an unknown field refused wherever the schema has ``properties`` and no
  ``x-kubernetes-preserve-unknown-fields`` — what an API server answers with
  ``fieldValidation=Strict`` (400 ``BadRequest``, "strict decoding error: unknown field").
  ``metadata`` is ``type: object`` in the CRD; the API server checks it as ``ObjectMeta``.
  Other violations are 422 ``Invalid``.
* **KServe's validating webhook** (``pkg/apis/serving/v1beta1/inference_service_validation.go``
  at the same commit): ``ValidateCreate`` / ``ValidateUpdate`` for what docloop sends —
  ``validateInferenceServiceName``, ``validatePredictor``, ``validateMultipleStorageURIs``
  (with ``validateMultipleStorageURIsSpec``), ``validateExactlyOneImplementation`` (and
  ``PredictorSpec.GetImplementations`` of ``predictor.go``), ``validateReplicas``
  (``component.go``), ``validateCanarySpecs``, ``validateDeploymentMode`` and
  ``validatePredictorNameChange``. A denial is 403 ``Forbidden`` with the webhook's message,
  as controller-runtime's ``admission.Denied`` answers.
* **Knative's field mask** (``knative/serving`` at ``98e5ef90aa7033797aa0a61ef97f3ff7e49a3944``,
  ``pkg/apis/serving/fieldmask.go`` ``PodSecurityContextMask``, used by
  ``ValidatePodSecurityContext`` in ``k8s_validation.go``): in a Knative revision every
  pod-level ``securityContext`` field is refused unless ``kubernetes.podspec-securitycontext``
  is enabled (disabled by default in ``pkg/apis/config/features.go``; ``seccompProfile`` passes
  only with ``secure-pod-defaults``, also disabled by default). KServe copies the predictor's pod
  fields into the Knative Service it creates, so the InferenceService is stored and then never
  becomes Ready.

:func:`check_inference_service` runs all three; deploy calls it before every write and the
fake API server of the tests applies the same functions.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from docloop.errors import DeployFailed

UPSTREAM_ENV: Final = "DOCLOOP_UPSTREAM_DIR"
CRD_FILES: Final = {
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
}
WEBHOOK: Final = "inferenceservice.kserve-webhook-server.validator"
KNATIVE_WEBHOOK: Final = "validation.webhook.serving.knative.dev"
DEPLOYMENT_MODE: Final = "serving.kserve.io/deploymentMode"
STANDARD: Final = "Standard"
CONTAINER_NAME: Final = "kserve-container"  # constants.InferenceServiceContainerName
TRANSFORMER_CONTAINER: Final = "transformer-container"
STORAGE_URI_ENV: Final = "STORAGE_URI"  # constants.CustomSpecStorageUriEnvVarKey
ISVC_NAME: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # IsvcNameFmt
# PredictorSpec's implementations, in GetImplementations' order (predictor.go)
IMPLEMENTATIONS: Final = (
    "xgboost", "pytorch", "triton", "sklearn", "tensorflow", "onnx",
    "pmml", "lightgbm", "paddle", "huggingface", "model",
)  # fmt: skip
# ExactlyOneErrorFor(PredictorSpec): the struct's field names but the last
_PREDICTOR_FIELDS: Final = (
    "Name, SKLearn, XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, PMML, LightGBM, "
    "Paddle, Model, WorkerSpec, PodSpec"
)
# ObjectMeta's fields (k8s.io/apimachinery meta/v1 types.go): what `metadata` may hold
OBJECT_META: Final = frozenset(
    {
        "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
        "annotations", "ownerReferences", "finalizers", "managedFields",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Refusal:
    """One answer an API server gives instead of storing an object.

    Attributes:
        code: HTTP status (400 strict decoding, 422 schema, 403 webhook).
        reason: Kubernetes ``StatusReason`` (``BadRequest``, ``Invalid``, ``Forbidden``).
        message: The message, worded as upstream words it.
        causes: ``(field, cause type, message)`` per violation (schema refusals).
    """

    code: int
    reason: str
    message: str
    causes: tuple[tuple[str, str, str], ...] = field(default=())


class AdmissionDenied(DeployFailed):
    """An object the cluster would refuse; ``refusal`` says how it would answer."""

    def __init__(self, refusal: Refusal, hint: str = "") -> None:
        super().__init__(refusal.message + (f" ({hint})" if hint else ""))
        self.refusal = refusal


# --- where upstream lives -------------------------------------------------------------------
def upstream_dir() -> Path | None:
    """The upstream reference folder: ``$DOCLOOP_UPSTREAM_DIR``, else ``../shared/upstream``.

    ``../shared/upstream`` is looked up beside the repository root and beside the working
    directory; None when neither holds KServe's CRDs.
    """
    env = os.environ.get(UPSTREAM_ENV)
    candidates = [Path(env)] if env else []
    root = Path(__file__).resolve().parents[3]
    candidates += [root.parent / "shared" / "upstream", Path.cwd().parent / "shared" / "upstream"]
    for candidate in candidates:
        if (candidate / "kserve" / CRD_FILES["InferenceService"]).is_file():
            return candidate
    return None


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind``'s served version, from the upstream CRD.

    Raises:
        DeployFailed: The upstream folder is missing (set ``DOCLOOP_UPSTREAM_DIR``).
    """
    folder = upstream_dir()
    if folder is None:
        raise DeployFailed(
            f"KServe's CRDs are not found: set {UPSTREAM_ENV} to a folder holding kserve/"
            f"{CRD_FILES[kind]} (../shared/upstream beside the repository)"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 2 MB: libyaml if present
    text = (folder / "kserve" / CRD_FILES[kind]).read_text(encoding="utf-8")
    crd = yaml.load(text, Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v.get("served", True))
    schema: dict[str, Any] = _json_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {
        "type": "object",
        "properties": {name: {} for name in OBJECT_META},
        "additionalProperties": False,
    }
    return schema


def _json_schema(node: Any) -> Any:
    """openAPIV3Schema → JSON Schema: strict objects, ``nullable``, no ``x-kubernetes-*``."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: _json_schema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key not in ("nullable", "format")
    }
    if "properties" in node:
        out["properties"] = {k: _json_schema(v) for k, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"]
    return out


def _field_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@functools.cache
def _validator(kind: str) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # no stubs; the validator is Any here

    return jsonschema.Draft7Validator(crd_schema(kind))


# --- structural schema ----------------------------------------------------------------------
def schema_refusal(obj: Mapping[str, Any]) -> Refusal | None:
    """How a strict API server answers ``obj`` against its CRD; None when it is accepted."""
    kind = str(obj.get("kind"))
    if kind not in CRD_FILES:
        return Refusal(400, "BadRequest", f"no CRD for kind {kind!r}")
    validator = _validator(kind)
    unknown: list[str] = []
    causes: list[tuple[str, str, str]] = []
    for error in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(e.absolute_path)):
        where = _field_path(error.absolute_path)
        if error.validator == "additionalProperties":
            known = set(error.schema.get("properties") or {})
            for extra in sorted(set(error.instance) - known):
                unknown.append(f"{where}.{extra}" if where else extra)
            continue
        if error.validator == "required":
            missing = str(error.message).split("'")[1]
            name = f"{where}.{missing}" if where else missing
            causes.append((name, "FieldValueRequired", "Required value"))
            continue
        causes.append((where, "FieldValueInvalid", f"Invalid value: {error.message}"))
    name = (obj.get("metadata") or {}).get("name", "")
    if unknown:
        detail = ", ".join(f'unknown field "{u}"' for u in unknown)
        version = str(obj.get("apiVersion", "")).rsplit("/", 1)[-1]
        return Refusal(400, "BadRequest", f'{kind} in version "{version}" cannot be handled as '
                       f"a {kind}: strict decoding error: {detail}")  # fmt: skip
    if causes:
        listed = "; ".join(f"{f}: {m}" for f, _, m in causes)
        group = "serving.kserve.io"
        return Refusal(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {listed}',
                       tuple(causes))  # fmt: skip
    return None


# --- KServe's validating webhook ------------------------------------------------------------
def _implementations(predictor: Mapping[str, Any]) -> list[str]:
    """``PredictorSpec.GetImplementations``: the frameworks set, or the custom container."""
    found = [name for name in IMPLEMENTATIONS if predictor.get(name) is not None]
    containers = predictor.get("containers") or []
    if containers:
        custom = [c for c in containers if c.get("name") == CONTAINER_NAME]
        found += ["custom"] * len(custom)
        if not found:
            found.append("custom")
    return found


def _storage_uri(predictor: Mapping[str, Any]) -> str | None:
    """``GetImplementation().GetStorageUri()`` of the first implementation.

    A framework's ``storageUri``, or the custom container's ``STORAGE_URI`` env
    (``CustomPredictor.GetStorageUri``).
    """
    implementations = _implementations(predictor)
    if not implementations:
        return None
    first = implementations[0]
    if first != "custom":
        value = (predictor.get(first) or {}).get("storageUri")
        return None if value is None else str(value)
    for container in predictor.get("containers") or []:
        if container.get("name") == CONTAINER_NAME:
            for env in container.get("env") or []:
                if env.get("name") == STORAGE_URI_ENV:
                    return str(env.get("value", ""))
            break
    return None


def _predictor_storage_uri(predictor: Mapping[str, Any]) -> str:
    """``getPredictorStorageURI``: ``model.storageUri``, else the implementation's, else ""."""
    model = predictor.get("model") or {}
    if model.get("storageUri") is not None:
        return str(model["storageUri"])
    return _storage_uri(predictor) or ""


def _storage_uris_error(  # noqa: PLR0911 (one return per upstream rule)
    storage_uris: list[Mapping[str, Any]],
) -> str | None:
    """``validateMultipleStorageURIsSpec`` (with ``validateStorageURISpec``)."""
    paths: list[str] = []
    pvc_paths: list[str] = []
    for entry in storage_uris:
        uri, mount = str(entry.get("uri") or ""), str(entry.get("mountPath") or "")
        if not uri:
            return "storage URI cannot be empty"
        if mount == "/":
            return "storage path cannot be empty"
        if not mount.startswith("/"):
            return f"storage path must be absolute: {mount}"
        if ".." in mount:
            return f"storage path cannot contain '..' for security reasons: {mount}"
        (pvc_paths if uri.startswith("pvc://") else paths).append(mount)
    if len(paths) <= 1:
        return None
    if len(pvc_paths) != len(set(pvc_paths)):
        return "PVC storage paths must be unique"
    parts = [[segment for segment in p.split("/") if segment] for p in paths]
    common = 0  # utils.FindCommonParentPath: the shared leading directories
    while all(len(p) > common and p[common] == parts[0][common] for p in parts):
        common += 1
    if common == 0:
        return (
            f"storage paths must have a common parent directory. Current paths: "
            f"[{' '.join(paths)}] have no common parent beyond root"
        )
    return None


def _replicas_error(component: Mapping[str, Any]) -> str | None:
    """``ComponentExtensionSpec.Validate``'s ``validateReplicas`` (component.go)."""
    minimum = component.get("minReplicas", 1)
    maximum = component.get("maxReplicas", 0)
    if minimum < 0:
        return "MinReplicas cannot be less than 0."
    if maximum < 0:
        return "MaxReplicas cannot be less than 0."
    if minimum > maximum and maximum != 0:
        return "MinReplicas cannot be greater than MaxReplicas."
    return None


def _canary_error(obj: Mapping[str, Any]) -> str | None:  # noqa: PLR0911, PLR0912 (upstream's order)
    """``validateCanarySpecs``."""
    spec = obj.get("spec") or {}
    canaries = spec.get("canary") or []
    if not canaries:
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(DEPLOYMENT_MODE) != STANDARD:
        return f"canary is only supported in {STANDARD} deployment mode"
    stable = spec.get("predictor") or {}
    if _storage_uri(stable) is None and stable.get("model") is None:
        return (
            "canary requires a stable predictor with a model (multi-model serving is not "
            "supported with canary)"
        )
    names: set[str] = set()
    total = 0
    for i, canary in enumerate(canaries):
        predictor = canary.get("predictor") or {}
        name = predictor.get("name") or ""
        if not name:
            return f"canary[{i}] predictor.name is required"
        if name in names:
            return f'canary predictor.name "{name}" is duplicated'
        names.add(name)
        if name == (stable.get("name") or ""):
            return f'canary predictor.name "{name}" conflicts with stable predictor name'
        percent = int(canary.get("trafficPercent") or 0)
        if not 0 <= percent <= 100:
            return f'canary "{name}" trafficPercent must be between 0 and 100, got {percent}'
        total += percent
        if len(_implementations(predictor)) != 1:
            return (
                f'canary "{name}" predictor: exactly one of [{_PREDICTOR_FIELDS}] must be '
                "specified in PredictorSpec"
            )
        replicas = _replicas_error(predictor)
        if replicas:
            return f'canary "{name}" predictor: {replicas}'
        if predictor.get("workerSpec") is not None:
            return (
                f'canary "{name}" must not set workerSpec (multi-node is not yet supported for '
                "canary)"
            )
        for key in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"):
            if predictor.get(key):
                return f'canary "{name}" must not set {key} (canary uses fixed replicas)'
        if predictor.get("minReplicas") is not None:
            stable_min = int(stable.get("minReplicas", 1))
            if int(predictor["minReplicas"]) > stable_min:
                return (
                    f'canary "{name}" minReplicas ({predictor["minReplicas"]}) must not exceed '
                    f"stable predictor minReplicas ({stable_min})"
                )
    if total > 100:
        return f"sum of canary trafficPercent values ({total}) must be <= 100"
    return None


def _update_denial(obj: Mapping[str, Any], old: Mapping[str, Any]) -> str | None:
    """``ValidateUpdate``'s rules: ``validateDeploymentMode``, ``validatePredictorNameChange``."""
    metadata = obj.get("metadata") or {}
    status_mode = (old.get("status") or {}).get("deploymentMode") or ""
    annotation = (metadata.get("annotations") or {}).get(DEPLOYMENT_MODE)
    if status_mode:
        status_mode = {"Serverless": "Knative", "RawDeployment": STANDARD}.get(
            status_mode, status_mode
        )
        if annotation is not None and annotation != status_mode:
            return (
                f"update rejected: deploymentMode cannot be changed from '{status_mode}' to "
                f"'{annotation}'"
            )
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    old_predictor = (old.get("spec") or {}).get("predictor") or {}
    renamed = (old_predictor.get("name") or "") != (predictor.get("name") or "")
    if renamed and _predictor_storage_uri(old_predictor) == _predictor_storage_uri(predictor):
        return "predictor.name change requires a model change (e.g. storageUri)"
    return None


def webhook_denial(  # noqa: PLR0911 (one return per upstream rule)
    obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> str | None:
    """KServe's ``ValidateCreate`` (``old`` None) or ``ValidateUpdate``; None when admitted.

    Returns:
        The webhook's error message for the first rule broken, in upstream's order.
    """
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    if old is not None:
        if metadata.get("deletionTimestamp"):
            return None
        denial = _update_denial(obj, old)
        if denial is not None:
            return denial
    name = str(metadata.get("name") or "")
    if not ISVC_NAME.match(name):
        return (
            f'the InferenceService "{name}" is invalid: a InferenceService name must consist of '
            "lower case alphanumeric characters or '-', and must start with alphabetical "
            'character. (e.g. "my-name" or "abc-123", regex used for validation is '
            "'[a-z]([-a-z0-9]*[a-z0-9])?')"
        )
    for container in predictor.get("containers") or []:
        if container.get("name") == TRANSFORMER_CONTAINER:
            if any(e.get("name") == STORAGE_URI_ENV for e in container.get("env") or []):
                return "storage uri should not be specified in transformer container"
            break
    if any((predictor.get(i) or {}).get("name") for i in IMPLEMENTATIONS):
        return "the 'name' field is not allowed in standard predictor"
    storage_uris = predictor.get("storageUris")
    if _implementations(predictor) and _storage_uri(predictor) is not None and storage_uris:
        return "Setting both StorageURI and StorageURIs is not supported."
    error = _storage_uris_error(list(storage_uris or []))
    if error:
        return error
    if len(_implementations(predictor)) != 1:
        return f"exactly one of [{_PREDICTOR_FIELDS}] must be specified in PredictorSpec"
    error = _replicas_error(predictor) or _canary_error(obj)
    return error


# --- Knative's field mask -------------------------------------------------------------------
def knative_denial(obj: Mapping[str, Any], *, podspec_securitycontext: bool = False) -> str | None:
    """``PodSecurityContextMask``: pod-level ``securityContext`` fields Knative refuses.

    Args:
        obj: An InferenceService in Knative mode (its predictor becomes the revision template).
        podspec_securitycontext: The ``kubernetes.podspec-securitycontext`` feature flag.

    Returns:
        Knative's denial (``must not set the field(s)``) or None.
    """
    if podspec_securitycontext:
        return None
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    context = predictor.get("securityContext")
    if not context:
        return None
    fields = ", ".join(f"spec.template.spec.securityContext.{key}" for key in sorted(context))
    return (
        f'admission webhook "{KNATIVE_WEBHOOK}" denied the request: validation failed: must not '
        f"set the field(s): {fields}"
    )


def is_standard(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` asks for KServe's Standard (raw deployment) mode."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DEPLOYMENT_MODE) in (STANDARD, "RawDeployment")


def admission_refusal(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None = None, *, schema: bool = True
) -> Refusal | None:
    """How the API server answers a create (``old`` None) or an update: schema, then webhook.

    Args:
        obj: The object sent.
        old: The stored object (an update), or None (a create).
        schema: Check the CRD's structural schema (needs :func:`upstream_dir`).
    """
    refusal = schema_refusal(obj) if schema else None
    if refusal is not None:
        return refusal
    if obj.get("kind") != "InferenceService":
        return None
    denial = webhook_denial(obj, old)
    if denial is not None:
        return Refusal(403, "Forbidden", f'admission webhook "{WEBHOOK}" denied the request: '
                       f"{denial}")  # fmt: skip
    return None


def check_inference_service(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    *,
    podspec_securitycontext: bool = False,
) -> None:
    """Refuse, before sending, what the cluster would refuse or never make Ready.

    The webhook's and Knative's rules are code and always run; the CRD schema is checked where
    the upstream folder is (tests, CI, a workstation) — a pipeline pod does not carry it, and
    the API server checks the schema itself.

    Raises:
        AdmissionDenied: The schema, KServe's webhook or Knative's mask refuses ``obj``.
    """
    refusal = admission_refusal(obj, old, schema=upstream_dir() is not None)
    if refusal is not None:
        raise AdmissionDenied(refusal, "docloop built an object the cluster refuses; report it")
    if not is_standard(obj):
        denial = knative_denial(obj, podspec_securitycontext=podspec_securitycontext)
        if denial is not None:
            raise AdmissionDenied(
                Refusal(400, "BadRequest", denial),
                "use container-level securityContext, or enable the Knative feature flag",
            )

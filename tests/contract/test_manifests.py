"""The kustomize manifests render into valid, least-privilege objects that match the code.

Both overlays (and ``manifests/secrets`` with its templates filled in) are rendered with the real
kustomize when this machine has one (``kustomize build``, else ``kubectl kustomize``); without
one, with :func:`render_builtin`, a small renderer of exactly the kustomize features
``manifests/`` uses. It refuses anything else, and where the real binary exists a test checks
that both give the same objects.

Core kinds are validated with ``kubernetes-validate`` (strict schemas, so an unknown field fails)
at the Kubernetes version of the installed ``kubernetes`` client; the ServingRuntime against
KServe's CRD schema in ``../shared/upstream/kserve`` (unknown fields refused, as a strict API
server does) and through the KServe SDK's models; what Knative makes of it against Knative's
field masks. No cluster is needed (none is reachable here).
"""

from __future__ import annotations

import base64
import copy
import difflib
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import kserve
import kubernetes
import kubernetes.client
import kubernetes_validate
import pytest
import yaml

from components import images
from docloop.config import CONFIG_YAML_ENV, load_config
from docloop.deploy.kserve_target import KSERVE_CONFIGMAP
from pipelines import platform

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("knative", "standard")
NAMESPACE = "docloop"
DEFAULT_REGISTRY = "ghcr.io/docloop"
PLACEHOLDER = "CHANGE-ME"

# The values KServe 0.21 takes for serving.kserve.io/deploymentMode (pkg/constants: Knative,
# Standard, ModelMesh; "Serverless" and "RawDeployment" are the deprecated names it still maps).
# The Python SDK carries no constant for them.
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODES = {"knative": "Knative", "standard": "Standard"}

PIPELINE_SA = "docloop-pipeline"
# Everything the pipeline's account may do, as (apiGroup, resource) -> verbs: what
# docloop/deploy/kserve_target.py calls (test_roles_grant_exactly_the_verbs_the_code_uses).
PIPELINE_GRANTS = {
    ("serving.kserve.io", "inferenceservices"): {"get", "create", "update"},
    # Argo Workflows >= 3.4: each task pod's executor writes its WorkflowTaskResult.
    ("argoproj.io", "workflowtaskresults"): {"create", "patch"},
}
# Standard mode only: deploy reads KServe's ConfigMap (kserve_target.KServeTarget.gateway_api) in
# KServe's namespace before a canary; Knative mode never asks (require_traffic returns first).
KSERVE_CONFIG_GRANT = {("", "configmaps"): {"get"}}
KSERVE_NAMESPACE = "kserve"
GRANTS = {"knative": PIPELINE_GRANTS, "standard": {**PIPELINE_GRANTS, **KSERVE_CONFIG_GRANT}}

# Secrets and keys the pipelines mount (pipelines/platform.py).
SECRET_KEYS = {
    platform.STORAGE_SECRET: set(platform._STORAGE_KEYS),
    platform.MLFLOW_SECRET: set(platform._MLFLOW_KEYS),
    platform.STORE_SECRET: set(platform._STORE_KEYS),
}

CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterServingRuntime",
    "ClusterStorageContainer",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
KSERVE_MODELS = {
    "InferenceService": "V1beta1InferenceService",
    "ServingRuntime": "V1alpha1ServingRuntime",
}
SECRETS = MANIFESTS / "secrets"
FEEDBACK_CONFIG_MAP = "docloop-feedback-config"

Manifest = dict[str, Any]


# --- rendering -------------------------------------------------------------------------------


@cache
def kustomize_command() -> list[str] | None:
    """The real kustomize on this machine (``kustomize build`` or ``kubectl kustomize``), if any."""
    for command in (["kustomize", "build"], ["kubectl", "kustomize"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.returncode == 0:
            return command
    return None


def render_real(folder: Path, command: list[str]) -> list[Manifest]:
    """Render a kustomization with the real kustomize."""
    done = subprocess.run(
        [*command, str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} {folder} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


_KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "patches",
}
# Marks a generated object whose name gets kustomize's hash suffix once the build is done.
_HASHED = "__hashed__"


def render_builtin(folder: Path) -> list[Manifest]:
    """Render a kustomization with the features ``manifests/`` uses, and refuse any other.

    Supported: ``resources`` (YAML files and kustomization folders), ``namespace`` (set on every
    namespaced object, the ``Namespace`` object renamed, ServiceAccount subjects of role bindings
    moved along), ``configMapGenerator`` (``files``) and ``secretGenerator`` (``envs``) with
    ``behavior: create|replace``, labels, and the content-hash name suffix (kustomize's
    ``api/hasher/hasher.go``) unless ``disableNameSuffixHash``, with the references of pod
    templates rewritten to the suffixed name; and ``patches`` given as strategic-merge files or
    inline patches that change maps only (for which strategic merge and JSON merge patch agree).

    Args:
        folder: the folder with ``kustomization.yaml``.

    Returns:
        The rendered objects (order not significant).

    Raises:
        NotImplementedError: the kustomization uses a feature this renderer does not have.
    """
    objects = copy.deepcopy(_built(folder))
    renamed: dict[tuple[str, str], str] = {}
    for obj in objects:
        if obj.pop(_HASHED, False):
            name = obj["metadata"]["name"]
            obj["metadata"]["name"] = f"{name}-{kustomize_hash(obj)}"
            renamed[(obj["kind"], name)] = obj["metadata"]["name"]
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            _rename_references(obj["spec"]["template"]["spec"], renamed)
    return objects


def _built(folder: Path) -> list[Manifest]:
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(spec) - _KUSTOMIZATION_KEYS
    if unsupported:
        raise NotImplementedError(f"{folder}: kustomize keys {sorted(unsupported)}")
    objects: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects.extend(_built(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc)
    options = spec.get("generatorOptions", {})
    if set(options) - {"disableNameSuffixHash", "labels"}:
        raise NotImplementedError(f"{folder}: generatorOptions {sorted(options)}")
    for kind, generators in (
        ("ConfigMap", spec.get("configMapGenerator", [])),
        ("Secret", spec.get("secretGenerator", [])),
    ):
        for generator in generators:
            generated = _generated(folder, kind, generator, options)
            if generator.get("behavior", "create") == "create":
                objects.append(generated)
                continue
            if generator["behavior"] != "replace":
                raise NotImplementedError(f"{folder}: behavior {generator['behavior']}")
            key = (kind, generator["name"])
            (base,) = [o for o in objects if (o["kind"], o["metadata"]["name"]) == key]
            replaced = copy.deepcopy(base)
            replaced["data"] = generated["data"]
            replaced[_HASHED] = generated[_HASHED]
            objects = [replaced if o is base else o for o in objects]
    if "namespace" in spec:
        objects = [_in_namespace(obj, spec["namespace"]) for obj in objects]
    for patch_entry in spec.get("patches", []):
        objects = _patched(folder, objects, patch_entry)
    return objects


def _generated(
    folder: Path, kind: str, generator: Mapping[str, Any], options: Mapping[str, Any]
) -> Manifest:
    unsupported = set(generator) - {"name", "files", "envs", "options", "behavior"}
    unsupported |= set(generator.get("options", {})) - {"labels", "disableNameSuffixHash"}
    if unsupported:
        raise NotImplementedError(f"{folder}: {kind} generator keys {sorted(unsupported)}")
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=")  # "key=path" or "path"
        data[key or Path(source).name] = (folder / source).read_text(encoding="utf-8")
    for source in generator.get("envs", []):
        for line in (folder / source).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                data[key.strip()] = value
    own = generator.get("options", {})
    labels = {**options.get("labels", {}), **own.get("labels", {})}
    metadata: Manifest = {"name": generator["name"]}
    if labels:
        metadata["labels"] = labels
    obj: Manifest = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    if kind == "Secret":
        obj["type"] = "Opaque"
        data = {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in data.items()}
    obj["data"] = data
    obj[_HASHED] = not own.get("disableNameSuffixHash", options.get("disableNameSuffixHash", False))
    return obj


def kustomize_hash(obj: Manifest) -> str:
    """kustomize's name suffix of a generated ConfigMap or Secret.

    A port of ``Hasher.Hash`` with ``encodeConfigMap`` / ``encodeSecret``, ``getNodeValues`` and
    ``encode`` (kubernetes-sigs/kustomize ``api/hasher/hasher.go`` at ``kustomize/v5.5.0``, the
    kustomize of kubectl 1.32): the SHA-256 of Go's JSON encoding of ``{kind, name, data}`` (plus
    ``type`` for a Secret; sorted keys, no spaces, ``<>&`` escaped), its first ten hex digits with
    0, 1, 3, a, e replaced by g, h, k, m, t. ``name`` is always empty: ``getNodeValues`` looks
    ``metadata/name`` up as one field name (``yaml.Lookup`` takes one segment per argument), which
    no object has, so only the data decides the suffix.
    """
    encoded = {"kind": obj["kind"], "name": "", "data": obj.get("data", {})}
    if obj["kind"] == "Secret":
        encoded["type"] = obj.get("type", "")
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _rename_references(pod: Manifest, renamed: Mapping[tuple[str, str], str]) -> None:
    """Point a pod spec at generated names, as kustomize's name references do."""
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            ref = volume["configMap"]
            ref["name"] = renamed.get(("ConfigMap", ref["name"]), ref["name"])
        if "secret" in volume:
            ref = volume["secret"]
            ref["secretName"] = renamed.get(("Secret", ref["secretName"]), ref["secretName"])
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        refs = [e.get("valueFrom", {}) for e in container.get("env", [])]
        refs += container.get("envFrom", [])
        for holder in refs:
            for field, kind in (
                ("configMapKeyRef", "ConfigMap"),
                ("configMapRef", "ConfigMap"),
                ("secretKeyRef", "Secret"),
                ("secretRef", "Secret"),
            ):
                if field in holder:
                    ref = holder[field]
                    ref["name"] = renamed.get((kind, ref["name"]), ref["name"])


def _in_namespace(obj: Manifest, namespace: str) -> Manifest:
    obj = copy.deepcopy(obj)
    metadata = obj.setdefault("metadata", {})
    if obj["kind"] == "Namespace":
        metadata["name"] = namespace
        return obj
    if obj["kind"] in CLUSTER_SCOPED_KINDS:
        return obj
    previous = metadata.get("namespace")
    metadata["namespace"] = namespace
    if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
        for subject in obj.get("subjects", []):
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (
                None,
                previous,
            ):
                subject["namespace"] = namespace
    return obj


def _patched(folder: Path, objects: list[Manifest], entry: Mapping[str, Any]) -> list[Manifest]:
    unsupported = set(entry) - {"path", "patch"}
    if unsupported:
        raise NotImplementedError(f"{folder}: patch keys {sorted(unsupported)} (e.g. target)")
    text = (folder / entry["path"]).read_text("utf-8") if "path" in entry else entry["patch"]
    patch = yaml.safe_load(text)
    if not isinstance(patch, dict) or "kind" not in patch:
        raise NotImplementedError(f"{folder}: only strategic-merge patches (JSON 6902 is not)")
    _refuse_lists(patch, folder)
    name = patch["metadata"]["name"]
    matches = [o for o in objects if o["kind"] == patch["kind"] and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{folder}: patch matches {len(matches)} objects"
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
    body["metadata"] = {k: v for k, v in patch["metadata"].items() if k not in ("name",)}
    body["metadata"].pop("namespace", None)
    return [_merged(o, body) if o is matches[0] else o for o in objects]


def _refuse_lists(value: Any, folder: Path) -> None:
    if isinstance(value, list):
        raise NotImplementedError(f"{folder}: a patch with lists (strategic merge keys)")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_lists(item, folder)


def _merged(target: Manifest, patch: Mapping[str, Any]) -> Manifest:
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@cache
def _rendered(folder: Path) -> list[Manifest]:
    command = kustomize_command()
    return render_builtin(folder) if command is None else render_real(folder, command)


def rendered(overlay: str) -> list[Manifest]:
    """The objects of ``manifests/overlays/<overlay>`` (a fresh copy each call)."""
    return copy.deepcopy(_rendered(MANIFESTS / "overlays" / overlay))


def by_key(objects: list[Manifest]) -> dict[tuple[str, str, str], Manifest]:
    """Objects by (kind, namespace, name); fails on duplicates."""
    keyed: dict[tuple[str, str, str], Manifest] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in keyed, f"duplicate object {key}"
        keyed[key] = obj
    return keyed


def one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    """The single object of that kind and name."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    """Each overlay in turn."""
    return str(request.param)


# --- containers ------------------------------------------------------------------------------


def containers(obj: Manifest) -> Iterator[tuple[str, Manifest]]:
    """Every container spec an object defines, with a label for messages."""
    label = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        pod = spec["template"]["spec"]
        for field in ("initContainers", "containers"):
            for container in pod.get(field, []):
                yield f"{label} {container['name']}", container
    elif obj["kind"] == "ServingRuntime":
        for container in spec.get("containers", []):
            yield f"{label} {container['name']}", container
    elif obj["kind"] == "InferenceService":
        predictor = spec["predictor"]
        if "model" in predictor:
            yield f"{label} predictor.model", predictor["model"]
        for container in predictor.get("containers", []):
            yield f"{label} {container['name']}", container


def all_containers(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    """Every container spec of the rendered objects."""
    return [pair for obj in objects for pair in containers(obj)]


# --- KServe models ---------------------------------------------------------------------------

_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def kserve_model(data: Any, klass: str, path: str, problems: list[str]) -> Any:
    """Deserialise ``data`` into the KServe/Kubernetes SDK model ``klass``, noting every problem.

    Looks model names up in ``kserve.models`` then ``kubernetes.client.models`` (KServe models
    embed core types such as ``V1Container``), which neither SDK's own ``ApiClient`` does alone.
    A key the model does not declare, or a primitive of the wrong type, is recorded in
    ``problems`` instead of being dropped or coerced silently.
    """
    if data is None:
        return None
    if klass.startswith("list["):
        if not isinstance(data, list):
            problems.append(f"{path}: expected a list")
            return None
        inner = klass[5:-1]
        return [kserve_model(item, inner, f"{path}[{i}]", problems) for i, item in enumerate(data)]
    if klass.startswith("dict("):
        if not isinstance(data, dict):
            problems.append(f"{path}: expected a map")
            return None
        inner = klass[len("dict(") : -1].split(", ", 1)[1]
        return {k: kserve_model(v, inner, f"{path}.{k}", problems) for k, v in data.items()}
    if klass == "object":
        return data
    if klass in _PRIMITIVES:
        if not isinstance(data, _PRIMITIVES[klass]) or (klass == "int" and data is True):
            problems.append(f"{path}: {data!r} is not a {klass}")
        return data
    model = getattr(kserve.models, klass, None) or getattr(kubernetes.client.models, klass)
    if not isinstance(data, dict):
        problems.append(f"{path}: expected an object ({klass})")
        return None
    attributes = {json_key: attr for attr, json_key in model.attribute_map.items()}
    problems.extend(f"{path}.{key}: unknown to {klass}" for key in data if key not in attributes)
    values = {
        attr: kserve_model(
            data[json_key], model.openapi_types[attr], f"{path}.{json_key}", problems
        )
        for json_key, attr in attributes.items()
        if json_key in data
    }
    try:
        return model(**values)
    except ValueError as exc:  # a required field is missing
        problems.append(f"{path}: {exc}")
        return None


def kserve_problems(obj: Manifest) -> tuple[list[str], Any]:
    """Problems deserialising a KServe object with the SDK, and the SDK object."""
    problems: list[str] = []
    model = kserve_model(obj, KSERVE_MODELS[obj["kind"]], obj["kind"], problems)
    return problems, model


# --- tests: rendering and schemas -------------------------------------------------------------


def test_overlays_render_the_whole_base(overlay: str) -> None:
    objects = by_key(rendered(overlay))
    kinds = sorted(kind for kind, _, _ in objects)
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ServiceAccount",
            "ServingRuntime",
            *(["Role", "RoleBinding"] if overlay == "standard" else []),
        ]
    )
    for (kind, namespace, name), _ in objects.items():
        expected = "" if kind in CLUSTER_SCOPED_KINDS else NAMESPACE
        if name == "docloop-kserve-config-reader":
            expected = KSERVE_NAMESPACE
        assert namespace == expected, f"{kind}/{name} is in namespace {namespace!r}"
    assert ("Namespace", "", NAMESPACE) in objects


def test_builtin_renderer_agrees_with_kustomize(overlay: str, tmp_path: Path) -> None:
    command = kustomize_command()
    if command is None:
        pytest.skip("no kustomize on this machine: the builtin renderer is all there is")
    folder = MANIFESTS / "overlays" / overlay
    assert by_key(render_builtin(folder)) == by_key(render_real(folder, command))
    secrets = filled_secrets(tmp_path)
    assert by_key(decoded(render_builtin(secrets))) == by_key(
        decoded(render_real(secrets, command))
    )


def decoded(objects: list[Manifest]) -> list[Manifest]:
    """Secrets with their values decoded (kustomize folds long base64 lines)."""
    return [
        {**o, "data": {k: base64.b64decode(v).decode() for k, v in o["data"].items()}}
        if o["kind"] == "Secret"
        else o
        for o in objects
    ]


def filled_secrets(tmp_path: Path) -> Path:
    """A copy of ``manifests/secrets`` with every ``*.env.example`` copied to its ``*.env``."""
    folder = tmp_path / "secrets"
    shutil.copytree(SECRETS, folder)
    for example in folder.glob("*.env.example"):
        shutil.copy(example, folder / example.name.removesuffix(".example"))
    return folder


def render(folder: Path) -> list[Manifest]:
    """A kustomization rendered by the real kustomize if there is one, else the builtin one."""
    command = kustomize_command()
    return render_builtin(folder) if command is None else render_real(folder, command)


def test_moving_to_another_namespace_moves_the_bindings(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    team = tmp_path / "manifests" / "overlays" / "team"
    team.mkdir()
    (team / "kustomization.yaml").write_text("namespace: team-a\nresources:\n  - ../knative\n")
    command = kustomize_command()
    objects = render_builtin(team) if command is None else render_real(team, command)
    assert ("Namespace", "", "team-a") in by_key(objects)
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            assert obj["metadata"]["namespace"] == "team-a", obj["metadata"]["name"]
        for subject in obj.get("subjects", []):
            assert subject["namespace"] == "team-a"


# The oldest Kubernetes docloop states (manifests/README.md): Knative Serving 1.21, which KServe
# 0.20 installs, refuses older API servers (knative.dev/pkg version.go: defaultMinimumVersion).
MIN_KUBERNETES = "1.33.0"


def kubernetes_versions() -> list[str]:
    """The stated minimum and the newest release kubernetes-validate has schemas for."""
    return [MIN_KUBERNETES, kubernetes_validate.latest_version()]


def kubernetes_version() -> str:
    """The stated minimum Kubernetes release."""
    return MIN_KUBERNETES


def test_core_objects_validate_against_the_kubernetes_schemas(overlay: str) -> None:
    failures = []
    for version in kubernetes_versions():
        for obj in rendered(overlay):
            if obj["kind"] in KSERVE_MODELS:
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                failures.append(f"{version} {name} {where}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_kubectl_kustomize_output_passes_kubernetes_validate_strict(
    overlay: str, tmp_path: Path
) -> None:
    """The documented check, as a platform engineer runs it: the CLI on kustomize's output."""
    command = kustomize_command()
    cli = Path(sys.executable).parent / "kubernetes-validate"
    if command is None or not cli.exists():
        pytest.skip("needs kubectl (or kustomize) and the kubernetes-validate command")
    output = tmp_path / f"{overlay}.yaml"
    rendered_text = subprocess.run(
        [*command, str(MANIFESTS / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    core = [o for o in yaml.safe_load_all(rendered_text) if o and o["kind"] not in KSERVE_MODELS]
    output.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    for version in kubernetes_versions():
        done = subprocess.run(
            [str(cli), "--strict", "-k", version, str(output)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_kserve_objects_deserialise_into_the_sdk_models_without_loss(overlay: str) -> None:
    client = kubernetes.client.ApiClient()
    kserve_objects = [o for o in rendered(overlay) if o["kind"] in KSERVE_MODELS]
    assert sorted(o["kind"] for o in kserve_objects) == ["ServingRuntime"]
    for obj in kserve_objects:
        problems, model = kserve_problems(obj)
        assert not problems, "\n".join(problems)
        assert isinstance(model, getattr(kserve, KSERVE_MODELS[obj["kind"]]))
        round_trip = client.sanitize_for_serialization(model)
        assert without_sdk_defaults(round_trip, obj) == obj


def without_sdk_defaults(serialised: Any, original: Any) -> Any:
    """``serialised`` less the keys the SDK added with its empty defaults (``name: ''``...).

    A field the SDK dropped or changed still shows as a difference from ``original``.
    """
    if isinstance(serialised, dict) and isinstance(original, dict):
        return {
            key: without_sdk_defaults(value, original.get(key))
            for key, value in serialised.items()
            if key in original or value not in ("", 0, False)
        }
    if isinstance(serialised, list) and isinstance(original, list):
        return [without_sdk_defaults(s, o) for s, o in zip(serialised, original, strict=False)]
    return serialised


def test_kserve_check_reports_a_misspelt_field() -> None:
    runtime = one(rendered("knative"), "ServingRuntime", "docloop-predictor")
    runtime["spec"]["supportedModelFormat"] = runtime["spec"].pop("supportedModelFormats")
    runtime["spec"]["replicas"] = "1"
    problems, _ = kserve_problems(runtime)
    assert problems == [
        "ServingRuntime.spec.supportedModelFormat: unknown to V1alpha1ServingRuntimeSpec",
        "ServingRuntime.spec.replicas: '1' is not a int",
    ]


def test_kserve_containers_validate_as_core_containers(overlay: str) -> None:
    runtime = one(rendered(overlay), "ServingRuntime", "docloop-predictor")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "servingruntime-check"},
        "spec": {
            "containers": runtime["spec"]["containers"],
            "volumes": runtime["spec"]["volumes"],
        },
    }
    kubernetes_validate.validate(pod, kubernetes_version(), strict=True)


# --- tests: images, resources, security -------------------------------------------------------


def test_every_image_is_a_docloop_image_at_the_package_version(overlay: str) -> None:
    expected = {
        name: f"{DEFAULT_REGISTRY}/{image.removeprefix(images.REGISTRY + '/')}"
        for name, image in (("base", images.BASE_IMAGE), ("serve", images.SERVE_IMAGE))
    }
    used = {label: c["image"] for label, c in all_containers(rendered(overlay)) if "image" in c}
    assert used == {
        "ServingRuntime/docloop-predictor kserve-container": expected["serve"],
        "Deployment/docloop-feedback feedback-api": expected["base"],
    }
    for image in used.values():
        assert image.endswith(f":{images.VERSION}")
        assert not image.endswith(":latest")


def test_every_container_has_requests_and_limits(overlay: str) -> None:
    found = all_containers(rendered(overlay))
    assert len(found) == 2
    for label, container in found:
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert set(resources.get(bound, {})) >= {"cpu", "memory"}, f"{label}: {bound}"


def test_every_container_runs_unprivileged(overlay: str) -> None:
    for label, container in all_containers(rendered(overlay)):
        context = container.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, label
        assert context.get("runAsUser", 10001) != 0, label
        assert context.get("allowPrivilegeEscalation") is False, label
        assert context.get("capabilities", {}).get("drop") == ["ALL"], label
        assert context.get("readOnlyRootFilesystem") is True, label
        assert not context.get("privileged", False), label


def test_writable_paths_are_volumes(overlay: str) -> None:
    objects = rendered(overlay)
    runtime = one(objects, "ServingRuntime", "docloop-predictor")
    deployment = one(objects, "Deployment", "docloop-feedback")
    for volumes, container in (
        (runtime["spec"]["volumes"], runtime["spec"]["containers"][0]),
        (
            deployment["spec"]["template"]["spec"]["volumes"],
            deployment["spec"]["template"]["spec"]["containers"][0],
        ),
    ):
        names = {v["name"] for v in volumes}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert {"/tmp", "/home/docloop"} <= set(mounts)
        assert set(mounts.values()) <= names


# --- tests: RBAC -----------------------------------------------------------------------------


def test_rbac_is_namespaced_and_least_privilege(overlay: str) -> None:
    objects = rendered(overlay)
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    granted: dict[tuple[str, str], set[str]] = {}
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": binding["roleRef"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": PIPELINE_SA, "namespace": NAMESPACE}
        ]
        role = roles[binding["roleRef"]["name"]]
        namespace = role["metadata"]["namespace"]
        assert namespace == binding["metadata"]["namespace"]
        for rule in role["rules"]:
            if namespace == KSERVE_NAMESPACE:
                # one object of KServe's namespace, by name, read only
                assert rule == {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [KSERVE_CONFIGMAP],
                    "verbs": ["get"],
                }
            else:
                assert namespace == NAMESPACE
                assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/URLs"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == GRANTS[overlay]
    if overlay == "standard":
        config = load_config(environ={CONFIG_YAML_ENV: cluster_config(objects)})
        assert config.deploy.kserve.config_namespace == KSERVE_NAMESPACE
        assert config.deploy.kserve.gateway_api == "auto", "the Role is what `auto` reads with"
    assert all("*" not in verbs and "delete" not in verbs for verbs in granted.values())
    assert set(roles) == {b["roleRef"]["name"] for b in objects if b["kind"] == "RoleBinding"}


def test_only_the_pipeline_account_gets_an_api_token(overlay: str) -> None:
    objects = rendered(overlay)
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert set(accounts) == {PIPELINE_SA, "docloop-predictor", "docloop-feedback"}
    assert accounts[PIPELINE_SA].get("automountServiceAccountToken", True) is True
    assert accounts["docloop-predictor"]["automountServiceAccountToken"] is False
    assert accounts["docloop-feedback"]["automountServiceAccountToken"] is False
    pod = one(objects, "Deployment", "docloop-feedback")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "docloop-feedback"
    assert pod["automountServiceAccountToken"] is False
    # deploy-kserve names this account in the InferenceService it creates
    config = load_config(environ={CONFIG_YAML_ENV: cluster_config(objects)})
    assert config.deploy.service_account == "docloop-predictor"
    # KServe's storage initializer takes the model download credentials from this account.
    assert accounts["docloop-predictor"]["secrets"] == [{"name": platform.STORAGE_SECRET}]


# --- tests: secrets and configuration --------------------------------------------------------


def test_secrets_are_generated_from_files_git_ignores(tmp_path: Path) -> None:
    objects = render(filled_secrets(tmp_path))
    assert {o["kind"] for o in objects} == {"Secret"}
    secrets = {o["metadata"]["name"]: o for o in objects}
    # fixed names: the pipelines, the ServingRuntime and the feedback API name them
    assert {name: set(s["data"]) for name, s in secrets.items()} == SECRET_KEYS
    for name, secret in secrets.items():
        assert secret["metadata"]["namespace"] == NAMESPACE
        assert secret["type"] == "Opaque"
        for key, value in secret["data"].items():
            text = base64.b64decode(value).decode("utf-8")
            assert PLACEHOLDER in text, f"{name}.{key} is not a placeholder"
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), f"{name}.{key} looks like a key"
    templates = sorted(SECRETS.glob("*.env.example"))
    assert len(templates) == len(SECRET_KEYS)
    for template in templates:
        filled = SECRETS / template.name.removesuffix(".example")
        assert git_ignores(filled), f"{filled.name} (credentials) is not ignored by git"
        assert not git_ignores(template), f"{template.name} (the template) is ignored by git"


def git_ignores(path: Path) -> bool:
    """Whether git would leave ``path`` out of a commit (``git check-ignore``)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", str(path)], check=False, timeout=30
    )
    assert done.returncode in (0, 1), "git check-ignore failed"
    return done.returncode == 0


def test_secret_references_point_at_declared_keys(overlay: str, tmp_path: Path) -> None:
    objects = rendered(overlay)
    secrets = {o["metadata"]["name"]: o["data"] for o in render(filled_secrets(tmp_path))}
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    for label, container in all_containers(objects):
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert ref["key"] in secrets[ref["name"]], f"{label} {env['name']}"
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                assert ref["key"] in config_maps[ref["name"]], f"{label} {env['name']}"
        for env_from in container.get("envFrom", []):
            assert env_from["secretRef"]["name"] in secrets, label


def cluster_config(objects: list[Manifest]) -> str:
    """The ``docloop.yaml`` of ConfigMap ``docloop-config``."""
    config_map = one(objects, "ConfigMap", platform.CONFIG_MAP)
    assert set(config_map["data"]) == {"docloop.yaml"}
    return str(config_map["data"]["docloop.yaml"])


# The settings the cluster configuration changes from docloop.example.yaml: nothing on a pod's disk.
_SHARED_STATE = {
    "data_root": "s3://docloop/data",
    "deploy.target": "kserve",
    # the feedback API serves 0.0.0.0 in its pod, which `none` (loopback only) refuses
    "feedback.auth.modes": ["token"],
}
CLUSTER_SETTINGS = {
    "knative": _SHARED_STATE,
    "standard": {**_SHARED_STATE, "deploy.mode": "standard"},
}


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_the_config_map_is_the_example_config_with_shared_state(overlay: str) -> None:
    """docloop.example.yaml with only the cluster settings changed (the test that kept them equal
    byte for byte held the laptop defaults, a file:// data root and the local target, in pods)."""
    text = cluster_config(rendered(overlay))
    cluster = _flat(load_config(environ={CONFIG_YAML_ENV: text}).model_dump())
    example = _flat(load_config(ROOT / "docloop.example.yaml", environ={}).model_dump())
    changed = {key: value for key, value in cluster.items() if example[key] != value}
    assert changed == CLUSTER_SETTINGS[overlay]
    # the rest of the text is the example's, comments included, so the two cannot drift apart:
    # an example line is gone only where a cluster setting replaced it
    example_text = (ROOT / "docloop.example.yaml").read_text(encoding="utf-8")
    changed_keys = {key.rsplit(".", 1)[-1] for key in CLUSTER_SETTINGS[overlay]}
    diff = difflib.ndiff(_settings_lines(example_text), _settings_lines(text))
    removed = [line[2:] for line in diff if line.startswith("- ")]
    assert len(removed) <= len(changed_keys), removed
    assert all(line.split(":")[0].strip() in changed_keys for line in removed), removed


def _settings_lines(text: str) -> list[str]:
    """The lines of a docloop.yaml from its first setting on (the header comment differs)."""
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if not line.startswith("#")) :]


def test_the_cluster_config_starts_in_a_pod_with_the_secrets_and_names_a_missing_one(
    overlay: str,
) -> None:
    from docloop.config import store_url, tracking_uri
    from docloop.errors import ConfigError

    text = cluster_config(rendered(overlay))
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", CONFIG_YAML_ENV: text}
    config = load_config(environ=pod)  # a pod-local data root or target would raise here
    with pytest.raises(ConfigError, match=f"Secret '{platform.STORE_SECRET}'"):
        store_url(config.store, pod)
    with pytest.raises(ConfigError, match=f"Secret '{platform.MLFLOW_SECRET}'"):
        tracking_uri(config.tracking, pod)
    filled = {
        **pod,
        "DOCLOOP_STORE_URL": "postgresql+psycopg://docloop@postgres.db/docloop",
        "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
    }
    assert store_url(config.store, filled).startswith("postgresql")
    assert tracking_uri(config.tracking, filled).startswith("https://")


def test_the_names_in_the_config_check_are_the_pipelines_names() -> None:
    from docloop import config

    assert config.CONFIG_MAP_NAME == platform.CONFIG_MAP
    assert config.STORE_SECRET_NAME == platform.STORE_SECRET
    assert config.MLFLOW_SECRET_NAME == platform.MLFLOW_SECRET


def test_config_map_is_mounted_where_the_apps_read_it(overlay: str) -> None:
    objects = rendered(overlay)
    pod = one(objects, "Deployment", "docloop-feedback")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    name = volume["configMap"]["name"]
    assert re.fullmatch(rf"{FEEDBACK_CONFIG_MAP}-[a-z0-9]{{10}}", name), name
    assert (
        one(objects, "ConfigMap", name)["data"]
        == one(objects, "ConfigMap", platform.CONFIG_MAP)["data"]
    )
    container = pod["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert f"--config={mount['mountPath']}/docloop.yaml" in container["args"]
    runtime = one(objects, "ServingRuntime", "docloop-predictor")["spec"]["containers"][0]
    config_env = {e["name"]: e for e in runtime["env"]}[CONFIG_YAML_ENV]
    assert config_env["valueFrom"]["configMapKeyRef"] == {
        "name": platform.CONFIG_MAP,
        "key": "docloop.yaml",
    }


def test_the_builtin_hash_is_kustomizes(overlay: str) -> None:
    """kustomize_hash gives the suffix that kustomize gave (where this machine has one)."""
    objects = rendered(overlay)
    (hashed,) = [o for o in objects if o["metadata"]["name"].startswith(FEEDBACK_CONFIG_MAP)]
    unsuffixed = {**hashed, "metadata": {**hashed["metadata"], "name": FEEDBACK_CONFIG_MAP}}
    assert hashed["metadata"]["name"] == f"{FEEDBACK_CONFIG_MAP}-{kustomize_hash(unsuffixed)}"


# --- tests: KServe wiring --------------------------------------------------------------------


def test_deployment_mode_differs_per_overlay() -> None:
    modes = {
        overlay: load_config(
            environ={CONFIG_YAML_ENV: cluster_config(rendered(overlay))}
        ).deploy.mode
        for overlay in OVERLAYS
    }
    assert modes == {"knative": "knative", "standard": "standard"}


def _cli_options(command: str) -> set[str]:
    """The option names of ``docloop <command>``."""
    import typer.main

    from docloop.cli import app

    commands: dict[str, Any] = getattr(typer.main.get_command(app), "commands", {})
    return {opt for param in commands[command].params for opt in param.opts}


def _flags(args: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}


def test_predictor_args_are_docloop_serve_options(overlay: str) -> None:
    runtime = one(rendered(overlay), "ServingRuntime", "docloop-predictor")
    (container,) = runtime["spec"]["containers"]
    assert "command" not in container, "the serve image's entrypoint is `docloop serve`"
    entrypoint = re.search(
        r"^ENTRYPOINT (.+)$", (ROOT / "images/serve/Dockerfile").read_text(), re.MULTILINE
    )
    assert entrypoint is not None
    assert yaml.safe_load(entrypoint.group(1)) == ["docloop", "serve"]
    assert _flags(container["args"]) <= _cli_options("serve")
    assert "--model=/mnt/models" in container["args"]  # where the storage initializer puts it
    port = next(a for a in container["args"] if a.startswith("--port="))
    assert [p["containerPort"] for p in container["ports"]] == [int(port.split("=")[1])]
    env = {e["name"] for e in container["env"]}
    for arg in container["args"]:
        for variable in re.findall(r"\$\((\w+)\)", arg):
            assert variable in env, f"{arg} expands an undefined variable"


def test_feedback_api_args_probes_and_service(overlay: str) -> None:
    objects = rendered(overlay)
    deployment = one(objects, "Deployment", "docloop-feedback")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["docloop", "feedback-api"]
    assert _flags(container["args"]) <= _cli_options("feedback-api")
    assert "--host=0.0.0.0" in container["args"]
    port = int(next(a for a in container["args"] if a.startswith("--port=")).split("=")[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # liveness: the process only (/livez); readiness: the state store answers (/healthz)
    paths = {"livenessProbe": "/livez", "readinessProbe": "/healthz"}
    for probe, path in paths.items():
        http = container[probe]["httpGet"]
        assert http["path"] == path
        assert ports[http["port"]] == port
    store_env = {e["name"]: e for e in container["env"]}["DOCLOOP_STORE_URL"]
    assert store_env["valueFrom"]["secretKeyRef"] == {
        "name": platform.STORE_SECRET,
        "key": "DOCLOOP_STORE_URL",
    }
    service = one(objects, "Service", "docloop-feedback")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert ports[service_port["targetPort"]] == port


# --- tests: a bring-up from an empty namespace (issue 18) ------------------------------------

# Knative Serving at 98e5ef90aa7033797aa0a61ef97f3ff7e49a3944, pkg/apis/serving/fieldmask.go:
# SecurityContextMask keeps these container-level fields; PodSpecMask drops the pod-level
# securityContext unless `kubernetes.podspec-securitycontext` (pkg/apis/config/features.go,
# Disabled by default) or `secure-pod-defaults` (Disabled by default) is on.
KNATIVE_CONTAINER_SECURITY_FIELDS = {
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "seccompProfile",
    "privileged",  # only false (SecurityContextMask)
}
KNATIVE_CAPABILITY_FIELDS = {"drop"}  # CapabilitiesMask: `add` needs a feature flag


def knative_revision_problems(obj: Manifest) -> list[str]:
    """Fields Knative's default field masks refuse in the revision an object turns into.

    A port of ``PodSpecMask``, ``PodSecurityContextMask``, ``SecurityContextMask`` and
    ``CapabilitiesMask`` (knative/serving ``pkg/apis/serving/fieldmask.go`` at
    98e5ef90aa7033797aa0a61ef97f3ff7e49a3944) with every feature flag at its default: the
    pod-level ``securityContext`` is refused whole; a container's ``securityContext`` keeps only
    the fields above. KServe copies a ServingRuntime's containers and an InferenceService's
    predictor into the Knative Service it creates, so both are checked.
    """
    label = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = obj.get("spec", {})
    pods = {obj["kind"]: spec}
    if obj["kind"] == "InferenceService":
        pods = {"predictor": spec.get("predictor", {})}
        for i, canary in enumerate(spec.get("canary", [])):
            pods[f"canary[{i}]"] = canary.get("predictor", {})
    problems = []
    for where, pod in pods.items():
        if "securityContext" in pod:
            problems.append(
                f"{label} {where}: must not set the field(s): securityContext "
                "(kubernetes.podspec-securitycontext is disabled by default)"
            )
        found = list(pod.get("containers", []))
        if isinstance(pod.get("model"), dict):
            found.append({"name": "model", **pod["model"]})
        for container in found:
            context = container.get("securityContext", {})
            for key in sorted(set(context) - KNATIVE_CONTAINER_SECURITY_FIELDS):
                problems.append(f"{label} {container['name']}: securityContext.{key} not allowed")
            if context.get("privileged") is True:
                problems.append(f"{label} {container['name']}: privileged: true not allowed")
            for key in sorted(set(context.get("capabilities", {})) - KNATIVE_CAPABILITY_FIELDS):
                problems.append(f"{label} {container['name']}: capabilities.{key} not allowed")
    return problems


KNATIVE_KINDS = ("InferenceService", "ServingRuntime", "ClusterServingRuntime")


def test_no_inference_service_until_there_is_a_model(overlay: str) -> None:
    """deploy-kserve creates the InferenceService at the first model (a template never loads)."""
    found = [o["metadata"]["name"] for o in rendered(overlay) if o["kind"] == "InferenceService"]
    assert found == [], f"kubectl apply -k creates InferenceService {found} before any model"


def test_nothing_knative_makes_sets_a_pod_level_security_context(overlay: str) -> None:
    problems = [
        problem
        for obj in rendered(overlay)
        if obj["kind"] in KNATIVE_KINDS
        for problem in knative_revision_problems(obj)
    ]
    assert problems == []


def test_the_knative_mask_check_refuses_what_knative_refuses() -> None:
    runtime = {
        "kind": "ServingRuntime",
        "metadata": {"name": "r"},
        "spec": {
            "securityContext": {"runAsNonRoot": True},
            "containers": [
                {
                    "name": "c",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "procMount": "Default",
                        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
                    },
                }
            ],
        },
    }
    assert knative_revision_problems(runtime) == [
        "ServingRuntime/r ServingRuntime: must not set the field(s): securityContext "
        "(kubernetes.podspec-securitycontext is disabled by default)",
        "ServingRuntime/r c: securityContext.procMount not allowed",
        "ServingRuntime/r c: capabilities.add not allowed",
    ]


def test_apply_never_overwrites_real_secrets(overlay: str) -> None:
    secrets = [o["metadata"]["name"] for o in rendered(overlay) if o["kind"] == "Secret"]
    assert secrets == [], f"kubectl apply -k would overwrite Secrets {secrets} with templates"


def test_secret_references_are_required(overlay: str) -> None:
    optional = []
    for label, container in all_containers(rendered(overlay)):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref.get("optional"):
                optional.append(f"{label} env {env['name']}")
        for env_from in container.get("envFrom", []):
            if env_from.get("secretRef", {}).get("optional"):
                optional.append(f"{label} envFrom {env_from['secretRef']['name']}")
    assert optional == [], "a missing Secret must stop the pod, not start it on local state"


def _config_volume(objects: list[Manifest]) -> str:
    pod = one(objects, "Deployment", "docloop-feedback")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    return str(volume["configMap"]["name"])


def test_a_config_change_rolls_the_feedback_api(overlay: str, tmp_path: Path) -> None:
    before = rendered(overlay)
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    for config in (tmp_path / "manifests").rglob("docloop.yaml"):
        config.write_text(config.read_text("utf-8") + "# changed\n", encoding="utf-8")
    folder = tmp_path / "manifests" / "overlays" / overlay
    command = kustomize_command()
    after = render_builtin(folder) if command is None else render_real(folder, command)
    assert _config_volume(after) != _config_volume(before), (
        "the Deployment's pod template names the same ConfigMap after a config change: no rollout"
    )
    # the pipelines read the ConfigMap by its fixed name
    assert (
        one(after, "ConfigMap", platform.CONFIG_MAP)["data"]
        != one(before, "ConfigMap", platform.CONFIG_MAP)["data"]
    )


def test_liveness_does_not_depend_on_the_database(overlay: str, tmp_path: Path) -> None:
    """The probes, under the cluster configuration's authentication, with the database gone."""
    import sqlalchemy
    from fastapi.testclient import TestClient

    from docloop.feedback.api import create_app
    from docloop.store.db import open_store

    objects = rendered(overlay)
    container = one(objects, "Deployment", "docloop-feedback")["spec"]["template"]["spec"][
        "containers"
    ][0]
    config = load_config(environ={CONFIG_YAML_ENV: cluster_config(objects)})
    assert config.feedback.auth.modes != ["none"], "a pod serves 0.0.0.0: it needs authentication"
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    app = create_app(config.model_copy(update={"data_root": tmp_path.as_uri()}), store)
    # the database goes away: every new connection fails
    store.engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'gone' / 'state.db'}")
    with TestClient(app) as client:
        live = client.get(container["livenessProbe"]["httpGet"]["path"])
        ready = client.get(container["readinessProbe"]["httpGet"]["path"])
    assert live.status_code == 200, (
        f"liveness {container['livenessProbe']['httpGet']['path']} answers {live.status_code} "
        "while the database is down (503: it asks the database, so an outage restarts every "
        "replica; 401: the probe carries no credentials)"
    )
    assert ready.status_code == 503, "readiness takes a pod out of the Service when the store fails"


# KFP's Argo compiler labels every task pod of a v2 pipeline so (backend/src/v2/compiler/
# argocompiler: podMetadata labels), which is how a NetworkPolicy tells the pipeline's pods.
KFP_POD_LABEL = {"pipelines.kubeflow.org/v2_component": "true"}
# KServe labels every predictor pod (both modes) with the InferenceService's name.
PREDICTOR_POD_LABEL = "serving.kserve.io/inferenceservice"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Where the traffic of each overlay comes from: Istio's ingress gateway in both; Knative's
# activator and autoscaler (queue-proxy metrics) in knative; the Gateway API's proxies in standard.
INGRESS_NAMESPACES = {
    "knative": {"istio-system", "knative-serving"},
    "standard": {"istio-system", "kserve", "envoy-gateway-system"},
}


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) matches."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    if not dict(selector.get("matchLabels", {})).items() <= dict(labels).items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values", []))
        present = key in labels
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator == "In" and (not present or labels[key] not in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
    return True


def _admitted_peers(policies: list[Manifest], pod_labels: Mapping[str, str]) -> list[Manifest]:
    """The ``from`` peers of every ingress rule of the policies that select a pod."""
    peers = []
    for policy in policies:
        spec = policy["spec"]
        if not _selects(spec["podSelector"], pod_labels):
            continue
        assert spec.get("policyTypes") == ["Ingress"], policy["metadata"]["name"]
        for rule in spec.get("ingress", []):
            assert rule.get("from"), (
                f"{policy['metadata']['name']}: a rule without `from` admits all"
            )
            peers.extend(rule["from"])
    return peers


def _peer_sources(peers: list[Manifest]) -> set[str]:
    """Each peer as ``pipeline-pods`` or ``namespace:<name>``; anything else fails."""
    sources = set()
    for peer in peers:
        assert "ipBlock" not in peer, peer
        if "namespaceSelector" in peer:
            assert "podSelector" not in peer or peer["podSelector"] == {}, peer
            names = peer["namespaceSelector"].get("matchLabels", {})
            assert set(names) == {NAMESPACE_NAME_LABEL}, peer
            sources.add(f"namespace:{names[NAMESPACE_NAME_LABEL]}")
        else:
            assert peer["podSelector"] == {"matchLabels": KFP_POD_LABEL}, peer
            sources.add("pipeline-pods")
    return sources


def test_only_the_pipeline_and_the_ingress_reach_the_feedback_api_and_the_predictor(
    overlay: str,
) -> None:
    objects = rendered(overlay)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert policies, "no NetworkPolicy: every pod of the cluster reaches the feedback API"
    feedback = one(objects, "Deployment", "docloop-feedback")["spec"]["template"]["metadata"]
    predictor = {PREDICTOR_POD_LABEL: "docloop", "component": "predictor"}
    assert _peer_sources(_admitted_peers(policies, feedback["labels"])) == {
        "pipeline-pods",
        "namespace:istio-system",
    }
    assert _peer_sources(_admitted_peers(policies, predictor)) == {"pipeline-pods"} | {
        f"namespace:{name}" for name in INGRESS_NAMESPACES[overlay]
    }
    # a pod that is neither is left alone (no policy selects it)
    assert not _admitted_peers(policies, {"app.kubernetes.io/name": "something-else"})


def test_a_disruption_keeps_a_feedback_api_replica(overlay: str) -> None:
    objects = rendered(overlay)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    deployment = one(objects, "Deployment", "docloop-feedback")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selecting = [b for b in budgets if _selects(b["spec"]["selector"], labels)]
    assert len(selecting) == 1, "one PodDisruptionBudget for the feedback API"
    budget = selecting[0]["spec"]
    assert budget.get("minAvailable") == 1 or budget.get("maxUnavailable") == 1, budget
    assert deployment["spec"]["replicas"] >= 2, "a budget of 1 with 1 replica blocks every drain"


# What a call of the Kubernetes Python client needs, by its method name.
_CUSTOM_OBJECT_CALL = re.compile(
    r"(get|list|create|replace|patch|delete)_(?:namespaced|cluster)_custom_object(?:_status)?"
)
_CORE_CALL = re.compile(r"(read|list|create|replace|patch|delete)_namespaced_([a-z_]+)")
_VERB = {"get": "get", "read": "get", "list": "list", "create": "create", "replace": "update"}
_VERB |= {"patch": "patch", "delete": "delete"}


def _constant(module: Any, node: Any) -> str:
    """The string a call argument names: a literal or a module-level constant."""
    import ast

    if isinstance(node, ast.Constant):
        return str(node.value)
    assert isinstance(node, ast.Name), ast.dump(node)
    return str(getattr(module, node.id))


def kubernetes_calls() -> dict[tuple[str, str], set[str]]:
    """Every Kubernetes API call in ``src/docloop``, as (apiGroup, resource) -> RBAC verbs.

    Found in the source (``ast``) by the client's method names: ``CustomObjectsApi``'s
    ``<verb>_namespaced_custom_object(group, version, namespace, plural, ...)`` and the typed
    clients' ``<verb>_namespaced_<kind>``; ``replace`` is the ``update`` verb, ``read`` is ``get``.
    """
    import ast
    import importlib

    used: dict[tuple[str, str], set[str]] = {}
    for path in sorted((ROOT / "src" / "docloop").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_name = ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            custom = _CUSTOM_OBJECT_CALL.fullmatch(name)
            core = _CORE_CALL.fullmatch(name)
            if custom:
                module = importlib.import_module(module_name)
                arguments = {k.arg: k.value for k in node.keywords if k.arg}
                group = arguments.get("group", node.args[0] if node.args else None)
                plural = arguments.get("plural", node.args[3] if len(node.args) > 3 else None)
                key = (_constant(module, group), _constant(module, plural))
                used.setdefault(key, set()).add(_VERB[custom.group(1)])
            elif core and not name.endswith("custom_object"):
                resource = core.group(2).replace("_", "") + "s"
                used.setdefault(("", resource), set()).add(_VERB[core.group(1)])
    return used


def test_roles_grant_exactly_the_verbs_the_code_uses(overlay: str) -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for role in (o for o in rendered(overlay) if o["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    used = kubernetes_calls()
    assert used, "no Kubernetes API call found: the scan is broken"
    # Argo's executor in every KFP task pod writes its result (not docloop's code).
    assert granted.pop(("argoproj.io", "workflowtaskresults")) == {"create", "patch"}
    if overlay == "knative":
        for key in KSERVE_CONFIG_GRANT:
            used.pop(key)  # asked in Standard mode only
    assert granted == used


# --- tests: the ServingRuntime against KServe's CRD ------------------------------------------


def schema_refusal(obj: Manifest) -> Any:
    """How a strict API server answers ``obj`` against KServe's CRD (docloop.deploy.admission)."""
    from docloop.deploy import admission

    if admission.upstream_dir() is None:
        pytest.skip(f"no KServe CRDs: set {admission.UPSTREAM_ENV} (../shared/upstream)")
    return admission.schema_refusal(obj)


def test_the_serving_runtime_passes_kserves_crd_schema(overlay: str) -> None:
    runtime = one(rendered(overlay), "ServingRuntime", "docloop-predictor")
    assert schema_refusal(runtime) is None


def test_the_crd_check_refuses_an_unknown_field() -> None:
    runtime = one(rendered("knative"), "ServingRuntime", "docloop-predictor")
    runtime["spec"]["securityContext"] = {"runAsNonRoot": True}
    refusal = schema_refusal(runtime)
    assert refusal is not None and refusal.code == 400
    assert 'unknown field "spec.securityContext"' in refusal.message


def test_the_serving_runtime_serves_release_bundles(overlay: str) -> None:
    """deploy-kserve sends ``predictor.model`` with modelFormat ``docloop-release``."""
    runtime = one(rendered(overlay), "ServingRuntime", "docloop-predictor")
    assert runtime["spec"]["supportedModelFormats"] == [
        {"name": "docloop-release", "version": "1", "autoSelect": True}
    ]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == f"{DEFAULT_REGISTRY}/{images.SERVE_IMAGE.split('/')[-1]}"


def test_the_feedback_api_starts_on_the_pods_address_with_authentication(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docloop feedback-api`` as the Deployment runs it passes the no-authentication guard."""
    from docloop.feedback import api

    objects = rendered(overlay)
    (container,) = one(objects, "Deployment", "docloop-feedback")["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--insecure" not in container["args"]
    host = next(a for a in container["args"] if a.startswith("--host=")).split("=", 1)[1]
    config = load_config(environ={CONFIG_YAML_ENV: cluster_config(objects)})

    class StoreOpened(Exception):
        """The guard let the server through to opening the store."""

    def opened(url: str) -> None:
        raise StoreOpened(url)

    monkeypatch.setattr(api, "open_store", opened)
    with pytest.raises(StoreOpened):
        api.run_feedback_api(config, host, 8081)

"""The kustomize manifests render into valid, least-privilege objects that match the code.

Both overlays are rendered with the real kustomize when this machine has one (``kustomize build``,
else ``kubectl kustomize``); without one, with :func:`render_builtin`, a small renderer of exactly
the kustomize features ``manifests/`` uses (``resources``, ``namespace``, ``configMapGenerator``
with ``disableNameSuffixHash``, strategic-merge ``patches`` on maps). It refuses anything else, and
where the real binary exists a test checks that both give the same objects.

Core kinds are validated with ``kubernetes-validate`` (strict schemas, so an unknown field fails)
at the Kubernetes version of the installed ``kubernetes`` client; KServe kinds are deserialised
into the KServe SDK's models, with every field checked against the model's attributes and the
round trip through ``sanitize_for_serialization`` compared with the rendered object. No cluster is
needed (none is reachable here).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
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
# Everything the pipeline's account may do, as (apiGroup, resource) -> verbs.
PIPELINE_GRANTS = {
    ("serving.kserve.io", "inferenceservices"): {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
    },
    # Argo Workflows >= 3.4: each task pod's executor writes its WorkflowTaskResult.
    ("argoproj.io", "workflowtaskresults"): {"create", "patch"},
}

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
    "generatorOptions",
    "patches",
}


def render_builtin(folder: Path) -> list[Manifest]:
    """Render a kustomization with the features ``manifests/`` uses, and refuse any other.

    Supported: ``resources`` (YAML files and kustomization folders), ``namespace`` (set on every
    namespaced object, the ``Namespace`` object renamed, ServiceAccount subjects of role bindings
    moved along), ``configMapGenerator`` (``files`` only, with ``generatorOptions:
    disableNameSuffixHash: true``) and ``patches`` given as strategic-merge files or inline
    patches that change maps only (for which strategic merge and JSON merge patch agree).

    Args:
        folder: the folder with ``kustomization.yaml``.

    Returns:
        The rendered objects (order not significant).

    Raises:
        NotImplementedError: the kustomization uses a feature this renderer does not have.
    """
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(spec) - _KUSTOMIZATION_KEYS
    if unsupported:
        raise NotImplementedError(f"{folder}: kustomize keys {sorted(unsupported)}")
    objects: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects.extend(render_builtin(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc)
    options = spec.get("generatorOptions", {})
    if spec.get("configMapGenerator") and options.get("disableNameSuffixHash") is not True:
        raise NotImplementedError(f"{folder}: generated names with a hash suffix")
    for generator in spec.get("configMapGenerator", []):
        objects.append(_generated_config_map(folder, generator, options))
    if "namespace" in spec:
        objects = [_in_namespace(obj, spec["namespace"]) for obj in objects]
    for patch_entry in spec.get("patches", []):
        objects = _patched(folder, objects, patch_entry)
    return objects


def _generated_config_map(
    folder: Path, generator: Mapping[str, Any], options: Mapping[str, Any]
) -> Manifest:
    unsupported = set(generator) - {"name", "files", "options"}
    unsupported |= set(generator.get("options", {})) - {"labels", "annotations"}
    unsupported |= set(options) - {"disableNameSuffixHash"}
    if unsupported:
        raise NotImplementedError(f"{folder}: configMapGenerator keys {sorted(unsupported)}")
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=")  # "key=path" or "path"
        data[key or Path(source).name] = (folder / source).read_text(encoding="utf-8")
    metadata: Manifest = {"name": generator["name"]}
    for field in ("labels", "annotations"):
        if generator.get("options", {}).get(field):
            metadata[field] = dict(generator["options"][field])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


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
            "Deployment",
            "InferenceService",
            "Namespace",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Secret",
            "Secret",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ServiceAccount",
            "ServingRuntime",
        ]
    )
    for (kind, namespace, name), _ in objects.items():
        expected = "" if kind in CLUSTER_SCOPED_KINDS else NAMESPACE
        assert namespace == expected, f"{kind}/{name} is in namespace {namespace!r}"
    assert ("Namespace", "", NAMESPACE) in objects


def test_builtin_renderer_agrees_with_kustomize(overlay: str) -> None:
    command = kustomize_command()
    if command is None:
        pytest.skip("no kustomize on this machine: the builtin renderer is all there is")
    folder = MANIFESTS / "overlays" / overlay
    assert by_key(render_builtin(folder)) == by_key(render_real(folder, command))


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


def kubernetes_version() -> str:
    """The Kubernetes release of the installed client: client 30.x speaks Kubernetes 1.30."""
    major = int(kubernetes.__version__.split(".")[0])
    return f"1.{major}.0"


def test_core_objects_validate_against_the_kubernetes_schemas(overlay: str) -> None:
    version = kubernetes_version()
    failures = []
    for obj in rendered(overlay):
        if obj["kind"] in KSERVE_MODELS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']} {where}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_kserve_objects_deserialise_into_the_sdk_models_without_loss(overlay: str) -> None:
    client = kubernetes.client.ApiClient()
    kserve_objects = [o for o in rendered(overlay) if o["kind"] in KSERVE_MODELS]
    assert sorted(o["kind"] for o in kserve_objects) == ["InferenceService", "ServingRuntime"]
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
    isvc = one(rendered("knative"), "InferenceService", "docloop")
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop(
        "storageUri"
    )
    isvc["spec"]["predictor"]["minReplicas"] = "1"
    problems, _ = kserve_problems(isvc)
    assert problems == [
        "InferenceService.spec.predictor.minReplicas: '1' is not a int",
        "InferenceService.spec.predictor.model.storageURI: unknown to V1beta1ModelSpec",
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
    assert len(found) == 3
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
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == NAMESPACE
        for rule in role["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/URLs"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == PIPELINE_GRANTS
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
    isvc = one(objects, "InferenceService", "docloop")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "docloop-predictor"
    # KServe's storage initializer takes the model download credentials from this account.
    assert accounts["docloop-predictor"]["secrets"] == [{"name": platform.STORAGE_SECRET}]


# --- tests: secrets and configuration --------------------------------------------------------


def test_secrets_are_placeholders_with_exactly_the_pipeline_keys(overlay: str) -> None:
    secrets = {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == "Secret"}
    assert {name: set(s.get("stringData", {})) for name, s in secrets.items()} == SECRET_KEYS
    for name, secret in secrets.items():
        assert "data" not in secret, f"{name}: encoded values hide what they are"
        for key, value in secret["stringData"].items():
            assert PLACEHOLDER in value, f"{name}.{key} is not a placeholder"
            assert not re.search(r"AKIA[0-9A-Z]{16}", value), f"{name}.{key} looks like a key"
        for key, value in secret["metadata"].get("annotations", {}).items():
            if key.endswith("-endpoint"):
                assert PLACEHOLDER in value, f"{name} annotation {key}"


def test_secret_references_point_at_declared_keys(overlay: str) -> None:
    objects = rendered(overlay)
    secrets = {o["metadata"]["name"]: o["stringData"] for o in objects if o["kind"] == "Secret"}
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


def test_config_map_is_the_example_config_and_loads() -> None:
    example = (ROOT / "docloop.example.yaml").read_bytes()
    assert (MANIFESTS / "base" / "docloop.yaml").read_bytes() == example
    for overlay in OVERLAYS:
        config_map = one(rendered(overlay), "ConfigMap", platform.CONFIG_MAP)
        assert set(config_map["data"]) == {"docloop.yaml"}
        text = config_map["data"]["docloop.yaml"]
        assert text.encode("utf-8") == example
        # How pipeline pods read it (pipelines/platform.py: DOCLOOP_CONFIG_YAML).
        assert load_config(environ={CONFIG_YAML_ENV: text}) == load_config(
            ROOT / "docloop.example.yaml", environ={}
        )


def test_config_map_is_mounted_where_the_apps_read_it(overlay: str) -> None:
    objects = rendered(overlay)
    pod = one(objects, "Deployment", "docloop-feedback")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == platform.CONFIG_MAP
    container = pod["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert f"--config={mount['mountPath']}/docloop.yaml" in container["args"]
    runtime = one(objects, "ServingRuntime", "docloop-predictor")["spec"]["containers"][0]
    config_env = {e["name"]: e for e in runtime["env"]}[CONFIG_YAML_ENV]
    assert config_env["valueFrom"]["configMapKeyRef"] == {
        "name": platform.CONFIG_MAP,
        "key": "docloop.yaml",
    }


# --- tests: KServe wiring --------------------------------------------------------------------


def test_deployment_mode_differs_per_overlay() -> None:
    modes = {}
    for overlay in OVERLAYS:
        isvc = one(rendered(overlay), "InferenceService", "docloop")
        modes[overlay] = isvc["metadata"]["annotations"][DEPLOYMENT_MODE]
        others = [o for o in rendered(overlay) if o["kind"] != "InferenceService"]
        assert all(DEPLOYMENT_MODE not in o["metadata"].get("annotations", {}) for o in others)
    assert modes == DEPLOYMENT_MODES
    base = _rendered(MANIFESTS / "base")
    assert DEPLOYMENT_MODE not in one(base, "InferenceService", "docloop")["metadata"].get(
        "annotations", {}
    )


def test_serving_runtime_serves_the_inference_service_format(overlay: str) -> None:
    objects = rendered(overlay)
    runtime = one(objects, "ServingRuntime", "docloop-predictor")
    model = one(objects, "InferenceService", "docloop")["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert runtime["metadata"]["namespace"] == NAMESPACE
    formats = runtime["spec"]["supportedModelFormats"]
    assert formats == [{"name": "docloop", "version": "1", "autoSelect": True}]
    assert model["modelFormat"] == {"name": formats[0]["name"], "version": formats[0]["version"]}
    assert model["storageUri"].startswith("s3://")
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"


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
    for probe in ("livenessProbe", "readinessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz"
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

"""The docloop InferenceService, built from the KServe SDK's own models.

One InferenceService serves a *release* (a classifier version and an extractor version) as one
model: ``spec.predictor.model`` with ``modelFormat: docloop-release``, ``runtime:
docloop-predictor`` (the ServingRuntime of ``manifests/base``) and ``storageUri`` the release
bundle (:mod:`docloop.deploy.release_bundle`), which KServe's storage initializer downloads to
``/mnt/models``. ``predictor.name`` names the release (``release-<digest>``), so a new release
changes both the name and the storage URI — what KServe's webhook asks of a canary and of a
promotion in both modes (:mod:`docloop.deploy.admission`). The model's container fields
(image, args, env, resources, container-level ``securityContext``, mounts) are merged by KServe
into the runtime's container; nothing is set at pod level that Knative refuses.

Objects are serialised with ``kubernetes.client.ApiClient().sanitize_for_serialization``
(camelCase, as kubectl and the API server expect; the models' ``to_dict()`` is snake_case).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from docloop.config import DeployConfig
from docloop.deploy.release_bundle import MODEL_FORMAT, RUNTIME, TASK_FOLDERS, release_digest
from docloop.errors import InvalidInput

API_VERSION: Final = "serving.kserve.io/v1beta1"
KIND: Final = "InferenceService"
DEPLOYMENT_MODE: Final = "serving.kserve.io/deploymentMode"
MODE_ANNOTATION: Final = {"knative": "Knative", "standard": "Standard"}
MOUNT_ROOT: Final = "/mnt/models"
CONTAINER: Final = "kserve-container"
VERSION_LABEL: Final = "docloop.io/versions"
SUPPORTED_SCHEMES: Final = ("s3://", "gs://", "pvc://", "https://", "hf://")


@dataclass(frozen=True)
class PredictorRelease:
    """What one predictor serves: a model URI per task, the version each one is, the bundle.

    Attributes:
        storage_uris: Model folder per task (``classify``, ``extract``).
        versions: Registry version per task (shown in labels and the deploy record).
        bundle_uri: The release bundle holding both (what the cluster downloads); empty for
            targets that read the model folders themselves (local).
        variant: The predictor's name; empty: ``release-<digest>`` of the release.
    """

    storage_uris: Mapping[str, str]
    versions: Mapping[str, str]
    bundle_uri: str = field(default="")
    variant: str = field(default="")

    def __post_init__(self) -> None:
        unknown = set(self.storage_uris) - set(TASK_FOLDERS)
        if unknown or not self.storage_uris:
            raise InvalidInput(
                f"a release serves tasks {sorted(TASK_FOLDERS)}; got {sorted(self.storage_uris)}"
            )

    @property
    def name(self) -> str:
        """``predictor.name``: the variant given, else ``release-`` and the release's digest."""
        return self.variant or f"release-{release_digest(self.storage_uris, self.versions)}"

    def check_downloadable(self) -> None:
        """Refuse a release KServe's storage initializer cannot fetch (no bundle, ``file://``).

        Raises:
            InvalidInput: The bundle is missing or lives where a cluster cannot read it.
        """
        if not self.bundle_uri:
            raise InvalidInput(
                f"release {self.label} has no bundle URI; deploy plans one under data_root "
                "(docloop.deploy.release_bundle)"
            )
        if not self.bundle_uri.startswith(SUPPORTED_SCHEMES):
            raise InvalidInput(
                f"the release bundle {self.bundle_uri!r} is not a URI KServe's storage "
                f"initializer can download; put data_root under one of "
                f"{', '.join(SUPPORTED_SCHEMES)} (object storage or a PVC)"
            )

    @property
    def label(self) -> str:
        """``classify-3.extract-3``: the versions as a label value (≤ 63 characters)."""
        return ".".join(f"{task}-{self.versions.get(task, 'x')}" for task in sorted(self.versions))[
            :63
        ]


def predictor_spec(release: PredictorRelease, config: DeployConfig) -> Any:
    """The predictor of ``release``: one model (the bundle) on the docloop ServingRuntime.

    The model's container fields match the ``docloop-predictor`` ServingRuntime's container (a
    test compares them): the config from the ``docloop-config`` ConfigMap, the prediction log in
    the state store named by the ``docloop-store`` Secret, object-store credentials from
    ``docloop-storage``, non-root with a read-only root filesystem and writable ``emptyDir``s.
    """
    release.check_downloadable()
    from kserve import V1beta1ModelFormat, V1beta1ModelSpec, V1beta1PredictorSpec
    from kubernetes import client as k8s

    resources: dict[str, str] = {"cpu": config.cpu, "memory": config.memory}
    if config.gpus:
        resources["nvidia.com/gpu"] = str(config.gpus)
    model = V1beta1ModelSpec(
        model_format=V1beta1ModelFormat(name=MODEL_FORMAT),
        runtime=RUNTIME,
        storage_uri=release.bundle_uri,
        image=config.image,
        args=[
            f"--model={MOUNT_ROOT}",
            "--port=8080",
            f"--name={config.service_name}",
            "--prediction-log=$(DOCLOOP_STORE_URL)",
        ],
        env=[
            k8s.V1EnvVar(
                name="DOCLOOP_CONFIG_YAML",
                value_from=k8s.V1EnvVarSource(
                    config_map_key_ref=k8s.V1ConfigMapKeySelector(
                        name="docloop-config", key="docloop.yaml"
                    )
                ),
            ),
            k8s.V1EnvVar(
                name="DOCLOOP_STORE_URL",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(
                        name="docloop-store", key="DOCLOOP_STORE_URL"
                    )
                ),
            ),
            k8s.V1EnvVar(name="HOME", value="/home/docloop"),
        ],
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="docloop-storage"))],
        resources=k8s.V1ResourceRequirements(requests=dict(resources), limits=dict(resources)),
        security_context=k8s.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            run_as_group=10001,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        volume_mounts=[
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
            k8s.V1VolumeMount(name="home", mount_path="/home/docloop"),
        ],
    )
    return V1beta1PredictorSpec(
        name=release.name,
        model=model,
        volumes=[
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi")),
            k8s.V1Volume(name="home", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi")),
        ],
        service_account_name=config.service_account,
        labels={VERSION_LABEL: release.label},
    )


def build_inference_service(release: PredictorRelease, config: DeployConfig) -> Any:
    """A first InferenceService serving ``release`` with all the traffic."""
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec
    from kubernetes.client import V1ObjectMeta

    return V1beta1InferenceService(
        api_version=API_VERSION,
        kind=KIND,
        metadata=V1ObjectMeta(
            name=config.service_name,
            namespace=config.namespace,
            annotations={DEPLOYMENT_MODE: MODE_ANNOTATION[config.mode]},
            labels={"app.kubernetes.io/part-of": "docloop"},
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor_spec(release, config)),
    )


def serialize(obj: Any) -> Any:
    """A KServe/Kubernetes model as the JSON the API server takes (camelCase, no None)."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def plain(obj: Any) -> dict[str, Any]:
    """An InferenceService as a JSON dict, whatever form it came in (model or dict)."""
    if isinstance(obj, Mapping):
        return copy.deepcopy(dict(obj))
    serialized = serialize(obj)
    if not isinstance(serialized, dict):  # pragma: no cover - the SDK models serialise to dicts
        raise InvalidInput(f"cannot serialise {type(obj).__name__} to a JSON object")
    return serialized

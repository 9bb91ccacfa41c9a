"""The docloop InferenceService, built from the KServe SDK's own models.

One InferenceService serves both models behind one endpoint: the predictor container is the
docloop serve image (``images/serve``) started with ``--model /mnt/models``, and KServe's storage
initializer downloads each model into its own folder under it (``spec.predictor.storageUris``:
``/mnt/models/classifier`` and ``/mnt/models/extractor``), so a model is any ``s3://``, ``gs://``
or ``pvc://`` folder the registry points at.

Objects are serialised with ``kubernetes.client.ApiClient().sanitize_for_serialization``
(camelCase, as kubectl and the API server expect; the models' ``to_dict()`` is snake_case).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from docloop.config import DeployConfig
from docloop.errors import InvalidInput

API_VERSION: Final = "serving.kserve.io/v1beta1"
KIND: Final = "InferenceService"
DEPLOYMENT_MODE: Final = "serving.kserve.io/deploymentMode"
MODE_ANNOTATION: Final = {"knative": "Knative", "standard": "Standard"}
MOUNT_ROOT: Final = "/mnt/models"
CONTAINER: Final = "kserve-container"
VERSION_LABEL: Final = "docloop.io/versions"
TASK_FOLDERS: Final = {"classify": "classifier", "extract": "extractor"}
SUPPORTED_SCHEMES: Final = ("s3://", "gs://", "pvc://", "https://", "hf://")


@dataclass(frozen=True)
class PredictorRelease:
    """What one predictor serves: a model URI per task and the version each one is.

    Attributes:
        storage_uris: Model folder per task (``classify``, ``extract``).
        versions: Registry version per task (shown in labels and the deploy record).
        variant: The predictor's name (Standard mode names canaries by it).
    """

    storage_uris: Mapping[str, str]
    versions: Mapping[str, str]
    variant: str = field(default="")

    def __post_init__(self) -> None:
        unknown = set(self.storage_uris) - set(TASK_FOLDERS)
        if unknown or not self.storage_uris:
            raise InvalidInput(
                f"a release serves tasks {sorted(TASK_FOLDERS)}; got {sorted(self.storage_uris)}"
            )

    def check_downloadable(self) -> None:
        """Refuse model URIs KServe's storage initializer cannot fetch (e.g. ``file://``).

        Raises:
            InvalidInput: A model lives where a cluster cannot read it.
        """
        for task, uri in self.storage_uris.items():
            if not uri.startswith(SUPPORTED_SCHEMES):
                raise InvalidInput(
                    f"the {task} model {uri!r} is not a URI KServe's storage initializer can "
                    f"download; register the model under one of {', '.join(SUPPORTED_SCHEMES)} "
                    "(data_root on object storage or a PVC)"
                )

    @property
    def label(self) -> str:
        """``classify-3.extract-3``: the versions as a label value (≤ 63 characters)."""
        return ".".join(f"{task}-{self.versions.get(task, 'x')}" for task in sorted(self.versions))[
            :63
        ]


def predictor_spec(release: PredictorRelease, config: DeployConfig) -> Any:
    """The predictor of ``release``: the serve image, both models, resources, service account.

    The container matches the ``docloop-predictor`` ServingRuntime of ``manifests/base`` (a test
    compares them): the config from the ``docloop-config`` ConfigMap, the prediction log in the
    state store named by the ``docloop-store`` Secret, object-store credentials from
    ``docloop-storage``, non-root with a read-only root filesystem and writable ``emptyDir``s.
    """
    release.check_downloadable()
    from kserve import V1beta1PredictorSpec
    from kserve.models import V1beta1StorageUri
    from kubernetes import client as k8s

    resources: dict[str, str] = {"cpu": config.cpu, "memory": config.memory}
    if config.gpus:
        resources["nvidia.com/gpu"] = str(config.gpus)
    container = k8s.V1Container(
        name=CONTAINER,
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
        env_from=[
            k8s.V1EnvFromSource(
                secret_ref=k8s.V1SecretEnvSource(name="docloop-storage", optional=True)
            )
        ],
        ports=[k8s.V1ContainerPort(name="http1", container_port=8080, protocol="TCP")],
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
        name=release.variant or None,
        containers=[container],
        storage_uris=[
            V1beta1StorageUri(uri=uri, mount_path=f"{MOUNT_ROOT}/{TASK_FOLDERS[task]}")
            for task, uri in sorted(release.storage_uris.items())
        ],
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

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
    """The predictor of ``release``: the serve image, both models, resources, service account."""
    release.check_downloadable()
    from kserve import V1beta1PredictorSpec
    from kserve.models import V1beta1StorageUri
    from kubernetes.client import (
        V1Container,
        V1ContainerPort,
        V1EnvVar,
        V1HTTPGetAction,
        V1Probe,
        V1ResourceRequirements,
    )

    resources: dict[str, str] = {"cpu": config.cpu, "memory": config.memory}
    if config.gpus:
        resources["nvidia.com/gpu"] = str(config.gpus)
    container = V1Container(
        name=CONTAINER,
        image=config.image,
        args=["--model", MOUNT_ROOT, "--port", "8080", "--name", config.service_name],
        ports=[V1ContainerPort(container_port=8080, protocol="TCP")],
        env=[V1EnvVar(name="DOCLOOP_MODEL_VERSIONS", value=release.label)],
        resources=V1ResourceRequirements(requests=dict(resources), limits=dict(resources)),
        readiness_probe=V1Probe(
            http_get=V1HTTPGetAction(path=f"/v1/models/{config.service_name}", port=8080)
        ),
    )
    return V1beta1PredictorSpec(
        name=release.variant or None,
        containers=[container],
        storage_uris=[
            V1beta1StorageUri(uri=uri, mount_path=f"{MOUNT_ROOT}/{TASK_FOLDERS[task]}")
            for task, uri in sorted(release.storage_uris.items())
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

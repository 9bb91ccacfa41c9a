"""How pipeline tasks reach the platform: secrets, the config map, resources, caching.

Secrets never travel as pipeline parameters (they would show in the KFP UI and in run records):
each task that needs a credential gets it from a Kubernetes Secret through
``kfp.kubernetes.use_secret_as_env``. ``docloop-mlflow`` and ``docloop-store`` and the ConfigMap
are required: without them a task would keep its registry and state on the pod's own disk, so the
kubelet refuses to start it and names the missing object. ``docloop-storage`` stays optional:
GCS reaches a bucket through Workload Identity with no Secret, and a bucket without credentials
fails loudly on the first read instead of falling back to anything local. ``kfp.local`` ignores
these settings (with a warning) and the task sees the caller's environment instead.

- ``docloop-storage`` (every task that reads or writes objects): AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL. GCS uses the pod's Workload Identity instead.
- ``docloop-mlflow`` (train, register): MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME,
  MLFLOW_TRACKING_PASSWORD.
- ``docloop-store`` (register and the loop's later steps): DOCLOOP_STORE_URL.

Each key becomes the environment variable of the same name.

The ConfigMap ``docloop-config`` (key ``docloop.yaml``) is read through ``DOCLOOP_CONFIG_YAML``.

Every task gets CPU and memory requests and limits from pipeline parameters (:class:`Resources`;
memory request = limit, so a task is never the first evicted for bursting over its request), and
KFP's cache only where the task's inputs say everything about its output (:data:`UNCACHED`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineChannel

STORAGE_SECRET = "docloop-storage"
MLFLOW_SECRET = "docloop-mlflow"
STORE_SECRET = "docloop-store"
CONFIG_MAP = "docloop-config"

_STORAGE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
_MLFLOW_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
_STORE_KEYS = ("DOCLOOP_STORE_URL",)


def _secret(
    task: dsl.PipelineTask, name: str, keys: tuple[str, ...], *, optional: bool = False
) -> None:
    kubernetes.use_secret_as_env(
        task, secret_name=name, secret_key_to_env={key: key for key in keys}, optional=optional
    )


UNCACHED: dict[str, str] = {
    "snapshot-inputs": "lists the object store now: a cached listing would hide new objects",
    "build-retrain-dataset": "reads live feedback and writes review statuses back",
    "drift-check": "reads predictions and feedback since its watermark and moves the watermark",
    "train-gpu": "logs an MLflow run; in retrain it warm-starts from the champion alias (live)",
    "evaluate": "resolves the incumbent through the champion alias (live) and logs to MLflow",
    "register": "writes a registry version, its alias and the store",
    "promote": "moves the champion alias and the default row",
    "deploy-kserve": "changes what the cluster serves and promotes or rolls back",
    "rollback": "restores the previous champion and serving",
    "reject-candidate": "records the rejected attempt and alerts",
    "report-health": "records how this run ended and alerts",
}
"""Components (IR names) that are never served from KFP's cache, each with the reason.

KFP's cache key holds a task's parameter values, input artifact names and container (ported in
``tests/fakes/kfp_cache.py``), not what the task reads from a store or a registry at run time nor
what it changes: a task that does either is listed here. The others are cached; those addressed
by URI get a content digest as an input (snapshot-inputs). A test asserts this list on the
compiled pipelines.
"""


@dataclass(frozen=True)
class Resources:
    """CPU and memory for a class of tasks: Kubernetes quantities or pipeline parameters.

    Attributes:
        cpu_request: CPU the scheduler reserves (``500m``, ``2``).
        cpu_limit: CPU quota; preprocess's default worker count follows it.
        memory: Memory request and limit (``2Gi``).
    """

    cpu_request: str | PipelineChannel
    cpu_limit: str | PipelineChannel
    memory: str | PipelineChannel


def on_platform(
    task: dsl.PipelineTask,
    resources: Resources,
    *,
    mlflow: bool = False,
    store: bool = False,
) -> dsl.PipelineTask:
    """Give a task the docloop config, credentials, its resources and its caching choice.

    Args:
        task: The task.
        resources: Its CPU and memory (usually from pipeline parameters).
        mlflow: Also the MLflow credentials.
        store: Also the state store's URL.
    """
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory)
    # kfp 2.17.3's resource setters do not register their channels (set_container_image does):
    # without this a task inside ParallelFor / If / Else reads a parameter its group never gets
    task.register_pipeline_channels(
        [value for value in vars(resources).values() if isinstance(value, PipelineChannel)]
    )
    task.set_caching_options(task.component_spec.name not in UNCACHED)
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=CONFIG_MAP,
        config_map_key_to_env={"docloop.yaml": "DOCLOOP_CONFIG_YAML"},
        optional=False,
    )
    _secret(task, STORAGE_SECRET, _STORAGE_KEYS, optional=True)
    if mlflow:
        _secret(task, MLFLOW_SECRET, _MLFLOW_KEYS)
    if store:
        _secret(task, STORE_SECRET, _STORE_KEYS)
    return task


def side_effect(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Mark a task that changes the world; it must be listed in :data:`UNCACHED`.

    Raises:
        ValueError: the component is not listed (add it with its reason).
    """
    if task.component_spec.name not in UNCACHED:
        raise ValueError(f"{task.component_spec.name} changes the world: list it in UNCACHED")
    task.set_caching_options(False)
    return task

"""How pipeline tasks reach the platform: secrets as environment variables, the config map.

Secrets never travel as pipeline parameters (they would show in the KFP UI and in run records):
each task that needs a credential gets it from a Kubernetes Secret through
``kfp.kubernetes.use_secret_as_env``. The secrets are optional, so a cluster that keeps its
objects on a PVC and needs no credential runs the same compiled pipeline. ``kfp.local`` ignores
these settings (with a warning) and the task sees the caller's environment instead.

- ``docloop-storage`` (every task that reads or writes objects): AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL. GCS uses the pod's Workload Identity instead.
- ``docloop-mlflow`` (train, register): MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME,
  MLFLOW_TRACKING_PASSWORD.
- ``docloop-store`` (register and the loop's later steps): DOCLOOP_STORE_URL.

Each key becomes the environment variable of the same name.

The ConfigMap ``docloop-config`` (key ``docloop.yaml``) is read through ``DOCLOOP_CONFIG_YAML``.
"""

from __future__ import annotations

from kfp import dsl, kubernetes

STORAGE_SECRET = "docloop-storage"
MLFLOW_SECRET = "docloop-mlflow"
STORE_SECRET = "docloop-store"
CONFIG_MAP = "docloop-config"

_STORAGE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
_MLFLOW_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
_STORE_KEYS = ("DOCLOOP_STORE_URL",)


def _secret(task: dsl.PipelineTask, name: str, keys: tuple[str, ...]) -> None:
    kubernetes.use_secret_as_env(
        task, secret_name=name, secret_key_to_env={key: key for key in keys}, optional=True
    )


def on_platform(
    task: dsl.PipelineTask, *, mlflow: bool = False, store: bool = False
) -> dsl.PipelineTask:
    """Give a task the docloop config, object-store credentials and, if asked, MLflow/the store."""
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=CONFIG_MAP,
        config_map_key_to_env={"docloop.yaml": "DOCLOOP_CONFIG_YAML"},
        optional=True,
    )
    _secret(task, STORAGE_SECRET, _STORAGE_KEYS)
    if mlflow:
        _secret(task, MLFLOW_SECRET, _MLFLOW_KEYS)
    if store:
        _secret(task, STORE_SECRET, _STORE_KEYS)
    return task


def side_effect(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """A task that changes the world (register, promote, deploy): never served from KFP's cache."""
    task.set_caching_options(False)
    return task

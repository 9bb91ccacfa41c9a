"""In a Kubernetes pod, a laptop default (local files, SQLite, the local target) fails at start.

The pod is simulated by the environment the kubelet gives every container
(``KUBERNETES_SERVICE_HOST``); nothing else about a cluster is needed.
"""

from __future__ import annotations

import pytest
import yaml

from docloop.config import CONFIG_YAML_ENV, load_config, store_url, tracking_uri
from docloop.errors import ConfigError

POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
CLUSTER_CONFIG = yaml.safe_dump({"data_root": "s3://docloop/data", "deploy": {"target": "kserve"}})
POSTGRES = "postgresql+psycopg://docloop@postgres.db:5432/docloop"


def test_a_pod_without_the_config_map_fails_at_start_naming_it() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ=POD)
    message = str(raised.value)
    assert "ConfigMap 'docloop-config'" in message
    assert "data_root is 'file://./.docloop'" in message
    assert "deploy.target is 'local'" in message


def test_a_pod_without_the_store_secret_fails_naming_it() -> None:
    environ = {**POD, CONFIG_YAML_ENV: CLUSTER_CONFIG}
    config = load_config(environ=environ)
    with pytest.raises(ConfigError, match="Secret 'docloop-store' with key DOCLOOP_STORE_URL"):
        store_url(config.store, environ)
    assert store_url(config.store, {**environ, "DOCLOOP_STORE_URL": POSTGRES}) == POSTGRES


def test_a_pod_without_the_mlflow_secret_fails_naming_it() -> None:
    environ = {**POD, CONFIG_YAML_ENV: CLUSTER_CONFIG}
    config = load_config(environ=environ)
    with pytest.raises(ConfigError, match="Secret 'docloop-mlflow' with key MLFLOW_TRACKING_URI"):
        tracking_uri(config.tracking, environ)
    server = {**environ, "MLFLOW_TRACKING_URI": "https://mlflow.example.com"}
    assert tracking_uri(config.tracking, server) == "https://mlflow.example.com"


@pytest.mark.parametrize(
    "url", ["sqlite:///.docloop/state.db", "sqlite+pysqlite:////data/state.db", "file:///x"]
)
def test_a_secret_that_names_a_pod_local_database_is_refused(url: str) -> None:
    environ = {**POD, CONFIG_YAML_ENV: CLUSTER_CONFIG, "DOCLOOP_STORE_URL": url}
    with pytest.raises(ConfigError, match=r"\$DOCLOOP_STORE_URL is set"):
        store_url(load_config(environ=environ).store, environ)


@pytest.mark.parametrize("data_root", ["file:///data", "/data", "./data", "data"])
def test_a_pod_local_data_root_is_refused(data_root: str) -> None:
    text = yaml.safe_dump({"data_root": data_root, "deploy": {"target": "kserve"}})
    with pytest.raises(ConfigError, match="data_root is"):
        load_config(environ={**POD, CONFIG_YAML_ENV: text})


def test_outside_a_pod_the_laptop_defaults_hold() -> None:
    config = load_config(environ={})
    assert config.deploy.target == "local"
    assert store_url(config.store, {}) == "sqlite:///.docloop/state.db"
    assert tracking_uri(config.tracking, {}) == "sqlite:///.docloop/mlflow.db"


def test_the_explicit_setting_wins_over_the_kubelets_variable() -> None:
    from docloop.config import IN_POD_ENV, in_pod

    notebook = {**POD, IN_POD_ENV: "false"}
    assert not in_pod(notebook)
    assert store_url(load_config(environ=notebook).store, notebook).startswith("sqlite:")
    assert in_pod({IN_POD_ENV: "true"})
    with pytest.raises(ConfigError, match="data_root"):
        load_config(environ={IN_POD_ENV: "true"})
    with pytest.raises(ConfigError, match="set it to true or false"):
        in_pod({IN_POD_ENV: "maybe"})


def test_the_message_says_how_to_run_outside_a_cluster() -> None:
    with pytest.raises(ConfigError, match="set DOCLOOP_IN_POD=false"):
        load_config(environ=POD)

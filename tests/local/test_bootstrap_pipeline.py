"""The bootstrap pipeline end to end through kfp.local, and its committed compiled YAML.

The local run is real: a synthetic corpus is preprocessed in 2 shards (OCR included), split,
both models are trained (a few CPU steps), gated (floors lowered so tiny models pass) and
registered in a real SQLite-backed MLflow and state store. What cannot run here (the KFP API
server, Kubernetes) is checked on the compiled pipeline spec instead.
"""

from pathlib import Path

import pytest
import yaml

from tests.compiled import without_sdk_version
from tests.loop import BASE_DOCS, World

pytestmark = pytest.mark.local

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "compiled" / "bootstrap.yaml"


@pytest.mark.slow  # runs the whole bootstrap pipeline (the session's world)
def test_bootstrap_ends_with_a_default_model_and_a_champion(bootstrapped: World) -> None:
    from mlflow import MlflowClient

    from docloop.config import RegistryConfig
    from docloop.store import open_store
    from docloop.store.registry import Registry

    store = open_store(bootstrapped.store_url)
    tracking = bootstrapped.tracking_uri
    registry = Registry(store, tracking)
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    names = RegistryConfig()
    for name in (names.classifier_name, names.extractor_name):
        default = registry.default_version(name)
        assert default is not None, f"{name} has no default version"
        assert str(client.get_model_version_by_alias(name, "champion").version) == default.version
        assert [entry.action for entry in registry.audit_log(name)][-1] == "promote"
        model_dir = Path(default.model_uri.removeprefix("file://"))
        assert (model_dir / "docloop-model.json").is_file()


@pytest.mark.slow  # runs the whole bootstrap pipeline (the session's world)
def test_preprocess_fanned_out_over_two_shards(bootstrapped: World) -> None:
    root = bootstrapped.root
    summaries = sorted(
        (root / "pipeline-root").glob(
            "docloop-bootstrap-*/for-loop-*/preprocess/pages/summary.json"
        )
    )
    assert len(summaries) == 2
    merged = next(
        (root / "pipeline-root").glob("docloop-bootstrap-*/merge-pages/pages/summary.json")
    )
    assert yaml.safe_load(merged.read_text())["processed"] == BASE_DOCS


def test_compiled_bootstrap_is_current(tmp_path: Path) -> None:
    from docloop.kubeflow import compile_pipeline

    fresh = compile_pipeline("bootstrap", tmp_path / "bootstrap.yaml", ROOT).read_text()
    committed = COMPILED.read_text()
    assert without_sdk_version(fresh) == without_sdk_version(committed), (
        "pipelines/compiled/bootstrap.yaml is stale: run `make compile` and commit it"
    )


def test_compiled_bootstrap_has_gpus_no_cache_on_register_and_no_secrets() -> None:
    """Kubernetes-facing settings, read from the compiled spec (no cluster here)."""
    spec, platform = list(yaml.safe_load_all(COMPILED.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    trainers = [name for name in executors if name.startswith("exec-train-gpu")]
    assert len(trainers) == 2
    kube = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in trainers:
        accelerator = executors[name]["container"]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"} in kube[
            name
        ]["tolerations"]
    registers = _tasks_named(spec, "register")
    assert len(registers) == 2
    for task in registers:
        assert not task.get("cachingOptions", {}).get("enableCache", False)
    for name in ("exec-register", "exec-register-2"):
        secrets = {s["secretName"] for s in kube[name]["secretAsEnv"]}
        assert {"docloop-store", "docloop-mlflow", "docloop-storage"} <= secrets
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name in parameters:
        assert not any(word in name.lower() for word in ("secret", "password", "token", "key"))
    text = COMPILED.read_text().lower()
    for leaked in ("aws_secret_access_key:", "password:"):
        assert leaked not in text


def _tasks_named(spec: dict[str, object], prefix: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            tasks = node.get("tasks")
            if isinstance(tasks, dict):
                for name, task in tasks.items():
                    if name.startswith(prefix):
                        found.append(task)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return found


def test_compiled_bootstrap_records_and_alerts_a_failed_first_model() -> None:
    """The gate's Else: a first model below the floors is recorded as rejected and alerted."""
    spec, _ = list(yaml.safe_load_all(COMPILED.read_text()))
    components = spec["components"]
    branches = [name for name in components if name.startswith("comp-condition-branches")]
    assert len(branches) == 2, "each model's gate needs an If and an Else"
    rejections = _tasks_named(spec, "reject-candidate")
    assert len(rejections) == 2
    for task in rejections:
        inputs = task["inputs"]
        assert inputs["artifacts"]["gate"]["componentInputArtifact"].startswith(
            "pipelinechannel--evaluate"
        )
        run = inputs["parameters"]["pipeline_run"]["runtimeValue"]["constant"]
        assert run == "{{$.pipeline_job_uuid}}"

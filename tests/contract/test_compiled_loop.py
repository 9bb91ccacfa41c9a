"""The loop's compiled pipelines: current with the code, and their Kubernetes-facing settings.

Read from the compiled spec (there is no KFP server or cluster here): a recurring run keeps
using the YAML platform teams uploaded, so a silent change must fail here first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compiled import without_sdk_version

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "compiled"


@pytest.mark.parametrize("name", ["retrain", "drift_check"])
def test_compiled_loop_pipelines_are_current(name: str, tmp_path: Path) -> None:
    from docloop.kubeflow import compile_pipeline

    fresh = compile_pipeline(name, tmp_path / f"{name}.yaml", ROOT).read_text()
    assert without_sdk_version(fresh) == without_sdk_version(
        (COMPILED / f"{name}.yaml").read_text()
    ), f"pipelines/compiled/{name}.yaml is stale: run `make compile` and commit it"


def _documents(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = list(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_retrain_canaries_after_both_models_and_never_caches_side_effects() -> None:
    spec, kube = _documents("retrain")
    components = spec["components"]
    retrain_run = components["comp-exit-handler-1"]["dag"]["tasks"]
    deploy = retrain_run["deploy-kserve"]
    gates = {name for name in retrain_run if name.startswith("docloop-train-and-gate")}
    assert len(gates) == 2 and set(deploy["dependentTasks"]) == gates
    assert not deploy["cachingOptions"].get("enableCache", False)
    assert {s["secretName"] for s in kube["exec-deploy-kserve"]["secretAsEnv"]} >= {
        "docloop-store",
        "docloop-mlflow",
    }
    executors = spec["deploymentSpec"]["executors"]
    for index, gate in enumerate(sorted(gates)):
        suffix = "" if index == 0 else f"-{index + 1}"
        inner = components[f"comp-{gate}"]["dag"]["tasks"]
        assert {"train-gpu", "evaluate", "condition-branches-1"} <= set(inner)
        accelerator = executors[f"exec-train-gpu{suffix}"]["container"]["resources"]
        assert accelerator["accelerator"]["resourceType"] == "nvidia.com/gpu"
        branches = components[f"comp-condition-branches-1{suffix}"]["dag"]["tasks"]
        blessed, rejected = (components[f"comp-{name}{suffix}"] for name in sorted(branches))
        register = blessed["dag"]["tasks"]["register"]
        assert not register["cachingOptions"].get("enableCache", False)
        assert "reject-candidate" in rejected["dag"]["tasks"]
    # the exit handler reports health whatever happened
    assert spec["root"]["dag"]["tasks"]["report-health"]["triggerPolicy"]["strategy"] == (
        "ALL_UPSTREAM_TASKS_COMPLETED"
    )

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
        # register runs on every candidate (it registers only a blessed one: its release
        # artifact must leave the sub-pipeline outside a condition); the rejection is the branch
        assert {"train-gpu", "evaluate", "register", "condition-rejected"} <= set(inner)
        accelerator = executors[f"exec-train-gpu{suffix}"]["container"]["resources"]
        assert accelerator["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert inner["register"]["inputs"]["parameters"]["skip_unblessed"]["runtimeValue"] == {
            "constant": True
        }
        assert not inner["register"]["cachingOptions"].get("enableCache", False)
        rejected = inner["condition-rejected"]
        assert rejected["triggerPolicy"]["condition"].endswith("== false")
        branch = components[rejected["componentRef"]["name"]]["dag"]["tasks"]
        assert set(branch) == {"reject-candidate"}
    # the exit handler reports health whatever happened
    assert spec["root"]["dag"]["tasks"]["report-health"]["triggerPolicy"]["strategy"] == (
        "ALL_UPSTREAM_TASKS_COMPLETED"
    )


def test_retrain_deploys_the_release_artifacts_its_registers_output(tmp_path: Path) -> None:
    """MLMD lineage: deploy-kserve consumes each register's ``release``, not a registry lookup.

    Compiled fresh from the code: each model's ``release`` input is the ``release`` output of
    its train-and-gate sub-pipeline, which is register's ``release`` (one selector: register
    runs outside the gate's branches, so ``kfp.local`` can run it too).
    """
    from docloop.kubeflow import compile_pipeline

    compiled = compile_pipeline("retrain", tmp_path / "retrain.yaml", ROOT).read_text()
    spec = next(yaml.safe_load_all(compiled))
    components = spec["components"]
    retrain_run = components["comp-exit-handler-1"]["dag"]["tasks"]
    inputs = retrain_run["deploy-kserve"]["inputs"].get("artifacts", {})
    for task, release_input in (
        ("classify", "classifier_release"),
        ("extract", "extractor_release"),
    ):
        assert release_input in inputs, f"deploy-kserve has no {release_input} artifact input"
        source = inputs[release_input]["taskOutputArtifact"]
        producer = retrain_run[source["producerTask"]]
        assert producer["inputs"]["parameters"]["task"]["runtimeValue"]["constant"] == task
        sub_dag = components[producer["componentRef"]["name"]]["dag"]
        (selector,) = sub_dag["outputs"]["artifacts"][source["outputArtifactKey"]][
            "artifactSelectors"
        ]
        register = sub_dag["tasks"][selector["producerSubtask"]]
        assert register["componentRef"]["name"] in ("comp-register", "comp-register-2")
        assert selector["outputArtifactKey"] == "release"
        assert not register["cachingOptions"].get("enableCache", False)
    # deploy-kserve reads the run id only to record it: no "this run's challengers" lookup
    assert retrain_run["deploy-kserve"]["inputs"]["parameters"]["pipeline_run"]


def test_drift_check_embeds_retrain_without_renaming_its_components(tmp_path: Path) -> None:
    """A stable compile: retrain's components keep their names (and specs) inside drift-check.

    kfp 2.17.3 renames a nested pipeline's colliding components in protobuf map order
    (``compiler/pipeline_spec_builder.py`` ``_merge_component_spec``), so a chain of collisions
    (``condition-1`` in drift-check, ``condition-1`` and ``condition-1-2`` in retrain) gives a
    different YAML from one compile to the next and the committed file goes stale at random.
    """
    from docloop.kubeflow import compile_pipeline

    specs = {
        name: next(yaml.safe_load_all(compile_pipeline(name, tmp_path / f"{name}.yaml", ROOT)
                                      .read_text()))["components"]
        for name in ("retrain", "drift_check")
    }  # fmt: skip
    outer = specs["drift_check"]
    renamed = [name for name, spec in specs["retrain"].items() if outer.get(name) != spec]
    assert not renamed, f"retrain components renamed inside drift-check: {renamed}"

"""Caching by meaning, on the compiled pipelines, with KFP's own cache key (tests/fakes/kfp_cache).

``kfp.local`` ignores caching, so these tests read the compiled IR and compute, for a second run,
the fingerprint a KFP backend would look up: a task that reads live state must never be served
from the cache, and a cached task must miss when what it reads behind a URI changed.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.kfp_cache import TaskCache, task_of

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "compiled"
PIPELINES = ("bootstrap", "retrain", "drift_check")


def _spec(name: str) -> dict[str, Any]:
    return next(iter(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text())))


def _channel(name: str) -> str:
    return name.removeprefix("pipelinechannel--")


def _defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The root parameters' defaults: what a run started without arguments passes."""
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    return {
        name: value["defaultValue"] for name, value in parameters.items() if "defaultValue" in value
    }


def _inputs(
    spec: dict[str, Any], component: str, values: dict[str, Any], artifacts: dict[str, list[str]]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Resolve a task's inputs as the driver would, from channel values the test provides."""
    task, _ = task_of(spec, component)
    parameters: dict[str, Any] = {}
    for name, source in (task.get("inputs") or {}).get("parameters", {}).items():
        if "componentInputParameter" in source:
            parameters[name] = values[_channel(source["componentInputParameter"])]
        elif "taskOutputParameter" in source:
            output = source["taskOutputParameter"]
            parameters[name] = values[f"{output['producerTask']}-{output['outputParameterKey']}"]
        elif "runtimeValue" in source:
            parameters[name] = source["runtimeValue"]["constant"]
    for name, value in parameters.items():  # placeholders of the task's other inputs
        match = re.fullmatch(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}", str(value))
        if match:
            parameters[name] = parameters[match.group(1)]
    names: dict[str, list[str]] = {}
    for name, source in (task.get("inputs") or {}).get("artifacts", {}).items():
        if "componentInputArtifact" in source:
            names[name] = artifacts[_channel(source["componentInputArtifact"])]
        else:
            output = source["taskOutputArtifact"]
            key = output["outputArtifactKey"]
            channel = _channel(key) if key.startswith("pipelinechannel--") else None
            names[name] = artifacts[channel or f"{output['producerTask']}-{key}"]
    return parameters, names


def test_second_triggered_retrain_builds_a_fresh_dataset() -> None:
    """The stale-dataset defect: build-retrain-dataset reads live feedback on constant inputs."""
    spec = _spec("retrain")
    cache = TaskCache()
    values = _defaults(spec)
    served = []
    for _ in range(2):
        parameters, names = _inputs(spec, "build-retrain-dataset", values, {})
        hit, _ = cache.run(spec, "build-retrain-dataset", parameters, names)
        served.append(hit)
    assert served == [False, False], "the second retrain would be served the first run's dataset"


def _container_tasks(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(component without ``comp-`` and its ``-N`` suffix, task) for every container task."""
    bodies = [spec["root"], *spec["components"].values()]
    found = []
    for body in bodies:
        for task in (body.get("dag") or {}).get("tasks", {}).values():
            ref = task["componentRef"]["name"]
            if "executorLabel" in spec["components"][ref]:
                found.append((re.sub(r"-\d+$", "", ref.removeprefix("comp-")), task))
    return found


@pytest.mark.parametrize("name", PIPELINES)
def test_caching_is_off_exactly_on_the_listed_tasks(name: str) -> None:
    """Every task that reads live state or has side effects is uncached; the rest may cache."""
    from pipelines.platform import UNCACHED

    tasks = _container_tasks(_spec(name))
    assert tasks
    for component, task in tasks:
        cached = bool(task.get("cachingOptions", {}).get("enableCache", False))
        assert cached == (component not in UNCACHED), (
            f"{name}: {component} has enableCache={cached}; UNCACHED lists {sorted(UNCACHED)}"
        )


def _bootstrap_run(
    spec: dict[str, Any], cache: TaskCache, documents: Path, labels: Path
) -> dict[str, bool]:
    """One bootstrap run up to build-dataset with 2 shards: which tasks were served cached."""
    from docloop.steps import snapshot_inputs

    values = _defaults(spec) | {
        "input_uri": documents.as_uri(),
        "labels_uri": labels.as_uri(),
        "num_shards": 2,
    }
    served: dict[str, bool] = {}
    digests = snapshot_inputs.run(values["input_uri"], values["labels_uri"])
    values["snapshot-inputs-documents"] = digests.documents
    values["snapshot-inputs-labels"] = digests.labels
    served["plan-shards"], _ = cache.run(
        spec, "plan-shards", *_inputs(spec, "plan-shards", values, {})
    )
    pages = []
    for shard in range(2):
        values["plan-shards-Output-loop-item"] = shard
        hit, execution = cache.run(spec, "preprocess", *_inputs(spec, "preprocess", values, {}))
        served[f"preprocess-{shard}"] = hit
        pages.append(f"{execution}/pages")
    artifacts = {"preprocess-pages": pages}
    hit, execution = cache.run(
        spec, "merge-pages", *_inputs(spec, "merge-pages", values, artifacts)
    )
    served["merge-pages"] = hit
    artifacts["merge-pages-pages"] = [f"{execution}/pages"]
    served["build-dataset"], _ = cache.run(
        spec, "build-dataset", *_inputs(spec, "build-dataset", values, artifacts)
    )
    return served


def test_new_documents_under_the_same_prefix_miss_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bootstrap twice on the same URIs: same objects -> cached; a new file -> preprocessed."""
    monkeypatch.chdir(tmp_path)
    documents, labels = tmp_path / "docs", tmp_path / "labels.jsonl"
    documents.mkdir()
    (documents / "a.pdf").write_bytes(b"%PDF-1.4 a")
    labels.write_text('{"source": "a.pdf", "doc_type": "invoice"}\n')
    spec, cache = _spec("bootstrap"), TaskCache()

    first = _bootstrap_run(spec, cache, documents, labels)
    assert not any(first.values())
    again = _bootstrap_run(spec, cache, documents, labels)
    assert again == dict.fromkeys(again, True), "caching stays on where nothing changed"

    (documents / "b.pdf").write_bytes(b"%PDF-1.4 b")
    grown = _bootstrap_run(spec, cache, documents, labels)
    assert grown["plan-shards"]  # depends on num_shards alone
    assert not grown["preprocess-0"] and not grown["preprocess-1"], (
        "preprocess keyed on the URI string would be served the first run's pages"
    )
    assert not grown["merge-pages"] and not grown["build-dataset"]

    labels.write_text(labels.read_text() + '{"source": "b.pdf", "doc_type": "receipt"}\n')
    relabelled = _bootstrap_run(spec, cache, documents, labels)
    assert relabelled["preprocess-0"] and relabelled["merge-pages"]
    assert not relabelled["build-dataset"], "build-dataset must read the new labels"


def test_a_task_keyed_on_a_uri_alone_is_served_stale(tmp_path: Path) -> None:
    """The rule the digests answer: a URI-only input keeps its key when the objects change."""
    from kfp import compiler, dsl

    from components.preprocess import preprocess

    @dsl.pipeline(name="uri-only")
    def uri_only(input_uri: str) -> None:
        preprocess(input_uri=input_uri)

    target = tmp_path / "uri_only.yaml"
    compiler.Compiler().compile(uri_only, str(target))
    spec = next(iter(yaml.safe_load_all(target.read_text())))
    cache = TaskCache()
    uri = {"input_uri": "s3://bucket/raw/"}
    assert cache.run(spec, "preprocess", *_inputs(spec, "preprocess", uri, {}))[0] is False
    # new objects under s3://bucket/raw/ change nothing the key holds:
    assert cache.run(spec, "preprocess", *_inputs(spec, "preprocess", uri, {}))[0] is True


# the checks kfp's setters apply to constants (PipelineTask._validate_*_request_limit)
KUBERNETES_CPU = r"([0-9]*[.])?[0-9]+m?"
KUBERNETES_MEMORY = r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?"
RESOURCE_FIELDS = ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest",
                   "resourceMemoryLimit")  # fmt: skip


@pytest.mark.parametrize("name", PIPELINES)
def test_every_task_requests_and_limits_cpu_and_memory_from_pipeline_parameters(
    name: str,
) -> None:
    """No task without requests (preprocess with workers 0 took the node); values are params."""
    spec = _spec(name)
    root = spec["root"]["inputDefinitions"]["parameters"]
    for executor, body in spec["deploymentSpec"]["executors"].items():
        resources = body["container"].get("resources", {})
        for field in RESOURCE_FIELDS:
            value = resources.get(field, "")
            match = re.fullmatch(
                r"\{\{\$\.inputs\.parameters\['pipelinechannel--(\w+)'\]\}\}", value
            )
            assert match, f"{name}: {executor} has no {field} from a pipeline parameter ({value!r})"
            default = root[match.group(1)].get("defaultValue")
            quantity = KUBERNETES_CPU if "Cpu" in field else KUBERNETES_MEMORY
            assert re.fullmatch(quantity, str(default)), f"{match.group(1)}={default!r}"


@pytest.mark.parametrize("name", PIPELINES)
def test_the_run_key_is_the_run_id_not_its_display_name(name: str) -> None:
    text = (COMPILED / f"{name}.yaml").read_text()
    assert "{{$.pipeline_job_name}}" not in text, f"{name} keys runs by their display name"
    assert "{{$.pipeline_job_uuid}}" in text


@pytest.mark.parametrize("name", PIPELINES)
def test_every_sub_dag_declares_the_parameters_its_tasks_read(name: str) -> None:
    """Resource parameters reach tasks inside ParallelFor / If / Else (kfp 2.17.3's setters do
    not register their channels, so the compiler left them out of the loop's and branches' inputs
    and the run fails with "Parent pipeline input argument ... not found")."""
    spec = _spec(name)
    for owner, body in [("root", spec["root"]), *spec["components"].items()]:
        declared = set((body.get("inputDefinitions") or {}).get("parameters") or {})
        for task_name, task in (body.get("dag") or {}).get("tasks", {}).items():
            for source in (task.get("inputs") or {}).get("parameters", {}).values():
                wanted = source.get("componentInputParameter")
                assert wanted is None or wanted in declared, (
                    f"{name}: {owner}/{task_name} reads {wanted}, which {owner} does not declare"
                )

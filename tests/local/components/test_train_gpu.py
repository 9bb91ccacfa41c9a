"""The train-gpu component through kfp.local, and its GPU settings when compiled."""

import json
from pathlib import Path

import pytest
import yaml

from tests.datasets import write_tiny_dataset
from tests.loop import World

pytestmark = pytest.mark.local


@pytest.mark.slow  # a real training run inside a kfp.local task
def test_train_gpu_trains_on_cpu_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kfp.local
    from kfp import dsl

    from components.train_gpu import train_gpu, with_gpu

    dataset = write_tiny_dataset(tmp_path / "dataset")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("DOCLOOP__TRAINING__MAX_LENGTH", "32")
    monkeypatch.setenv("DOCLOOP__TRAINING__BATCH_SIZE", "4")
    monkeypatch.setenv(
        "DOCLOOP__TRACKING__MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "pipeline-root"),
    )

    @dsl.pipeline(name="train-only")
    def train_only(dataset_uri: str) -> dsl.Model:
        imported = dsl.importer(
            artifact_uri=dataset_uri, artifact_class=dsl.Dataset, reimport=False
        )
        task = with_gpu(train_gpu(task="classify", dataset=imported.output, max_steps=2))
        return task.outputs["model"]

    run = train_only(dataset_uri=str(dataset))
    model_dir = Path(run.output.path)
    card = yaml.safe_load((model_dir / "docloop-model.json").read_text())
    assert card["task"] == "classify" and card["steps"] == 2
    assert (model_dir / "model.safetensors").is_file()


def test_with_gpu_requests_a_gpu_and_tolerates_gpu_taints(tmp_path: Path) -> None:
    """Compiled pipeline spec only (no cluster here): the GPU request and toleration are there."""
    from kfp import compiler, dsl

    from components.train_gpu import train_gpu, with_gpu

    @dsl.pipeline(name="gpu-train")
    def gpu_train(dataset_uri: str) -> None:
        imported = dsl.importer(artifact_uri=dataset_uri, artifact_class=dsl.Dataset)
        with_gpu(train_gpu(task="extract", dataset=imported.output), gpus=2)

    target = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(gpu_train, str(target))
    documents = list(yaml.safe_load_all(target.read_text()))
    executor = documents[0]["deploymentSpec"]["executors"]["exec-train-gpu"]["container"]
    assert executor["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert executor["resources"]["accelerator"]["resourceCount"] == "2"
    assert executor["image"].endswith("docloop-train:0.1.0")
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tolerations = platform["exec-train-gpu"]["tolerations"]
    assert tolerations == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]


@pytest.mark.slow  # a real training run inside a kfp.local task
def test_one_document_type_trains_no_classifier_and_nothing_fails(world: World) -> None:
    """train-classify skips a one-type dataset, evaluate says so, register never runs."""
    from kfp import dsl

    from components.evaluate import evaluate
    from components.register import register
    from components.train_gpu import train_gpu
    from docloop.documents.examples import read_examples, write_dataset
    from docloop.storage import Storage

    storage = Storage()
    tiny = write_tiny_dataset(world.root / "tiny")
    splits = {
        split: [
            e.model_copy(update={"doc_type": "receipt"})
            for e in read_examples(storage, str(tiny / f"{split}.parquet"))
        ]
        for split in ("train", "val", "holdout")
    }
    write_dataset(storage, str(world.root / "one"), splits, 0)

    @dsl.pipeline(name="one-type")
    def one_type(dataset_uri: str) -> dsl.Artifact:
        dataset = dsl.importer(artifact_uri=dataset_uri, artifact_class=dsl.Dataset)
        trained = train_gpu(task="classify", dataset=dataset.output, init_from="models:/x@champion")
        gated = evaluate(
            task="classify",
            candidate=trained.outputs["model"],
            holdout=dataset.output,
            incumbent_uri="models:/x@champion",  # never resolved: there is no candidate
        )
        with dsl.If(gated.outputs["Output"] == True):  # noqa: E712
            register(model=trained.outputs["model"], gate=gated.outputs["gate"], dataset_digest="")
        return gated.outputs["gate"]

    run = one_type(dataset_uri=str(world.root / "one"))

    gate = json.loads(Path(run.output.path).read_text())
    assert gate["skipped"] == "no classifier: one document type (receipt)"
    assert not gate["blessed"] and gate["checks"] == []
    assert run.output.metadata["summary"] == gate["skipped"]

"""Fixtures for one-component tests through ``kfp.local``: a fresh world, tiny blessed models.

Every test gets its own world (SQLite state store and MLflow, data root, ``kfp.local`` pipeline
root under ``tmp_path``; the settings of :func:`tests.loop.world_env`). Components with artifact
inputs run inside a small pipeline that imports the artifacts with ``dsl.importer``.
"""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.datasets import tiny_encoder, write_tiny_dataset
from tests.loop import World, in_world, world_env


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """An empty world with ``kfp.local`` pointed at it for the test."""
    world = World(tmp_path, world_env(tmp_path))
    with in_world(world.env, tmp_path / "pipeline-root"):
        yield world


@dataclass(frozen=True)
class Blessed:
    """Tiny trained models with the gates evaluate gave them (first models: floors only)."""

    dataset: Path
    digest: str
    models: dict[str, Path]
    gates: dict[str, Path]
    mlflow_db: Path

    def into(self, world: World) -> None:
        """Give ``world`` the MLflow database that holds the models' training runs."""
        shutil.copy2(self.mlflow_db, world.root / "mlflow.db")


@pytest.fixture(scope="session")
def blessed(tmp_path_factory: pytest.TempPathFactory) -> Blessed:
    """Both tasks (a tiny encoder, two steps) gated by the evaluate component, once a session."""
    from kfp import dsl

    from components.evaluate import evaluate
    from docloop.config import TrackingConfig, TrainingConfig
    from docloop.documents.examples import read_manifest
    from docloop.models.training import train
    from docloop.storage import Storage

    root = tmp_path_factory.mktemp("blessed")
    dataset = write_tiny_dataset(root / "dataset")
    tracking = TrackingConfig(mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    tiny = TrainingConfig(
        encoder=str(tiny_encoder(root / "encoder")),
        max_length=32,
        batch_size=4,
        epochs=1,
        max_steps=2,
    )
    models = {task: root / task for task in ("classify", "extract")}
    for task, folder in models.items():
        train(task, str(dataset), str(folder), tiny, tracking)

    @dsl.pipeline(name="gate-one")
    def gate_one(task: str, model_uri: str, dataset_uri: str) -> dsl.Artifact:
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
        holdout = dsl.importer(artifact_uri=dataset_uri, artifact_class=dsl.Dataset)
        return evaluate(task=task, candidate=model.output, holdout=holdout.output).outputs["gate"]

    gates = {}
    with in_world(world_env(root), root / "pipeline-root"):
        for task, folder in models.items():
            run = gate_one(task=task, model_uri=str(folder), dataset_uri=str(dataset))
            gates[task] = Path(run.output.path)
    digest = read_manifest(Storage(), str(dataset)).digest
    return Blessed(dataset, digest, models, gates, root / "mlflow.db")

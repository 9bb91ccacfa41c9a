"""Training for real on the packaged encoder: artifact, MLflow, determinism, warm start, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from docloop.config import TrackingConfig, TrainingConfig
from docloop.documents.examples import read_examples, write_dataset
from docloop.errors import InvalidInput
from docloop.models.artifact import load_model
from docloop.models.training import train
from docloop.storage import Storage
from tests.datasets import write_tiny_dataset

pytestmark = pytest.mark.unit

FAST = TrainingConfig(max_length=32, batch_size=4, epochs=2, max_steps=4, checkpoint_every=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> TrackingConfig:
    """One MLflow store for the module: creating its tables costs seconds."""
    folder = tmp_path_factory.mktemp("mlflow")
    return TrackingConfig(mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def weights(folder: Path) -> dict[str, object]:
    return load_file(str(folder / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    left, right = weights(a), weights(b)
    return left.keys() == right.keys() and all(left[k].equal(right[k]) for k in left)  # type: ignore[attr-defined]


@pytest.mark.slow  # two real trainings with MLflow (about 45 s)
@pytest.mark.parametrize("task", ["classify", "extract"])
def test_train_writes_a_model_and_logs_to_mlflow(
    dataset: Path, tmp_path: Path, tracking: TrackingConfig, task: str
) -> None:
    import mlflow

    result = train(task, str(dataset), str(tmp_path / "model"), FAST, tracking)  # type: ignore[arg-type]

    card = result.card
    assert card.task == task and card.steps == 4
    assert card.dataset_digest and card.code_version.startswith("0.1.0")
    if task == "classify":
        assert card.labels == ["invoice", "referral_letter"]
        assert card.field_kinds == {}
    else:
        assert card.labels == ["O", "B-mrn", "I-mrn", "B-patient_name", "I-patient_name"]
        assert card.field_kinds == {"mrn": "id", "patient_name": "text"}  # the dataset's schema
    assert 0.0 <= card.metrics["val_score"] <= 1.0
    assert not (tmp_path / "model" / "checkpoint").exists()
    load_model(tmp_path / "model")  # loads back

    run = mlflow.MlflowClient(tracking.mlflow_tracking_uri).get_run(str(card.mlflow_run_id))
    assert run.data.tags["docloop.dataset_digest"] == card.dataset_digest
    assert run.data.tags["docloop.code_version"] == card.code_version
    assert run.data.params["config.max_steps"] == "4"
    assert run.data.params["mixed_precision"] == "fp32"
    assert "val_score" in run.data.metrics

    again = train(task, str(dataset), str(tmp_path / "model"), FAST, tracking)  # type: ignore[arg-type]
    assert again.already_trained


def test_one_document_type_is_nothing_to_classify(tmp_path: Path) -> None:
    storage = Storage()
    single = [
        e.model_copy(update={"doc_type": "receipt"})
        for e in read_examples(storage, str(write_tiny_dataset(tmp_path / "d") / "train.parquet"))
    ]
    write_dataset(storage, str(tmp_path / "one"), {"train": single, "val": single[:2]}, 0)
    off = TrackingConfig(enabled=False)
    with pytest.raises(
        InvalidInput, match=r"no classifier: one document type \(receipt\).*--task extract"
    ):
        train("classify", str(tmp_path / "one"), str(tmp_path / "m"), FAST, off)


@pytest.mark.slow  # trains the same model twice
def test_training_is_deterministic_on_cpu(
    dataset: Path, tmp_path: Path, tracking: TrackingConfig
) -> None:
    short = FAST.model_copy(update={"max_steps": 2})
    train("extract", str(dataset), str(tmp_path / "a"), short, tracking)
    train("extract", str(dataset), str(tmp_path / "b"), short, tracking)
    other_seed = short.model_copy(update={"seed": 1})
    train("extract", str(dataset), str(tmp_path / "c"), other_seed, tracking)
    assert same_weights(tmp_path / "a", tmp_path / "b")
    assert not same_weights(tmp_path / "a", tmp_path / "c")


def test_warm_start_keeps_the_incumbents_labels_first(
    tmp_path: Path, tracking: TrackingConfig
) -> None:
    from docloop.documents.examples import read_examples, write_dataset
    from docloop.storage import Storage

    first = write_tiny_dataset(tmp_path / "first")
    incumbent = train(
        "classify",
        str(first),
        str(tmp_path / "v1"),
        FAST.model_copy(update={"max_steps": 2}),
        tracking,
    )
    # a new document type appears in the next dataset
    storage = Storage()
    splits = {
        name: read_examples(storage, str(first / f"{name}.parquet"))
        for name in ("train", "val", "holdout")
    }
    extra = [
        e.model_copy(update={"doc_id": e.doc_id + "x", "doc_type": "aaa_new_type"})
        for e in splits["train"][:4]
    ]
    write_dataset(
        storage, str(tmp_path / "second"), {**splits, "train": splits["train"] + extra}, 0
    )

    result = train(
        "classify",
        str(tmp_path / "second"),
        str(tmp_path / "v2"),
        FAST.model_copy(update={"max_steps": 1}),
        tracking,
        init_from=str(tmp_path / "v1"),
    )

    assert result.card.labels == [*incumbent.card.labels, "aaa_new_type"]
    assert result.card.init_from == str(tmp_path / "v1")
    v1, v2 = weights(tmp_path / "v1"), weights(tmp_path / "v2")
    # one small step from the incumbent, not from scratch
    drift = (v2["head.weight"][:2] - v1["head.weight"]).abs().max()  # type: ignore[index,operator]
    assert float(drift) < 0.05


@pytest.mark.slow  # a 12-step run in a subprocess, killed, then resumed
def test_a_killed_run_resumes_from_its_checkpoint(
    dataset: Path, tmp_path: Path, tracking: TrackingConfig
) -> None:
    """SIGKILL a real `docloop train` process mid-run; the same command finishes from the checkpoint
    and ends with the same weights as a run that was never interrupted."""
    env = {
        **os.environ,
        "DOCLOOP__TRACKING__MLFLOW_TRACKING_URI": str(tracking.mlflow_tracking_uri),
    }
    command = [
        sys.executable, "-m", "docloop.cli", "train", "--task", "extract",
        "--dataset", str(dataset), "--output", str(tmp_path / "killed"),
        "--max-steps", "12", "--epochs", "2", "--checkpoint-every", "1",
    ]  # fmt: skip
    config = {"DOCLOOP__TRAINING__MAX_LENGTH": "32", "DOCLOOP__TRAINING__BATCH_SIZE": "4"}
    process = subprocess.Popen(
        command, env={**env, **config}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    state = tmp_path / "killed" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    import json

    while time.monotonic() < deadline:
        if state.is_file() and json.loads(state.read_text())["step"] >= 3:
            break
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 3 <= killed_at < 12

    finished = subprocess.run(
        command, env={**env, **config}, capture_output=True, text=True, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"resumed_from={killed_at}" in " ".join(finished.stdout.split())

    uninterrupted = TrainingConfig(
        max_length=32, batch_size=4, max_steps=12, epochs=2, checkpoint_every=1
    )
    train(
        "extract",
        str(dataset),
        str(tmp_path / "whole"),
        uninterrupted,
        tracking,
    )
    assert same_weights(tmp_path / "killed", tmp_path / "whole")


@pytest.mark.slow  # a whole epoch on the packaged encoder
def test_the_classifier_trains_on_each_document_once(tmp_path: Path) -> None:
    """Repeated rows (the retrain builder's entity oversampling) weight only the extractor."""
    from docloop.documents.examples import read_examples, write_dataset
    from docloop.storage import Storage

    storage = Storage()
    source = write_tiny_dataset(tmp_path / "source", train=8)
    splits = {
        name: read_examples(storage, str(source / f"{name}.parquet"))
        for name in ("train", "val", "holdout")
    }
    write_dataset(storage, str(tmp_path / "repeated"), {**splits, "train": splits["train"] * 3}, 0)
    once = FAST.model_copy(update={"epochs": 1, "max_steps": None})
    off = TrackingConfig(enabled=False)
    classifier = train("classify", str(tmp_path / "repeated"), str(tmp_path / "c"), once, off)
    extractor = train("extract", str(tmp_path / "repeated"), str(tmp_path / "e"), once, off)
    assert classifier.samples_seen == 8
    assert extractor.samples_seen >= 24


class _Crash(Exception):
    """Stands for a killed process in the budget's resume test."""


def test_a_time_budget_stops_at_the_best_weights_so_far(dataset: Path, tmp_path: Path) -> None:
    """The budget runs out mid-training: validation, the best weights, the reason on the card."""
    off = TrackingConfig(enabled=False)
    long = TrainingConfig(
        max_length=32, batch_size=4, epochs=40, checkpoint_every=1, time_budget_s=1.0
    )
    slow = lambda done, total: time.sleep(0.4)  # noqa: E731 - a slow device, in effect
    result = train("extract", str(dataset), str(tmp_path / "m"), long, off, on_step=slow)

    card = result.card
    assert card.stopped_by == "time_budget"
    assert 1 <= card.steps <= 4  # 0.4 s a step against a 1 s budget, far from 40 epochs
    assert card.train_seconds >= 1.0 and card.time_budget_s == 1.0
    assert "time_budget_s" not in card.train_config  # a stopping rule, not a weight setting
    assert len(result.history) == 1 and "val_score" in card.metrics  # validated when it ran out
    load_model(tmp_path / "m")
    assert not (tmp_path / "m" / "checkpoint").exists()

    again = train("extract", str(dataset), str(tmp_path / "m"), long, off)
    assert again.already_trained
    more = long.model_copy(update={"time_budget_s": 600.0, "max_steps": card.steps + 1})
    retrained = train("extract", str(dataset), str(tmp_path / "m"), more, off)
    assert not retrained.already_trained and retrained.card.stopped_by == "max_steps"


def test_a_resumed_run_counts_the_time_its_checkpoint_spent(dataset: Path, tmp_path: Path) -> None:
    """Time already spent before a crash counts; a checkpoint resumes under another budget."""
    off = TrackingConfig(enabled=False)
    first = TrainingConfig(max_length=32, batch_size=4, epochs=40, checkpoint_every=1)

    def slow_then_crash(done: int, total: int) -> None:
        time.sleep(0.5)
        if done == 3:
            raise _Crash  # after step 3, before its checkpoint: the checkpoint holds step 2

    with pytest.raises(_Crash):
        train("extract", str(dataset), str(tmp_path / "m"), first, off, on_step=slow_then_crash)

    budget = first.model_copy(update={"time_budget_s": 0.8})  # the checkpoint spent >= 1.0 s
    result = train("extract", str(dataset), str(tmp_path / "m"), budget, off)
    assert result.resumed_from_step == 2
    assert result.card.steps == 2 and result.card.stopped_by == "time_budget"
    assert result.card.train_seconds >= 1.0


def test_mlflow_writes_no_mlruns_into_the_working_directory(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's default artifact root for a database store is ./mlruns of the working directory."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    tracking = TrackingConfig(mlflow_tracking_uri=f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}")
    short = FAST.model_copy(update={"max_steps": 1, "epochs": 1})
    result = train("extract", str(dataset), str(tmp_path / "m"), short, tracking)

    assert result.card.mlflow_run_id
    assert not (work / "mlruns").exists(), sorted(p.name for p in work.iterdir())
    logged = list((tmp_path / "db" / "mlartifacts").rglob("docloop-model.json"))
    assert len(logged) == 1  # the card, logged next to the tracking database


def test_several_gpus_get_the_time_budget_on_their_command_line() -> None:
    from docloop.models.launch import accelerate_command

    budget = TrainingConfig(time_budget_s=90.0, known_value_fields=["company", "address"])
    command = accelerate_command("extract", "d", "o", budget, None, 2)
    assert "--time-budget=90.0" in command
    assert command[-2:] == ["--known-value=company", "--known-value=address"]
    assert not any(
        arg.startswith("--time-budget")
        for arg in accelerate_command("extract", "d", "o", TrainingConfig(), None, 2)
    )

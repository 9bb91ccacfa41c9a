"""Fixtures for the predictor tests: tiny trained models and a real ``docloop serve`` process.

Use with ``pytest_plugins = ["tests.serving"]`` in a test module. The models are trained once per
session (a few optimizer steps on ``write_tiny_dataset``: the point is real artifacts with real
MLflow run ids, not accuracy). ``predictor`` starts ``docloop serve`` as a subprocess bound to
127.0.0.1 on a free port, waits (bounded) until KServe reports ready, and stops it at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from docloop.config import TrackingConfig, TrainingConfig
from docloop.models.training import train
from tests.datasets import write_tiny_dataset

TINY = TrainingConfig(max_length=32, batch_size=4, epochs=1, max_steps=2)
READY_TIMEOUT_S = 240.0  # the first start exports both models to ONNX (minutes under load)
MAX_REQUEST_MB = 1.0  # small, so the oversize-payload test sends little
MODEL_NAME = "docloop"


@dataclass(frozen=True)
class TinyModels:
    """A trained classifier and extractor (model folders) and their MLflow run ids."""

    classifier: Path
    extractor: Path
    classifier_run: str
    extractor_run: str
    doc_types: list[str]
    entity_types: list[str]


@dataclass
class Predictor:
    """A running ``docloop serve`` subprocess."""

    url: str
    name: str
    port: int
    process: subprocess.Popen[bytes]
    prediction_log: Path
    output: Path
    models: TinyModels
    max_request_bytes: int = int(MAX_REQUEST_MB * 1024 * 1024)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output (for assertion messages)."""
        text = self.output.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


_TRAINED: dict[str, TinyModels] = {}


def train_tiny_models(root: Path) -> TinyModels:
    """Train both models into ``root`` (once per session: later calls return the first result)."""
    if "models" in _TRAINED:
        return _TRAINED["models"]
    dataset = write_tiny_dataset(root / "dataset")
    tracking = TrackingConfig(mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    classifier = train("classify", str(dataset), str(root / "classifier"), TINY, tracking)
    extractor = train("extract", str(dataset), str(root / "extractor"), TINY, tracking)
    models = TinyModels(
        classifier=root / "classifier",
        extractor=root / "extractor",
        classifier_run=str(classifier.card.mlflow_run_id),
        extractor_run=str(extractor.card.mlflow_run_id),
        doc_types=classifier.card.labels,
        entity_types=extractor.card.entity_types,
    )
    _TRAINED["models"] = models
    return models


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(predictor: Predictor, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll KServe's readiness endpoint until it answers 200 (or fail with the server's log)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if predictor.process.poll() is not None:
                pytest.fail(
                    f"docloop serve exited with {predictor.process.returncode}:\n"
                    + predictor.log_tail()
                )
            try:
                if client.get(f"{predictor.url}/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
    pytest.fail(f"docloop serve not ready after {timeout_s:.0f}s:\n" + predictor.log_tail())


def start_predictor(models: TinyModels, workdir: Path, *extra: str) -> Predictor:
    """Start ``docloop serve`` on 127.0.0.1 with both models (``--model`` given twice)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    output = workdir / "server.log"
    command = [
        sys.executable, "-m", "docloop.cli", "serve",
        "--model", str(models.classifier), "--model", str(models.extractor),
        "--host", "127.0.0.1", "--port", str(port), "--name", MODEL_NAME,
        "--prediction-log", str(workdir / "predictions"),
        "--max-request-mb", str(MAX_REQUEST_MB),
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    predictor = Predictor(
        url=f"http://127.0.0.1:{port}",
        name=MODEL_NAME,
        port=port,
        process=process,
        prediction_log=workdir / "predictions",
        output=output,
        models=models,
    )
    try:
        wait_until_ready(predictor)
    except BaseException:
        stop_predictor(predictor)
        raise
    return predictor


def stop_predictor(predictor: Predictor, timeout_s: float = 15.0) -> None:
    """SIGTERM (KServe's graceful shutdown), then SIGKILL if it does not exit in time."""
    if predictor.process.poll() is not None:
        return
    predictor.process.send_signal(signal.SIGTERM)
    try:
        predictor.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        predictor.process.kill()
        predictor.process.wait()


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exported graphs go to a session folder (servers started by the tests inherit it)."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCLOOP_ONNX_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """A classifier and an extractor trained for two steps on the tiny dataset."""
    return train_tiny_models(tmp_path_factory.mktemp("serve-models"))


@pytest.fixture(scope="session")
def predictor(
    tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Predictor]:
    """A real ``docloop serve`` subprocess on 127.0.0.1 serving both tiny models.

    With ``--batching``: the CPU default is off, and the micro-batcher is tested through HTTP.
    """
    running = start_predictor(tiny_models, tmp_path_factory.mktemp("predictor"), "--batching")
    try:
        yield running
    finally:
        stop_predictor(running)

"""Benchmark the predictor: raw forward in process vs ``docloop serve`` over HTTP, batching on/off.

Run with ``python -m bench.predictor [--quick] [--docs N] [--requests R]`` (default 16 documents
and 96 requests; ``--quick``: 8 and 32, as ``make bench`` runs it). Everything is measured here,
in the same command, on the same documents and the same two models:

- models: a classifier and an extractor trained for two steps on the tiny test dataset with
  ``max_length=128`` (the realistic forward cost; accuracy is not the point), in one folder with
  ``classifier/`` and ``extractor/`` (MLflow in a temporary sqlite file), trained in a spawned
  child process so that the baseline runs with the same torch state as the server (which never
  trains);
- inputs: N born-digital synthetic documents, their text-layer words and boxes (no OCR), sent as
  ``{"instances": [{"pages": [{"words", "boxes", "page"}, ...]}]}``, one document per request;
- in process: ``classify`` + ``extract`` exactly as the predictor's forward pass calls them, on
  ``DocumentExample`` objects built by the predictor's own ``parse_v1`` and ``to_example``, at
  batch 1 (per-document latency) and batch 16 (latency of the whole batch), once per
  ``serve.inference`` choice (``fp32``, ``onnx``, ``onnx-int8``: ``docloop.serve.runtime``);
- HTTP: ``docloop serve`` on 127.0.0.1 (subprocesses) with ``--inference`` (default: the
  configuration's default), one with batching and one with ``--no-batching``, and a fp32 server
  with batching for the ratios; R requests at concurrency 1 (sequential) and 16 (asyncio, 16 in
  flight). Request bodies are encoded once up front, so client-side JSON encoding is not in the
  latencies;
- ``--score MODEL HOLDOUT`` (any number of times, ``--score-docs N`` for the first N documents):
  the entity F1 of a trained extractor on a holdout under each inference, and its loss against
  fp32 in points (target <= 0.5).

Machine speed drifts by 10-20 % over minutes on a shared 2-core box, more than the 10 % the
overhead target allows, so the configurations are not run one after the other: both servers are
up at once (an idle one costs nothing) and each phase (c=1, then c=16) alternates between the
in-process baseline and the two servers in blocks (16 documents at c=1, 32 at c=16), rotating the
order. Each configuration still sees R documents, and only one runs at a time.

Ratios (reported, never asserted): docs/s of each inference against fp32 on the same inputs,
in process and over HTTP, target >= 2x; server overhead at c=1 = HTTP c=1 p50 (batching on) /
in-process batch-1 p50 (same inference) - 1, target <= 10 %; batching speed-up at c=16 = docs/s
batching on / off, target >= 2x.
To explain the overhead, the server's own Prometheus histograms (time inside the model's
``predict`` and inside the forward pass) are read before and after each run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from docloop.config import TrackingConfig, TrainingConfig
from docloop.documents.examples import DocumentExample, read_examples
from docloop.documents.ocr import text_layer_words
from docloop.documents.synth import generate_corpus
from docloop.evaluation.scoring import score_model
from docloop.models.artifact import LoadedModel, load_model
from docloop.models.inference import classify, extract
from docloop.models.training import train
from docloop.serve.documents import pages_doc_id
from docloop.serve.inputs import PagesInstance, ServeLimits, parse_v1, to_example
from docloop.serve.predictor import SERVE_DEFAULTS
from docloop.serve.runtime import INFERENCE_CHOICES, Inference, serving_model
from docloop.storage import Storage
from tests.datasets import write_tiny_dataset

OUT = Path(__file__).resolve().parent / "out"
MODEL_NAME = "docloop"
BATCH = 16
CONCURRENCY = 16
TRAINING = TrainingConfig(max_length=128, batch_size=8, epochs=1, max_steps=2)
READY_TIMEOUT_S = 120.0
TRAIN_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 60.0
OVERHEAD_TARGET = 0.10
INFERENCE_SPEEDUP_TARGET = 2.0
F1_LOSS_TARGET_POINTS = 0.5
SPEEDUP_TARGET = 2.0
QUICK_DOCS = 8
QUICK_REQUESTS = 32

logger = logging.getLogger("bench.predictor")


# --- setup -----------------------------------------------------------------------------------
def train_models(root: Path) -> Path:
    """Train both models into ``root/models/{classifier,extractor}``; return the bundle folder."""
    dataset = write_tiny_dataset(root / "dataset")
    tracking = TrackingConfig(mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    bundle = root / "models"
    for task, name in (("classify", "classifier"), ("extract", "extractor")):
        started = time.perf_counter()
        train(task, str(dataset), str(bundle / name), TRAINING, tracking)  # type: ignore[arg-type]
        logger.info("trained the %s in %.1f s", name, time.perf_counter() - started)
    return bundle


def _child_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logger.setLevel(logging.INFO)


def train_apart(root: Path) -> Path:
    """``train_models`` in a child process (spawned, bounded in time).

    Training changes process-wide torch state (``use_deterministic_algorithms(True)``, seeds,
    Accelerate) and may leave MLflow threads behind; the server never trains, so neither should
    the process that measures the in-process baseline.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_child_logging) as pool:
        return pool.submit(train_models, root).result(timeout=TRAIN_TIMEOUT_S)


def make_documents(root: Path, docs: int, seed: int) -> list[dict[str, Any]]:
    """Page records of ``docs`` born-digital synthetic documents (text layer, no OCR)."""
    corpus = root / "corpus"
    generate_corpus(corpus, docs, seed, "base", scanned_fraction=0.0)
    documents = []
    for pdf in sorted(corpus.glob("*.pdf")):
        pages = [
            {"words": page.words, "boxes": page.boxes, "page": number}
            for number, page in enumerate(text_layer_words(pdf))
            if page.words
        ]
        documents.append({"pages": pages})
    return documents


def request_body(document: dict[str, Any]) -> bytes:
    """A KServe V1 request with one document."""
    return json.dumps({"instances": [document]}, separators=(",", ":")).encode()


def to_examples(bodies: Sequence[bytes], limits: ServeLimits) -> list[DocumentExample]:
    """The model inputs the predictor builds from these request bodies (``_prepare``)."""
    examples = []
    for index, body in enumerate(bodies):
        (instance,) = parse_v1(json.loads(body), limits)
        assert isinstance(instance, PagesInstance)
        doc_id = pages_doc_id(instance.pages)
        examples.append(to_example(doc_id, f"bench://{index}", instance.pages, instance.page_count))
    return examples


def workload(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items cycling through ``items``."""
    return list(itertools.islice(itertools.cycle(items), count))


# --- figures ----------------------------------------------------------------------------------
@dataclass
class Run:
    """One measured configuration, accumulated over its interleaved blocks."""

    name: str
    docs: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    server: dict[str, float] | None = None

    def add(self, docs: int, seconds: float, latencies_s: Sequence[float]) -> None:
        self.docs += docs
        self.seconds += seconds
        self.latencies_s.extend(latencies_s)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds

    def percentile(self, q: int) -> float:
        if len(self.latencies_s) == 1:
            return self.latencies_s[0] * 1000
        cuts = statistics.quantiles(self.latencies_s, n=100, method="inclusive")
        return cuts[q - 1] * 1000

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies_s) * 1000

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "documents": self.docs,
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(self.docs_per_s, 3),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "mean_ms": round(self.mean_ms, 2),
            "latency_samples": len(self.latencies_s),
        }
        if self.server is not None:
            figures["server"] = {key: round(value, 3) for key, value in self.server.items()}
        return figures


def blocks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def rotated(targets: Sequence[str], index: int) -> list[str]:
    """``targets`` starting at ``index`` (so no target always runs first or last)."""
    shift = index % len(targets)
    return [*targets[shift:], *targets[:shift]]


# --- in process -------------------------------------------------------------------------------
@dataclass
class Models:
    """The two models loaded in this process (the baseline), as the server runs them."""

    classifier: LoadedModel
    extractor: LoadedModel

    @classmethod
    def load(cls, bundle: Path, inference: Inference) -> Models:
        """Both models of ``bundle`` under ``inference`` (``DocloopModel.load`` does the same)."""
        return cls(
            serving_model(load_model(bundle / "classifier"), inference),
            serving_model(load_model(bundle / "extractor"), inference),
        )

    def forward(self, examples: Sequence[DocumentExample]) -> None:
        """Both models over one batch, with the batch sizes ``DocloopModel._forward`` uses."""
        batch = list(examples)
        size = max(len(batch), 1)
        classify(self.classifier, batch, batch_size=size)
        extract(self.extractor, batch, batch_size=max(size, 16))

    def one_by_one(self, examples: Sequence[DocumentExample]) -> tuple[float, list[float]]:
        """Batch 1: wall seconds and per-document latencies."""
        latencies = []
        started = time.perf_counter()
        for example in examples:
            begin = time.perf_counter()
            self.forward([example])
            latencies.append(time.perf_counter() - begin)
        return time.perf_counter() - started, latencies

    def batched(self, examples: Sequence[DocumentExample]) -> tuple[float, list[float]]:
        """Batches of ``BATCH``: wall seconds and per-batch latencies."""
        latencies = []
        started = time.perf_counter()
        for batch in blocks(examples, BATCH):
            begin = time.perf_counter()
            self.forward(batch)
            latencies.append(time.perf_counter() - begin)
        return time.perf_counter() - started, latencies


def parse_cost_ms(bodies: Sequence[bytes], limits: ServeLimits, rounds: int = 5) -> float:
    """Mean ms per document of JSON decoding + ``parse_v1`` + ``to_example`` (in ``predict``)."""
    started = time.perf_counter()
    for _ in range(rounds):
        to_examples(bodies, limits)
    return (time.perf_counter() - started) / (rounds * len(bodies)) * 1000


# --- server -----------------------------------------------------------------------------------
@dataclass
class Server:
    """A ``docloop serve`` subprocess on 127.0.0.1."""

    batching: bool
    url: str
    process: subprocess.Popen[bytes]
    output: Path
    inference: str = "fp32"
    label: str = "on"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/models/{MODEL_NAME}:predict"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def start_server(bundle: Path, workdir: Path, batching: bool, inference: str, label: str) -> Server:
    """Start ``docloop serve --model <bundle>`` on 127.0.0.1 and a free port (not yet ready)."""
    port = free_port()
    command = [
        sys.executable, "-m", "docloop.cli", "serve",
        "--model", str(bundle), "--port", str(port), "--host", "127.0.0.1",
        "--name", MODEL_NAME, "--inference", inference,
        "--batching" if batching else "--no-batching",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    output = workdir / f"server-{label}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    return Server(batching, f"http://127.0.0.1:{port}", process, output, inference, label)


def wait_ready(servers: Sequence[Server], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll KServe's readiness endpoint of every server until each answers 200 (bounded)."""
    started = time.monotonic()
    waiting = list(servers)
    with httpx.Client(timeout=2.0) as client:
        while waiting and time.monotonic() - started < timeout_s:
            for server in list(waiting):
                if server.process.poll() is not None:
                    raise RuntimeError(
                        f"docloop serve (batching {server.label}) exited with "
                        f"{server.process.returncode}:\n{log_tail(server.output)}"
                    )
                try:
                    ready = client.get(f"{server.url}/v2/health/ready").status_code == 200
                except httpx.TransportError:
                    ready = False  # not listening yet
                if ready:
                    waiting.remove(server)
                    logger.info(
                        "docloop serve (batching %s) ready on %s after %.1f s",
                        server.label,
                        server.url,
                        time.monotonic() - started,
                    )
            if waiting:
                time.sleep(0.2)
    if waiting:
        tails = "\n".join(log_tail(server.output) for server in waiting)
        raise RuntimeError(f"docloop serve not ready after {timeout_s:.0f} s:\n{tails}")


def stop(server: Server, timeout_s: float = 15.0) -> None:
    """SIGTERM (KServe's graceful shutdown), then SIGKILL if it does not exit in time."""
    process = server.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout_s)


SERVER_SAMPLES = {
    "docloop_predictor_request_seconds_sum": "predict_s",
    "docloop_predictor_request_seconds_count": "requests",
    "docloop_predictor_forward_seconds_sum": "forward_s",
    "docloop_predictor_forward_seconds_count": "forwards",
    "docloop_predictor_batch_size_sum": "batched_docs",
}


def server_counters(server: Server) -> dict[str, float]:
    """The predictor's cumulative timings from its ``GET /metrics``."""
    response = httpx.get(f"{server.url}/metrics", timeout=10.0)
    response.raise_for_status()
    counters = dict.fromkeys(SERVER_SAMPLES.values(), 0.0)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = SERVER_SAMPLES.get(sample.name)
            if key is not None and sample.labels.get("model_name") == MODEL_NAME:
                counters[key] += sample.value
    return counters


def server_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-request and per-forward means over one run (from counter differences)."""
    delta = {key: after[key] - before[key] for key in after}
    requests = max(delta["requests"], 1.0)
    forwards = max(delta["forwards"], 1.0)
    return {
        "requests": delta["requests"],
        "forward_passes": delta["forwards"],
        "mean_batch_size": delta["batched_docs"] / forwards,
        "predict_mean_ms": delta["predict_s"] / requests * 1000,
        "forward_mean_ms": delta["forward_s"] / forwards * 1000,
    }


HEADERS = {"content-type": "application/json"}


def check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")


def sequential(
    client: httpx.Client, server: Server, bodies: Sequence[bytes]
) -> tuple[float, list[float]]:
    """Send ``bodies`` one after the other; wall seconds and per-request latencies."""
    latencies = []
    started = time.perf_counter()
    for body in bodies:
        begin = time.perf_counter()
        check(client.post(server.endpoint, content=body, headers=HEADERS))
        latencies.append(time.perf_counter() - begin)
    return time.perf_counter() - started, latencies


async def concurrent(
    client: httpx.AsyncClient, server: Server, bodies: Sequence[bytes], concurrency: int
) -> tuple[float, list[float]]:
    """Send ``bodies`` with ``concurrency`` requests in flight; wall seconds and latencies."""
    latencies: list[float] = []
    pending = iter(bodies)  # shared by the workers: each takes the next body when it is free

    async def worker() -> None:
        for body in pending:
            begin = time.perf_counter()
            check(await client.post(server.endpoint, content=body, headers=HEADERS))
            latencies.append(time.perf_counter() - begin)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def async_client(concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits)


def warm_up(server: Server, bodies: Sequence[bytes]) -> None:
    """A checked answer, a few sequential and two rounds of concurrent requests."""
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        response = client.post(server.endpoint, content=bodies[0], headers=HEADERS)
        check(response)
        (answer,) = response.json()["predictions"]
        if "doc_type" not in answer or "entities" not in answer:
            raise RuntimeError(f"unexpected answer: {str(answer)[:300]}")
        sequential(client, server, bodies[:4])

    async def rounds() -> None:
        async with async_client(CONCURRENCY) as client:
            await concurrent(client, server, workload(bodies, 2 * CONCURRENCY), CONCURRENCY)

    asyncio.run(rounds())


# --- the interleaved runs ---------------------------------------------------------------------
def in_process_key(inference: str) -> str:
    """The run key of the in-process baseline under ``inference``."""
    return f"in-process {inference}"


def sequential_phase(
    models: dict[str, Models],
    servers: Sequence[Server],
    examples: Sequence[DocumentExample],
    bodies: Sequence[bytes],
) -> dict[str, Run]:
    """Batch 1 in process (each inference) and c=1 over HTTP to each server, in blocks of 16."""
    runs = {in_process_key(name): Run(f"in-process {name}, batch 1") for name in models}
    runs.update({s.label: Run(f"HTTP c=1, {s.inference}, batching {s.label}") for s in servers})
    in_process = {in_process_key(name): loaded for name, loaded in models.items()}
    by_label = {server.label: server for server in servers}
    before = {server.label: server_counters(server) for server in servers}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        pairs = zip(blocks(examples, BATCH), blocks(bodies, BATCH), strict=True)
        for index, (example_block, body_block) in enumerate(pairs):
            for target in rotated(list(runs), index):
                if target in in_process:
                    seconds, latencies = in_process[target].one_by_one(example_block)
                else:
                    seconds, latencies = sequential(client, by_label[target], body_block)
                runs[target].add(len(example_block), seconds, latencies)
    for server in servers:
        runs[server.label].server = server_delta(before[server.label], server_counters(server))
    return runs


async def concurrent_phase(
    models: dict[str, Models],
    servers: Sequence[Server],
    examples: Sequence[DocumentExample],
    bodies: Sequence[bytes],
) -> dict[str, Run]:
    """Batch 16 in process (each inference) and c=16 over HTTP to each server, in blocks of 32."""
    runs = {in_process_key(name): Run(f"in-process {name}, batch {BATCH}") for name in models}
    runs.update(
        {s.label: Run(f"HTTP c={CONCURRENCY}, {s.inference}, batching {s.label}") for s in servers}
    )
    in_process = {in_process_key(name): loaded for name, loaded in models.items()}
    by_label = {server.label: server for server in servers}
    before = {server.label: server_counters(server) for server in servers}
    size = 2 * CONCURRENCY
    async with async_client(CONCURRENCY) as client:
        pairs = zip(blocks(examples, size), blocks(bodies, size), strict=True)
        for index, (example_block, body_block) in enumerate(pairs):
            for target in rotated(list(runs), index):
                if target in in_process:
                    # blocks the event loop: the client is idle meanwhile
                    seconds, latencies = in_process[target].batched(example_block)
                else:
                    seconds, latencies = await concurrent(
                        client, by_label[target], body_block, CONCURRENCY
                    )
                runs[target].add(len(example_block), seconds, latencies)
    for server in servers:
        runs[server.label].server = server_delta(before[server.label], server_counters(server))
    return runs


def log_runs(runs: dict[str, Run]) -> None:
    for item in runs.values():
        batch = f", mean batch {item.server['mean_batch_size']:.1f}" if item.server else ""
        logger.info(
            "%s: %.2f docs/s, p50 %.1f ms%s",
            item.name,
            item.docs_per_s,
            item.percentile(50),
            batch,
        )


# --- the benchmark ----------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    cuda = torch.cuda.is_available()
    return {
        "machine": f"{platform.machine()}, {cores} cores ({os.cpu_count()} online), "
        f"Python {platform.python_version()}",
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # load_model and the predictor keep the models on the CPU, even where CUDA exists.
        "device": "cpu" + (" (cuda available, unused)" if cuda else ""),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def breakdown(run: Run, forward_in_process: Run, parse_ms: float) -> dict[str, float]:
    """Where a c=1 request's time goes (means, ms): they add up to the client's mean latency."""
    assert run.server is not None
    predict = run.server["predict_mean_ms"]
    server_forward = run.server["forward_mean_ms"]
    return {
        "client_mean_ms": round(run.mean_ms, 2),
        "in_process_forward_mean_ms": round(forward_in_process.mean_ms, 2),
        "server_forward_mean_ms": round(server_forward, 2),
        "forward_slower_in_server_ms": round(server_forward - forward_in_process.mean_ms, 2),
        "in_predict_outside_forward_ms": round(predict - server_forward, 2),
        "of_which_parse_and_to_example_ms": round(parse_ms, 2),
        "outside_predict_ms": round(run.mean_ms - predict, 2),
    }


def measure(
    bundle: Path,
    workdir: Path,
    examples: list[DocumentExample],
    bodies: list[bytes],
    inference: Inference,
) -> tuple[dict[str, Run], dict[str, Run]]:
    """The servers up at once, measured alternately with the in-process baselines."""
    models = {name: Models.load(bundle, name) for name in INFERENCE_CHOICES}
    for loaded in models.values():
        loaded.one_by_one(examples[:4])
        loaded.batched(workload(examples, BATCH))
    servers: list[Server] = []
    try:
        servers.append(start_server(bundle, workdir, True, inference, "on"))
        servers.append(start_server(bundle, workdir, False, inference, "off"))
        if inference != "fp32":
            servers.append(start_server(bundle, workdir, True, "fp32", "fp32"))
        wait_ready(servers)
        for server in servers:
            warm_up(server, bodies)
        one = sequential_phase(models, servers, examples, bodies)
        log_runs(one)
        many = asyncio.run(concurrent_phase(models, servers, examples, bodies))
        log_runs(many)
    finally:
        for server in servers:
            stop(server)
    return one, many


def score_inference(model: Path, holdout: Path, docs: int | None) -> dict[str, Any]:
    """Entity F1 of one extractor on a holdout under each inference, and the loss against fp32."""
    examples = read_examples(Storage(), str(holdout))[:docs]
    loaded = load_model(model)
    if loaded.card.task != "extract":
        raise SystemExit(f"--score takes an extractor; {model} holds a {loaded.card.task} model")
    scores = {}
    for name in INFERENCE_CHOICES:
        started = time.perf_counter()
        served = serving_model(loaded, name)
        f1 = score_model(served, examples, holdout=str(holdout)).metric("f1")
        scores[name] = {
            "entity_f1": round(f1, 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        logger.info(
            "%s on %s (%d documents), %s: entity F1 %.4f", model, holdout, len(examples), name, f1
        )
    base = scores["fp32"]["entity_f1"]
    for item in scores.values():
        item["loss_points"] = round((base - item["entity_f1"]) * 100, 2)
    return {"model": str(model), "holdout": str(holdout), "documents": len(examples), **scores}


def run(docs: int, requests: int, seed: int, inference: Inference) -> dict[str, Any]:
    figures: dict[str, Any] = machine()
    with tempfile.TemporaryDirectory(prefix="docloop-bench-predictor-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        bundle = train_apart(root)
        documents = make_documents(root, docs, seed)
        limits = ServeLimits()
        doc_bodies = [request_body(document) for document in documents]
        doc_examples = to_examples(doc_bodies, limits)
        words = [len(example.words) for example in doc_examples]
        logger.info(
            "%d documents, %d-%d words (mean %.0f); setup took %.1f s",
            len(documents),
            min(words),
            max(words),
            statistics.fmean(words),
            time.perf_counter() - started,
        )
        parse_ms = parse_cost_ms(doc_bodies, limits)
        one, many = measure(
            bundle,
            root,
            workload(doc_examples, requests),
            workload(doc_bodies, requests),
            inference,
        )

    chosen, fp32 = in_process_key(inference), in_process_key("fp32")
    servers = ["on", "off", *(["fp32"] if inference != "fp32" else [])]
    runs = [
        *(one[in_process_key(name)] for name in INFERENCE_CHOICES),
        *(many[in_process_key(name)] for name in INFERENCE_CHOICES),
        *(one[label] for label in servers),
        *(many[label] for label in servers),
    ]
    base = one[chosen]
    overhead = one["on"].percentile(50) / base.percentile(50) - 1
    overhead_off = one["off"].percentile(50) / base.percentile(50) - 1
    speedup = many["on"].docs_per_s / many["off"].docs_per_s
    fp32_server = "fp32" if inference != "fp32" else "on"
    figures.update(
        {
            "documents": len(documents),
            "words_per_document": {
                "min": min(words),
                "max": max(words),
                "mean": round(statistics.fmean(words), 1),
            },
            "requests": requests,
            "inference": inference,
            "method": "the servers run at once and are measured alternately with the "
            "in-process baselines (blocks of 16 documents at c=1, 32 at c=16, order rotated), "
            "so that drift in machine speed affects every configuration alike",
            "training": TRAINING.model_dump(mode="json"),
            "runs": {item.name: item.figures() for item in runs},
            "inference_speedup_vs_fp32": {
                f"in-process {name}, batch 1": round(
                    one[in_process_key(name)].docs_per_s / one[fp32].docs_per_s, 3
                )
                for name in INFERENCE_CHOICES
                if name != "fp32"
            }
            | {
                f"in-process {name}, batch {BATCH}": round(
                    many[in_process_key(name)].docs_per_s / many[fp32].docs_per_s, 3
                )
                for name in INFERENCE_CHOICES
                if name != "fp32"
            }
            | {
                "HTTP c=1, batching on": round(
                    one["on"].docs_per_s / one[fp32_server].docs_per_s, 3
                ),
                f"HTTP c={CONCURRENCY}, batching on": round(
                    many["on"].docs_per_s / many[fp32_server].docs_per_s, 3
                ),
            },
            "inference_speedup_target": INFERENCE_SPEEDUP_TARGET,
            "server_overhead_c1": round(overhead, 4),
            "server_overhead_c1_target": OVERHEAD_TARGET,
            "server_overhead_c1_met": overhead <= OVERHEAD_TARGET,
            "server_overhead_c1_no_batching": round(overhead_off, 4),
            "batching_speedup_c16": round(speedup, 3),
            "batching_speedup_c16_target": SPEEDUP_TARGET,
            "batching_speedup_c16_met": speedup >= SPEEDUP_TARGET,
            "in_process_batch_speedup": round(many[chosen].docs_per_s / base.docs_per_s, 3),
            "parse_and_to_example_ms_per_doc": round(parse_ms, 3),
            "breakdown_c1_batching_on": breakdown(one["on"], base, parse_ms),
            "breakdown_c1_batching_off": breakdown(one["off"], base, parse_ms),
        }
    )
    return figures


def report(figures: dict[str, Any], console: Console) -> None:
    title = (
        f"predictor benchmark ({figures['machine']}, {figures['torch_threads']} torch threads, "
        f"device {figures['device']})"
    )
    table = Table(title=title)
    for column in ("run", "docs/s", "p50 ms", "p99 ms", "mean batch"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for name, item in figures["runs"].items():
        server = item.get("server")
        batch = f"{server['mean_batch_size']:.1f}" if server else ""
        table.add_row(
            name,
            f"{item['docs_per_s']:.2f}",
            f"{item['p50_ms']:.1f}",
            f"{item['p99_ms']:.1f}",
            batch,
        )
    console.print(table)

    ratios = Table(title="ratios (targets reported, never asserted)")
    for column in ("figure", "value", "target", "met"):
        ratios.add_column(column)

    def mark(met: bool) -> str:
        return "[green]yes[/green]" if met else "[red]no[/red]"

    overhead = figures["server_overhead_c1"]
    speedup = figures["batching_speedup_c16"]
    ratios.add_row(
        "server overhead, c=1 p50 (batching on)",
        f"{overhead:+.1%}",
        "<= 10 %",
        mark(figures["server_overhead_c1_met"]),
    )
    ratios.add_row(
        "  same with --no-batching", f"{figures['server_overhead_c1_no_batching']:+.1%}", "", ""
    )
    ratios.add_row(
        f"batching speed-up, c={CONCURRENCY} docs/s (on / off)",
        f"{speedup:.2f}x",
        ">= 2x",
        mark(figures["batching_speedup_c16_met"]),
    )
    ratios.add_row(
        f"  in process, batch {BATCH} / batch 1 docs/s",
        f"{figures['in_process_batch_speedup']:.2f}x",
        "",
        "",
    )
    for name, value in figures["inference_speedup_vs_fp32"].items():
        ratios.add_row(
            f"docs/s vs fp32: {name} ({figures['inference']})",
            f"{value:.2f}x",
            f">= {figures['inference_speedup_target']:g}x",
            mark(value >= figures["inference_speedup_target"]),
        )
    for scored in figures.get("scores", []):
        for name in INFERENCE_CHOICES:
            item = scored[name]
            ratios.add_row(
                f"entity F1, {name}: {Path(scored['model']).name} on "
                f"{Path(scored['holdout']).name} ({scored['documents']} docs)",
                f"{item['entity_f1']:.4f} ({-item['loss_points']:+.2f} pt)",
                f"loss <= {F1_LOSS_TARGET_POINTS:g} pt",
                mark(item["loss_points"] <= F1_LOSS_TARGET_POINTS),
            )
    console.print(ratios)

    parts = Table(title="where a c=1 request's time goes (means, ms)")
    parts.add_column("part")
    parts.add_column("batching on", justify="right")
    parts.add_column("batching off", justify="right")
    on, off = figures["breakdown_c1_batching_on"], figures["breakdown_c1_batching_off"]
    for key, label in (
        ("client_mean_ms", "client latency"),
        ("in_process_forward_mean_ms", "forward in process (baseline)"),
        ("server_forward_mean_ms", "forward in the server"),
        ("forward_slower_in_server_ms", "  forward: server - in process"),
        ("in_predict_outside_forward_ms", "predict() outside the forward"),
        ("of_which_parse_and_to_example_ms", "  of which parse + to_example"),
        ("outside_predict_ms", "outside predict() (HTTP, KServe, client)"),
    ):
        parts.add_row(label, f"{on[key]:.2f}", f"{off[key]:.2f}")
    console.print(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_DOCS} documents and {QUICK_REQUESTS} requests"
    )
    parser.add_argument("--docs", type=int, default=None, help="distinct documents (default 16)")
    parser.add_argument(
        "--requests", type=int, default=None, help="requests (documents) per run (default 96)"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--inference",
        choices=INFERENCE_CHOICES,
        default=SERVE_DEFAULTS.inference,
        help="how the measured servers run the models (default: serve.inference's default); "
        "every choice is measured in process, and a fp32 server runs beside for the ratios",
    )
    parser.add_argument(
        "--score",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "HOLDOUT"),
        help="also score this extractor folder on this holdout Parquet file under each "
        "inference (entity F1 and the loss against fp32); may be given more than once",
    )
    parser.add_argument(
        "--score-docs", type=int, default=None, help="score the first N holdout documents only"
    )
    args = parser.parse_args()
    if args.docs is None:
        args.docs = QUICK_DOCS if args.quick else 16
    if args.requests is None:
        args.requests = QUICK_REQUESTS if args.quick else 96
    if args.docs < 1 or args.requests < CONCURRENCY:
        parser.error(f"--docs must be >= 1 and --requests >= {CONCURRENCY}")
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logger.setLevel(logging.INFO)
    console = Console()
    started = time.perf_counter()
    figures = {
        "quick": args.quick,
        "seed": args.seed,
        "scores": [
            score_inference(Path(model), Path(holdout), args.score_docs)
            for model, holdout in args.score
        ],
        **run(args.docs, args.requests, args.seed, args.inference),
    }
    figures["total_seconds"] = round(time.perf_counter() - started, 1)
    report(figures, console)
    OUT.mkdir(exist_ok=True)
    (OUT / "predictor.json").write_text(json.dumps(figures, indent=2))
    console.print(
        f"figures written to {OUT / 'predictor.json'} ({figures['total_seconds']:.0f} s in all)"
    )


if __name__ == "__main__":
    main()

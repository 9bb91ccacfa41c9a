"""The experiment: one V1, then every strategy after every drift scenario, several seeds.

Cells are (scenario, seed); a cell's strategies share its simulated feedback and its holdouts.
Every finished (cell, strategy, model) is appended to ``results.jsonl`` as soon as it is scored,
so an interrupted run resumes where it stopped (``--fresh`` starts over); training folders are
deleted after scoring (only the figures are kept).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.retrain_strategies.data import (
    EVERYTHING,
    FEEDBACK_ONLY,
    Corpora,
    Size,
    answers_of,
    corpora,
    corrections_for,
    random_dataset,
    retrain_dataset,
    simulated_feedback,
    write_v1_dataset,
)
from docloop.config import DocloopConfig, GateConfig, RetrainConfig, TrackingConfig, TrainingConfig
from docloop.datasets.retrain.write import FEEDBACK_HOLDOUT
from docloop.documents.examples import (
    DatasetManifest,
    DocumentExample,
    read_examples,
    read_manifest,
)
from docloop.errors import InvalidInput
from docloop.evaluation.gate import evaluate_gate, key_metric
from docloop.evaluation.scoring import ModelScores, score_model
from docloop.models.artifact import LoadedModel, load_model
from docloop.models.encoder import resolve_encoder
from docloop.models.training import train
from docloop.storage import Storage

logger = logging.getLogger(__name__)

TASKS: Final = ("classify", "extract")
REPLAY_SWEEP: Final = (0.0, 0.1, 0.3, 0.5)
"""replay_ratio values swept (the default policy's own is the ``targeted`` row, not repeated)."""


@dataclass(frozen=True)
class Strategy:
    """How one candidate is made: its dataset, and whether it starts from V1 or the encoder."""

    name: str
    label: str
    warm_start: bool


def strategies(policy: RetrainConfig) -> list[Strategy]:
    """The strategies in report order (``no_retrain`` is V1 itself and is not trained)."""
    sweep = [
        Strategy(f"replay_{ratio:g}", f"docloop, replay_ratio {ratio:g}", True)
        for ratio in REPLAY_SWEEP
        if ratio != policy.replay_ratio
    ]
    return [
        Strategy("no_retrain", "no retrain (V1)", False),
        Strategy("feedback_only", "feedback-only fine-tune (its own corrections)", True),
        Strategy("full_retrain", "full retrain from the encoder, all data", False),
        Strategy(
            "targeted",
            f"docloop targeted (default: replay_ratio {policy.replay_ratio:g}, "
            f"error_oversample {policy.error_oversample:g})",
            True,
        ),
        *sweep,
        Strategy("random", "random sampling, targeted's budget", True),
    ]


def truncated_encoder(folder: Path, layers: int) -> Path:
    """all-MiniLM-L6-v2 with only its first ``layers`` transformer layers (saved once).

    A real pretrained transformer (its own embeddings and lower layers, unchanged) small enough
    that some 170 fine-tunes fit in half an hour on two CPU cores; ``--encoder-layers 6`` runs
    the whole encoder.
    """
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModel, AutoTokenizer

    source = resolve_encoder(None)
    model = AutoModel.from_pretrained(str(source), local_files_only=True)
    if layers < model.config.num_hidden_layers:
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    AutoTokenizer.from_pretrained(str(source), local_files_only=True).save_pretrained(str(staging))
    staging.rename(folder)
    return folder


@dataclass(frozen=True)
class Setup:
    """What every cell needs (picklable: sent to worker processes)."""

    out: Path
    size: Size
    training: TrainingConfig
    policy: RetrainConfig
    gate: GateConfig
    v1_dataset: str
    v1_models: dict[str, str]


def _scores(
    model: LoadedModel, holdouts: dict[str, Sequence[DocumentExample]]
) -> dict[str, ModelScores]:
    return {name: score_model(model, examples, holdout=name) for name, examples in holdouts.items()}


def _figures(task: str, gate: GateConfig, scores: dict[str, ModelScores]) -> dict[str, Any]:
    metric = key_metric(task, gate)  # type: ignore[arg-type]
    return {
        name: {
            "metric": round(s.metric(metric), 4),
            "per_label": {label: round(m.f1, 4) for label, m in sorted(s.per_label.items())},
            "documents": s.n_documents,
        }
        for name, s in scores.items()
        if name != FEEDBACK_HOLDOUT
    }


def train_v1(
    out: Path, training: TrainingConfig, data: Corpora
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """V1's dataset and both models (cached: the trainer recognises a finished run)."""
    storage = Storage()
    dataset = str(out / "v1" / "dataset")
    manifest = write_v1_dataset(storage, dataset, data.base)
    models: dict[str, str] = {}
    compute: dict[str, Any] = {"counts": manifest.counts}
    for task in TASKS:
        uri = str(out / "v1" / task)
        result = train(task, dataset, uri, training, TrackingConfig(enabled=False))  # type: ignore[arg-type]
        models[task] = uri
        compute[task] = {"examples_seen": result.samples_seen, "seconds": round(result.seconds, 1)}
    return dataset, models, compute


def run_cell(
    setup: Setup, scenario: str, seed: int, data: Corpora, done: set[tuple[str, ...]]
) -> Iterator[dict[str, Any]]:
    """Every strategy of one (scenario, seed) cell; yields one result row per (strategy, model)."""
    storage = Storage()
    cell = setup.out / "cells" / f"{scenario}-{seed}"
    v1 = {task: load_model(Path(uri)) for task, uri in setup.v1_models.items()}
    traffic = data.traffic[scenario]
    answers = answers_of(v1["classify"], v1["extract"], traffic)
    feedback = simulated_feedback(answers, traffic, seed)
    old = read_examples(storage, f"{setup.v1_dataset}/holdout.parquet")
    drifted = data.test[scenario]
    datasets: dict[str, DatasetManifest] = {}

    def build(name: str) -> str:
        uri = str(cell / "datasets" / name)
        if name in datasets:
            return uri
        if name == "targeted":
            datasets[name] = retrain_dataset(
                storage, uri, feedback, setup.v1_dataset, setup.policy, seed
            )
        elif name.startswith("replay_"):
            policy = setup.policy.model_copy(
                update={"replay_ratio": float(name.removeprefix("replay_"))}
            )
            datasets[name] = retrain_dataset(storage, uri, feedback, setup.v1_dataset, policy, seed)
        elif name == "feedback_only":
            datasets[name] = retrain_dataset(
                storage, uri, feedback, setup.v1_dataset, FEEDBACK_ONLY, seed
            )
        elif name == "full_retrain":
            datasets[name] = retrain_dataset(
                storage, uri, feedback, setup.v1_dataset, EVERYTHING, seed
            )
        elif name == "random":
            budget = datasets.get("targeted") or read_manifest(storage, build("targeted"))
            everything = build("full_retrain")
            datasets[name] = random_dataset(storage, uri, everything, budget, seed)
        return uri

    targeted_fb = str(cell / "datasets" / "targeted")
    build("targeted")
    feedback_holdout = read_examples(storage, f"{targeted_fb}/{FEEDBACK_HOLDOUT}.parquet")
    held_out = {example.doc_id for example in feedback_holdout}

    def corrections(task: str) -> str | None:
        """The feedback-only dataset of one model; None when V1 made no mistake to fine-tune on."""
        uri = str(cell / "datasets" / f"feedback_only-{task}")
        try:
            datasets[f"feedback_only-{task}"] = retrain_dataset(
                storage,
                uri,
                corrections_for(feedback, task, held_out),
                setup.v1_dataset,
                FEEDBACK_ONLY,
                seed,
            )
        except InvalidInput as exc:
            logger.warning(
                "%s %s seed %d: no feedback-only dataset (%s)", scenario, task, seed, exc
            )
            return None
        return uri

    holdouts: dict[str, Sequence[DocumentExample]] = {"old": old, "drifted": drifted}
    gate_holdouts: dict[str, Sequence[DocumentExample]] = {"holdout": old}
    if feedback_holdout:
        gate_holdouts[FEEDBACK_HOLDOUT] = feedback_holdout
    incumbent = {task: _scores(model, {**holdouts, **gate_holdouts}) for task, model in v1.items()}
    base = {"scenario": scenario, "seed": seed, "feedback": feedback.counts}
    for strategy in strategies(setup.policy):
        for task in TASKS:
            if (scenario, str(seed), strategy.name, task) in done:
                continue
            row = {**base, "strategy": strategy.name, "task": task}
            if strategy.name == "no_retrain":
                yield {**row, **_v1_row(task, setup.gate, incumbent[task])}
                continue
            if strategy.name == "feedback_only":
                found = corrections(task)
                if found is None:
                    yield {**row, **_v1_row(task, setup.gate, incumbent[task])}
                    continue
                dataset, key = found, f"feedback_only-{task}"
            else:
                dataset, key = build(strategy.name), strategy.name
            output = cell / "models" / f"{strategy.name}-{task}"
            shutil.rmtree(output, ignore_errors=True)
            epochs = setup.size.finetune_epochs if strategy.warm_start else setup.size.epochs
            config = setup.training.model_copy(update={"seed": seed, "epochs": epochs})
            result = train(  # type: ignore[arg-type]
                task,
                dataset,
                str(output),
                config,
                TrackingConfig(enabled=False),
                init_from=setup.v1_models[task] if strategy.warm_start else None,
            )
            model = load_model(output)
            scores = _scores(model, {**holdouts, **gate_holdouts})
            gate = evaluate_gate(
                task,  # type: ignore[arg-type]
                setup.gate,
                {name: scores[name] for name in gate_holdouts},
                {name: incumbent[task][name] for name in gate_holdouts},
            )
            manifest = datasets[key]
            yield {
                **row,
                "examples_seen": result.samples_seen,
                "train_seconds": round(result.seconds, 2),
                "steps": model.card.steps,
                "train_rows": manifest.counts["train"],
                "sources": manifest.source_counts.get("train", {}),
                "scores": _figures(task, setup.gate, scores),
                "gate": {
                    "blessed": gate.blessed,
                    "failed": [c.reason for c in gate.checks if not c.passed],
                },
            }
            shutil.rmtree(output, ignore_errors=True)


def _v1_row(task: str, gate: GateConfig, scores: dict[str, ModelScores]) -> dict[str, Any]:
    return {
        "examples_seen": 0,
        "train_seconds": 0.0,
        "steps": 0,
        "train_rows": 0,
        "sources": {},
        "scores": _figures(task, gate, scores),
        "gate": {"blessed": False, "failed": ["no candidate: the champion stays"]},
    }


def _cell_file(out: Path, scenario: str, seed: int) -> Path:
    return out / "cells" / f"{scenario}-{seed}" / "results.jsonl"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The result rows of a ``results.jsonl`` (none if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cell_worker(
    setup: Setup, scenario: str, seed: int, data: Corpora, threads: int
) -> tuple[str, int, float]:
    """Run one cell in a worker process, appending each row to the cell's results file."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    path = _cell_file(setup.out, scenario, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["scenario"], str(r["seed"]), r["strategy"], r["task"]) for r in read_rows(path)}
    with path.open("a") as sink:
        for row in run_cell(setup, scenario, seed, data, done):
            sink.write(json.dumps(row, sort_keys=True) + "\n")
            sink.flush()
    return scenario, seed, time.perf_counter() - started


def run_experiment(
    out: Path,
    size: Size,
    config: DocloopConfig,
    *,
    workers: int,
    on_cell: Callable[[str, int, float], None] | None = None,
) -> dict[str, Any]:
    """The whole benchmark: corpora, V1, every cell; returns the rows and the run's facts."""
    corpora_started = time.perf_counter()
    data = corpora(out / "work", size, config)
    corpora_s = time.perf_counter() - corpora_started
    encoder = truncated_encoder(out / f"encoder-L{size.encoder_layers}", size.encoder_layers)
    training = config.training.model_copy(
        update={
            "encoder": str(encoder),
            "max_length": size.max_length,
            "epochs": size.epochs,
            "checkpoint_every": 100_000,
            "seed": 0,
        }
    )
    v1_started = time.perf_counter()
    v1_dataset, v1_models, v1_compute = train_v1(out, training, data)
    setup = Setup(out, size, training, config.retrain, config.gate, v1_dataset, v1_models)
    cells = [(s, seed) for s in size.scenarios for seed in range(size.seeds)]
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    cells_started = time.perf_counter()
    if workers <= 1:
        for scenario, seed in cells:
            result = cell_worker(setup, scenario, seed, data, threads)
            if on_cell:
                on_cell(*result)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(cell_worker, setup, s, seed, data, threads) for s, seed in cells]
            for future in as_completed(futures):
                result = future.result()
                if on_cell:
                    on_cell(*result)
    rows = [row for s, seed in cells for row in read_rows(_cell_file(out, s, seed))]
    return {
        "rows": rows,
        "v1": v1_compute,
        "seconds": {
            "corpora": round(corpora_s, 1),
            "v1": round(cells_started - v1_started, 1),
            "cells": round(time.perf_counter() - cells_started, 1),
        },
        "training": training.model_dump(mode="json"),
        "policy": config.retrain.model_dump(mode="json"),
        "gate": config.gate.model_dump(mode="json"),
        "corpora": {
            "base": len(data.base),
            "traffic": {k: len(v) for k, v in data.traffic.items()},
            "test": {k: len(v) for k, v in data.test.items()},
        },
        "workers": workers,
        "threads_per_worker": threads,
    }

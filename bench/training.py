"""Benchmark training on the synthetic corpus: wall time, samples/s, holdout scores, layout gain.

Run with ``python -m bench.training [--quick] [--docs N]``. It generates a ``base`` corpus (default
120 documents), preprocesses it, builds a dataset (all cached under bench/out/training-data/), then
fine-tunes, with the configured training settings:

- the classifier -> holdout accuracy and macro-F1;
- the extractor without word boxes (the default) and the same extractor with them
  (``use_layout=True``) -> holdout entity F1 (seqeval, exact span) of each and the difference:
  the measured value of the boxes.

It reports the device it ran on (CPU or CUDA, with bf16) and samples/s for each run. Targets
(reported, never asserted): both models fine-tune in <= 3 min each on 2 CPU cores.

``--quick`` (what ``make bench`` runs): 40 documents and at most 6 optimisation steps per model,
trained into a temporary folder so that every run is timed (the default size keeps its models
under bench/out/training-models/ and reports a second run on them as cached). Its scores only
show that the path works; the default size measures what the models learn.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from docloop.config import PreprocessConfig, TrackingConfig, load_config
from docloop.datasets.initial import build_initial_dataset
from docloop.documents.examples import read_examples, read_manifest
from docloop.documents.preprocess import preprocess
from docloop.documents.synth import generate_corpus
from docloop.models.artifact import load_model
from docloop.models.inference import classify, extract
from docloop.models.metrics import classification_metrics, entity_metrics
from docloop.models.training import train
from docloop.storage import Storage

OUT = Path(__file__).resolve().parent / "out"
QUICK_DOCS = 40
QUICK_MAX_STEPS = 6


def prepare(docs: int, seed: int) -> Path:
    root = OUT / "training-data" / f"base-{docs}-{seed}"
    dataset = root / "dataset"
    if (dataset / "manifest.json").is_file():
        return dataset
    generate_corpus(root / "corpus", docs, seed, "base")
    preprocess(str(root / "corpus"), str(root / "pages"), PreprocessConfig(), Storage())
    build_initial_dataset(
        str(root / "pages"), str(root / "corpus" / "labels.jsonl"), str(dataset), seed=seed
    )
    return dataset


def run(docs: int, seed: int, max_steps: int | None, models: Path) -> dict[str, object]:
    dataset = prepare(docs, seed)
    storage = Storage()
    holdout = read_examples(storage, str(dataset / "holdout.parquet"))
    manifest = read_manifest(storage, str(dataset))
    settings = load_config()
    tracking = TrackingConfig(mlflow_tracking_uri=f"sqlite:///{OUT / 'training-mlflow.db'}")
    figures: dict[str, object] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "documents": docs,
        "seed": seed,
        "max_steps": max_steps,
        "split": manifest.counts,
        "config": settings.training.model_dump(mode="json"),
    }
    for name, task, overrides in (
        ("classifier", "classify", {}),
        ("extractor", "extract", {"use_layout": False}),
        ("extractor_layout", "extract", {"use_layout": True}),
    ):
        output = models / name
        size = {} if max_steps is None else {"max_steps": max_steps}
        config = settings.training.model_copy(update={**overrides, **size})
        started = time.perf_counter()
        result = train(task, str(dataset), str(output), config, tracking)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        model = load_model(output)
        if task == "classify":
            report = classification_metrics(
                [str(e.doc_type) for e in holdout],
                [p.label for p in classify(model, holdout)],
                model.card.labels,
            )
            scores = {"accuracy": report.accuracy, "macro_f1": report.macro_f1}
        else:
            entity = entity_metrics(
                [e.tags for e in holdout], [r.tags for r in extract(model, holdout)]
            )
            scores = {"entity_f1": entity.f1, "entity_macro_f1": entity.macro_f1}
        figures[name] = {
            "seconds": round(seconds, 1),
            "steps": result.card.steps,
            "samples_seen": result.samples_seen,
            "samples_per_s": round(result.samples_seen / seconds, 2) if seconds else 0.0,
            "already_trained": result.already_trained,
            **{k: round(v, 4) for k, v in scores.items()},
        }
    layout = figures["extractor_layout"]["entity_f1"]  # type: ignore[index]
    plain = figures["extractor"]["entity_f1"]  # type: ignore[index]
    figures["layout_gain_entity_f1"] = round(float(layout) - float(plain), 4)
    return figures


def report(figures: dict[str, object], console: Console) -> None:
    table = Table(title=f"training benchmark ({figures['device']}, {figures['machine']})")
    for column in ("model", "wall s", "steps", "samples/s", "holdout scores", "<= 180 s"):
        table.add_column(column)
    for name in ("classifier", "extractor", "extractor_layout"):
        row = figures[name]
        assert isinstance(row, dict)
        scores = ", ".join(f"{k}={v:.3f}" for k, v in row.items() if k.endswith(("f1", "accuracy")))
        if row["already_trained"]:
            met = "cached: delete bench/out/training-models to re-time"
        else:
            met = "[green]yes[/green]" if row["seconds"] <= 180 else "[red]no[/red]"
        table.add_row(
            name, str(row["seconds"]), str(row["steps"]), str(row["samples_per_s"]), scores, met
        )
    console.print(table)
    console.print(
        f"layout gain (entity F1, boxes - no boxes): {figures['layout_gain_entity_f1']:+.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_DOCS} documents, at most {QUICK_MAX_STEPS} steps per model, fresh models",
    )
    parser.add_argument("--docs", type=int, default=None, help="documents (default 120)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    docs = args.docs if args.docs is not None else (QUICK_DOCS if args.quick else 120)
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="docloop-bench-training-") as models:
            figures = run(docs, args.seed, QUICK_MAX_STEPS, Path(models))
    else:
        figures = run(docs, args.seed, None, OUT / "training-models")
    figures = {"quick": args.quick, **figures}
    report(figures, Console())
    OUT.mkdir(exist_ok=True)
    (OUT / "training.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

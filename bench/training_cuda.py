"""Training throughput on whatever device torch sees: docloop's trainer vs a plain HF ``Trainer``.

Run with ``python -m bench.training_cuda [--dataset DIR] [--steps N]``. For each model (classifier,
extractor) it trains with docloop's trainer (accelerate; bf16 on a GPU, fp32 on CPU) and then with a
plain Hugging Face ``transformers.Trainer`` on the same network, features, batch size and precision,
and reports samples/s from the median optimisation-step interval of each (first steps skipped as
warm-up), so evaluation passes and start-up cost do not count for either. Target (reported, never
asserted): docloop / HF >= 1.0x.

It also checks that the whole path really runs on the GPU when there is one: the run reports
``device=cuda`` and ``bf16``, CUDA memory was allocated, and the trained model, loaded with
``device="auto"`` as the predictor loads it, scores the holdout on CUDA (docs/s vs CPU, same docs).

The dataset defaults to the one ``bench.training`` prepares (bench/out/training-data). On a
machine without the encoder package, ``--encoder DIR`` names a checkpoint folder; a folder holding
``weights-fp16.safetensors`` instead of ``model.safetensors`` is widened to fp32 first (how the
GPU run carries the weights under its upload limit).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from docloop.config import TrackingConfig, TrainingConfig, load_config
from docloop.documents.examples import read_examples, read_manifest
from docloop.models.artifact import build_network, load_model
from docloop.models.encoder import load_encoder, load_tokenizer, resolve_encoder
from docloop.models.features import (
    IGNORE_INDEX,
    classifier_features,
    collate_classifier,
    collate_extractor,
    extractor_windows,
)
from docloop.models.inference import classify, extract
from docloop.models.metrics import classification_metrics, entity_metrics
from docloop.models.training import train
from docloop.storage import Storage

OUT = Path(__file__).resolve().parent / "out"
DEFAULT_DATASET = OUT / "training-data" / "base-120-3" / "dataset"
WARMUP_STEPS = 5
logger = logging.getLogger("bench.training_cuda")


def widen_encoder(folder: Path) -> Path:
    """Return a checkpoint folder with fp32 ``model.safetensors`` (widening fp16 weights)."""
    narrow = folder / "weights-fp16.safetensors"
    if (folder / "model.safetensors").is_file() or not narrow.is_file():
        return folder
    from safetensors.torch import load_file, save_file

    weights = load_file(str(narrow))
    save_file(
        {k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
        str(folder / "model.safetensors"),
    )
    return folder


def median_samples_per_s(stamps: list[float], batch_size: int) -> float:
    """Samples/s from the median interval between step-end timestamps after the warm-up."""
    intervals = [b - a for a, b in itertools.pairwise(stamps[WARMUP_STEPS:])]
    if not intervals:
        return 0.0
    return batch_size / statistics.median(intervals)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def docloop_run(
    task: str, dataset: Path, output: Path, config: TrainingConfig
) -> tuple[float, dict[str, Any]]:
    """Train with docloop; samples/s and the run's facts."""
    stamps: list[float] = []

    def on_step(done: int, total: int) -> None:
        _sync()
        stamps.append(time.perf_counter())

    started = time.perf_counter()
    result = train(
        task,  # type: ignore[arg-type]
        str(dataset),
        str(output),
        config,
        TrackingConfig(enabled=False),
        on_step=on_step,
    )
    return median_samples_per_s(stamps, config.batch_size), {
        "wall_s": round(time.perf_counter() - started, 1),
        "steps": result.card.steps,
        "device": result.device,
        "mixed_precision": result.mixed_precision,
        "cuda_max_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20)
        if torch.cuda.is_available()
        else 0,
    }


def hf_run(task: str, dataset: Path, model_folder: Path, config: TrainingConfig) -> float:
    """Train the same network on the same features with a plain HF ``Trainer``; samples/s."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    card = load_model(model_folder).card
    encoder_path = resolve_encoder(config.encoder)
    tokenizer = load_tokenizer(encoder_path)
    network = build_network(card, load_encoder(encoder_path))
    examples = read_examples(Storage(), str(dataset / "train.parquet"))
    label_ids = {label: i for i, label in enumerate(card.labels)}
    if task == "classify":
        features: list[Any] = [
            f
            for f in classifier_features(
                examples, tokenizer, label_ids, config.max_length, config.max_pages
            )
            if f.label != IGNORE_INDEX
        ]
        collate: Any = collate_classifier
    else:
        features = extractor_windows(examples, tokenizer, label_ids, config.max_length)
        collate = collate_extractor

    class LossTrainer(Trainer):  # type: ignore[misc]
        def compute_loss(  # type: ignore[no-untyped-def]
            self, model, inputs, return_outputs=False, num_items_in_batch=None
        ):
            labels = inputs.pop("labels")
            logits = model(**inputs)
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
            return (loss, logits) if return_outputs else loss

    stamps: list[float] = []

    class Stamp(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _sync()
            stamps.append(time.perf_counter())

    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=config.batch_size,
            max_steps=int(card.steps),
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            warmup_steps=int(config.warmup_ratio * int(card.steps)),
            max_grad_norm=1.0,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            use_cpu=not cuda,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            remove_unused_columns=False,
            dataloader_num_workers=0,
            disable_tqdm=True,
            seed=config.seed,
        )
        LossTrainer(
            model=network,
            args=arguments,
            train_dataset=features,
            data_collator=collate,
            callbacks=[Stamp()],
        ).train()
    return median_samples_per_s(stamps, config.batch_size)


def inference_docs_per_s(task: str, model_folder: Path, dataset: Path) -> dict[str, Any]:
    """Holdout scoring on CPU and, when present, on CUDA (``device="auto"``): docs/s and scores."""
    holdout = read_examples(Storage(), str(dataset / "holdout.parquet"))
    figures: dict[str, Any] = {}
    devices = ["cpu"] + (["auto"] if torch.cuda.is_available() else [])
    for device in devices:
        model = load_model(model_folder, device)
        where = next(model.network.parameters()).device.type
        run = classify if task == "classify" else extract
        run(model, holdout[:4])  # warm-up
        _sync()
        started = time.perf_counter()
        outputs: Any = run(model, holdout)
        _sync()
        seconds = time.perf_counter() - started
        if task == "classify":
            score = classification_metrics(
                [str(e.doc_type) for e in holdout], [p.label for p in outputs], model.card.labels
            ).macro_f1
        else:
            score = entity_metrics([e.tags for e in holdout], [r.tags for r in outputs]).f1
        figures[where] = {"docs_per_s": round(len(holdout) / seconds, 1), "score": round(score, 4)}
    return figures


def run(
    dataset: Path, steps: int, batch_size: int, encoder: str | None, repeats: int
) -> dict[str, Any]:
    """Both models, both trainers (interleaved ``repeats`` times), inference on each device."""
    config = load_config().training.model_copy(
        update={
            "max_steps": steps,
            "epochs": 1000,
            "batch_size": batch_size,
            "checkpoint_every": 10 * steps,
            "early_stopping_patience": 1000,
            **({"encoder": str(widen_encoder(Path(encoder)))} if encoder else {}),
        }
    )
    cuda = torch.cuda.is_available()
    figures: dict[str, Any] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "steps": steps,
        "batch_size": batch_size,
        "max_length": config.max_length,
        "repeats": repeats,
    }
    with tempfile.TemporaryDirectory() as scratch:
        for task in ("classify", "extract"):
            docloop_runs: list[float] = []
            hf_runs: list[float] = []
            for attempt in range(repeats):
                # alternate the trainers so clock and thermal drift hit both alike
                output = Path(scratch) / f"{task}-{attempt}"
                ours, facts = docloop_run(task, dataset, output, config)
                docloop_runs.append(ours)
                hf_runs.append(hf_run(task, dataset, output, config))
            ours, theirs = statistics.median(docloop_runs), statistics.median(hf_runs)
            figures[task] = {
                "docloop_samples_per_s": round(ours, 1),
                "hf_trainer_samples_per_s": round(theirs, 1),
                "docloop_runs": [round(v, 1) for v in docloop_runs],
                "hf_trainer_runs": [round(v, 1) for v in hf_runs],
                "ratio": round(ours / theirs, 3) if theirs else None,
                **facts,
                "inference": inference_docs_per_s(task, output, dataset),
            }
    return figures


def report(figures: dict[str, Any], console: Console) -> None:
    """Print the table of figures."""
    table = Table(title=f"training throughput on {figures['device']} ({figures['machine']})")
    for column in ("model", "docloop samples/s", "HF Trainer samples/s", "ratio (>= 1.0)", "path"):
        table.add_column(column)
    for task in ("classify", "extract"):
        row = figures[task]
        ratio = row["ratio"]
        mark = "[green]yes[/green]" if ratio is not None and ratio >= 1.0 else "[red]no[/red]"
        table.add_row(
            task,
            str(row["docloop_samples_per_s"]),
            str(row["hf_trainer_samples_per_s"]),
            f"{ratio} {mark}",
            f"{row['device']}/{row['mixed_precision']}, {row['cuda_max_memory_mb']} MiB CUDA",
        )
    console.print(table)
    console.print(
        f"medians of {figures['repeats']} interleaved runs each, "
        f"{figures['steps']} steps of batch {figures['batch_size']}"
    )
    for task in ("classify", "extract"):
        console.print(f"{task} holdout inference: {figures[task]['inference']}")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="Interleaved runs per trainer.")
    parser.add_argument("--encoder", help="Checkpoint folder (default: the configured encoder).")
    parser.add_argument("--json", type=Path, default=OUT / "training_cuda.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (args.dataset / "manifest.json").is_file():
        raise SystemExit(f"{args.dataset} has no dataset; run `python -m bench.training` first")
    train_docs = read_manifest(Storage(), str(args.dataset)).counts["train"]
    if train_docs < 4 * args.batch_size:
        # docloop evaluates at each epoch end; with < 4 steps per epoch the median step interval
        # includes evaluation passes and the comparison with HF Trainer (no evaluation) is unfair
        raise SystemExit(
            f"--batch-size {args.batch_size} leaves fewer than 4 steps per epoch on "
            f"{train_docs} training documents; use --batch-size <= {train_docs // 4}"
        )
    figures = run(args.dataset, args.steps, args.batch_size, args.encoder, args.repeats)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    report(figures, Console())


if __name__ == "__main__":
    main()

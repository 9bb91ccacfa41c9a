"""Fine-tuning both models: accelerate, warm start, early stopping, checkpoints and resume, MLflow.

A run writes into its output folder:

    checkpoint/   written every ``checkpoint_every`` steps and at each epoch end (atomically: a
                  new folder is renamed into place); a run started again with the same output,
                  dataset and settings continues from it, even after SIGKILL
    (model)       the final model artifact (see ``docloop.models.artifact``), written last

Re-running a finished training with the same output, dataset and settings does nothing.
Deterministic for a seed on CPU: data order comes from (seed, epoch), and the RNG, optimizer and
scheduler states are part of the checkpoint, so a resumed run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from docloop import __version__
from docloop.config import TrackingConfig, TrainingConfig, artifact_location, tracking_uri
from docloop.documents.examples import (
    OUTSIDE,
    DatasetManifest,
    DocumentExample,
    read_examples,
    read_manifest,
)
from docloop.documents.locate import field_value
from docloop.errors import InvalidInput
from docloop.models.artifact import (
    CARD_FILE,
    WEIGHTS_FILE,
    LoadedModel,
    ModelCard,
    Task,
    build_network,
    fetch_model_folder,
    load_model,
    publish_model_folder,
    read_card,
    save_model,
    upload_folder,
)
from docloop.models.calibration import FieldCalibration, fit_calibration
from docloop.models.encoder import load_encoder, load_tokenizer, resolve_encoder
from docloop.models.features import (
    IGNORE_INDEX,
    ExtractorWindow,
    classifier_features,
    collate_classifier,
    collate_extractor,
    extractor_windows,
    holds_entity,
)
from docloop.models.inference import ExtractionResult, classify, extract
from docloop.models.known_values import known_values
from docloop.models.metrics import classification_metrics, entity_metrics, entity_spans
from docloop.storage import Storage, is_local, join, local_path

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"

StepCallback = Callable[[int, int], None]
"""Called with (steps done, total steps) after each optimisation step."""


@dataclass
class TrainResult:
    """What a training run produced."""

    card: ModelCard
    output_uri: str
    resumed_from_step: int = 0
    already_trained: bool = False
    seconds: float = 0.0
    samples_seen: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    mixed_precision: str = "fp32"


def code_version() -> str:
    """The git commit of the running code when there is one, else the package version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}"


def tag_labels(entity_types: Sequence[str]) -> list[str]:
    """IOB2 tag set for entity types: ``O`` first, then ``B-x``/``I-x`` pairs."""
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in entity_types for prefix in ("B", "I")]


def nothing_to_train(task: Task, manifest: DatasetManifest) -> str | None:
    """Why a dataset trains no model for ``task`` (one document type: no classifier); else None."""
    if task == "classify" and len(manifest.doc_types) == 1:
        return f"no classifier: one document type ({manifest.doc_types[0]})"
    return None


def validation_score(
    task: Task, model: LoadedModel, examples: Sequence[DocumentExample]
) -> dict[str, float]:
    """Validation metrics; ``score`` is the early-stopping metric (macro-F1 over classes/types)."""
    if not examples:
        return {"score": 0.0}
    if task == "classify":
        labelled = [e for e in examples if e.doc_type in model.card.labels]
        predicted = [p.label for p in classify(model, labelled)]
        report = classification_metrics(
            [str(e.doc_type) for e in labelled], predicted, model.card.labels
        )
        return {"score": report.macro_f1, "accuracy": report.accuracy, "macro_f1": report.macro_f1}
    results = extract(model, examples)
    known = set(model.card.labels)
    gold = [[t if t in known else OUTSIDE for t in e.tags] for e in examples]
    entity = entity_metrics(gold, [r.tags for r in results])
    return {"score": entity.macro_f1, "entity_f1": entity.f1, "entity_macro_f1": entity.macro_f1}


class _Tracker:
    """MLflow logging of one training run; with tracking disabled every call does nothing."""

    def __init__(self, tracking: TrackingConfig, task: Task, run_id: str | None) -> None:
        import os

        if not tracking.enabled:
            self.mlflow: Any = None
            self.run_id: str | None = None
            return

        import mlflow

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        uri = tracking_uri(tracking)
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        name = f"{tracking.experiment_prefix}-{task}"
        if mlflow.get_experiment_by_name(name) is None:
            # set_experiment alone would put the artifacts under ./mlruns of the working directory
            from mlflow.exceptions import MlflowException

            try:
                mlflow.create_experiment(name, artifact_location=artifact_location(tracking, uri))
            except MlflowException:  # a concurrent run created it first
                logger.debug("experiment %s created concurrently", name)
        mlflow.set_experiment(name)
        self.mlflow = mlflow
        self.run_id = mlflow.start_run(run_id=run_id).info.run_id

    def params(self, params: dict[str, Any]) -> None:
        if self.mlflow is None:
            return
        existing = self.mlflow.get_run(self.run_id).data.params
        fresh = {k: str(v)[:500] for k, v in params.items() if k not in existing}
        if fresh:
            self.mlflow.log_params(fresh)

    def tags(self, tags: dict[str, str]) -> None:
        if self.mlflow is None:
            return
        self.mlflow.set_tags(tags)

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.mlflow is None:
            return
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def artifact(self, path: Path) -> None:
        if self.mlflow is None:
            return
        self.mlflow.log_artifact(str(path))

    def end(self, status: str = "FINISHED") -> None:
        if self.mlflow is None:
            return
        self.mlflow.end_run(status=status)


def _labels_for(
    task: Task, manifest_types: Sequence[str], incumbent: ModelCard | None
) -> list[str]:
    wanted = list(manifest_types) if task == "classify" else tag_labels(manifest_types)
    if incumbent is None:
        return wanted
    # keep the incumbent's label order so its head rows carry over; append new labels
    return list(incumbent.labels) + [label for label in wanted if label not in incumbent.labels]


def _field_kinds(trainer: Trainer, incumbent: ModelCard | None) -> dict[str, str]:
    """The extractor's fields with their kinds: the incumbent's, updated by the dataset's schema."""
    if trainer.task != "extract":
        return {}
    known = dict(incumbent.field_kinds) if incumbent is not None else {}
    return dict(sorted({**known, **trainer.field_kinds}.items()))


def once_per_document(examples: Sequence[DocumentExample]) -> list[DocumentExample]:
    """Each document's first row only: what the classifier trains on.

    A retrain dataset repeats documents whose corrections touched a weak entity type
    (``error_oversample``): weight for the extractor's errors. For the classifier the copies say
    nothing about the type and only skew the class prior toward whatever the feedback is heavy
    in (measured: ``bench/retrain_strategies`` class_mix, docs/architecture.md).
    """
    first: dict[str, DocumentExample] = {}
    for example in examples:
        first.setdefault(example.doc_id, example)
    unique = list(first.values())
    if len(unique) < len(examples):
        logger.info(
            "classifier trains on %d documents once each (%d repeated rows are the extractor's "
            "oversampling)",
            len(unique),
            len(examples) - len(unique),
        )
    return unique


def _warm_start(network: nn.Module, incumbent: LoadedModel) -> None:
    """Copy every matching weight, and the head rows of labels both models share."""
    target = network.state_dict()
    source = incumbent.network.state_dict()
    for name, tensor in source.items():
        if name in target and target[name].shape == tensor.shape:
            target[name] = tensor.clone()
    new_labels = len(target["head.weight"])
    shared = min(new_labels, len(incumbent.card.labels))
    target["head.weight"][:shared] = source["head.weight"][:shared]
    target["head.bias"][:shared] = source["head.bias"][:shared]
    network.load_state_dict(target)


def _window_tokens(config: TrainingConfig, encoder: Any) -> int:
    """The configured window, capped at the encoder's position limit (BERT-family: 512)."""
    limit = int(getattr(encoder.config, "max_position_embeddings", config.window_tokens))
    if config.window_tokens > limit:
        logger.info(
            "window_tokens %d exceeds the encoder's %d positions: windows of %d tokens",
            config.window_tokens,
            limit,
            limit,
        )
    return min(config.window_tokens, limit)


def entity_free_sampled(
    windows: list[ExtractorWindow], outside_id: int, share: float, seed: int
) -> list[ExtractorWindow]:
    """Every window that holds an entity, and entity-free ones up to ``share`` of the result.

    Long documents are mostly pages without any field: all of their windows would make training
    time follow the page count, and teach ``O`` far more often than any field. Which entity-free
    windows stay is drawn by ``seed``; their document order is kept.
    """
    labelled = [w for w in windows if holds_entity(w, outside_id)]
    empty = [i for i, w in enumerate(windows) if not holds_entity(w, outside_id)]
    keep = len(empty) if share >= 1 else int(share * len(labelled) / (1 - share))
    if keep >= len(empty):
        return windows
    generator = torch.Generator().manual_seed(seed)
    chosen = {empty[i] for i in torch.randperm(len(empty), generator=generator)[:keep].tolist()}
    kept = [w for i, w in enumerate(windows) if i in chosen or holds_entity(w, outside_id)]
    logger.info(
        "extractor trains on %d windows: %d with entities, %d of %d entity-free "
        "(entity_free_share %.2f)",
        len(kept),
        len(labelled),
        keep,
        len(empty),
        share,
    )
    return kept


def labelled_field_values(
    examples: Sequence[DocumentExample], fields: Sequence[str]
) -> dict[str, list[str]]:
    """Per field, the value each example was labelled with.

    Its label's value (labels by value), else the words of its first gold span of that field.
    """
    values: dict[str, list[str]] = {name: [] for name in fields}
    for example in examples:
        found = dict(example.field_values)
        for span in entity_spans(example.tags):
            found.setdefault(span.type, " ".join(example.words[span.start : span.end]))
        for name in fields:
            if found.get(name):
                values[name].append(found[name])
    return values


def _known_values(
    config: TrainingConfig,
    types: Sequence[str],
    train: Sequence[DocumentExample],
    incumbent: ModelCard | None,
) -> dict[str, list[str]]:
    """The known values of ``training.known_value_fields``.

    The training split's labelled values (validation's stay unseen, so the calibration fitted on
    it measures answers to documents like new ones), plus the incumbent's.
    """
    unknown = sorted(set(config.known_value_fields) - set(types))
    if unknown:
        raise InvalidInput(
            f"training.known_value_fields names {', '.join(unknown)}, not fields of this "
            f"dataset (its fields: {', '.join(sorted(types))})"
        )
    labelled = labelled_field_values(train, config.known_value_fields)
    previous = incumbent.known_values if incumbent is not None else {}
    return {
        name: known_values(labelled[name], previous.get(name, ()))
        for name in config.known_value_fields
    }


def gold_field_values(card: ModelCard, example: DocumentExample) -> dict[str, set[str]]:
    """Per field, the normalised values of the example's gold spans (from its tags).

    With labels by value, the label's value too (what a known value reads an answer as).
    """
    values: dict[str, set[str]] = {
        name: {field_value(card.field_kinds.get(name, "text"), value)}
        for name, value in example.field_values.items()
    }
    kind, words = "", []
    for word, tag in [*zip(example.words, example.tags, strict=True), ("", OUTSIDE)]:
        if tag.startswith("I-") and tag[2:] == kind:
            words.append(word)
            continue
        if words:
            value = field_value(card.field_kinds.get(kind, "text"), " ".join(words))
            values.setdefault(kind, set()).add(value)
        kind, words = (tag[2:], [word]) if tag != OUTSIDE else ("", [])
    return values


def field_outcomes(
    card: ModelCard, examples: Sequence[DocumentExample], results: Sequence[ExtractionResult]
) -> dict[str, tuple[list[float], list[bool]]]:
    """Per field, each document's answer confidence and whether its value is a gold value."""
    outcomes: dict[str, tuple[list[float], list[bool]]] = {}
    for example, result in zip(examples, results, strict=True):
        gold = gold_field_values(card, example)
        for name, answer in result.fields.items():
            scores, right = outcomes.setdefault(name, ([], []))
            scores.append(answer.confidence)
            right.append(answer.value in gold.get(name, set()))
    return outcomes


def calibrate_fields(
    model: LoadedModel, examples: Sequence[DocumentExample]
) -> dict[str, FieldCalibration]:
    """Fit each field's confidence map on ``examples`` (the validation documents)."""
    raw = model.card.model_copy(update={"calibration": {}})
    results = extract(LoadedModel(raw, model.network, model.tokenizer, model.path), examples)
    fitted: dict[str, FieldCalibration] = {}
    for name, (scores, right) in sorted(field_outcomes(raw, examples, results).items()):
        calibration = fit_calibration(scores, right)
        if calibration is None:
            logger.info(
                "field %s keeps raw confidences: %d validation answers, %d right",
                name,
                len(scores),
                sum(right),
            )
            continue
        fitted[name] = calibration
        logger.info(
            "field %s: confidence calibrated on %d answers (ECE %.3f -> %.3f)",
            name,
            calibration.samples,
            calibration.ece_raw,
            calibration.ece,
        )
    return fitted


def _atomic_dir_swap(staging: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


class Trainer:
    """One training run (construct, then :meth:`run`)."""

    def __init__(
        self,
        task: Task,
        dataset_uri: str,
        output_uri: str,
        config: TrainingConfig,
        tracking: TrackingConfig,
        storage: Storage,
        init_from: str | None = None,
        on_step: StepCallback | None = None,
    ) -> None:
        if task not in ("classify", "extract"):
            raise InvalidInput(f"task must be 'classify' or 'extract', not {task!r}")
        self.task: Task = task
        self.dataset_uri = dataset_uri
        self.output_uri = output_uri
        self.config = config
        self.tracking = tracking
        self.storage = storage
        self.init_from = init_from
        self.on_step = on_step
        self.field_kinds: dict[str, str] = {}

    # ---------------------------------------------------------------- data and model set-up
    def _load_data(self) -> tuple[list[DocumentExample], list[DocumentExample], str, list[str]]:
        manifest = read_manifest(self.storage, self.dataset_uri)
        train = read_examples(self.storage, join(self.dataset_uri, "train.parquet"))
        val = read_examples(self.storage, join(self.dataset_uri, "val.parquet"))
        if not train:
            raise InvalidInput(f"dataset {self.dataset_uri} has no training examples")
        types = manifest.doc_types if self.task == "classify" else manifest.entity_types
        if not types:
            what = "document types" if self.task == "classify" else "entity labels"
            raise InvalidInput(f"dataset {self.dataset_uri} has no {what}")
        skipped = nothing_to_train(self.task, manifest)
        if skipped is not None:
            raise InvalidInput(
                f"dataset {self.dataset_uri}: {skipped}, there is nothing to classify; train the "
                "extractor only (--task extract), or label documents of a second type"
            )
        schema = manifest.label_schema
        self.field_kinds = dict(schema.kinds) if schema is not None else {}
        return train, val, manifest.digest, list(types)

    def _identity(self, digest: str) -> dict[str, Any]:
        # the time budget is a stopping rule, not a setting of the weights: a checkpoint resumes
        # under another budget, and the card records the budget apart from train_config
        return {
            "task": self.task,
            "dataset_digest": digest,
            "init_from": self.init_from,
            "config": self.config.model_dump(mode="json", exclude={"time_budget_s"}),
        }

    # ---------------------------------------------------------------- the run
    def run(self) -> TrainResult:
        """Train (or resume, or recognise a finished run) and write the model artifact."""
        started = time.perf_counter()
        train, val, digest, types = self._load_data()
        identity = self._identity(digest)
        with tempfile.TemporaryDirectory(prefix="docloop-train-") as scratch:
            folder = (
                local_path(self.output_uri) if is_local(self.output_uri) else Path(scratch) / "out"
            )
            if not is_local(self.output_uri):
                self._download_existing(folder)
            finished = self._finished_card(folder, identity)
            if finished is not None:
                logger.info("%s already holds this trained model; nothing to do", self.output_uri)
                return TrainResult(finished, self.output_uri, already_trained=True)
            result = self._train(folder, train, val, digest, types, identity)
            if not is_local(self.output_uri):
                publish_model_folder(self.storage, folder, self.output_uri)
        result.seconds = time.perf_counter() - started
        return result

    def _download_existing(self, folder: Path) -> None:
        if self.storage.list(self.output_uri):
            fetch_model_folder(self.storage, self.output_uri, folder)

    def _finished_card(self, folder: Path, identity: dict[str, Any]) -> ModelCard | None:
        if not (folder / CARD_FILE).is_file():
            return None
        card = read_card(folder)
        same = (
            card.task == identity["task"]
            and card.dataset_digest == identity["dataset_digest"]
            and card.init_from == identity["init_from"]
            and card.train_config == identity["config"]
        )
        # a model the budget cut short is finished only for that budget: another one trains anew
        cut_short = card.stopped_by == "time_budget"
        if cut_short and card.time_budget_s != self.config.time_budget_s:
            return None
        return card if same else None

    def _train(
        self,
        folder: Path,
        train: list[DocumentExample],
        val: list[DocumentExample],
        digest: str,
        types: list[str],
        identity: dict[str, Any],
    ) -> TrainResult:
        run = _Run(self, folder, train, val, digest, types, identity)
        return run.execute()


class _Run:
    """The moving parts of one training run: model, optimiser, checkpoint state, tracker."""

    def __init__(
        self,
        trainer: Trainer,
        folder: Path,
        train: list[DocumentExample],
        val: list[DocumentExample],
        digest: str,
        types: list[str],
        identity: dict[str, Any],
    ) -> None:
        from accelerate import Accelerator

        self.trainer = trainer
        self.config = trainer.config
        self.folder = folder
        self.val = val
        self.checkpoint = folder / CHECKPOINT_DIR
        self.best_path = self.checkpoint / "best.safetensors"
        torch.manual_seed(self.config.seed)
        self.cuda = torch.cuda.is_available()
        self.bf16 = self.cuda and torch.cuda.is_bf16_supported()
        self.accelerator = Accelerator(
            mixed_precision="bf16" if self.bf16 else "no", cpu=not self.cuda
        )
        if not self.cuda:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self._build_model(digest, types, identity, train)
        self._build_features(train)
        self._build_optimizer()
        self.state: dict[str, Any] = {
            "identity": identity,
            "step": 0,
            "epoch": 0,
            "step_in_epoch": 0,
            "best_score": -1.0,
            "best_step": 0,
            "patience_left": self.config.early_stopping_patience,
            "history": [],
            "mlflow_run_id": None,
            "samples_seen": 0,
            "stopped": False,
            "stopped_by": "",
            "train_seconds": 0.0,
        }
        self.resumed_from = self._restore(identity)
        self.clock = time.perf_counter()  # restarted when the loop starts (`_budget_spent`)

    # ------------------------------------------------------------------ set-up
    def _build_model(
        self,
        digest: str,
        types: list[str],
        identity: dict[str, Any],
        train: list[DocumentExample],
    ) -> None:
        trainer, config = self.trainer, self.config
        incumbent = None
        if trainer.init_from:
            incumbent = load_model(fetch_model_folder(trainer.storage, trainer.init_from))
            if incumbent.card.task != trainer.task:
                raise InvalidInput(
                    f"--init-from {trainer.init_from} is a {incumbent.card.task} model, "
                    f"not a {trainer.task} model"
                )
        encoder_name = incumbent.card.encoder if incumbent is not None else config.encoder
        encoder_path = resolve_encoder(encoder_name)
        self.tokenizer = load_tokenizer(encoder_path)
        self.encoder = load_encoder(encoder_path)
        self.card = ModelCard(
            task=trainer.task,
            labels=_labels_for(trainer.task, types, incumbent.card if incumbent else None),
            field_kinds=_field_kinds(trainer, incumbent.card if incumbent else None),
            encoder=encoder_name,
            max_length=config.max_length,
            max_pages=config.max_pages,
            window_tokens=_window_tokens(config, self.encoder)
            if trainer.task == "extract"
            else None,
            window_overlap=config.window_overlap if trainer.task == "extract" else 0,
            use_layout=config.use_layout,
            known_values=_known_values(config, types, train, incumbent.card if incumbent else None)
            if trainer.task == "extract"
            else {},
            known_value_similarity=config.known_value_similarity,
            known_value_margin=config.known_value_margin,
            dataset_digest=digest,
            dataset_uri=trainer.dataset_uri,
            init_from=trainer.init_from,
            train_config=identity["config"],
            docloop_version=__version__,
            code_version=code_version(),
        )
        self.network: Any = build_network(self.card, self.encoder)
        if incumbent is not None:
            _warm_start(self.network, incumbent)

    def _build_features(self, train: list[DocumentExample]) -> None:
        config = self.config
        label_ids = {label: index for index, label in enumerate(self.card.labels)}
        if self.trainer.task == "classify":
            train = once_per_document(train)
            features: list[Any] = classifier_features(
                train, self.tokenizer, label_ids, config.max_length, config.max_pages
            )
            self.features = [f for f in features if f.label != IGNORE_INDEX]
            self.collate: Callable[[Any], dict[str, torch.Tensor]] = collate_classifier
        else:
            windows = extractor_windows(
                train,
                self.tokenizer,
                label_ids,
                self.card.window_length,
                self.card.window_overlap,
            )
            self.features = entity_free_sampled(
                windows, label_ids[OUTSIDE], config.entity_free_share, config.seed
            )
            self.collate = collate_extractor
        self.train_examples = len(train)  # the documents trained on (each once, for the classifier)
        if not self.features:
            raise InvalidInput(f"dataset {self.trainer.dataset_uri} has no usable examples")
        batches = -(-len(self.features) // config.batch_size)
        steps_per_epoch = max(1, batches // self.accelerator.num_processes)
        self.total_steps = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)

    def _build_optimizer(self) -> None:
        from transformers import get_linear_schedule_with_warmup

        config = self.config
        # Only the head learns fast. The box embeddings are added to the pretrained token
        # embeddings, so they move at the encoder's pace: at the head's rate they swamp the text
        # signal (measured: entity F1 0.37 with boxes vs 0.75 without, bench/training.py).
        head = [p for n, p in self.network.named_parameters() if n.startswith("head.")]
        body = [p for n, p in self.network.named_parameters() if not n.startswith("head.")]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": body, "lr": config.learning_rate},
                {"params": head, "lr": config.head_learning_rate},
            ],
            weight_decay=config.weight_decay,
            # one kernel per step instead of one per tensor, on CUDA and on the CPU too: the
            # per-tensor CPU step over the 11.7M-weight token embedding took a third of a
            # training step (measured 55 ms vs 11 ms per step, 2 cores, all-MiniLM-L6-v2 sizes)
            fused=True,
        )
        self.scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps
        )

    def _restore(self, identity: dict[str, Any]) -> int:
        if not (self.checkpoint / STATE_FILE).is_file():
            return 0
        saved = json.loads((self.checkpoint / STATE_FILE).read_text())
        if saved.get("identity") != identity:
            logger.info("ignoring a checkpoint from a different dataset or settings")
            return 0
        self.network.load_state_dict(load_file(str(self.checkpoint / WEIGHTS_FILE)))
        self.optimizer.load_state_dict(
            torch.load(self.checkpoint / "optimizer.pt", weights_only=True)
        )
        self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(load_file(str(self.checkpoint / "rng.safetensors"))["torch"])
        self.state = {**self.state, **saved}  # keys added since the checkpoint keep defaults
        logger.info("resuming from the checkpoint at step %d", saved["step"])
        return int(saved["step"])

    def _start_tracking(self) -> _Tracker:
        trainer = self.trainer
        tracker = _Tracker(trainer.tracking, trainer.task, self.state["mlflow_run_id"])
        self.state["mlflow_run_id"] = tracker.run_id
        tracker.params(
            {
                "task": trainer.task,
                "encoder": self.card.encoder,
                "init_from": trainer.init_from or "",
                "train_examples": self.train_examples,
                "val_examples": len(self.val),
                "train_features": len(self.features),
                "total_steps": self.total_steps,
                "device": "cuda" if self.cuda else "cpu",
                "mixed_precision": "bf16" if self.bf16 else "fp32",
                "num_processes": self.accelerator.num_processes,
                **{f"config.{k}": v for k, v in self.card.train_config.items()},
            }
        )
        tracker.tags(
            {
                "docloop.dataset_digest": self.card.dataset_digest,
                "docloop.code_version": self.card.code_version,
                "docloop.version": __version__,
                "docloop.task": trainer.task,
            }
        )
        return tracker

    # ------------------------------------------------------------------ persistence
    def _weights(self) -> dict[str, torch.Tensor]:
        unwrapped = self.accelerator.unwrap_model(self.network)
        return {k: v.detach().contiguous().cpu() for k, v in unwrapped.state_dict().items()}

    def save_checkpoint(self) -> None:
        """Write the checkpoint into a fresh folder and rename it into place."""
        staging = self.folder / (CHECKPOINT_DIR + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_file(self._weights(), str(staging / WEIGHTS_FILE))
        torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
        save_file({"torch": torch.get_rng_state()}, str(staging / "rng.safetensors"))
        if self.best_path.is_file():
            shutil.copy(self.best_path, staging / "best.safetensors")
        self.state["scheduler"] = self.scheduler.state_dict()
        (staging / STATE_FILE).write_text(json.dumps(self.state, indent=1))
        _atomic_dir_swap(staging, self.checkpoint)
        if not is_local(self.trainer.output_uri):
            upload_folder(
                self.trainer.storage,
                self.checkpoint,
                join(self.trainer.output_uri, CHECKPOINT_DIR),
                last=STATE_FILE,
            )

    def evaluate(self) -> dict[str, float]:
        """Validation scores of the current weights."""
        unwrapped = self.accelerator.unwrap_model(self.network)
        unwrapped.eval()
        loaded = LoadedModel(self.card, unwrapped, self.tokenizer, self.folder)
        scores = validation_score(self.trainer.task, loaded, self.val)
        unwrapped.train()
        return scores

    # ------------------------------------------------------------------ the loop
    def _epoch(self, tracker: _Tracker) -> None:
        state, config = self.state, self.config
        epoch = int(state["epoch"])
        # Batches are cut by hand rather than by a DataLoader: a DataLoader draws from the global
        # RNG each time it is iterated, which would make a resumed run diverge from an
        # uninterrupted one. Each process takes every num_processes-th batch (data parallel).
        for indices in self._batches(epoch)[int(state["step_in_epoch"]) :]:
            if self._budget_spent():
                break
            batch = {
                key: self._to_device(value)
                for key, value in self.collate([self.features[i] for i in indices]).items()
            }
            labels = batch.pop("labels")
            logits = self.network(**batch)
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
            self.accelerator.backward(loss)
            self.accelerator.clip_grad_norm_(self.network.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
            state["step"] += 1
            state["step_in_epoch"] += 1
            state["samples_seen"] += int(labels.shape[0]) * self.accelerator.num_processes
            if state["step"] % 10 == 0 and tracker.mlflow is not None:
                tracker.metrics({"train_loss": float(loss.detach())}, int(state["step"]))
            if self.trainer.on_step is not None:
                self.trainer.on_step(int(state["step"]), self.total_steps)
            if state["step"] % config.checkpoint_every == 0:
                self.save_checkpoint()
            if state["step"] >= self.total_steps:
                break
        self._end_epoch(epoch, tracker)

    def _budget_spent(self) -> bool:
        """Count the wall time of the loop into the state; True once the time budget is spent."""
        state = self.state
        now = time.perf_counter()
        state["train_seconds"] = float(state.get("train_seconds", 0.0)) + now - self.clock
        self.clock = now
        budget = self.config.time_budget_s
        if budget is None:
            return False
        spent = state["train_seconds"] >= budget
        if self.accelerator.num_processes > 1:  # every process stops at the same step
            flag = torch.tensor([float(spent)], device=self.accelerator.device)
            spent = bool(self.accelerator.reduce(flag, reduction="max").item())
        if not spent:
            return False
        if not state.get("stopped_by"):
            logger.info(
                "time budget of %.0f s spent at step %d: validating and keeping the best weights",
                budget,
                state["step"],
            )
        state["stopped_by"] = "time_budget"
        return True

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """Copy a batch tensor to the device; on a GPU through pinned memory, asynchronously."""
        if not self.cuda:
            return tensor
        return tensor.pin_memory().to(self.accelerator.device, non_blocking=True)

    def _batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of one epoch, in an order fixed by (seed, epoch)."""
        generator = torch.Generator().manual_seed(self.config.seed * 10_007 + epoch)
        order = torch.randperm(len(self.features), generator=generator).tolist()
        size = self.config.batch_size
        if self.trainer.task == "extract":
            order = self._length_grouped(order, generator)
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        processes = self.accelerator.num_processes
        per_process = max(1, len(batches) // processes)
        mine = batches[self.accelerator.process_index :: processes]
        return mine[:per_process]

    def _length_grouped(self, order: list[int], generator: torch.Generator) -> list[int]:
        """Windows of like length batched together, batches in random order.

        A batch is padded to its longest window: receipts of 60 to 512 tokens drawn at random
        waste about a third of every step on padding. Sorting within pools of 32 batches keeps
        the draw random while batches hold windows of similar length.
        """
        size = self.config.batch_size
        pool = size * 32
        grouped: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(
                order[start : start + pool], key=lambda i: len(self.features[i].input_ids)
            )
            grouped.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        shuffled = torch.randperm(len(grouped), generator=generator).tolist()
        return [index for b in shuffled for index in grouped[b]]

    def _end_epoch(self, epoch: int, tracker: _Tracker) -> None:
        state, config = self.state, self.config
        scores = self.evaluate()
        state["history"].append({**scores, "epoch": epoch})
        tracker.metrics({f"val_{k}": v for k, v in scores.items()}, int(state["step"]))
        logger.info("epoch %d step %d: validation %s", epoch, state["step"], scores)
        if scores["score"] > state["best_score"]:
            state["best_score"] = scores["score"]
            state["best_step"] = state["step"]
            state["patience_left"] = config.early_stopping_patience
            self.best_path.parent.mkdir(parents=True, exist_ok=True)
            save_file(self._weights(), str(self.best_path))
        else:
            state["patience_left"] -= 1
        state["epoch"] = epoch + 1
        state["step_in_epoch"] = 0
        if state["patience_left"] <= 0 and not state["stopped_by"]:
            logger.info(
                "early stopping: no validation gain in %d epochs", config.early_stopping_patience
            )
            state["stopped_by"] = "early_stopping"
        if state["step"] >= self.total_steps and not state["stopped_by"]:
            limited = config.max_steps is not None and self.total_steps == config.max_steps
            state["stopped_by"] = "max_steps" if limited else "epochs"
        self._budget_spent()  # the validation counts too
        state["stopped"] = bool(state["stopped_by"])
        self.save_checkpoint()

    def execute(self) -> TrainResult:
        """Train to the end, then write the best weights as the model artifact."""
        tracker = self._start_tracking()
        finished = False
        try:
            result = self._execute(tracker)
            finished = True
        finally:
            # a crash marks the MLflow run FAILED; a resumed run reopens the same run id
            tracker.end("FINISHED" if finished else "FAILED")
        return result

    def _execute(self, tracker: _Tracker) -> TrainResult:
        self.network, self.optimizer = self.accelerator.prepare(self.network, self.optimizer)
        self.network.train()
        self.clock = time.perf_counter()
        while not self.state["stopped"] and self.state["epoch"] < self.config.epochs:
            self._epoch(tracker)
        if not self.state["stopped_by"]:
            self.state["stopped_by"] = "epochs"
        final = self.accelerator.unwrap_model(self.network)
        final.load_state_dict(load_file(str(self.best_path)))
        final.eval()
        scores = validation_score(
            self.trainer.task, LoadedModel(self.card, final, self.tokenizer, self.folder), self.val
        )
        self.card.metrics = {f"val_{k}": v for k, v in scores.items()}
        if self.trainer.task == "extract":
            self.card.calibration = calibrate_fields(
                LoadedModel(self.card, final, self.tokenizer, self.folder), self.val
            )
        self.card.steps = int(self.state["step"])
        self.card.stopped_by = str(self.state["stopped_by"])
        self.card.train_seconds = round(float(self.state["train_seconds"]), 3)
        self.card.time_budget_s = self.config.time_budget_s
        self.card.mlflow_run_id = tracker.run_id
        save_model(self.folder, final.cpu(), self.tokenizer, self.encoder.config, self.card)
        tracker.metrics({f"final_val_{k}": v for k, v in scores.items()}, int(self.state["step"]))
        tracker.artifact(self.folder / CARD_FILE)
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        storage, output_uri = self.trainer.storage, self.trainer.output_uri
        if not is_local(output_uri):
            for info in storage.list(join(output_uri, CHECKPOINT_DIR)):
                storage.delete(info.uri)
        return TrainResult(
            self.card,
            output_uri,
            resumed_from_step=self.resumed_from,
            samples_seen=int(self.state["samples_seen"]),
            history=list(self.state["history"]),
            device="cuda" if self.cuda else "cpu",
            mixed_precision="bf16" if self.bf16 else "fp32",
        )


def train(
    task: Task,
    dataset_uri: str,
    output_uri: str,
    config: TrainingConfig,
    tracking: TrackingConfig,
    storage: Storage | None = None,
    *,
    init_from: str | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Fine-tune a classifier or an extractor and write the model artifact to ``output_uri``.

    Args:
        task: ``classify`` (document type) or ``extract`` (entities).
        dataset_uri: a dataset folder (``train.parquet``, ``val.parquet``, ``manifest.json``).
        output_uri: where the checkpoint and then the model go.
        config: training settings.
        tracking: MLflow settings.
        storage: the object store.
        init_from: an incumbent model to warm-start from (its labels keep their head rows).
        on_step: progress callback.

    Returns:
        The model card and run facts.
    """
    trainer = Trainer(
        task,
        dataset_uri,
        output_uri,
        config,
        tracking,
        storage or Storage(),
        init_from=init_from,
        on_step=on_step,
    )
    return trainer.run()

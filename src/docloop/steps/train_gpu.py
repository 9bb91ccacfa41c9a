"""The train-gpu component's step: configuration + parameters -> a training run -> the card."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from docloop.config import load_config
from docloop.documents.examples import read_manifest
from docloop.errors import InvalidInput
from docloop.models.artifact import CARD_FILE, ModelCard, Task, read_card, write_skip
from docloop.models.launch import train_with_available_devices
from docloop.models.training import nothing_to_train
from docloop.storage import Storage
from docloop.store.registry import resolve_model_uri

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    """The trained model's card, or why nothing was trained (then the folder holds a marker)."""

    card: ModelCard | None
    skipped: str = ""


def run(
    task: str,
    dataset_dir: str,
    model_dir: str,
    init_from: str,
    max_steps: int,
    epochs: int,
    seed: int,
    dataset_ref: str = "",
    time_budget_s: float = 0.0,
) -> TrainOutcome:
    """Train ``task`` on the dataset folder into ``model_dir`` and return the model card.

    ``init_from`` may be a registry URI (``models:/docloop-classifier@champion``); ``dataset_ref``
    is the dataset artifact's URI, recorded in the card (the pod reads it from ``dataset_dir``)
    so that a later retrain can replay it. A dataset with nothing to train for ``task`` (one
    document type: no classifier) is a skip, not a failure: ``model_dir`` gets the skip marker
    that evaluate reads, and nothing downstream is registered for this task.
    """
    if task not in ("classify", "extract"):
        raise InvalidInput(f"task must be 'classify' or 'extract', not {task!r}")
    kind = cast(Task, task)
    settings = load_config()
    skipped = nothing_to_train(kind, read_manifest(Storage(settings.storage), dataset_dir))
    if skipped is not None:
        logger.warning("%s: nothing trained (%s)", task, skipped)
        write_skip(Path(model_dir), kind, skipped)
        return TrainOutcome(None, skipped)
    overrides: dict[str, object] = {"seed": seed}
    if max_steps:
        overrides["max_steps"] = max_steps
    if epochs:
        overrides["epochs"] = epochs
    if time_budget_s:
        overrides["time_budget_s"] = time_budget_s
    training = settings.training.model_copy(update=overrides)
    result = train_with_available_devices(
        kind,
        dataset_dir,
        model_dir,
        training,
        settings,
        init_from=resolve_model_uri(init_from, settings.tracking) if init_from else None,
    )
    card = result.card if result is not None else read_card(Path(model_dir))
    if dataset_ref and card.dataset_uri != dataset_ref:
        card = card.model_copy(update={"dataset_uri": dataset_ref})
        (Path(model_dir) / CARD_FILE).write_text(card.model_dump_json(indent=2), encoding="utf-8")
    return TrainOutcome(card)

"""The train-gpu component's step: configuration + parameters -> a training run -> the card."""

from __future__ import annotations

from pathlib import Path

from docloop.config import load_config
from docloop.errors import InvalidInput
from docloop.models.artifact import CARD_FILE, ModelCard, read_card
from docloop.models.launch import train_with_available_devices
from docloop.store.registry import resolve_model_uri


def run(
    task: str,
    dataset_dir: str,
    model_dir: str,
    init_from: str,
    max_steps: int,
    epochs: int,
    seed: int,
    dataset_ref: str = "",
) -> ModelCard:
    """Train ``task`` on the dataset folder into ``model_dir`` and return the model card.

    ``init_from`` may be a registry URI (``models:/docloop-classifier@champion``); ``dataset_ref``
    is the dataset artifact's URI, recorded in the card (the pod reads it from ``dataset_dir``)
    so that a later retrain can replay it.
    """
    if task not in ("classify", "extract"):
        raise InvalidInput(f"task must be 'classify' or 'extract', not {task!r}")
    settings = load_config()
    overrides: dict[str, object] = {"seed": seed}
    if max_steps:
        overrides["max_steps"] = max_steps
    if epochs:
        overrides["epochs"] = epochs
    training = settings.training.model_copy(update=overrides)
    result = train_with_available_devices(
        task,  # type: ignore[arg-type]
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
    return card

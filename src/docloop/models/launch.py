"""Run training on whatever the pod has.

One process on a CPU or a single GPU; ``accelerate launch`` across several GPUs (data parallel,
one process per GPU, bf16).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

from docloop.config import DocloopConfig, TrainingConfig
from docloop.errors import InvalidInput
from docloop.models.artifact import ModelCard, Task
from docloop.models.training import StepCallback, TrainResult, train
from docloop.storage import Storage

logger = logging.getLogger(__name__)


def accelerate_command(
    task: Task,
    dataset_uri: str,
    output_uri: str,
    config: TrainingConfig,
    init_from: str | None,
    gpus: int,
) -> list[str]:
    """The ``accelerate launch`` command line that trains on ``gpus`` GPUs."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        f"--num_processes={gpus}",
        "--mixed_precision=bf16",
        "-m",
        "docloop.cli",
        "train",
        f"--task={task}",
        f"--dataset={dataset_uri}",
        f"--output={output_uri}",
        f"--seed={config.seed}",
        f"--epochs={config.epochs}",
        f"--checkpoint-every={config.checkpoint_every}",
    ]
    if config.max_steps is not None:
        command.append(f"--max-steps={config.max_steps}")
    if init_from:
        command.append(f"--init-from={init_from}")
    if not config.use_layout:
        command.append("--no-layout")
    return command


def train_with_available_devices(
    task: Task,
    dataset_uri: str,
    output_uri: str,
    config: TrainingConfig,
    settings: DocloopConfig,
    *,
    init_from: str | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult | None:
    """Train in this process, or re-launch under ``accelerate`` when several GPUs are visible.

    Returns:
        The result, or None when the work ran in ``accelerate launch`` child processes (their
        model is in ``output_uri``).
    """
    gpus = torch.cuda.device_count()
    already_launched = "LOCAL_RANK" in os.environ
    if gpus > 1 and not already_launched:
        command = accelerate_command(task, dataset_uri, output_uri, config, init_from, gpus)
        logger.info("training on %d GPUs: %s", gpus, " ".join(command))
        subprocess.run(command, check=True)
        return None
    return train(
        task,
        dataset_uri,
        output_uri,
        config,
        settings.tracking,
        Storage(settings.storage),
        init_from=init_from,
        on_step=on_step,
    )


def run_component(
    task: str,
    dataset_dir: str,
    model_dir: str,
    init_from: str,
    max_steps: int,
    epochs: int,
    seed: int,
    dataset_ref: str = "",
) -> ModelCard:
    """The train-gpu KFP component's body: config + parameters -> a training run -> the card.

    ``init_from`` may be a registry URI (``models:/docloop-classifier@champion``); ``dataset_ref``
    is the dataset artifact's URI, recorded in the card (the pod reads it from ``dataset_dir``)
    so that a later retrain can replay it.
    """
    from docloop.config import load_config
    from docloop.evaluation.run import resolve_model_uri
    from docloop.models.artifact import CARD_FILE, read_card

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

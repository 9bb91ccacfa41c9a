"""Run training on whatever the pod has.

One process on a CPU or a single GPU; ``accelerate launch`` across several GPUs (data parallel,
one process per GPU, bf16).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import torch

from docloop.config import DocloopConfig, TrainingConfig
from docloop.models.artifact import Task
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
    if config.time_budget_s is not None:
        command.append(f"--time-budget={config.time_budget_s}")
    if init_from:
        command.append(f"--init-from={init_from}")
    if not config.use_layout:
        command.append("--no-layout")
    command += [f"--known-value={name}" for name in config.known_value_fields]
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

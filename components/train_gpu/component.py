"""train-gpu: fine-tune the document classifier or the entity extractor."""

from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE

GPU_RESOURCE = "nvidia.com/gpu"


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train_gpu(
    task: str,
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    init_from: str = "",
    max_steps: int = 0,
    epochs: int = 0,
    seed: int = 0,
    time_budget_s: float = 0.0,
) -> NamedTuple("TrainOutputs", [("val_score", float), ("steps", int)]):
    """Fine-tune a document classifier or an entity extractor (word boxes optional).

    Starts from the configured encoder (``training.encoder``) or warm-starts from an incumbent
    model; bf16 on a GPU, fp32 on CPU, data parallel with ``accelerate launch`` when the pod has
    several GPUs. Early stopping on validation macro-F1; a checkpoint every
    ``training.checkpoint_every`` steps lets a retried task resume instead of starting over.
    A dataset with one document type trains no classifier: the task succeeds with a ``model``
    that holds only a skip marker (metadata ``skipped``), which evaluate never blesses.
    Params, metrics, dataset digest and code version go to MLflow (``tracking`` in the config;
    credentials from the environment).

    Args:
        task: ``classify`` (document type) or ``extract`` (entities over OCR words and boxes).
        dataset: Dataset folder from build-dataset (train/val/holdout Parquet + manifest).
        model: Output. The model: safetensors weights, tokenizer, encoder config and
            ``docloop-model.json`` (task, labels, metrics, lineage).
        metrics: Output. Validation metrics of the saved model, shown in the KFP UI.
        init_from: URI of an incumbent model to warm-start from (a model folder or
            ``models:/<name>@champion``); empty for a fresh start.
        max_steps: Stop after this many optimisation steps; 0 keeps the configured limit.
        epochs: Epochs; 0 keeps the configured number.
        seed: Random seed (data order, initialisation, dropout).
        time_budget_s: Wall-clock seconds for training; when spent, validate and keep the best
            weights so far. 0 keeps the configured budget (``training.time_budget_s``).

    Returns:
        val_score: Validation macro-F1 (classes or entity types) of the saved model.
        steps: Optimisation steps run (0 when nothing was trained).
    """
    from docloop.steps import train_gpu as step

    outcome = step.run(
        task,
        dataset.path,
        model.path,
        init_from,
        max_steps,
        epochs,
        seed,
        dataset_ref=dataset.uri,
        time_budget_s=time_budget_s,
    )
    outputs = NamedTuple("TrainOutputs", [("val_score", float), ("steps", int)])  # noqa: UP014
    card = outcome.card
    if card is None:
        model.metadata.update({"task": task, "skipped": outcome.skipped})
        return outputs(0.0, 0)
    model.metadata.update(
        {"task": card.task, "labels": card.labels, "stopped_by": card.stopped_by, **card.metrics}
    )
    for name, value in card.metrics.items():
        metrics.log_metric(name, value)
    return outputs(card.metrics.get("val_score", 0.0), card.steps)


def with_gpu(task: dsl.PipelineTask, gpus: int = 1) -> dsl.PipelineTask:
    """Request ``gpus`` NVIDIA GPUs for a train-gpu task and tolerate GPU-node taints.

    Use in a pipeline: ``with_gpu(train_gpu(task="extract", dataset=...))``. Resource settings
    are ignored by ``kfp.local`` (the task then trains on CPU in fp32).
    """
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    return task

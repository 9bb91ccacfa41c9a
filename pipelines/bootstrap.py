"""The bootstrap pipeline: raw labelled documents -> the first classifier and extractor (Model V1).

snapshot-inputs (uncached: digests of what is under the input prefix and the labels file now) ->
preprocess (fanned over ``num_shards`` pods, cached on the documents' digest) -> merge-pages ->
build-dataset (cached on the labels' digest) -> train-gpu (classifier and extractor) -> evaluate
(floors only: there is no incumbent) -> ``dsl.If(blessed)``: register with ``promote=True``
(alias ``champion``, the default row, an audit entry); ``dsl.Else``: reject-candidate (the
failed first model is recorded with the gate's reasons and alerted, as in the retrain pipeline).
Each model is gated and registered on its own: a classifier that meets its floor is not held
back by an extractor that does not.
"""

from kfp import dsl

from components.build_dataset import build_dataset
from components.evaluate import evaluate
from components.merge_pages import merge_pages
from components.plan_shards import plan_shards
from components.preprocess import preprocess
from components.register import register
from components.reject_candidate import reject_candidate
from components.snapshot_inputs import snapshot_inputs
from components.train_gpu import train_gpu
from components.train_gpu.component import with_gpu
from pipelines.platform import Resources, on_platform, side_effect

TASKS = ("classify", "extract")


@dsl.pipeline(
    name="docloop-bootstrap",
    description="Labelled documents -> preprocess (sharded) -> dataset -> classifier and "
    "extractor -> gate (floors) -> registered as champion, or rejected and alerted.",
)
def bootstrap(
    input_uri: str,
    labels_uri: str,
    num_shards: int = 2,
    dpi: int = 200,
    seed: int = 0,
    max_steps: int = 0,
    epochs: int = 0,
    gpus: int = 1,
    time_budget_s: float = 0.0,
    task_cpu_request: str = "250m",
    task_cpu_limit: str = "1",
    task_memory: str = "2Gi",
    preprocess_cpu_request: str = "2",
    preprocess_cpu_limit: str = "2",
    preprocess_memory: str = "4Gi",
    train_cpu_request: str = "4",
    train_cpu_limit: str = "8",
    train_memory: str = "16Gi",
) -> None:
    """Train, gate and register the first classifier and extractor.

    Args:
        input_uri: Prefix with the raw PDFs and images (``file://``, ``s3://``, ``gs://``).
        labels_uri: JSON lines with the gold document type and entities per document id.
        num_shards: Preprocess pods to fan out over (documents are assigned by id hash).
        dpi: Render resolution for PDF pages.
        seed: Split, data-order and initialisation seed.
        max_steps: Cap on optimisation steps per model; 0 keeps the configured limit.
        epochs: Epochs per model; 0 keeps the configured number.
        gpus: GPUs per training task (ignored by ``kfp.local``).
        time_budget_s: Wall-clock seconds per model's training (best weights kept when
            spent); 0 keeps the configured budget.
        task_cpu_request: CPU request of the light tasks (listing, merge, dataset, register).
        task_cpu_limit: Their CPU limit.
        task_memory: Their memory request and limit.
        preprocess_cpu_request: CPU request of each preprocess pod.
        preprocess_cpu_limit: Its CPU limit; OCR runs one worker per CPU of this limit.
        preprocess_memory: Its memory request and limit.
        train_cpu_request: CPU request of training and evaluation.
        train_cpu_limit: Their CPU limit.
        train_memory: Their memory request and limit.
    """
    light = Resources(task_cpu_request, task_cpu_limit, task_memory)
    heavy = Resources(train_cpu_request, train_cpu_limit, train_memory)
    run = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    inputs = on_platform(snapshot_inputs(input_uri=input_uri, labels_uri=labels_uri), light)
    shards = on_platform(plan_shards(num_shards=num_shards), light)
    with dsl.ParallelFor(shards.output, name="preprocess-shards") as shard:
        pages = on_platform(
            preprocess(
                input_uri=input_uri,
                dpi=dpi,
                shard_index=shard,
                num_shards=num_shards,
                input_digest=inputs.outputs["documents"],
            ),
            Resources(preprocess_cpu_request, preprocess_cpu_limit, preprocess_memory),
        )
    merged = on_platform(merge_pages(shards=dsl.Collected(pages.outputs["pages"])), light)
    dataset = on_platform(
        build_dataset(
            pages=merged.outputs["pages"],
            labels_uri=labels_uri,
            seed=seed,
            labels_digest=inputs.outputs["labels"],
        ),
        light,
    )
    for task in TASKS:
        trained = with_gpu(
            on_platform(
                train_gpu(
                    task=task,
                    dataset=dataset.outputs["dataset"],
                    max_steps=max_steps,
                    epochs=epochs,
                    seed=seed,
                    time_budget_s=time_budget_s,
                ),
                heavy,
                mlflow=True,
            ),
            gpus,
        ).set_display_name(f"train-{task}")
        gated = on_platform(
            evaluate(
                task=task,
                candidate=trained.outputs["model"],
                holdout=dataset.outputs["dataset"],
            ),
            heavy,
        ).set_display_name(f"evaluate-{task}")
        with dsl.If(gated.outputs["Output"] == True, name=f"{task}-blessed"):  # noqa: E712
            side_effect(
                on_platform(
                    register(
                        model=trained.outputs["model"],
                        gate=gated.outputs["gate"],
                        dataset_digest=dataset.outputs["digest"],
                        pipeline_run=run,
                        promote=True,
                    ),
                    light,
                    mlflow=True,
                    store=True,
                )
            ).set_display_name(f"register-{task}")
        with dsl.Else(name=f"{task}-rejected"):
            side_effect(
                on_platform(
                    reject_candidate(task=task, gate=gated.outputs["gate"], pipeline_run=run),
                    light,
                    store=True,
                )
            ).set_display_name(f"reject-{task}")

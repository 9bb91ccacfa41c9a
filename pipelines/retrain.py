"""The retrain pipeline: reviewed feedback -> targeted dataset -> candidates -> canary -> champion.

build-retrain-dataset (quality rules, targeted sampling, replay, the frozen holdout copied and a
feedback holdout kept out) -> per model, the nested pipeline ``train_and_gate``: train-gpu (warm
start from the champion) -> evaluate vs the champion on the frozen and the feedback holdouts ->
register on the gate's verdict (a blessed model becomes a version with alias ``challenger``; an
unblessed one registers nothing) -> its ``release`` artifact, the sub-pipeline's output; and
``dsl.If(not blessed)``: the alternate path, reject-candidate (keep the champion, record the
gate's reasons, alert). After both models: deploy-kserve consumes the two ``release`` artifacts,
serves the registered versions as a canary next to the champions, analyses it live and promotes
(alias ``champion``) or rolls back; when neither registered anything it does nothing. The whole
run sits in a ``dsl.ExitHandler`` whose exit task records the run's health.

Why a nested pipeline per model: deploy must wait for both models, and a task may not depend on
a task inside a ``dsl.If`` it is not itself in; it may depend on a pipeline task.

Why register runs outside the ``dsl.If``: an artifact leaving a condition needs ``dsl.OneOf`` over
artifacts, which ``kfp.local`` cannot run (``get_dag_output_artifacts``: "Expected 1 artifact in
ArtifactSelectorSpec"). Outside, the release is the sub-pipeline's output through one selector,
and deploy's inputs are register's own artifacts, so KFP's lineage shows what a deploy rolled out.
"""

from kfp import dsl
from kfp.dsl import Dataset, Model

from components.build_retrain_dataset import build_retrain_dataset
from components.deploy_kserve import deploy_kserve
from components.evaluate import evaluate
from components.register import register
from components.reject_candidate import reject_candidate
from components.report_health import report_health
from components.train_gpu import train_gpu
from components.train_gpu.component import with_gpu
from pipelines.platform import Resources, on_platform, side_effect

CHAMPIONS = {
    "classify": "models:/docloop-classifier@champion",
    "extract": "models:/docloop-extractor@champion",
}


@dsl.pipeline(
    name="docloop-train-and-gate",
    description="One model: train (warm start) -> gate vs the champion -> register | reject.",
)
def train_and_gate(
    task: str,
    dataset: Dataset,
    dataset_digest: str,
    champion: str,
    pipeline_run: str,
    seed: int = 0,
    max_steps: int = 0,
    epochs: int = 0,
    gpus: int = 1,
    time_budget_s: float = 0.0,
    task_cpu_request: str = "250m",
    task_cpu_limit: str = "1",
    task_memory: str = "2Gi",
    train_cpu_request: str = "4",
    train_cpu_limit: str = "8",
    train_memory: str = "16Gi",
) -> Model:
    """Train one model on the retrain dataset, gate it, register it or record the rejection.

    Args:
        task: ``classify`` or ``extract``.
        dataset: The retrain dataset (with the frozen and the feedback holdouts).
        dataset_digest: Its digest (lineage of the registered version).
        champion: The model to warm-start from and beat.
        pipeline_run: The retrain run (recorded in the registry, the attempts and alerts).
        seed: Data-order and initialisation seed.
        max_steps: Cap on optimisation steps; 0 keeps the configured limit.
        epochs: Epochs; 0 keeps the configured number.
        gpus: GPUs for the training task (ignored by ``kfp.local``).
        time_budget_s: Wall-clock seconds for training (best weights kept when spent); 0 keeps
            the configured budget.
        task_cpu_request: CPU request of the light tasks (register, reject).
        task_cpu_limit: Their CPU limit.
        task_memory: Their memory request and limit.
        train_cpu_request: CPU request of training and evaluation.
        train_cpu_limit: Their CPU limit.
        train_memory: Their memory request and limit.

    Returns:
        register's ``release``: the version registered (``registered: false`` when rejected).
    """
    light = Resources(task_cpu_request, task_cpu_limit, task_memory)
    heavy = Resources(train_cpu_request, train_cpu_limit, train_memory)
    trained = with_gpu(
        on_platform(
            train_gpu(
                task=task,
                dataset=dataset,
                init_from=champion,
                max_steps=max_steps,
                epochs=epochs,
                seed=seed,
                time_budget_s=time_budget_s,
            ),
            heavy,
            mlflow=True,
        ),
        gpus,
    )
    gated = on_platform(
        evaluate(task=task, candidate=trained.outputs["model"], holdout=dataset,
                 incumbent_uri=champion),
        heavy,
        mlflow=True,
    )  # fmt: skip
    registered = side_effect(
        on_platform(
            register(
                model=trained.outputs["model"],
                gate=gated.outputs["gate"],
                dataset_digest=dataset_digest,
                pipeline_run=pipeline_run,
                skip_unblessed=True,
            ),
            light,
            mlflow=True,
            store=True,
        )
    )
    with dsl.If(gated.outputs["Output"] == False, name="rejected") as rejected:  # noqa: E712
        # its own IR name: as "condition-1" it and its copy "condition-1-2" in retrain collide
        # with drift-check's "condition-1", and kfp 2.17.3 renames such chains in protobuf map
        # order (compiler/pipeline_spec_builder.py _merge_component_spec): a different YAML
        # per compile
        rejected.name = "condition-rejected"
        side_effect(
            on_platform(
                reject_candidate(task=task, gate=gated.outputs["gate"], pipeline_run=pipeline_run),
                light,
                store=True,
            )
        )
    return registered.outputs["release"]


@dsl.pipeline(
    name="docloop-retrain",
    description="Reviewed feedback -> targeted dataset -> candidates gated against the champions "
    "-> canary -> promoted or rolled back; rejected candidates recorded with reasons and alerted.",
)
def retrain(
    classifier_champion: str = CHAMPIONS["classify"],
    extractor_champion: str = CHAMPIONS["extract"],
    seed: int = 0,
    max_steps: int = 0,
    epochs: int = 0,
    gpus: int = 1,
    time_budget_s: float = 0.0,
    task_cpu_request: str = "250m",
    task_cpu_limit: str = "1",
    task_memory: str = "2Gi",
    train_cpu_request: str = "4",
    train_cpu_limit: str = "8",
    train_memory: str = "16Gi",
) -> None:
    """Retrain both models on reviewed feedback, gate them, canary the blessed ones.

    Args:
        classifier_champion: The classifier to warm-start from and beat (registry URI or folder).
        extractor_champion: The extractor to warm-start from and beat.
        seed: Sampling, data-order and initialisation seed.
        max_steps: Cap on optimisation steps per model; 0 keeps the configured limit.
        epochs: Epochs per model; 0 keeps the configured number.
        gpus: GPUs per training task (ignored by ``kfp.local``).
        time_budget_s: Wall-clock seconds per model's training; 0 keeps the configured budget.
        task_cpu_request: CPU request of the light tasks (dataset, register, deploy, health).
        task_cpu_limit: Their CPU limit.
        task_memory: Their memory request and limit.
        train_cpu_request: CPU request of training and evaluation.
        train_cpu_limit: Their CPU limit.
        train_memory: Their memory request and limit.
    """
    run = dsl.PIPELINE_JOB_ID_PLACEHOLDER  # the run id: unique, unlike the run's display name
    light = Resources(task_cpu_request, task_cpu_limit, task_memory)
    health = on_platform(report_health(pipeline_run=run), light, store=True)
    with dsl.ExitHandler(health, name="retrain-run"):
        dataset = on_platform(
            build_retrain_dataset(champion_uri=classifier_champion, seed=seed),
            light,
            mlflow=True,
            store=True,
        )
        models = [
            train_and_gate(
                task=task,
                dataset=dataset.outputs["dataset"],
                dataset_digest=dataset.outputs["digest"],
                champion=champion,
                pipeline_run=run,
                seed=seed,
                max_steps=max_steps,
                epochs=epochs,
                gpus=gpus,
                time_budget_s=time_budget_s,
                task_cpu_request=task_cpu_request,
                task_cpu_limit=task_cpu_limit,
                task_memory=task_memory,
                train_cpu_request=train_cpu_request,
                train_cpu_limit=train_cpu_limit,
                train_memory=train_memory,
            ).set_display_name(f"train-and-gate-{task}")
            for task, champion in (
                ("classify", classifier_champion),
                ("extract", extractor_champion),
            )
        ]
        classifier, extractor = models
        side_effect(
            on_platform(
                deploy_kserve(
                    pipeline_run=run,
                    classifier_release=classifier.output,
                    extractor_release=extractor.output,
                ),
                light,
                mlflow=True,
                store=True,
            )
        ).set_display_name("canary-and-promote")

"""The retrain pipeline: reviewed feedback -> targeted dataset -> candidates gated vs the champions.

build-retrain-dataset (quality rules, targeted sampling, replay, the frozen holdout copied and a
feedback holdout kept out) -> per model: train-gpu (warm start from the champion) -> evaluate vs
the champion on the frozen and the feedback holdouts -> ``dsl.If(blessed)``: register (alias
``challenger``) -> promote (alias ``champion``; deploy-kserve's canary takes this over) ;
``dsl.Else``: the alternate path, reject-candidate (keep the champion, record the gate's reasons,
alert). The whole run sits in a ``dsl.ExitHandler`` whose exit task records the run's health.
"""

from kfp import dsl

from components.build_retrain_dataset import build_retrain_dataset
from components.evaluate import evaluate
from components.promote import promote
from components.register import register
from components.reject_candidate import reject_candidate
from components.report_health import report_health
from components.train_gpu import train_gpu
from components.train_gpu.component import with_gpu
from pipelines.platform import on_platform, side_effect

CHAMPIONS = {
    "classify": "models:/docloop-classifier@champion",
    "extract": "models:/docloop-extractor@champion",
}


@dsl.pipeline(
    name="docloop-retrain",
    description="Reviewed feedback -> targeted dataset -> candidates gated against the champions "
    "-> promoted, or rejected with reasons and an alert.",
)
def retrain(
    classifier_champion: str = CHAMPIONS["classify"],
    extractor_champion: str = CHAMPIONS["extract"],
    seed: int = 0,
    max_steps: int = 0,
    epochs: int = 0,
    gpus: int = 1,
) -> None:
    """Retrain both models on reviewed feedback and gate them against the champions.

    Args:
        classifier_champion: The classifier to warm-start from and beat (registry URI or folder).
        extractor_champion: The extractor to warm-start from and beat.
        seed: Sampling, data-order and initialisation seed.
        max_steps: Cap on optimisation steps per model; 0 keeps the configured limit.
        epochs: Epochs per model; 0 keeps the configured number.
        gpus: GPUs per training task (ignored by ``kfp.local``).
    """
    run = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    health = on_platform(report_health(pipeline_run=run), store=True)
    with dsl.ExitHandler(health, name="retrain-run"):
        dataset = on_platform(
            build_retrain_dataset(champion_uri=classifier_champion, seed=seed),
            mlflow=True,
            store=True,
        )
        for task, champion in (("classify", classifier_champion), ("extract", extractor_champion)):
            trained = with_gpu(
                on_platform(
                    train_gpu(
                        task=task,
                        dataset=dataset.outputs["dataset"],
                        init_from=champion,
                        max_steps=max_steps,
                        epochs=epochs,
                        seed=seed,
                    ),
                    mlflow=True,
                ),
                gpus,
            ).set_display_name(f"train-{task}")
            gated = on_platform(
                evaluate(
                    task=task,
                    candidate=trained.outputs["model"],
                    holdout=dataset.outputs["dataset"],
                    incumbent_uri=champion,
                ),
                mlflow=True,
            ).set_display_name(f"evaluate-{task}")
            with dsl.If(gated.outputs["Output"] == True, name=f"{task}-blessed"):  # noqa: E712
                registered = side_effect(
                    on_platform(
                        register(
                            model=trained.outputs["model"],
                            gate=gated.outputs["gate"],
                            dataset_digest=dataset.outputs["digest"],
                            pipeline_run=run,
                        ),
                        mlflow=True,
                        store=True,
                    )
                ).set_display_name(f"register-{task}")
                side_effect(
                    on_platform(
                        promote(
                            task=task,
                            model_name=registered.outputs["model_name"],
                            version=registered.outputs["version"],
                            gate=gated.outputs["gate"],
                            pipeline_run=run,
                        ),
                        mlflow=True,
                        store=True,
                    )
                ).set_display_name(f"promote-{task}")
            with dsl.Else(name=f"{task}-rejected"):
                side_effect(
                    on_platform(
                        reject_candidate(task=task, gate=gated.outputs["gate"], pipeline_run=run),
                        store=True,
                    )
                ).set_display_name(f"reject-{task}")

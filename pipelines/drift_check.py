"""The drift-check pipeline, the recurring run: drift-check -> ``dsl.If(trigger)`` -> retrain.

Schedule it as a KFP recurring run (``docloop schedule``: cron, no catch-up, one at a time). The
check reads predictions and reviewed feedback since its watermark, decides with the trigger
policy (thresholds, minimum evidence, cooldown, budget), records the decision, and only then
launches the retrain pipeline as a nested pipeline.
"""

from kfp import dsl

from components.drift_check import drift_check as drift_check_task
from pipelines.platform import Resources, on_platform
from pipelines.retrain import CHAMPIONS, retrain


@dsl.pipeline(
    name="docloop-drift-check",
    description="Quality and drift since the last check -> the trigger policy -> retrain.",
)
def drift_check(
    classifier_champion: str = CHAMPIONS["classify"],
    extractor_champion: str = CHAMPIONS["extract"],
    seed: int = 0,
    max_steps: int = 0,
    epochs: int = 0,
    gpus: int = 1,
    task_cpu_request: str = "250m",
    task_cpu_limit: str = "1",
    task_memory: str = "2Gi",
    train_cpu_request: str = "4",
    train_cpu_limit: str = "8",
    train_memory: str = "16Gi",
) -> None:
    """Check the champion against recent feedback and drift; retrain when the policy says so.

    Args:
        classifier_champion: The served classifier (its training data is the drift reference).
        extractor_champion: The served extractor.
        seed: Retraining seed.
        max_steps: Cap on optimisation steps per model when retraining; 0: configured.
        epochs: Epochs per model when retraining; 0: configured.
        gpus: GPUs per training task.
        task_cpu_request: CPU request of the check and the retrain's light tasks.
        task_cpu_limit: Their CPU limit.
        task_memory: Their memory request and limit (the check embeds pages: give it room).
        train_cpu_request: CPU request of training and evaluation when retraining.
        train_cpu_limit: Their CPU limit.
        train_memory: Their memory request and limit.
    """
    check = on_platform(
        drift_check_task(champion_uri=classifier_champion, extractor_uri=extractor_champion),
        Resources(task_cpu_request, task_cpu_limit, task_memory),
        mlflow=True,
        store=True,
    )
    with dsl.If(check.outputs["Output"] == True, name="triggered"):  # noqa: E712
        retrain(
            classifier_champion=classifier_champion,
            extractor_champion=extractor_champion,
            seed=seed,
            max_steps=max_steps,
            epochs=epochs,
            gpus=gpus,
            task_cpu_request=task_cpu_request,
            task_cpu_limit=task_cpu_limit,
            task_memory=task_memory,
            train_cpu_request=train_cpu_request,
            train_cpu_limit=train_cpu_limit,
            train_memory=train_memory,
        )

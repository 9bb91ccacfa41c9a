"""The drift-check pipeline, the recurring run: drift-check -> ``dsl.If(trigger)`` -> retrain.

Schedule it as a KFP recurring run (``docloop schedule``: cron, no catch-up, one at a time). The
check reads predictions and reviewed feedback since its watermark, decides with the trigger
policy (thresholds, minimum evidence, cooldown, budget), records the decision, and only then
launches the retrain pipeline as a nested pipeline.
"""

from kfp import dsl

from components.drift_check import drift_check as drift_check_task
from pipelines.platform import on_platform
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
) -> None:
    """Check the champion against recent feedback and drift; retrain when the policy says so.

    Args:
        classifier_champion: The served classifier (its training data is the drift reference).
        extractor_champion: The served extractor.
        seed: Retraining seed.
        max_steps: Cap on optimisation steps per model when retraining; 0: configured.
        epochs: Epochs per model when retraining; 0: configured.
        gpus: GPUs per training task.
    """
    check = on_platform(
        drift_check_task(champion_uri=classifier_champion, extractor_uri=extractor_champion),
        mlflow=True,
        store=True,
    ).set_caching_options(False)
    with dsl.If(check.outputs["Output"] == True, name="triggered"):  # noqa: E712
        retrain(
            classifier_champion=classifier_champion,
            extractor_champion=extractor_champion,
            seed=seed,
            max_steps=max_steps,
            epochs=epochs,
            gpus=gpus,
        )

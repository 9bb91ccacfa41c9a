"""rollback: restore what served before the newest deployment."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def rollback(
    record: Output[Artifact],
    reason: str = "rolled back by the rollback component",
    pipeline_run: str = "",
) -> bool:
    """Undo the newest deployment of the service: serving side and registry.

    Restores the previous predictor that deploy-kserve recorded (Knative: ``canaryTrafficPercent:
    0``, then the previous spec as the stable one; Standard: the recorded stable predictor; local:
    the previous ModelServer process), points ``champion`` and the default row back at the
    previous versions and appends to the audit log. Idempotent: when the newest deployment is
    already rolled back it changes nothing and returns False (a retry never walks further back),
    so it is safe in a ``dsl.ExitHandler`` after a failure. Compile with caching off.

    Args:
        record: Output. What was undone (deployment id and versions) in its metadata.
        reason: Why, recorded in the audit log and the alert.
        pipeline_run: The KFP run, recorded with the rollback.

    Returns:
        Whether anything was rolled back.
    """
    from docloop.steps import rollback as step

    undone = step.run(reason, pipeline_run)
    record.metadata.update(undone)
    return bool(undone["rolled_back"])

"""promote: make a blessed, registered model version the champion."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(
    task: str,
    model_name: str,
    version: str,
    gate: Input[Artifact],
    release: Output[Model],
    pipeline_run: str = "",
) -> None:
    """Make a registered version the default: alias ``champion``, the one default row, audit.

    One locked transaction in the state store (the previous default becomes ``retired`` with
    alias ``previous-champion``); promoting the current default again changes nothing, so a
    retried task is safe. Records the outcome and the gate's metric deltas in the retrain
    attempt. Compile with caching off (``pipelines.platform.side_effect``). The retrain pipeline
    promotes through deploy-kserve's canary analysis instead; use this to promote without one.
    The champions' release is written as a bundle (``deploy.target: kserve``) and output as a
    typed ``Model`` whose metadata names its storage URI and versions.

    Args:
        task: ``classify`` or ``extract`` (how the attempt record names the model).
        model_name: Registered model name (register's output).
        version: Model version to promote (register's output).
        gate: The evaluate step's gate artifact (its verdict and deltas are recorded).
        release: Output. The champions' release (bundle URI, versions) after the promotion.
        pipeline_run: The KFP run, recorded in the audit log and the attempt.
    """
    from docloop.steps import promote as step

    release.metadata.update(
        step.run(task, model_name, version, gate.path, pipeline_run, release.path)
    )

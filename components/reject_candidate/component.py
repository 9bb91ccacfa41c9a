"""reject-candidate: the alternate path — keep the champion, record why, alert."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def reject_candidate(task: str, gate: Input[Artifact], pipeline_run: str = "") -> None:
    """Record a candidate the gate did not bless and raise an alert; the champion stays.

    The retrain attempt gets outcome ``rejected`` with every failed check's reason and the
    metric deltas; the alert goes to ``alerts.webhook_url`` (a JSON POST) and counts in
    ``docloop_alerts_total{kind="candidate_rejected"}`` (pushed to ``alerts.pushgateway_url``
    when set). Idempotent: a retried task records the same outcome once.

    Args:
        task: ``classify`` or ``extract``.
        gate: The evaluate step's gate artifact.
        pipeline_run: The KFP run, recorded in the attempt and the alert.
    """
    from docloop.steps import reject_candidate as step

    step.run(task, gate.path, pipeline_run)

"""report-health: the exit task of the retrain pipeline — record how the run ended."""

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def report_health(status: PipelineTaskFinalStatus, pipeline_run: str = "") -> bool:
    """Record the pipeline's final state in the store and alert when it failed.

    Runs as the ``dsl.ExitHandler`` exit task, after success and after failure alike. A failed
    run marks its retrain attempt ``failed`` with the failed task and error, and raises a
    ``pipeline_failed`` alert (webhook + ``docloop_alerts_total``).

    Args:
        status: Filled in by KFP: the run's state, failed task and error.
        pipeline_run: The KFP run (the same id the other tasks record); default: KFP's job
            resource name.

    Returns:
        Whether the run succeeded.
    """
    from docloop.steps import report_health as step

    failed = status.pipeline_task_name if status.state != "SUCCEEDED" else ""
    run = pipeline_run or status.pipeline_job_resource_name
    return step.run(run, status.state, failed or "", status.error_message or "")

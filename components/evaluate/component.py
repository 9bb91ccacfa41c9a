"""evaluate: score a candidate (and the incumbent) on the same holdouts and apply the gate."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    task: str,
    candidate: Input[Model],
    holdout: Input[Dataset],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    report: Output[HTML],
    gate: Output[Artifact],
    incumbent_uri: str = "",
    feedback_holdout_uri: str = "",
) -> bool:
    """Score the candidate and the incumbent on the same holdouts and decide the blessing.

    The gate policy comes from the ``gate`` section of the config. With an incumbent the key
    metric must improve by the policy's margin with paired-bootstrap significance, no class or
    entity type may regress beyond its tolerance, and the floors must hold; a first model (no
    incumbent) meets the floors only. Downstream, register runs only when ``blessed`` is true.

    Args:
        task: ``classify`` or ``extract``.
        candidate: The model from train-gpu.
        holdout: The dataset from build-dataset; its frozen ``holdout.parquet`` is scored.
        metrics: Output. Candidate, incumbent and delta metrics per holdout, and ``blessed``.
        confusion_matrix: Output. The candidate's confusion matrix on the frozen holdout
            (classifier; empty for an extractor).
        report: Output. HTML: the verdict with every check and its reason, per-class/entity F1
            bars candidate vs incumbent, confusion matrices.
        gate: Output. ``gate.json``: every check with its numbers, pass/fail and reason.
        incumbent_uri: The incumbent model: a model folder URI or ``models:/<name>@champion``;
            empty for a first model.
        feedback_holdout_uri: Optional second holdout (reviewed feedback) as a dataset folder or
            ``.parquet`` of examples; empty: the dataset's own ``feedback_holdout.parquet``, if any.

    Returns:
        Whether the candidate is blessed (may replace the incumbent); branch on it with
        ``dsl.If(evaluate_task.outputs["Output"] == True)``. The reasons are in ``gate`` (and
        its metadata).
    """
    from docloop.steps import evaluate as step

    outcome = step.run(
        task, candidate.path, holdout.path, incumbent_uri, feedback_holdout_uri, gate.path
    )
    for name, value in outcome.metrics.items():
        metrics.log_metric(name, value)
    matrix = outcome.confusion_matrix
    if matrix is not None and matrix.get("annotationSpecs"):
        labels = [spec["displayName"] for spec in matrix["annotationSpecs"]]
        rows = [row["row"] for row in matrix["rows"]]
        confusion_matrix.log_confusion_matrix(labels, rows)
    with open(report.path, "w", encoding="utf-8") as handle:  # noqa: PTH123
        handle.write(outcome.html)
    # one output only: kfp.local (2.17) cannot resolve a named output in a dsl.If condition
    gate.metadata.update({"blessed": outcome.blessed, "summary": outcome.gate.summary})
    return outcome.blessed

"""drift-check: quality and drift since the last check -> the trigger policy's decision."""

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def drift_check(
    report: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    champion_uri: str = "models:/docloop-classifier@champion",
    extractor_uri: str = "models:/docloop-extractor@champion",
    reference_dataset_uri: str = "",
) -> bool:
    """Measure the champion on recent feedback, look for drift, and decide whether to retrain.

    Since the watermark of the last check: per-class and per-entity scores from reviewed feedback
    with Wilson intervals, the correction rate, label-distribution shift (Jensen-Shannon, chi-square
    with Cramér's V), OCR-statistics shift and document-embedding drift (MMD with a permutation
    test). The trigger policy (``trigger`` config: floor, drop from the champion's holdout score,
    drift, minimum reviewed samples, cooldown, budget) decides; every decision, including "no",
    is explained in the report and recorded in the store, and the watermark moves on only after
    a complete check. Compile with caching off: the answer depends on the store, not the inputs.

    Args:
        report: Output. HTML with plots: per-class F1 with intervals, label shares, OCR
            statistics, the MMD permutation null and the decision with its reasons.
        summary: Output. The decision and its reasons in Markdown (shown in the KFP UI).
        metrics: Output. The numbers behind the decision.
        champion_uri: The served classifier (registry URI or model folder).
        extractor_uri: The served extractor; its registered holdout entity F1 is what the
            ``entity_drop`` rule compares feedback with (unchecked when it has none).
        reference_dataset_uri: The drift reference; empty: the champion's training dataset.

    Returns:
        Whether to retrain; branch with ``dsl.If(task.outputs["Output"] == True)``.
    """
    from pathlib import Path

    from docloop.steps import drift_check as step

    result = step.run(
        str(Path(report.path).parent / "drift-check"),
        champion_uri,
        extractor_uri,
        reference_dataset_uri,
    )
    Path(report.path).write_text(result.html, encoding="utf-8")
    Path(summary.path).write_text(result.markdown, encoding="utf-8")
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    return result.trigger

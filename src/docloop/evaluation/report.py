"""What the evaluate step shows: a self-contained HTML report, flat metrics, confusion matrices.

The HTML report has no external assets (figures are inline base64 PNGs, the style sheet is
inline) so it renders the same in the KFP UI, a browser or a mail attachment. Every string that
comes from data (holdout names, labels, URIs, reasons) is escaped. Nothing here imports kfp: the
flat metrics suit ``Metrics.log_metric`` and the confusion matrices equal what
``ClassificationMetrics.log_confusion_matrix`` stores.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from docloop.evaluation.fields import FieldReport
from docloop.evaluation.gate import BootstrapResult, GateCheck, GateResult
from docloop.evaluation.scoring import ModelScores
from docloop.models.metrics import (
    ClassificationReport,
    EntityReport,
    figure_to_base64_png,
    kfp_classification_metrics,
    plot_confusion_matrix,
    plot_f1_bars,
)

BLESSED_COLOUR = "#1a7f37"
REJECTED_COLOUR = "#cf222e"

_HEADLINES = {
    "classify": ("accuracy", "macro_f1", "weighted_f1"),
    "extract": ("f1", "precision", "recall", "macro_f1"),
}


def flat_metrics(
    gate: GateResult,
    candidate: Mapping[str, ModelScores],
    incumbent: Mapping[str, ModelScores] | None = None,
) -> dict[str, float]:
    """Metric names and values for a KFP ``Metrics`` artifact (or MLflow).

    Names: ``blessed`` (1 or 0), ``checks_failed``, ``<model>.<holdout>.<name>`` for every figure
    of the holdout report plus the key metric (``candidate.frozen.macro_f1``,
    ``incumbent.frozen.f1.invoice``), for an extractor the field exact-match figures
    (``candidate.frozen.field_f1``, ``candidate.frozen.field_f1.total``),
    ``delta.<holdout>.<key>`` per holdout, and for the pooled
    holdouts ``candidate.pooled.<key>``, ``incumbent.pooled.<key>``, ``delta.<key>`` and
    ``delta_lower_bound.<key>`` (the paired bootstrap's).

    Args:
        gate: The gate's verdict.
        candidate: The candidate's scores per holdout.
        incumbent: The incumbent's, or None for a first model.

    Returns:
        A flat name → float mapping, in a stable order.
    """
    key = gate.metric
    flat: dict[str, float] = {
        "blessed": 1.0 if gate.blessed else 0.0,
        "checks_failed": float(len(gate.failed)),
    }
    models = {"candidate": candidate, **({"incumbent": incumbent} if incumbent else {})}
    for holdout in candidate:
        flat[f"documents.{holdout}"] = float(candidate[holdout].n_documents)
        for role, by_holdout in models.items():
            scores = by_holdout[holdout]
            flat[f"{role}.{holdout}.{key}"] = scores.metric(key)
            for name, value in scores.report.flat().items():
                flat[f"{role}.{holdout}.{name}"] = float(value)
            fields = scores.field_report
            if fields is not None:
                flat[f"{role}.{holdout}.field_precision"] = fields.overall.precision
                flat[f"{role}.{holdout}.field_recall"] = fields.overall.recall
                flat[f"{role}.{holdout}.field_f1"] = fields.overall.f1
                for name, score in sorted(fields.per_field.items()):
                    flat[f"{role}.{holdout}.field_f1.{name}"] = score.f1
        if incumbent is not None:
            flat[f"delta.{holdout}.{key}"] = candidate[holdout].metric(key) - incumbent[
                holdout
            ].metric(key)
    if gate.bootstrap is not None:
        flat[f"candidate.pooled.{key}"] = gate.bootstrap.candidate
        flat[f"incumbent.pooled.{key}"] = gate.bootstrap.incumbent
        flat[f"delta.{key}"] = gate.bootstrap.delta
        flat[f"delta_lower_bound.{key}"] = gate.bootstrap.lower_bound
    return flat


def field_f1(
    candidate: Mapping[str, ModelScores], incumbent: Mapping[str, ModelScores] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Field exact-match F1 per holdout, model and field (``overall``: micro); {} if classifier."""
    models = {"candidate": candidate, **({"incumbent": incumbent} if incumbent else {})}
    table: dict[str, dict[str, dict[str, float]]] = {}
    for holdout in candidate:
        for role, by_holdout in models.items():
            report = by_holdout[holdout].field_report
            if report is None:
                continue
            scores = {name: round(s.f1, 4) for name, s in sorted(report.per_field.items())}
            table.setdefault(holdout, {})[role] = {"overall": round(report.overall.f1, 4), **scores}
    return table


def confusion_matrices(
    scores: Mapping[str, ModelScores],
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per holdout, the ``confusionMatrix`` metadata of a KFP ``ClassificationMetrics`` artifact.

    Args:
        scores: A classifier's scores per holdout.

    Returns:
        Holdout name → confusion-matrix metadata; empty for an extractor.
    """
    return {
        holdout: kfp_classification_metrics(result.report)
        for holdout, result in scores.items()
        if isinstance(result.report, ClassificationReport)
    }


def render_report(
    gate: GateResult,
    candidate: Mapping[str, ModelScores],
    incumbent: Mapping[str, ModelScores] | None = None,
    *,
    candidate_uri: str = "",
    incumbent_uri: str | None = None,
) -> str:
    """The evaluation report: verdict and checks first, then each holdout in detail.

    Args:
        gate: The gate's verdict.
        candidate: The candidate's scores per holdout.
        incumbent: The incumbent's, or None for a first model.
        candidate_uri: Where the candidate came from (shown, escaped).
        incumbent_uri: Where the incumbent came from.

    Returns:
        A complete HTML document (UTF-8 text) with inline figures.
    """
    verdict = "BLESSED" if gate.blessed else "NOT BLESSED"
    colour = BLESSED_COLOUR if gate.blessed else REJECTED_COLOUR
    task = "document classifier" if gate.task == "classify" else "entity extractor"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>docloop evaluation: {_e(verdict)} ({_e(task)})</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation of a {_e(task)}</h1>",
        f'<p class="verdict" style="background:{colour}">{_e(verdict)}</p>',
        f'<p class="summary">{_e(gate.headline)}</p>',
        _failed_list(gate),
        _models_table(gate, candidate_uri, incumbent_uri),
        "<h2>Checks</h2>",
        _checks_table(gate.checks),
    ]
    if gate.bootstrap is not None:
        parts.append(_bootstrap_section(gate.bootstrap))
    for holdout, scores in candidate.items():
        parts.append(_holdout_section(gate, holdout, scores, (incumbent or {}).get(holdout)))
    parts.append("<h2>Policy</h2>")
    parts.append(f"<pre>{_e(gate.policy.model_dump_json(indent=2))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- sections ------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1f2328;
       max-width: 1200px; }
h1 { margin-bottom: .5rem; }
.verdict { display: inline-block; color: #fff; font-size: 1.6rem; font-weight: 700;
           padding: .3rem 1rem; border-radius: .4rem; margin: .2rem 0; }
.summary { font-size: 1.05rem; }
table { border-collapse: collapse; margin: .5rem 0 1.2rem; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #ffebe9; }
tr.skip td { color: #656d76; }
tr.key td { font-weight: 600; }
.pass { color: #1a7f37; font-weight: 600; }
.failed { color: #cf222e; font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures img { max-width: 100%; border: 1px solid #d0d7de; }
pre { background: #f6f8fa; padding: .6rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "&ndash;"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text.replace("-", "&minus;")


def _image(figure: Figure, alt: str) -> str:
    data = figure_to_base64_png(figure)
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _failed_list(gate: GateResult) -> str:
    if not gate.failed:
        return ""
    items = "".join(f"<li>{_e(check.reason)}</li>" for check in gate.failed)
    return f'<ul class="failed">{items}</ul>'


def _models_table(gate: GateResult, candidate_uri: str, incumbent_uri: str | None) -> str:
    incumbent = incumbent_uri or ("none: first model" if gate.first_model else "")
    rows = [
        ("candidate", candidate_uri),
        ("incumbent", incumbent),
        ("key metric", gate.metric),
        ("holdouts", ", ".join(f"{name} ({n} documents)" for name, n in gate.holdouts.items())),
    ]
    body = "".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>" for name, value in rows)
    return f"<table>{body}</table>"


def _checks_table(checks: Sequence[GateCheck]) -> str:
    header = (
        "<tr><th>result</th><th>check</th><th>holdout</th><th>metric</th><th>label</th>"
        "<th>candidate</th><th>incumbent</th><th>needed</th><th>reason</th></tr>"
    )
    rows: list[str] = []
    for check in checks:
        if check.skipped:
            css, result = ' class="skip"', "skipped"
        elif check.passed:
            css, result = "", '<span class="pass">pass</span>'
        else:
            css, result = ' class="fail"', '<span class="failed">FAIL</span>'
        rows.append(
            f"<tr{css}><td>{result}</td><td>{_e(check.name)}</td>"
            f"<td>{_e(check.holdout)}</td><td>{_e(check.metric)}</td>"
            f"<td>{_e(check.label or '')}</td>"
            f'<td class="num">{_number(check.candidate)}</td>'
            f'<td class="num">{_number(check.incumbent)}</td>'
            f'<td class="num">&ge; {_number(check.threshold)}</td>'
            f"<td>{_e(check.reason)}</td></tr>"
        )
    return f"<table>{header}{''.join(rows)}</table>"


def _bootstrap_section(result: BootstrapResult) -> str:
    text = (
        f"{result.samples} paired resamples of the {result.n_documents} pooled holdout documents "
        f"(seed {result.seed}): {result.metric} of the candidate minus the incumbent's on each. "
        f"Observed difference {result.delta:+.3f}; the {result.confidence:.0%} one-sided lower "
        f"bound is {result.lower_bound:+.3f}, which must be above 0."
    )
    parts = ["<h2>Paired bootstrap</h2>", f"<p>{_e(text)}</p>"]
    if result.replicates:
        parts.append(f'<div class="figures">{_image(_bootstrap_figure(result), text)}</div>')
    return "\n".join(parts)


def _bootstrap_figure(result: BootstrapResult) -> Figure:
    figure = Figure(figsize=(6.5, 3.2), layout="constrained")
    axes = figure.add_subplot()
    replicates = np.asarray(result.replicates)
    spread = float(replicates.max() - replicates.min())
    axes.hist(replicates, bins=40 if spread > 0 else 1, color="#8c959f")
    axes.axvline(0.0, color="black", linewidth=1, label="0")
    axes.axvline(result.delta, color="#0969da", linewidth=2, label="observed")
    axes.axvline(
        result.lower_bound,
        color=REJECTED_COLOUR if result.lower_bound <= 0 else BLESSED_COLOUR,
        linestyle="--",
        linewidth=2,
        label=f"{result.confidence:.0%} lower bound",
    )
    axes.set_xlabel(f"{result.metric}: candidate - incumbent")
    axes.set_ylabel("resamples")
    axes.legend(loc="upper left", fontsize="small")
    return figure


def _holdout_section(
    gate: GateResult, holdout: str, candidate: ModelScores, incumbent: ModelScores | None
) -> str:
    parts = [f"<h2>Holdout {_e(repr(holdout))}: {candidate.n_documents} documents</h2>"]
    if candidate.unknown_labels:
        parts.append(
            "<p>Labels in this holdout the candidate cannot predict (counted as errors): "
            f"{_e(', '.join(candidate.unknown_labels))}</p>"
        )
    parts.append(_headline_table(gate, candidate, incumbent))
    reports: dict[str, ClassificationReport | EntityReport] = {"candidate": candidate.report}
    if incumbent is not None:
        reports["incumbent"] = incumbent.report
    figures = []
    if candidate.per_label or (incumbent is not None and incumbent.per_label):
        kind = "class" if gate.task == "classify" else "entity type"
        title = f"F1 per {kind} on {holdout!r}"
        figures.append(_image(plot_f1_bars(reports, title), title))
    for role, scores in (("candidate", candidate), ("incumbent", incumbent)):
        if scores is not None and isinstance(scores.report, ClassificationReport):
            title = f"{role} on {holdout!r}"
            figures.append(_image(plot_confusion_matrix(scores.report, title), title))
    if figures:
        parts.append(f'<div class="figures">{"".join(figures)}</div>')
    parts.append(_label_table(gate, candidate, incumbent))
    if candidate.field_report is not None:
        old = incumbent.field_report if incumbent is not None else None
        parts.append(_field_table(candidate.field_report, old))
    return "\n".join(parts)


def _field_table(new: FieldReport, old: FieldReport | None) -> str:
    """Field exact-match per field: the value as a person reads it, next to the spans."""
    rows = [
        "<tr><th>field</th><th>gold</th><th>predicted</th><th>correct</th><th>precision</th>"
        "<th>recall</th><th>F1</th><th>incumbent F1</th></tr>"
    ]
    fields = [*sorted(new.per_field.items()), ("all fields", new.overall)]
    for name, score in fields:
        theirs = None
        if old is not None:
            theirs = old.overall if name == "all fields" else old.per_field.get(name)
        rows.append(
            f"<tr><td>{_e(name)}</td><td class='num'>{score.gold}</td>"
            f"<td class='num'>{score.predicted}</td><td class='num'>{score.correct}</td>"
            f"<td class='num'>{_number(score.precision)}</td>"
            f"<td class='num'>{_number(score.recall)}</td><td class='num'>{_number(score.f1)}</td>"
            f"<td class='num'>{_number(theirs.f1 if theirs is not None else None)}</td></tr>"
        )
    return (
        "<details open><summary>Field values, exact match after each field kind's "
        "normalisation (reported, not gated)</summary>"
        f"<table>{''.join(rows)}</table></details>"
    )


def _headline_table(gate: GateResult, candidate: ModelScores, incumbent: ModelScores | None) -> str:
    rows = [
        "<tr><th>metric</th><th>candidate</th><th>incumbent</th><th>&Delta;</th></tr>",
    ]
    for name in _HEADLINES[gate.task]:
        new = _headline(candidate.report, name)
        old = _headline(incumbent.report, name) if incumbent is not None else None
        delta = new - old if old is not None else None
        css = ' class="key"' if name == gate.metric else ""
        rows.append(
            f"<tr{css}><td>{_e(name)}</td><td class='num'>{_number(new)}</td>"
            f"<td class='num'>{_number(old)}</td>"
            f"<td class='num'>{_number(delta, signed=True)}</td></tr>"
        )
    return f"<table>{''.join(rows)}</table>"


def _headline(report: ClassificationReport | EntityReport, name: str) -> float:
    return float(getattr(report, name))


def _label_table(gate: GateResult, candidate: ModelScores, incumbent: ModelScores | None) -> str:
    new, old = candidate.per_label, incumbent.per_label if incumbent is not None else {}
    labels = list(dict.fromkeys([*new, *old]))
    if not labels:
        return "<p>No labels in the gold or the predictions.</p>"
    kind = "class" if gate.task == "classify" else "entity type"
    rows = [
        f"<tr><th>{_e(kind)}</th><th>support</th><th>precision</th><th>recall</th><th>F1</th>"
        "<th>incumbent F1</th><th>&Delta; F1</th></tr>"
    ]
    for label in labels:
        mine = new.get(label)
        theirs = old.get(label)
        f1 = mine.f1 if mine is not None else 0.0
        support = mine.support if mine is not None else (theirs.support if theirs else 0)
        old_f1 = theirs.f1 if theirs is not None else (0.0 if incumbent is not None else None)
        rows.append(
            f"<tr><td>{_e(label)}</td><td class='num'>{support}</td>"
            f"<td class='num'>{_number(mine.precision if mine else 0.0)}</td>"
            f"<td class='num'>{_number(mine.recall if mine else 0.0)}</td>"
            f"<td class='num'>{_number(f1)}</td><td class='num'>{_number(old_f1)}</td>"
            f"<td class='num'>{_number(f1 - old_f1 if old_f1 is not None else None, True)}</td>"
            "</tr>"
        )
    return (
        f"<details open><summary>Per {_e(kind)}</summary><table>{''.join(rows)}</table></details>"
    )

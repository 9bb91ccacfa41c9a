"""What the drift check shows: a self-contained HTML report and a Markdown summary for the KFP UI.

Figures are inline base64 PNGs (matplotlib's object API, no pyplot state), every string that comes
from data is escaped, and the style sheet is inline, as in the evaluation report.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from docloop.models.metrics import figure_to_base64_png
from docloop.monitor.drift import OCR_LABELS, OCR_STATISTICS, DriftReport, DriftTest
from docloop.monitor.performance import LabelPerformance, PerformanceReport, RateEstimate
from docloop.monitor.trigger import TriggerDecision

TRIGGER_COLOUR = "#cf222e"
QUIET_COLOUR = "#1a7f37"


@dataclass(frozen=True)
class ReportInputs:
    """Everything a drift-check report shows.

    Attributes:
        decision: The trigger decision.
        performance: Scores on reviewed documents.
        drift: The drift tests.
        window_start: Start of the window (None: the beginning).
        window_end: End of the window.
        predictions: Predictions in the window.
        champion_uri: The champion classifier.
        reference_uri: The reference dataset.
        champion_score: The champion's holdout score of ``metric`` (None: unknown).
        metric: The key metric's name.
        reference_ocr: Reference OCR statistics (for the histograms).
        current_ocr: Current OCR statistics.
        watermark_advanced: Whether the check moves the watermark to ``window_end``.
        attempt_recorded: Whether a pending retrain attempt is recorded with this decision.
    """

    decision: TriggerDecision
    performance: PerformanceReport
    drift: DriftReport
    window_start: datetime | None
    window_end: datetime
    predictions: int
    champion_uri: str
    reference_uri: str
    champion_score: float | None
    metric: str
    reference_ocr: Mapping[str, npt.NDArray[np.float64]]
    current_ocr: Mapping[str, npt.NDArray[np.float64]]
    watermark_advanced: bool
    attempt_recorded: bool


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}f}"


def _image(figure: Figure, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{figure_to_base64_png(figure)}">'


def _window(inputs: ReportInputs) -> str:
    start = inputs.window_start.isoformat() if inputs.window_start else "the beginning"
    return f"{start} to {inputs.window_end.isoformat()}"


# --- figures --------------------------------------------------------------------------------------


def plot_f1_with_intervals(
    groups: Mapping[str, Mapping[str, LabelPerformance]], title: str
) -> Figure:
    """Per-label F1 with bootstrap intervals, one panel per group (classes, entity types)."""
    panels = [(name, labels) for name, labels in groups.items() if labels]
    figure = Figure(figsize=(6.0 * max(1, len(panels)), 4.2), layout="constrained")
    if not panels:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no reviewed documents", ha="center", va="center")
        axes.set_axis_off()
        return figure
    for index, (name, labels) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        names = [label for label, scores in labels.items() if scores.f1 is not None]
        values = np.array([labels[label].f1 or 0.0 for label in names])
        lower = np.array([labels[label].f1_lower or 0.0 for label in names])
        upper = np.array([labels[label].f1_upper or 0.0 for label in names])
        positions = np.arange(len(names))
        errors = np.vstack([np.maximum(values - lower, 0.0), np.maximum(upper - values, 0.0)])
        axes.bar(positions, values, yerr=errors, capsize=4, color="#0969da")
        axes.set_xticks(positions, names, rotation=45, ha="right")
        axes.set_ylim(0.0, 1.05)
        axes.set_ylabel("F1 (95% bootstrap interval)")
        axes.set_title(name)
    figure.suptitle(title)
    return figure


def plot_label_shares(reference: Mapping[str, float], current: Mapping[str, float]) -> Figure:
    """Label shares: the reference's training labels next to the current predicted types."""
    labels = sorted(set(reference) | set(current))
    figure = Figure(figsize=(max(6.0, 0.7 * len(labels) + 2.0), 4.2), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    axes.bar(positions - 0.2, [reference.get(x, 0.0) for x in labels], 0.4, label="reference")
    axes.bar(positions + 0.2, [current.get(x, 0.0) for x in labels], 0.4, label="current")
    axes.set_xticks(positions, labels, rotation=45, ha="right")
    axes.set_ylabel("share of documents")
    axes.set_title("Document types: reference labels vs current predictions")
    axes.legend()
    return figure


def plot_ocr_histograms(
    reference: Mapping[str, npt.NDArray[np.float64]], current: Mapping[str, npt.NDArray[np.float64]]
) -> Figure:
    """Density histograms of each OCR statistic, reference vs current."""
    figure = Figure(figsize=(15.0, 3.8), layout="constrained")
    for index, name in enumerate(OCR_STATISTICS, start=1):
        axes = figure.add_subplot(1, len(OCR_STATISTICS), index)
        ref = reference.get(name, np.zeros(0))
        cur = current.get(name, np.zeros(0))
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        both = np.concatenate([ref, cur])
        if both.size:
            low, high = float(both.min()), float(both.max())
            bins = np.linspace(low, high if high > low else low + 1.0, 31).tolist()
            if ref.size:
                axes.hist(ref, bins=bins, density=True, alpha=0.55, label="reference")
            if cur.size:
                axes.hist(cur, bins=bins, density=True, alpha=0.55, label="current")
            axes.legend()
        axes.set_title(OCR_LABELS[name])
    return figure


def plot_mmd_null(null: Sequence[float], observed: float | None) -> Figure:
    """The MMD² permutation null distribution with the observed value."""
    figure = Figure(figsize=(6.0, 3.8), layout="constrained")
    axes = figure.add_subplot()
    if null:
        axes.hist(np.asarray(null), bins=40, color="#8c959f", label="permutation null")
    if observed is not None:
        axes.axvline(observed, color=TRIGGER_COLOUR, linewidth=2, label=f"observed {observed:.3g}")
    axes.set_xlabel("MMD²")
    axes.set_title("Embedding drift: MMD² under the permutation null")
    if null or observed is not None:
        axes.legend()
    else:
        axes.text(0.5, 0.5, "embedding test not run", ha="center", va="center")
    return figure


# --- HTML -----------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1f2328;
       max-width: 1200px; }
.verdict { display: inline-block; color: #fff; font-size: 1.5rem; font-weight: 700;
           padding: .3rem 1rem; border-radius: .4rem; margin: .2rem 0; }
table { border-collapse: collapse; margin: .5rem 0 1.2rem; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.on td { background: #ffebe9; }
tr.off td { color: #656d76; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures img { max-width: 100%; border: 1px solid #d0d7de; }
pre { background: #f6f8fa; padding: .6rem; }
"""


def _rules_table(decision: TriggerDecision) -> str:
    rows = ["<tr><th>rule</th><th>kind</th><th>state</th><th>why</th></tr>"]
    for rule in decision.rules:
        state = (
            ("blocks" if rule.active else "clear")
            if rule.kind == "guard"
            else ("fires" if rule.active else "quiet")
        )
        css = "on" if rule.active else ""
        rows.append(
            f'<tr class="{css}"><td>{_e(rule.rule)}</td><td>{_e(rule.kind)}</td>'
            f"<td>{_e(state)}</td><td>{_e(rule.reason)}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _tests_table(tests: Sequence[DriftTest]) -> str:
    rows = [
        "<tr><th>test</th><th>reference</th><th>current</th><th>statistic</th><th>p</th>"
        "<th>alpha</th><th>effect</th><th>threshold</th><th>drift</th></tr>"
    ]
    for test in tests:
        css = "on" if test.drift else ("off" if not test.ran else "")
        p_value = "&ndash;" if test.p_value is None else f"{test.p_value:.3g}"
        rows.append(
            f'<tr class="{css}"><td>{_e(test.name)}</td><td class="num">{test.n_reference}</td>'
            f'<td class="num">{test.n_current}</td><td class="num">{_num(test.statistic, 4)}</td>'
            f'<td class="num">{p_value}</td><td class="num">{test.alpha:.3g}</td>'
            f'<td class="num">{_num(test.effect)} ({_e(test.effect_name)})</td>'
            f'<td class="num">{_num(test.effect_threshold)}</td>'
            f"<td>{'yes' if test.drift else ('not run' if not test.ran else 'no')}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _rate_row(name: str, rate: RateEstimate) -> str:
    return (
        f'<tr><td>{_e(name)}</td><td class="num">{_num(rate.value)}</td>'
        f'<td class="num">{_num(rate.lower)}&ndash;{_num(rate.upper)}</td>'
        f'<td class="num">{rate.successes}/{rate.trials}</td></tr>'
    )


def _performance_table(performance: PerformanceReport) -> str:
    rows = ["<tr><th>measure</th><th>value</th><th>95% interval</th><th>count</th></tr>"]
    rows.append(_rate_row("accuracy (Wilson)", performance.accuracy))
    rows.append(_rate_row("correction rate (Wilson)", performance.correction_rate))
    rows.append(_rate_row("entity precision (Wilson)", performance.entity_precision))
    rows.append(_rate_row("entity recall (Wilson)", performance.entity_recall))
    for name, value, low, high in (
        ("macro-F1 (bootstrap)", performance.macro_f1, performance.macro_f1_lower,
         performance.macro_f1_upper),
        ("entity F1 (bootstrap)", performance.entity_f1, performance.entity_f1_lower,
         performance.entity_f1_upper),
    ):  # fmt: skip
        rows.append(
            f'<tr><td>{_e(name)}</td><td class="num">{_num(value)}</td>'
            f'<td class="num">{_num(low)}&ndash;{_num(high)}</td><td></td></tr>'
        )
    return "<table>" + "".join(rows) + "</table>"


def _label_table(labels: Mapping[str, LabelPerformance], kind: str) -> str:
    if not labels:
        return ""
    rows = [
        f"<tr><th>{_e(kind)}</th><th>support</th><th>predicted</th><th>precision</th>"
        "<th>recall</th><th>F1</th><th>F1 interval</th></tr>"
    ]
    for label, scores in labels.items():
        rows.append(
            f'<tr><td>{_e(label)}</td><td class="num">{scores.support}</td>'
            f'<td class="num">{scores.predicted}</td>'
            f'<td class="num">{_num(scores.precision.value)} '
            f"[{_num(scores.precision.lower)}, {_num(scores.precision.upper)}]</td>"
            f'<td class="num">{_num(scores.recall.value)} '
            f"[{_num(scores.recall.lower)}, {_num(scores.recall.upper)}]</td>"
            f'<td class="num">{_num(scores.f1)}</td>'
            f'<td class="num">{_num(scores.f1_lower)}&ndash;{_num(scores.f1_upper)}</td></tr>'
        )
    return "<table>" + "".join(rows) + "</table>"


def render_html(inputs: ReportInputs) -> str:
    """The drift-check report: verdict and rules, performance, drift tests, figures, policy."""
    decision, performance, drift = inputs.decision, inputs.performance, inputs.drift
    verdict = "RETRAIN" if decision.trigger else "NO RETRAIN"
    colour = TRIGGER_COLOUR if decision.trigger else QUIET_COLOUR
    record = (
        "a pending retrain attempt is recorded with these reasons"
        if inputs.attempt_recorded
        else "no retrain attempt is recorded (a declined decision lives in this report)"
    )
    watermark = (
        f"watermark advanced to {inputs.window_end.isoformat()}"
        if inputs.watermark_advanced
        else "watermark kept: this window's evidence carries over to the next check"
    )
    figures = [
        _image(
            plot_f1_with_intervals(
                {"document types": performance.per_class, "entity types": performance.per_entity},
                "F1 on reviewed documents",
            ),
            "per-label F1 with intervals",
        ),
        _image(
            plot_label_shares(drift.label.reference_shares, drift.label.current_shares),
            "label shares",
        ),
        _image(plot_ocr_histograms(inputs.reference_ocr, inputs.current_ocr), "OCR statistics"),
        _image(
            plot_mmd_null(drift.embedding.null, drift.embedding.statistic), "MMD permutation null"
        ),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>docloop drift check: {_e(verdict)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Drift check</h1>",
        f'<p class="verdict" style="background:{colour}">{_e(verdict)}</p>',
        f"<p><strong>{_e(decision.headline)}</strong></p>",
        f"<p>Window {_e(_window(inputs))}: {inputs.predictions} predictions, "
        f"{performance.documents} reviewed documents. {_e(record)}; {_e(watermark)}.</p>",
        "<table>"
        f"<tr><th>champion</th><td>{_e(inputs.champion_uri)}</td></tr>"
        f"<tr><th>reference</th><td>{_e(inputs.reference_uri)}</td></tr>"
        f"<tr><th>champion holdout {_e(inputs.metric)}</th>"
        f"<td>{_num(inputs.champion_score)}</td></tr></table>",
        "<h2>Trigger rules</h2>",
        _rules_table(decision),
        "<h2>Performance on reviewed documents</h2>",
        _performance_table(performance),
        _label_table(performance.per_class, "document type"),
        _label_table(performance.per_entity, "entity type"),
        "<h2>Drift tests</h2>",
        f"<p>Combined decision: drift when any test finds it. Family-wise false-alarm bound "
        f"{drift.family_alpha:.3g} (Bonferroni: each of the {drift.tests_run} tests run at "
        f"{drift.test_alpha:.3g}); drift also needs the effect size above its threshold.</p>",
        _tests_table(drift.tests),
        "<ul>" + "".join(f"<li>{_e(reason)}</li>" for reason in drift.reasons) + "</ul>",
        "<h2>Figures</h2>",
        '<div class="figures">' + "".join(figures) + "</div>",
        "<h2>Policy</h2>",
        f"<pre>{_e(decision.policy.model_dump_json(indent=2))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- Markdown -------------------------------------------------------------------------------------


def _md(value: object) -> str:
    """Data text safe in Markdown (HTML escaped: the KFP UI renders inline HTML) and in cells."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def render_markdown(inputs: ReportInputs) -> str:
    """A short Markdown summary (the KFP UI's ``Markdown`` artifact)."""
    decision, performance, drift = inputs.decision, inputs.performance, inputs.drift
    verdict = "RETRAIN" if decision.trigger else "NO RETRAIN"
    lines = [
        f"# Drift check: **{verdict}**",
        "",
        _md(decision.headline),
        "",
        f"Window {_window(inputs)}: {inputs.predictions} predictions, "
        f"{performance.documents} reviewed documents"
        + ("; a pending retrain attempt is recorded" if inputs.attempt_recorded else "")
        + ("" if inputs.watermark_advanced else "; watermark kept (evidence carries over)")
        + ".",
        "",
        "## Rules",
        "",
        "| rule | state | why |",
        "| --- | --- | --- |",
    ]
    for rule in decision.rules:
        state = (
            ("blocks" if rule.active else "clear")
            if rule.kind == "guard"
            else ("**fires**" if rule.active else "quiet")
        )
        lines.append(f"| {rule.rule} | {state} | {_md(rule.reason)} |")
    lines += [
        "",
        "## Performance on reviewed documents",
        "",
        f"- accuracy: {performance.accuracy.describe()}",
        f"- correction rate: {performance.correction_rate.describe()}",
        f"- macro-F1: {_plain(performance.macro_f1)} "
        f"({_plain(performance.macro_f1_lower)}-{_plain(performance.macro_f1_upper)})",
        f"- entity F1: {_plain(performance.entity_f1)} "
        f"({_plain(performance.entity_f1_lower)}-{_plain(performance.entity_f1_upper)})",
        "",
        "## Drift tests",
        "",
        f"Family-wise false-alarm bound {drift.family_alpha:.3g}; each of {drift.tests_run} "
        f"tests at {drift.test_alpha:.3g} (Bonferroni).",
        "",
        "| test | p | effect | drift |",
        "| --- | --- | --- | --- |",
    ]
    for test in drift.tests:
        p_value = "-" if test.p_value is None else f"{test.p_value:.3g}"
        effect = "-" if test.effect is None else f"{test.effect:.3g} ({test.effect_name})"
        state = "**yes**" if test.drift else ("not run" if not test.ran else "no")
        lines.append(f"| {_md(test.name)} | {p_value} | {_md(effect)} | {state} |")
    return "\n".join(lines) + "\n"


def _plain(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

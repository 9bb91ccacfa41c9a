"""``demo-report/index.html``: the demo's story, readable without reading JSON.

Everything comes from the demo's measurements and from the state store the loop wrote (model
versions, the promotion audit log, deployments with their canary analyses, drift checks,
retrain attempts), so the page shows what ``docloop status`` and ``mlflow ui`` show. Plots are
matplotlib PNGs embedded in the page (one self-contained file).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from docloop.config import DocloopConfig, store_url
from docloop.demo.result import DemoResult
from docloop.models.metrics import figure_to_base64_png
from docloop.store.db import open_store
from docloop.store.tables import (
    Deployment,
    DriftCheck,
    ModelVersion,
    PromotionAudit,
    RetrainAttempt,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


REPORT_FILE = "index.html"
TASK_PREFIXES = ("classify: ", "extract: ", "pipeline: ")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ok{color:#176e1f;font-weight:600}.bad{color:#b3121f;font-weight:600}
.muted{color:#777}img{max-width:100%}code{background:#f4f4f4;padding:0 .3em}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


class _Html(str):
    """A table cell that is already HTML (not escaped again)."""

    __slots__ = ()


def _cell(value: object) -> str:
    return value if isinstance(value, _Html) else _e(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _details(lines: Sequence[str], summary: str | None = None) -> _Html:
    """The first line (or ``summary``) shown; every line behind a click."""
    if not lines:
        return _Html("-")
    first = summary or lines[0]
    rest = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return _Html(f"<details><summary>{_e(first)}</summary><ul>{rest}</ul></details>")


def _img(figure: Figure) -> str:
    import matplotlib.pyplot as plt

    data = figure_to_base64_png(figure)
    plt.close(figure)
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _when(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value else "-"


def _rows(config: DocloopConfig) -> dict[str, list[Any]]:
    store = open_store(store_url(config.store))
    try:
        with store.read() as session:
            tables: dict[str, list[Any]] = {
                "versions": list(session.scalars(select(ModelVersion).order_by(ModelVersion.id))),
                "audit": list(session.scalars(select(PromotionAudit).order_by(PromotionAudit.id))),
                "deployments": list(session.scalars(select(Deployment).order_by(Deployment.id))),
                "checks": list(session.scalars(select(DriftCheck).order_by(DriftCheck.id))),
                "attempts": list(
                    session.scalars(select(RetrainAttempt).order_by(RetrainAttempt.id))
                ),
            }
            session.expunge_all()
        return tables
    finally:
        store.close()


def _timeline(rows: dict[str, list[Any]]) -> list[tuple[datetime, str, str]]:
    events: list[tuple[datetime, str, str]] = []
    for entry in rows["audit"]:
        events.append(
            (entry.at, f"registry: {entry.action}",
             f"{entry.model_name} {entry.from_version or '-'} → {entry.to_version}: {entry.reason}")
        )  # fmt: skip
    for deployment in rows["deployments"]:
        label = ", ".join(f"{k}={v}" for k, v in sorted(deployment.versions.items()))
        events.append(
            (deployment.updated_at, f"deploy: {deployment.status}",
             f"{label}: {deployment.reason or ''}")
        )  # fmt: skip
    for check in rows["checks"]:
        decision = "RETRAIN" if check.trigger else "no retrain"
        events.append((check.checked_at, f"drift check: {decision}", check.headline))
    for attempt in rows["attempts"]:
        if attempt.finished_at:
            events.append(
                (attempt.finished_at, f"retrain: {attempt.outcome}",
                 "; ".join(attempt.reasons or [])[:300])
            )  # fmt: skip
    events.sort(key=lambda event: event[0])
    return events


def _timeline_plot(events: list[tuple[datetime, str, str]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not events:
        return ""
    kinds = sorted({kind for _, kind, _ in events})
    start = events[0][0]
    figure, axis = plt.subplots(figsize=(10, 0.45 * len(kinds) + 1.2))
    colours = {"promote": "#176e1f", "promoted": "#176e1f", "rollback": "#b3121f",
               "rolled_back": "#b3121f", "rejected": "#b3121f", "reject": "#b3121f"}  # fmt: skip
    for at, kind, _ in events:
        colour = colours.get(kind.split(": ")[-1], "#3465a4")
        axis.scatter((at - start).total_seconds(), kinds.index(kind), color=colour, s=60)
    axis.set_yticks(range(len(kinds)), kinds)
    axis.set_xlabel("seconds since the first event")
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _img(figure)


def _scores_plot(result: DemoResult, task: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for axis, holdout in zip(axes, ("old", "drifted"), strict=True):
        labels = sorted(
            {label for version in ("V1", "V2")
             for label in result.scores[version][holdout][task].per_label}
        )  # fmt: skip
        positions = np.arange(len(labels))
        for offset, version, colour in ((-0.2, "V1", "#999999"), (0.2, "V2", "#3465a4")):
            values = [result.scores[version][holdout][task].per_label.get(label, 0.0)
                      for label in labels]  # fmt: skip
            axis.bar(positions + offset, values, width=0.4, label=version, color=colour)
        axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
        axis.set_title(f"{holdout} holdout")
        axis.set_ylim(0, 1.05)
    axes[0].set_ylabel("F1")
    axes[0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    return _img(figure)


def _drift_plot(checks: list[DriftCheck]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not checks:
        return ""
    series = {
        "feedback accuracy": "feedback.accuracy",
        "correction rate": "feedback.correction_rate",
        "embedding MMD p-value": "drift.embedding_mmd.p_value",
        "layout/format p-value": "drift.layout_format.p_value",
        "label shift (JS distance)": "drift.label_shift.effect",
        "entity F1 on feedback": "feedback.entity_f1",
    }
    figure, axis = plt.subplots(figsize=(8, 3.2))
    x = list(range(1, len(checks) + 1))
    for name, key in series.items():
        values = [check.metrics.get(key) for check in checks]
        if any(v is not None for v in values):
            axis.plot(x, [v if v is not None else float("nan") for v in values], "o-", label=name)
    axis.set_xticks(x, [f"check {i}" for i in x])
    axis.set_ylim(-0.02, 1.02)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return _img(figure)


def _canary(deployments: list[Deployment]) -> str:
    parts: list[str] = []
    for deployment in deployments:
        verdict = (deployment.analysis or {}).get("verdict")
        label = ", ".join(f"{k}={v}" for k, v in sorted(deployment.versions.items()))
        if verdict is None:
            parts.append(
                f"<p>Deployment {deployment.id} ({_e(label)}): <b>{_e(deployment.status)}</b> — "
                f"{_e(deployment.reason or 'no canary analysis')}</p>"
            )
            continue
        cls = "ok" if verdict["decision"] == "promote" else "bad"
        parts.append(
            f"<p>Deployment {deployment.id} ({_e(label)}): canary analysis decided "
            f'<span class="{cls}">{_e(verdict["decision"].upper())}</span> after '
            f"{verdict['elapsed_s']:.0f} s — {_e(verdict['reasons'][0])}</p>"
        )
        parts.append(
            _table(
                ("check", "champion", "canary", "limit", "result", "why"),
                [
                    (
                        c["name"],
                        c["champion"],
                        c["canary"],
                        c["limit"],
                        {True: "pass", False: "FAIL", None: "no evidence"}[c["passed"]],
                        c["reason"],
                    )
                    for c in verdict["checks"]
                ],
            )
        )
        parts.append(
            _table(
                ("variant", "requests", "errors", "p95 ms", "reviewed", "live accuracy"),
                [
                    (
                        side["variant"],
                        side["requests"],
                        side["errors"],
                        side["p95_ms"],
                        side["reviewed"],
                        side["accuracy"],
                    )
                    for side in (verdict["champion"], verdict["canary"])
                ],
            )
        )
    return "".join(parts) or "<p class='muted'>No deployment recorded.</p>"


def write_report(
    report_dir: Path, result: DemoResult, config: DocloopConfig, config_file: Path
) -> Path:
    """Write ``index.html`` into ``report_dir`` and return its path."""
    rows = _rows(config)
    events = _timeline(rows)
    claims = "".join(
        f'<li class="{"ok" if holds else "bad"}">{"✔" if holds else "✘ NOT MET:"} {_e(claim)}</li>'
        for claim, holds in result.claims.items()
    )
    scores_rows = []
    for holdout in ("old", "drifted"):
        for task, metric in (("classify", "macro-F1"), ("extract", "entity F1")):
            cells = [
                result.scores[v][holdout][task].metric if v in result.scores else "-"
                for v in ("V1", "V2")
            ]
            documents = result.scores["V1"][holdout][task].documents if result.scores else 0
            scores_rows.append((f"{task} {metric}", holdout, documents, *cells))
    sections = [
        f"<h1>docloop demo</h1><p class='muted'>size {_e(result.size)}, "
        f"{result.seconds:.0f} s wall time; versions V1 = {_e(result.versions.get('V1'))}, "
        f"V2 = {_e(result.versions.get('V2'))}</p>",
        f"<h2>Did the loop work?</h2><ul>{claims}</ul>",
        "<h2>Scores on holdouts no training saw</h2>"
        "<p>The old holdout is the bootstrap's frozen holdout; the drifted one is generated from "
        "the drift scenarios and never served.</p>"
        + _table(("metric", "holdout", "documents", "V1", "V2"), scores_rows),
    ]
    if "V1" in result.scores and "V2" in result.scores:
        sections.append(_scores_plot(result, "classify", "Per-class F1, V1 vs V2"))
        sections.append(_scores_plot(result, "extract", "Per-entity F1, V1 vs V2"))
    sections += [
        "<h2>Timeline</h2>" + _timeline_plot(events),
        _table(("time", "event", "detail"), [(_when(a), k, d) for a, k, d in events]),
        "<h2>Drift checks: statistics and decisions</h2>" + _drift_plot(rows["checks"]),
        _table(
            ("check", "window end", "decision", "signals", "guards", "reasons (click)"),
            [
                (
                    c.id,
                    _when(c.window_end),
                    "RETRAIN" if c.trigger else "no retrain",
                    ", ".join(c.signals) or "-",
                    ", ".join(c.blockers) or "-",
                    _details(c.reasons),
                )
                for c in rows["checks"]
            ],
        ),
        "<h2>Retrain attempts and gate decisions</h2>"
        + _table(
            ("attempt", "outcome", "per model", "gate and canary reasons (click)"),
            [
                (
                    a.id,
                    a.outcome,
                    ", ".join(
                        f"{task}: {d.get('outcome')}" for task, d in (a.metric_deltas or {}).items()
                    ),
                    _details(
                        [r for r in a.reasons or [] if r.startswith(TASK_PREFIXES)],
                        f"{sum(r.startswith(TASK_PREFIXES) for r in a.reasons or [])} reasons",
                    ),
                )
                for a in rows["attempts"]
            ],
        )
        + (
            "<p class='muted'>Round 2 was started by hand: the drift check saw no reason to "
            "retrain.</p>"
            if result.round2_by_hand
            else ""
        ),
        "<h2>Canary analysis</h2>" + _canary(rows["deployments"]),
        "<h2>Model versions</h2>"
        + _table(
            ("model", "version", "status", "reason"),
            [(v.model_name, v.version, v.status, v.status_reason or "") for v in rows["versions"]],
        ),
        "<h2>Pipeline health and alerts</h2>"
        + _table(("stage", "seconds"), list(result.stages.items()))
        + _table(
            ("alert", "summary"),
            [(a.get("kind"), a.get("summary")) for a in result.alerts] or [("-", "none")],
        ),
        "<h2>See the same story elsewhere</h2><p><code>.venv/bin/docloop status --config "
        f"{_e(config_file)}</code> (the state store) and <code>.venv/bin/mlflow ui "
        f"--backend-store-uri {_e(config.tracking.mlflow_tracking_uri)}</code> (the registry: "
        "versions, aliases <code>champion</code> / <code>previous-champion</code>, runs).</p>",
    ]
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / REPORT_FILE
    target.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>docloop demo</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>",
        encoding="utf-8",
    )
    return target

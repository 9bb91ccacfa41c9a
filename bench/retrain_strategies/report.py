"""From result rows to figures: means and spreads, the targets, a Markdown table, plots, HTML.

Every figure is computed from ``results.jsonl`` rows alone, so a report can be re-rendered from
a finished run (``python -m bench.retrain_strategies --report-only``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

TASK_METRIC: Final = {"classify": "macro-F1", "extract": "entity F1"}
TASK_NAME: Final = {"classify": "classifier", "extract": "extractor"}
RECOVERY_TARGET: Final = 0.95
FORGETTING_TARGET: Final = 0.01
COMPUTE_TARGET: Final = 0.35
MIN_GAIN: Final = 0.02
"""A full-retrain gain below this (on the drifted holdout) leaves nothing to recover."""
MEASURABLE: Final = 0.01
"""Feedback-only 'forgets' when its old-holdout loss is at least this and beyond the seed spread."""


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        array = np.asarray(values, dtype=float)
        if not len(array):
            return cls(math.nan, math.nan, 0)
        std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        return cls(float(array.mean()), std, len(array))

    def fmt(self, digits: int = 3, signed: bool = False) -> str:
        if self.n == 0:
            return "-"
        sign = "+" if signed else ""
        text = f"{self.mean:{sign}.{digits}f}"
        return f"{text} ± {self.std:.{digits}f}" if self.n > 1 else text


@dataclass(frozen=True)
class Target:
    """One goal of the issue, checked on one scenario (or all of them)."""

    name: str
    scenario: str
    value: str
    goal: str
    holds: bool | None
    """None: not applicable (e.g. the full retrain gains nothing to recover)."""

    @property
    def mark(self) -> str:
        return "n/a" if self.holds is None else ("✔" if self.holds else "✘")


class Summary:
    """The rows grouped by (scenario, strategy, task), with the derived figures."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], strategies: Sequence[tuple[str, str]]):
        self.rows = list(rows)
        present = {row["strategy"] for row in self.rows}
        self.strategies = [(name, label) for name, label in strategies if name in present]
        self.labels = dict(strategies)
        self.scenarios = list(dict.fromkeys(row["scenario"] for row in self.rows))
        self.by: dict[tuple[str, str, str], dict[int, Mapping[str, Any]]] = defaultdict(dict)
        for row in self.rows:
            self.by[(row["scenario"], row["strategy"], row["task"])][int(row["seed"])] = row
        self.seeds = sorted({int(row["seed"]) for row in self.rows})

    def cell(self, scenario: str, strategy: str, task: str) -> dict[int, Mapping[str, Any]]:
        return self.by.get((scenario, strategy, task), {})

    def metric(self, scenario: str, strategy: str, task: str, holdout: str) -> Stat:
        cell = self.cell(scenario, strategy, task)
        return Stat.of([row["scores"][holdout]["metric"] for row in cell.values()])

    def delta(self, scenario: str, strategy: str, task: str, holdout: str) -> Stat:
        """The metric minus V1's, paired by seed."""
        cell = self.cell(scenario, strategy, task)
        v1 = self.cell(scenario, "no_retrain", task)
        return Stat.of(
            [
                row["scores"][holdout]["metric"] - v1[seed]["scores"][holdout]["metric"]
                for seed, row in cell.items()
                if seed in v1
            ]
        )

    def both_models(self, scenario: str, strategy: str, key: str) -> Stat:
        """A row figure (``examples_seen``, ``train_seconds``) summed over both models, per seed."""
        per_seed: dict[int, float] = defaultdict(float)
        for task in ("classify", "extract"):
            for seed, row in self.cell(scenario, strategy, task).items():
                per_seed[seed] += row[key]
        return Stat.of(list(per_seed.values()))

    def examples(self, scenario: str, strategy: str) -> Stat:
        """Examples seen by both models together, per seed."""
        return self.both_models(scenario, strategy, "examples_seen")

    def seconds(self, scenario: str, strategy: str) -> Stat:
        """Training wall time of both models together, per seed."""
        return self.both_models(scenario, strategy, "train_seconds")

    def compute_share(self, scenario: str, strategy: str) -> Stat:
        """Examples seen as a share of the full retrain's in the same (scenario, seed)."""
        shares = []
        for seed in self.seeds:
            mine = sum(
                self.cell(scenario, strategy, t).get(seed, {}).get("examples_seen", 0)
                for t in ("classify", "extract")
            )
            full = sum(
                self.cell(scenario, "full_retrain", t).get(seed, {}).get("examples_seen", 0)
                for t in ("classify", "extract")
            )
            if full:
                shares.append(mine / full)
        return Stat.of(shares)

    def blessed(self, scenario: str, strategy: str, task: str) -> tuple[int, int]:
        cell = self.cell(scenario, strategy, task)
        return sum(1 for row in cell.values() if row["gate"]["blessed"]), len(cell)

    def per_label_delta(
        self, scenario: str, strategy: str, task: str, holdout: str
    ) -> dict[str, Stat]:
        """Per-class / per-entity F1 minus V1's, paired by seed."""
        cell = self.cell(scenario, strategy, task)
        v1 = self.cell(scenario, "no_retrain", task)
        values: dict[str, list[float]] = defaultdict(list)
        for seed, row in cell.items():
            if seed not in v1:
                continue
            base = v1[seed]["scores"][holdout]["per_label"]
            for label, f1 in row["scores"][holdout]["per_label"].items():
                values[label].append(f1 - base.get(label, 0.0))
        return {label: Stat.of(v) for label, v in sorted(values.items())}

    # ------------------------------------------------------------------------------ targets
    def targets(self) -> list[Target]:
        found: list[Target] = []
        for scenario in self.scenarios:
            for task in ("classify", "extract"):
                full = self.delta(scenario, "full_retrain", task, "drifted")
                mine = self.delta(scenario, "targeted", task, "drifted")
                name = f"{TASK_NAME[task]}: targeted recovers ≥ 95 % of the full-retrain gain"
                if full.n == 0 or mine.n == 0:
                    continue
                if full.mean < MIN_GAIN:
                    value = (
                        f"full retrain gains {full.mean:+.3f} (< {MIN_GAIN}): nothing to recover"
                    )
                    found.append(Target(name, scenario, value, "≥ 95 %", None))
                else:
                    ratio = mine.mean / full.mean
                    value = f"{ratio:.0%} ({mine.mean:+.3f} of {full.mean:+.3f})"
                    found.append(Target(name, scenario, value, "≥ 95 %", ratio >= RECOVERY_TARGET))
            for task in ("classify", "extract"):
                old = self.delta(scenario, "targeted", task, "old")
                if old.n:
                    found.append(
                        Target(
                            f"{TASK_NAME[task]}: targeted loses ≤ 1 point {TASK_METRIC[task]} "
                            "on the old holdout",
                            scenario,
                            old.fmt(signed=True),
                            "≥ -0.010",
                            old.mean >= -FORGETTING_TARGET,
                        )
                    )
            share = self.compute_share(scenario, "targeted")
            if share.n:
                found.append(
                    Target(
                        "targeted compute (examples seen, both models) vs full retrain",
                        scenario,
                        f"{share.mean:.0%}",
                        "≤ 35 %",
                        share.mean <= COMPUTE_TARGET,
                    )
                )
            losses = [
                (task, self.delta(scenario, "feedback_only", task, "old"))
                for task in ("classify", "extract")
            ]
            losses = [(task, d) for task, d in losses if d.n]
            if losses:
                measurable = [
                    task for task, d in losses if -d.mean >= MEASURABLE and -d.mean > d.std
                ]
                value = ", ".join(f"{TASK_NAME[t]} {d.fmt(signed=True)}" for t, d in losses)
                found.append(
                    Target(
                        "feedback-only forgets measurably on the old holdout",
                        scenario,
                        value,
                        "a loss ≥ 0.010 beyond the seed spread",
                        bool(measurable),
                    )
                )
        return found


# ------------------------------------------------------------------------------ Markdown


def markdown(summary: Summary, facts: Mapping[str, Any]) -> str:
    """The tables docs/benchmarks.md embeds: results per scenario, then the targets."""
    n = len(summary.seeds)
    lines = [
        f"Mean ± standard deviation over {n} seed{'s' if n != 1 else ''}; old = V1's frozen "
        "holdout (`base`), drifted = a held-out corpus of the scenario (never served or trained). "
        "Gate: the default policy on the frozen + feedback holdouts, blessed runs / seeds.",
        "",
        "| scenario | strategy | classifier macro-F1 old | drifted | extractor entity F1 old "
        "| drifted | examples seen (% of full) | train s | gate cls / ext |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario in summary.scenarios:
        for name, label in summary.strategies:
            cells = []
            for task in ("classify", "extract"):
                for holdout in ("old", "drifted"):
                    stat = summary.metric(scenario, name, task, holdout)
                    if name != "no_retrain":
                        delta = summary.delta(scenario, name, task, holdout)
                        cells.append(f"{stat.fmt()} ({delta.mean:+.3f})")
                    else:
                        cells.append(stat.fmt())
            examples = summary.examples(scenario, name)
            share = summary.compute_share(scenario, name)
            compute = f"{examples.mean:,.0f} ({share.mean:.0%})" if examples.mean else "0"
            seconds = summary.seconds(scenario, name)
            gates = " / ".join(
                "-" if name == "no_retrain" else "{}/{}".format(*summary.blessed(scenario, name, t))
                for t in ("classify", "extract")
            )
            lines.append(
                f"| {scenario} | {label} | {' | '.join(cells)} | {compute} "
                f"| {seconds.mean:.0f} | {gates} |"
            )
    lines += [
        "",
        "| target | scenario | measured | goal | holds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for target in summary.targets():
        lines.append(
            f"| {target.name} | {target.scenario} | {target.value} | {target.goal} "
            f"| {target.mark} |"
        )
    held = [t for t in summary.targets() if t.holds is not None]
    if facts.get("partial"):
        lines += ["", f"**Partial:** {facts['partial']}."]
    lines += [
        "",
        f"{sum(t.holds for t in held if t.holds)} of {len(held)} applicable targets hold. "
        f"Run: {facts.get('command', '')} — {facts.get('machine', '')}, "
        f"{facts.get('total_seconds', 0) / 60:.1f} min{_phases(facts)}.",
    ]
    return "\n".join(lines) + "\n"


def _phases(facts: Mapping[str, Any]) -> str:
    """Where a run's time went (corpora are cached after the first run, so say which it was)."""
    run = facts.get("run")
    if not isinstance(run, dict) or "seconds" not in run:
        return ""
    seconds = run["seconds"]
    corpora = seconds.get("corpora", 0)
    made = "corpora cached" if corpora < 30 else f"corpora {corpora:.0f} s"
    return (
        f" ({made}, V1 {seconds.get('v1', 0):.0f} s, cells {seconds.get('cells', 0) / 60:.1f} min)"
    )


def readme_rows(summary: Summary) -> list[list[str]]:
    """A few summary rows for the performance table ``make bench`` writes."""
    rows: list[list[str]] = []
    targets = summary.targets()
    families: dict[str, list[Target]] = defaultdict(list)
    for target in targets:
        families[target.name].append(target)
    for name, group in families.items():
        applicable = [t for t in group if t.holds is not None]
        held = sum(1 for t in applicable if t.holds)
        detail = "; ".join(f"{t.scenario} {t.value}" for t in group)
        goal = group[0].goal
        mark = "✔" if applicable and held == len(applicable) else ("✘" if applicable else "n/a")
        rows.append([name, f"{held}/{len(applicable)} scenarios: {detail}", f"{goal} {mark}"])
    return rows


# ------------------------------------------------------------------------------ plots, HTML


def plot_scenario(summary: Summary, scenario: str) -> bytes:
    """PNG: per model, each strategy's old and drifted score (error bar: seed spread), compute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, _ in summary.strategies]
    labels = [summary.labels[name].split(" (")[0].replace("docloop, ", "") for name in names]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for ax, task in zip(axes[:2], ("classify", "extract"), strict=True):
        for offset, holdout, colour in ((-0.2, "old", "#4c72b0"), (0.2, "drifted", "#dd8452")):
            stats = [summary.metric(scenario, name, task, holdout) for name in names]
            ax.bar(
                x + offset,
                [s.mean for s in stats],
                0.4,
                yerr=[s.std for s in stats],
                label=f"{holdout} holdout",
                color=colour,
                capsize=3,
            )
        v1_drifted = summary.metric(scenario, "no_retrain", task, "drifted").mean
        ax.axhline(v1_drifted, color="#dd8452", linestyle=":", linewidth=1)
        ax.set_title(f"{TASK_NAME[task]} {TASK_METRIC[task]}")
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8, loc="lower right")
    shares = [summary.compute_share(scenario, name) for name in names]
    axes[2].bar(x, [0 if math.isnan(s.mean) else s.mean for s in shares], color="#55a868")
    axes[2].axhline(COMPUTE_TARGET, color="red", linestyle="--", linewidth=1, label="35 % target")
    axes[2].set_title("examples seen, share of full retrain")
    axes[2].set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"scenario {scenario}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(summary: Summary, facts: Mapping[str, Any], plots: Mapping[str, bytes]) -> str:
    """One self-contained page: facts, targets, results, per-label deltas and the plots."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>docloop retraining strategies</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1300px}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
        "th{background:#f3f3f3}.ok{color:#1a7f37}.bad{color:#c62828}</style>",
        "<h1>Retraining strategies after drift</h1>",
        f"<p>{html.escape(str(facts.get('command', '')))} — "
        f"{html.escape(str(facts.get('machine', '')))}"
        f" — {facts.get('total_seconds', 0) / 60:.1f} min; size "
        f"{html.escape(str(facts.get('size', '')))}; seeds {summary.seeds}.</p>",
        "<h2>Targets</h2>",
        _table(
            ["target", "scenario", "measured", "goal", "holds"],
            [[t.name, t.scenario, t.value, t.goal, t.mark] for t in summary.targets()],
        ),
    ]
    for scenario in summary.scenarios:
        parts.append(f"<h2>{html.escape(scenario)}</h2>")
        if scenario in plots:
            data = base64.b64encode(plots[scenario]).decode()
            parts.append(f"<img alt='{html.escape(scenario)}' src='data:image/png;base64,{data}'>")
        rows = []
        for name, label in summary.strategies:
            row = [label]
            for task in ("classify", "extract"):
                for holdout in ("old", "drifted"):
                    row.append(summary.metric(scenario, name, task, holdout).fmt())
            row.append(f"{summary.examples(scenario, name).mean:,.0f}")
            row.append(f"{summary.seconds(scenario, name).mean:.1f}")
            row.append(
                " / ".join(
                    "{}/{}".format(*summary.blessed(scenario, name, t))
                    for t in ("classify", "extract")
                )
            )
            rows.append(row)
        parts.append(
            _table(
                [
                    "strategy",
                    "cls old",
                    "cls drifted",
                    "ext old",
                    "ext drifted",
                    "examples",
                    "train s",
                    "gate",
                ],
                rows,
            )
        )
        for task in ("classify", "extract"):
            for holdout in ("old", "drifted"):
                deltas = {
                    name: summary.per_label_delta(scenario, name, task, holdout)
                    for name, _ in summary.strategies
                    if name != "no_retrain"
                }
                labels = sorted({label for d in deltas.values() for label in d})
                if not labels:
                    continue
                parts.append(
                    f"<h3>{TASK_NAME[task]}: per-{'class' if task == 'classify' else 'entity'} "
                    f"F1 - V1, {holdout} holdout</h3>"
                )
                parts.append(
                    _table(
                        ["strategy", *labels],
                        [
                            [summary.labels[name]]
                            + [d[label].fmt(signed=True) if label in d else "-" for label in labels]
                            for name, d in deltas.items()
                        ],
                    )
                )
        failed = {
            f"{summary.labels[row['strategy']]} "
            f"({TASK_NAME[row['task']]}, seed {row['seed']})": row["gate"]["failed"]
            for row in summary.rows
            if row["scenario"] == scenario
            and row["strategy"] != "no_retrain"
            and not row["gate"]["blessed"]
        }
        if failed:
            parts.append("<h3>Gate refusals</h3><ul>")
            for who, reasons in failed.items():
                parts.append(
                    f"<li><b>{html.escape(who)}</b>: {html.escape('; '.join(reasons))}</li>"
                )
            parts.append("</ul>")
    return "\n".join(parts) + "\n"

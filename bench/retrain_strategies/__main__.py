"""``python -m bench.retrain_strategies [--quick] [--write-doc]`` (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.retrain_strategies.data import SCENARIOS, SIZES
from bench.retrain_strategies.report import (
    Summary,
    html_report,
    markdown,
    plot_scenario,
    readme_rows,
)
from bench.retrain_strategies.run import read_rows, run_experiment, strategies
from docloop.config import ENV_PREFIX, DocloopConfig, RetrainConfig, load_config
from docloop.errors import ConfigError

OUT = Path(__file__).resolve().parent.parent / "out"
BENCHMARKS_DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "benchmarks.md"
SECTION = "retrain_strategies"

logger = logging.getLogger("bench.retrain_strategies")


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__.split('+')[0]}, {gpu}"
    )


def with_policy(changes: list[str], parser: argparse.ArgumentParser) -> DocloopConfig:
    """The configuration with ``--policy KNOB=VALUE`` applied to its ``retrain`` section.

    Each change becomes the ``DOCLOOP__RETRAIN__KNOB`` override a deployment would set, so
    ``load_config`` parses and validates it (and names a bad knob or value).
    """
    overrides: dict[str, str] = {}
    for change in changes:
        knob, sep, value = change.partition("=")
        if not sep:
            parser.error(f"--policy {change!r}: expected KNOB=VALUE")
        overrides[f"{ENV_PREFIX}RETRAIN__{knob.upper()}"] = value
    try:
        return load_config(environ={**os.environ, **overrides})
    except ConfigError as exc:
        parser.error(f"--policy: {exc}")


def render(
    out: Path,
    facts: dict[str, object],
    rows: list[dict[str, object]],
    json_path: Path,
    policy: RetrainConfig,
) -> Summary:
    """Write the Markdown, plots, HTML and the figures JSON; return the summary."""
    summary = Summary(rows, [(s.name, s.label) for s in strategies(policy)])
    plots = {scenario: plot_scenario(summary, scenario) for scenario in summary.scenarios}
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for scenario, png in plots.items():
        (out / "plots" / f"{scenario}.png").write_bytes(png)
    table = markdown(summary, facts)
    (out / "retrain_strategies.md").write_text(table)
    (out / "report.html").write_text(html_report(summary, facts, plots))
    targets = [
        {"name": t.name, "scenario": t.scenario, "value": t.value, "goal": t.goal, "holds": t.holds}
        for t in summary.targets()
    ]
    figures = {
        **facts,
        "readme_rows": readme_rows(summary),
        "targets": targets,
        "markdown": table,
        "report": str(out / "report.html"),
        "rows": rows,
    }
    json_path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    return summary


def show(summary: Summary, console: Console) -> None:
    table = Table(title="retraining strategies: targets")
    for column in ("target", "scenario", "measured", "goal", "holds"):
        table.add_column(column)
    for target in summary.targets():
        colour = {True: "green", False: "red", None: "yellow"}[target.holds]
        table.add_row(
            target.name,
            target.scenario,
            target.value,
            target.goal,
            f"[{colour}]{target.mark}[/{colour}]",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: 2 scenarios, 1 seed, tiny models"
    )
    parser.add_argument("--seeds", type=int, help="seeds per scenario (default 3; quick 1)")
    parser.add_argument(
        "--encoder-layers", type=int, help="encoder layers kept (default 1; 6 = all)"
    )
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, help="drift scenarios to run")
    parser.add_argument("--epochs", type=int, help="epochs from the encoder: V1, full retrain (4)")
    parser.add_argument(
        "--finetune-epochs", type=int, help="epochs of a warm-started fine-tune (2)"
    )
    parser.add_argument(
        "--policy",
        nargs="+",
        metavar="KNOB=VALUE",
        default=[],
        help="change the policy under test (retrain section), e.g. error_oversample=1.0",
    )
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="cells in parallel"
    )
    parser.add_argument(
        "--out", type=Path, help="work folder (default bench/out/retrain_strategies[-quick])"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="forget finished runs (corpora are kept)"
    )
    parser.add_argument("--report-only", action="store_true", help="re-render from results.json")
    parser.add_argument(
        "--write-doc",
        action="store_true",
        help="rewrite the efficacy section of docs/benchmarks.md",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    size = SIZES["quick" if args.quick else "default"]
    if args.seeds:
        size = replace(size, seeds=args.seeds)
    if args.scenarios:
        size = replace(size, scenarios=tuple(args.scenarios))
    if args.epochs:
        size = replace(size, epochs=args.epochs)
    if args.finetune_epochs:
        size = replace(size, finetune_epochs=args.finetune_epochs)
    if args.encoder_layers:
        size = replace(size, encoder_layers=args.encoder_layers)
    config = with_policy(args.policy, parser)
    suffix = "-quick" if args.quick else ""
    out = args.out or OUT / f"retrain_strategies{suffix}"
    json_path = (
        OUT / f"retrain_strategies{suffix}.json" if args.out is None else out / "figures.json"
    )
    out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    command = "python -m bench.retrain_strategies " + shlex.join(sys.argv[1:])
    if args.report_only and not json_path.is_file():
        # an interrupted run: report the cells that finished, and say so
        rows = [
            row for path in sorted(out.glob("cells/*/results.jsonl")) for row in read_rows(path)
        ]
        done = sorted({f"{r['scenario']} seed {r['seed']}" for r in rows})
        facts = {
            "command": command.strip(),
            "machine": machine(),
            "size": {**size.__dict__, "scenarios": list(size.scenarios)},
            "total_seconds": 0,
            "partial": f"interrupted run: {len(done)} of {len(size.scenarios) * size.seeds} "
            f"cells with results, the last ones part-way ({', '.join(done)})",
        }
    elif args.report_only:
        saved = json.loads(json_path.read_text())
        rows = saved.pop("rows")
        keys = ("command", "machine", "size", "total_seconds", "run", "partial")
        facts = {k: saved[k] for k in keys if k in saved}
        if "policy" in saved.get("run", {}):  # the policy that run measured
            config = config.model_copy(
                update={"retrain": RetrainConfig.model_validate(saved["run"]["policy"])}
            )
    else:
        if args.fresh:
            shutil.rmtree(out / "cells", ignore_errors=True)
            shutil.rmtree(out / "v1", ignore_errors=True)
        started = time.perf_counter()
        cells = len(size.scenarios) * size.seeds
        finished = 0

        def on_cell(scenario: str, seed: int, seconds: float) -> None:
            nonlocal finished
            finished += 1
            console.log(f"cell {finished}/{cells}: {scenario} seed {seed} done in {seconds:.0f} s")

        run = run_experiment(out, size, config, workers=args.workers, on_cell=on_cell)
        rows = run.pop("rows")
        facts = {
            "command": command.strip(),
            "machine": machine(),
            "size": {**size.__dict__, "scenarios": list(size.scenarios)},
            "total_seconds": round(time.perf_counter() - started, 1),
            "run": run,
        }
    summary = render(out, facts, rows, json_path, config.retrain)
    show(summary, console)
    console.print(f"report: {out / 'report.html'}; figures: {json_path}")
    if args.write_doc:
        from bench.suite import rewrite_section

        changed = rewrite_section(
            BENCHMARKS_DOC, SECTION, (out / "retrain_strategies.md").read_text()
        )
        verdict = "rewritten" if changed else "unchanged"
        console.print(f"{BENCHMARKS_DOC}: efficacy section {verdict}")


if __name__ == "__main__":
    main()

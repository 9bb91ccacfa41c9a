"""``python -m bench.retrain_strategies --quick`` end to end: every strategy's path runs.

Real corpora (synthetic PDFs through preprocessing), a real V1 (a one-layer cut of the packaged
encoder, one epoch), the simulated reviewer through the feedback quality rules, the product's
retrain-dataset builder and trainer, the gate. Tiny models trained for seconds score near zero,
so this checks the benchmark's outputs and bookkeeping, not its findings (those are the default
size's, ``make bench-efficacy``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.local, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_benchmark_writes_every_strategy_and_target(tmp_path: Path) -> None:
    out = tmp_path / "rs"
    subprocess.run(
        [sys.executable, "-m", "bench.retrain_strategies", "--quick", "--out", str(out)],
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    figures = json.loads((out / "figures.json").read_text())
    rows = figures["rows"]
    strategies = {row["strategy"] for row in rows}
    assert strategies == {
        "no_retrain",
        "feedback_only",
        "full_retrain",
        "targeted",
        "replay_0",
        "replay_0.1",
        "replay_0.5",
        "random",
    }
    assert {row["scenario"] for row in rows} == {"new_template", "class_mix"}
    assert len(rows) == 2 * 8 * 2  # scenarios x strategies x models
    by = {(r["scenario"], r["strategy"], r["task"]): r for r in rows}
    for scenario in ("new_template", "class_mix"):
        for task in ("classify", "extract"):
            full = by[(scenario, "full_retrain", task)]
            targeted = by[(scenario, "targeted", task)]
            assert full["examples_seen"] > 0 and targeted["examples_seen"] > 0
            # the same budget, unless the targeted one (oversampled) exceeds the whole pool
            budget = min(targeted["train_rows"], full["train_rows"])
            assert by[(scenario, "random", task)]["train_rows"] == budget
            assert targeted["sources"]["replay"] > 0
            # replay_ratio 0 replays only what min_docs_per_entity asks for
            assert (
                by[(scenario, "replay_0", task)]["sources"]["replay"]
                < targeted["sources"]["replay"]
            )
            for holdout in ("old", "drifted"):
                assert 0.0 <= targeted["scores"][holdout]["metric"] <= 1.0
            assert isinstance(targeted["gate"]["blessed"], bool)
    names = {t["name"] for t in figures["targets"]}
    assert "targeted compute (examples seen, both models) vs full retrain" in names
    assert figures["readme_rows"] and "| target | scenario |" in figures["markdown"]
    assert (out / "plots" / "new_template.png").read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in (out / "report.html").read_text()

"""The docloop CLI: exit codes and the summary line people and scripts read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docloop.cli import app
from tests import documents

pytestmark = pytest.mark.unit


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def test_preprocess_prints_summary_and_exits_zero(tmp_path: Path) -> None:
    documents.write(tmp_path / "in", "a.pdf", documents.born_digital_pdf([["Invoice"]]))
    documents.write(tmp_path / "in", "b.pdf", b"")
    code, output = run(
        "preprocess", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")
    )
    assert code == 0, output
    assert re.search(r"processed=1 quarantined=1 skipped=0 ", output), output


def test_preprocess_exits_one_when_nothing_is_readable(tmp_path: Path) -> None:
    documents.write(tmp_path / "in", "b.pdf", b"not a pdf at all")
    code, output = run(
        "preprocess", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")
    )
    assert code == 1
    assert "could be processed" in output


def test_preprocess_exits_two_when_output_is_not_writable(tmp_path: Path) -> None:
    documents.write(tmp_path / "in", "a.pdf", documents.born_digital_pdf([["Invoice"]]))
    blocker = documents.write(tmp_path, "blocker", b"x")
    code, output = run("preprocess", "--input", str(tmp_path / "in"), "--output", str(blocker))
    assert code == 2
    assert "not writable" in output


def test_invalid_config_exits_two(tmp_path: Path) -> None:
    bad = documents.write(tmp_path, "docloop.yaml", b"preprocess:\n  dpi: 5\n")
    code, output = run("config", "--config", str(bad))
    assert code == 2
    assert "preprocess.dpi" in output


def test_synth_writes_a_corpus(tmp_path: Path) -> None:
    code, output = run("synth", "--out", str(tmp_path / "c"), "--docs", "3", "--seed", "1")
    assert code == 0, output
    assert len(list((tmp_path / "c").glob("*.pdf"))) == 3
    assert len((tmp_path / "c" / "labels.jsonl").read_text().splitlines()) == 3


def test_synth_rejects_unknown_scenario(tmp_path: Path) -> None:
    code, output = run("synth", "--out", str(tmp_path / "c"), "--docs", "1", "--scenario", "nope")
    assert code == 2
    assert "new_template" in output


def _settings(tmp_path: Path) -> Path:
    text = (
        f"data_root: {tmp_path / 'data'}\n"
        f"store:\n  url: sqlite:///{tmp_path / 'state.db'}\n"
        f"tracking:\n  mlflow_tracking_uri: sqlite:///{tmp_path / 'mlflow.db'}\n"
    )
    return documents.write(tmp_path, "docloop.yaml", text.encode())


def test_status_on_a_new_store_prints_empty_tables(tmp_path: Path) -> None:
    code, output = run("status", "--config", str(_settings(tmp_path)))
    assert code == 0
    for title in ("Model versions", "Promotion audit", "Deployments", "Drift checks", "Retrain"):
        assert title in output


def test_deploy_without_any_model_says_to_bootstrap_first(tmp_path: Path) -> None:
    code, output = run("deploy", "--config", str(_settings(tmp_path)))
    assert code == 2 and "run the bootstrap pipeline first" in output
    code, output = run("rollback", "--config", str(_settings(tmp_path)))
    assert code == 0 and "nothing to roll back" in output

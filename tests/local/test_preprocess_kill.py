"""SIGKILL a preprocess run mid-way, run it again: the same output as one uninterrupted run.

The killed run is a real ``docloop preprocess`` process with real OCR workers; the test checks
that finished documents survive and are skipped, that no worker (or OCR program) outlives it, and
that the re-run removes the temporary folder the killed run could not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from docloop.config import PreprocessConfig
from docloop.documents.preprocess import WORKSPACE_PREFIX, preprocess, read_page_records
from docloop.storage import Storage
from tests import documents

pytestmark = pytest.mark.slow

SCANS = 6


def _batch(folder: Path) -> None:
    for index in range(SCANS):
        lines = [f"Invoice {index:04d}", f"Total {index * 7 + 3}.50 EUR", "Payer Aetna"]
        image = documents.text_image(lines, (1400, 400))
        documents.write(folder, f"scan-{index}.png", documents.image_bytes(image, "PNG"))
    documents.write(folder, "digital.pdf", documents.born_digital_pdf([["Referral letter"]]))
    documents.write(folder, "broken.pdf", b"%PDF-1.4\n")


def _command(folder: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "docloop.cli", "preprocess",
        "--input", str(folder), "--output", str(out), "--workers", "1",
    ]  # fmt: skip


def _comparable(out: Path) -> tuple[list[tuple[object, ...]], list[str]]:
    records = [
        (r.doc_id, r.page, r.source_uri, r.words, r.boxes, r.source, r.settings_digest)
        for r in read_page_records(Storage(), str(out))
    ]
    manifests = sorted(path.name for path in (out / "documents").iterdir())
    return records, manifests


def _alive(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            continue
    return living


def test_a_killed_run_resumes_to_the_same_output(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _batch(folder)
    reference = tmp_path / "reference"
    preprocess(str(folder), str(reference), PreprocessConfig(), Storage(), workers=1)

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    out = tmp_path / "out"
    log = (tmp_path / "killed.log").open("wb")
    process = subprocess.Popen(_command(folder, out), env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    finished: list[str] = []
    while time.monotonic() < deadline and process.poll() is None:
        manifests = out / "documents"
        finished = (
            [p.name for p in manifests.glob("*.processed.json")] if manifests.exists() else []
        )
        if len(finished) >= 3:  # the digital PDF and at least two OCR'd scans
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed; make the batch larger"
    family = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    assert family, "no worker process was running"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 15
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(family) == [], "processes outlived the killed run"
    assert list(scratch.glob(f"{WORKSPACE_PREFIX}*")), "the killed run left no workspace?"

    rerun = subprocess.run(
        _command(folder, out), env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] >= len(finished)
    assert summary["processed"] + summary["skipped"] == SCANS + 1
    assert list(scratch.glob(f"{WORKSPACE_PREFIX}*")) == []
    assert _comparable(out) == _comparable(reference)
    assert (out / "quarantine.jsonl").read_text() == (reference / "quarantine.jsonl").read_text()

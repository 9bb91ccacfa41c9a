"""One document can only quarantine itself: worker memory and time budgets, real OCR workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docloop.config import PreprocessConfig
from docloop.documents.preprocess import preprocess, read_page_records
from docloop.storage import Storage
from tests import documents

pytestmark = pytest.mark.unit


def _good_batch(folder: Path) -> None:
    documents.write(
        folder,
        "scan.png",
        documents.image_bytes(documents.text_image(["Invoice total 1,234.56"]), "PNG"),
    )
    documents.write(folder, "digital.pdf", documents.born_digital_pdf([["Referral letter"]]))


def test_a_bomb_past_the_pixel_cap_only_quarantines_itself(tmp_path: Path) -> None:
    """max_pixels raised so intake lets the bomb through: the worker's memory cap catches it."""
    folder = tmp_path / "in"
    _good_batch(folder)
    frames = [documents.text_image(["Invoice 12"]), documents.text_image(["Total 9.00"])]
    bomb = documents.multi_frame_tiff([*frames, (40_000, 40_000)])  # 1.6 GB once decoded
    documents.write(folder, "bomb.tiff", bomb)
    config = PreprocessConfig(max_pixels=2_000_000_000, worker_memory_mb=1200, dpi=100)
    result = preprocess(str(folder), str(tmp_path / "out"), config, Storage(), workers=1)
    bad = {(e.page, e.code) for e in result.quarantine if e.source_uri.endswith("bomb.tiff")}
    assert bad in ({(2, "too_expensive")}, {(2, "worker_crashed")})
    reason = next(e.reason for e in result.quarantine if e.page == 2)
    assert "1200 MB" in reason
    names = {
        r.source_uri.rsplit("/", 1)[-1] for r in read_page_records(Storage(), str(tmp_path / "out"))
    }
    assert names == {"scan.png", "digital.pdf", "bomb.tiff"}  # bomb.tiff: its two good frames
    assert (tmp_path / "out" / "quarantine.jsonl").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["processed"], summary["quarantined_pages"]) == (3, 1)


def test_a_document_over_its_time_budget_only_quarantines_itself(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _good_batch(folder)
    lines = [f"Line {i} of a long and dense page, set in small type" for i in range(50)]
    dense = documents.text_image(lines, (2400, 3300))
    # listed first, so the one worker is killed on it before the scan's turn
    documents.write(folder, "a-slow.pdf", documents.scanned_pdf([dense, dense, dense]))
    config = PreprocessConfig(document_timeout_s=4.0, dpi=300)
    result = preprocess(str(folder), str(tmp_path / "out"), config, Storage(), workers=1)
    slow = [e for e in result.quarantine if e.source_uri.endswith("a-slow.pdf")]
    assert {e.code for e in slow} == {"too_expensive"}
    assert len(slow) == 3
    assert "document_timeout_s" in slow[0].reason
    assert result.processed == 2  # the scan (OCR, 1 page) and the digital PDF

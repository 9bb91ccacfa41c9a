"""Page records reused by a re-run report where the document is now, not where it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docloop.config import PreprocessConfig
from docloop.documents.preprocess import preprocess, read_page_records
from docloop.storage import Storage
from tests import documents

pytestmark = pytest.mark.unit


def test_a_renamed_document_keeps_its_records_under_its_new_name(tmp_path: Path) -> None:
    scan = documents.text_image(["Invoice total 1,234.56", "Payer Aetna"])
    blank = documents.text_image([])
    documents.write(tmp_path / "in", "old/scan.png", documents.image_bytes(scan, "PNG"))
    documents.write(tmp_path / "in", "old/mixed.pdf", documents.scanned_pdf([scan, blank]))
    storage, out = Storage(), str(tmp_path / "out")
    config = PreprocessConfig(dpi=100, fallback_engine="none")
    first = preprocess(str(tmp_path / "in"), out, config, storage, workers=1)
    assert first.processed == 2
    (tmp_path / "in" / "old").rename(tmp_path / "in" / "new")

    again = preprocess(str(tmp_path / "in"), out, config, storage, workers=1)

    assert (again.skipped, again.pages) == (2, 0)  # nothing re-OCR'd
    sources = {
        Path(r.source_uri).relative_to(tmp_path / "in").as_posix()
        for r in read_page_records(storage, out)
    }
    assert sources == {"new/scan.png", "new/mixed.pdf"}
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "out" / "documents").glob("*.json")]
    assert sorted(Path(m["source_uri"]).parent.name for m in manifests) == ["new", "new"]
    (entry,) = again.quarantine  # the blank page, carried over under the new name
    assert entry.source_uri.endswith("new/mixed.pdf") and entry.page == 1
    quarantine = (tmp_path / "out" / "quarantine.jsonl").read_text()
    assert "new/mixed.pdf" in quarantine and "old/" not in quarantine

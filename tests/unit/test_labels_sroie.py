"""Labels by value on real receipts: the 16 SROIE sample receipts, preprocessed here.

The floor is what the default preprocess and value location gave when it was set (tesseract,
psm 3: 55 of 64 values located, 85.9 %; per field company 13, date 12, address 15, total 15 of 16);
better OCR may only raise it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from docloop.config import PreprocessConfig, SchemaConfig
from docloop.datasets.initial import build_initial_dataset
from docloop.documents.preprocess import preprocess
from docloop.storage import Storage

pytestmark = pytest.mark.unit

SAMPLE = Path(
    os.environ.get(
        "DOCLOOP_SROIE_SAMPLE",
        Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "sroie-sample",
    )
)
"""``../shared/datasets/sroie-sample`` from the project root, or $DOCLOOP_SROIE_SAMPLE."""
FLOOR = 0.80
FIELD_FLOOR = 0.70

RECEIPT = SchemaConfig(
    doc_types=["receipt"],
    fields={"company": "text", "date": "date", "address": "text", "total": "amount"},
)


@pytest.mark.skipif(not (SAMPLE / "img").is_dir(), reason=f"no SROIE sample at {SAMPLE}")
@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_sroie_values_are_located_above_the_floor(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    preprocess(str(SAMPLE / "img"), str(pages), PreprocessConfig(), Storage())
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"source": key.stem + ".jpg", "fields": json.loads(key.read_text())}) + "\n"
            for key in sorted((SAMPLE / "key").glob("*.json"))
        )
    )
    manifest = build_initial_dataset(str(pages), str(labels), str(tmp_path / "ds"), schema=RECEIPT)
    report = manifest.labels
    assert report is not None
    total = report.total
    print({name: row.model_dump() for name, row in report.coverage.items()})
    assert total.given == 64
    assert total.located / total.given >= FLOOR
    for name, row in report.coverage.items():
        assert row.located / row.given >= FIELD_FLOOR, name
    unlocated = [i for i in report.issues if i.code == "not_located"]
    assert len(unlocated) == total.not_located  # every miss is listed, none dropped
    assert all(i.document.endswith(".jpg") and i.value for i in unlocated)
    assert sum(manifest.counts.values()) == 16

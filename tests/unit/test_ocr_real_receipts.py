"""OCR on real scanned receipts (the SROIE sample): recall floors measured with the defaults.

Floors sit below what the default settings measure on these receipts (see the report of
``python -m bench.real_documents``), so a real regression breaks them and noise does not.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.real_documents import OcrScore, ocr_stage
from docloop.config import PreprocessConfig

pytestmark = pytest.mark.unit

SAMPLE = Path(
    os.environ.get("DOCLOOP_SROIE_SAMPLE")
    or Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "sroie-sample"
)
RECEIPTS = ["000", "156", "390"]
# measured with the defaults (tesseract fast, psm 6): token recall 0.72, character recall 0.95
TOKEN_FLOOR = 0.66
CHAR_FLOOR = 0.92


def _sample() -> Path:
    if (SAMPLE / "img").is_dir():
        return SAMPLE
    pytest.skip(f"the SROIE sample is not at {SAMPLE} (set DOCLOOP_SROIE_SAMPLE)")


def score(config: PreprocessConfig, tmp_path: Path, names: list[str]) -> OcrScore:
    return ocr_stage(_sample(), names, config, tmp_path)


def test_default_ocr_reads_real_receipts(tmp_path: Path) -> None:
    figures = score(PreprocessConfig(), tmp_path, RECEIPTS).figures()
    assert figures["receipts_without_words"] == 0
    assert figures["token_recall"] >= TOKEN_FLOOR, figures
    assert figures["char_recall"] >= CHAR_FLOOR, figures


@pytest.mark.slow
def test_rapidocr_reads_the_whole_sample(tmp_path: Path) -> None:
    names = sorted(p.stem for p in (_sample() / "img").glob("*.jpg"))
    config = PreprocessConfig(ocr_engine="rapidocr", fallback_engine="none")
    figures = score(config, tmp_path, names).figures()
    assert figures["token_recall"] >= 0.88, figures
    assert figures["value_ceiling"] >= 0.75, figures

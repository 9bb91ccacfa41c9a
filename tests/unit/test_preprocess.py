"""preprocess end to end on a real batch: good documents next to every kind of bad input."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from docloop.config import PreprocessConfig
from docloop.documents.preprocess import PreprocessResult, preprocess, read_page_records
from docloop.documents.schema import PageRecord
from docloop.errors import NothingToProcess, StorageError
from docloop.storage import Storage
from tests import documents

pytestmark = pytest.mark.unit

CONFIG = PreprocessConfig(max_pages=3, dpi=100)

EXPECTED_QUARANTINE = {
    "empty.pdf": "empty_file",
    "truncated.pdf": "corrupt_pdf",
    "encrypted.pdf": "encrypted_pdf",
    "renamed-zip.pdf": "not_a_pdf",
    "zero-pages.pdf": "empty_pdf",
    "too-many-pages.pdf": "too_many_pages",
    "bomb.png": "image_too_large",
    "garbage.png": "unreadable_image",
    "truncated.png": "unreadable_image",
    "notes.docx": "unsupported_type",
    "blank.png": "empty_page",
    "bad\x07name.pdf": "unsafe_name",
}
GOOD = {"digital.pdf", "scan.png", "mixed-scan.pdf", "scan.tiff"}


def make_batch(folder: Path) -> None:
    """Write four good documents and one of each bad input into ``folder``."""
    digital = documents.born_digital_pdf(
        [["Referral letter", "Patient: Jane Doe", "MRN 4827163"], ["Page two: NPI 1234567890"]]
    )
    documents.write(folder, "digital.pdf", digital)
    scan = documents.text_image(["Invoice total $1,234.56", "Payer Aetna"])
    documents.write(folder, "scan.png", documents.image_bytes(scan, "PNG"))
    documents.write(folder, "scan.tiff", documents.image_bytes(scan.rotate(0), "TIFF"))
    blank = documents.text_image([])
    documents.write(folder, "mixed-scan.pdf", documents.scanned_pdf([scan, blank]))
    documents.write(folder, "blank.png", documents.image_bytes(blank, "PNG"))
    documents.write(folder, "labels.jsonl", b'{"not": "a document"}\n')
    documents.write(folder, "empty.pdf", b"")
    documents.write(folder, "truncated.pdf", digital[: len(digital) // 2])
    documents.write(folder, "encrypted.pdf", documents.born_digital_pdf([["x"]], encrypt="pw"))
    documents.write(folder, "renamed-zip.pdf", b"PK\x03\x04" + b"\x00" * 64)
    documents.write(folder, "zero-pages.pdf", documents.zero_page_pdf())
    documents.write(folder, "too-many-pages.pdf", documents.born_digital_pdf([["p"]] * 4))
    documents.write(folder, "bomb.png", documents.decompression_bomb_png())
    documents.write(folder, "garbage.png", b"\x00garbage" * 40)
    png = documents.image_bytes(scan, "PNG")
    documents.write(folder, "truncated.png", png[: len(png) // 3])
    documents.write(folder, "notes.docx", b"PK\x03\x04docx")
    documents.write(folder, "bad\x07name.pdf", digital + b"\n%different bytes\n")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, PreprocessResult]:
    root = tmp_path_factory.mktemp("batch")
    make_batch(root / "in")
    result = preprocess(str(root / "in"), str(root / "out"), CONFIG, Storage(), workers=2)
    return root / "in", root / "out", result


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def test_every_bad_input_is_quarantined_with_its_reason(
    batch: tuple[Path, Path, PreprocessResult],
) -> None:
    _, out, result = batch
    lines = (out / "quarantine.jsonl").read_text().splitlines()
    reported = [json.loads(line) for line in lines]
    codes = {(_name(e["source_uri"]), e["code"]) for e in reported}
    for name, code in EXPECTED_QUARANTINE.items():
        assert (name, code) in codes, f"{name!r} should be quarantined as {code}"
    assert ("mixed-scan.pdf", "empty_page") in codes  # the blank second page only
    mixed = next(e for e in reported if _name(e["source_uri"]) == "mixed-scan.pdf")
    assert mixed["page"] == 1
    for entry in reported:
        assert len(entry["reason"]) > 20
    assert result.quarantined == len(EXPECTED_QUARANTINE)
    assert result.quarantined_pages == 2  # blank.png's page and mixed-scan.pdf's second page
    assert result.ignored == 1  # labels.jsonl


def test_good_documents_in_the_same_batch_are_processed(
    batch: tuple[Path, Path, PreprocessResult],
) -> None:
    _, out, result = batch
    assert result.processed == len(GOOD)
    records = read_page_records(Storage(), str(out))
    by_name: dict[str, list[PageRecord]] = {}
    for record in records:
        by_name.setdefault(_name(record.source_uri), []).append(record)
    assert set(by_name) == GOOD
    assert [r.source for r in by_name["digital.pdf"]] == ["text_layer", "text_layer"]
    assert by_name["digital.pdf"][0].words[:3] == ["Referral", "letter", "Patient:"]
    assert [r.page for r in by_name["mixed-scan.pdf"]] == [0]
    for name in ("scan.png", "scan.tiff", "mixed-scan.pdf"):
        record = by_name[name][0]
        assert record.source == "ocr"
        assert record.ocr_engine.split()[0] == PreprocessConfig().ocr_engine
        assert {"Invoice", "Aetna"} <= set(record.words)
        assert 50 < record.mean_confidence <= 100
    for record in records:
        assert len(record.words) == len(record.boxes) == len(record.confidences) > 0
        for x0, y0, x1, y1 in record.boxes:
            assert 0 <= x0 <= x1 <= 1000 and 0 <= y0 <= y1 <= 1000
        assert Path(record.image_uri.removeprefix("file://")).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == len(GOOD)
    assert result.summary_line().startswith(f"processed={len(GOOD)} quarantined=")


@pytest.mark.parametrize(
    ("engine", "tolerance"),
    # RapidOCR's word boxes come from its detector's line boxes, which it widens ("unclip") by
    # design: about 4 units off at the median, up to 10 vertically (bench/preprocess.py).
    [("tesseract", 8), ("rapidocr", 12)],
)
def test_text_layer_boxes_agree_with_ocr_boxes(tmp_path: Path, engine: str, tolerance: int) -> None:
    pdf = documents.born_digital_pdf([["Discharge summary for Jane Doe", "Total due 1,234.56"]])
    documents.write(tmp_path / "in", "d.pdf", pdf)
    storage = Storage()
    # 200 dpi: OCR at 100 dpi splits words
    config = PreprocessConfig().model_copy(update={"ocr_engine": engine})
    fast = preprocess(str(tmp_path / "in"), str(tmp_path / "fast"), config, storage, workers=1)
    slow = preprocess(
        str(tmp_path / "in"),
        str(tmp_path / "ocr"),
        config.model_copy(update={"force_ocr": True}),
        storage,
        workers=1,
    )
    assert (fast.pages_text_layer, slow.pages_ocr) == (1, 1)
    layer = read_page_records(storage, str(tmp_path / "fast"))[0]
    ocr = read_page_records(storage, str(tmp_path / "ocr"))[0]
    matcher = difflib.SequenceMatcher(a=layer.words, b=ocr.words, autojunk=False)
    pairs = [
        (layer.boxes[block.a + k], ocr.boxes[block.b + k])
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    ]
    assert len(pairs) >= 0.75 * len(layer.words), (layer.words, ocr.words)
    for a, b in pairs:
        assert all(abs(p - q) <= tolerance for p, q in zip(a, b, strict=True)), (a, b)


def test_rerun_on_unchanged_input_does_no_work(batch: tuple[Path, Path, PreprocessResult]) -> None:
    folder, out, first = batch
    again = preprocess(str(folder), str(out), CONFIG, Storage(), workers=2)
    assert again.processed == 0
    assert again.pages == 0
    assert again.skipped == first.processed
    # quarantined documents are remembered too, with their reasons
    assert sorted(e.model_dump_json() for e in again.quarantine) == sorted(
        e.model_dump_json() for e in first.quarantine
    )


def test_changed_settings_reprocess_and_replace(tmp_path: Path) -> None:
    documents.write(tmp_path / "in", "d.pdf", documents.born_digital_pdf([["Lab report"]]))
    storage = Storage()
    preprocess(str(tmp_path / "in"), str(tmp_path / "out"), CONFIG, storage, workers=1)
    changed = CONFIG.model_copy(update={"dpi": 120})
    second = preprocess(str(tmp_path / "in"), str(tmp_path / "out"), changed, storage, workers=1)
    assert second.processed == 1
    manifests = list((tmp_path / "out" / "documents").iterdir())
    assert len(manifests) == 1 and second.settings_digest in manifests[0].name
    assert read_page_records(storage, str(tmp_path / "out"))[0].dpi == 120


def test_same_bytes_under_two_names_are_processed_once(tmp_path: Path) -> None:
    pdf = documents.born_digital_pdf([["Prescription"]])
    documents.write(tmp_path / "in", "a.pdf", pdf)
    documents.write(tmp_path / "in", "copy/b.pdf", pdf)
    result = preprocess(str(tmp_path / "in"), str(tmp_path / "out"), CONFIG, Storage(), workers=1)
    assert (result.processed, result.duplicates) == (1, 1)


def test_nothing_readable_fails_after_writing_the_reasons(tmp_path: Path) -> None:
    documents.write(tmp_path / "in", "empty.pdf", b"")
    documents.write(
        tmp_path / "in", "locked.pdf", documents.born_digital_pdf([["x"]], encrypt="pw")
    )
    with pytest.raises(NothingToProcess, match=r"quarantine\.jsonl"):
        preprocess(str(tmp_path / "in"), str(tmp_path / "out"), CONFIG, Storage(), workers=1)
    assert len((tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()) == 2


def test_empty_input_prefix_fails(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(NothingToProcess, match="no files"):
        preprocess(str(tmp_path / "in"), str(tmp_path / "out"), CONFIG, Storage(), workers=1)


def test_unwritable_output_fails_before_any_work(tmp_path: Path) -> None:
    documents.write(tmp_path / "in", "d.pdf", documents.born_digital_pdf([["x"]]))
    blocker = documents.write(tmp_path, "file-not-folder", b"x")
    with pytest.raises(StorageError):
        preprocess(str(tmp_path / "in"), str(blocker / "out"), CONFIG, Storage(), workers=1)

"""Intake checks that need no OCR: names, file types, PDFs and images that must be refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from docloop.config import PreprocessConfig
from docloop.documents.intake import check_name, classify_name, inspect_document, sniff
from docloop.errors import QuarantinedDocument
from tests import documents

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "name", ["../etc/passwd.pdf", "a/../../b.pdf", "/abs/x.pdf", "bad\x07name.pdf", "tab\there.pdf"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(QuarantinedDocument) as caught:
        check_name(name)
    assert caught.value.code == "unsafe_name"
    assert "rename" in caught.value.reason


@pytest.mark.parametrize("name", ["a.pdf", "folder/b c.pdf", "x..y.pdf", "ünïcode.png"])
def test_ordinary_names_pass(name: str) -> None:
    check_name(name)


def test_classify_name() -> None:
    assert classify_name("x/scan.TIFF") == "document"
    assert classify_name("labels.jsonl") == "sidecar"
    assert classify_name(".DS_Store") == "sidecar"
    assert classify_name("report.docx") == "unsupported"


def test_sniff_detects_real_types() -> None:
    assert sniff(documents.born_digital_pdf([["x"]])) == "pdf"
    image = documents.text_image(["x"])
    assert sniff(documents.image_bytes(image, "PNG")) == "png"
    assert sniff(documents.image_bytes(image, "JPEG")) == "jpeg"
    assert sniff(documents.image_bytes(image, "TIFF")) == "tiff"
    assert sniff(b"PK\x03\x04 not a pdf") is None


def _inspect(tmp_path: Path, name: str, data: bytes, **caps: int) -> object:
    path = documents.write(tmp_path, "copy", data)
    return inspect_document(f"file:///{name}", name, data, path, PreprocessConfig(**caps))


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("empty.pdf", b"", "empty_file"),
        ("renamed.pdf", b"PK\x03\x04" + b"\x00" * 100, "not_a_pdf"),
        ("zero.pdf", documents.zero_page_pdf(), "empty_pdf"),
        ("locked.pdf", documents.born_digital_pdf([["secret"]], encrypt="pw"), "encrypted_pdf"),
        ("bomb.png", documents.decompression_bomb_png(), "image_too_large"),
        ("noise.png", b"\x00\x01garbage" * 50, "unreadable_image"),
    ],
)
def test_bad_files_are_refused_with_actionable_reasons(
    tmp_path: Path, name: str, data: bytes, code: str
) -> None:
    with pytest.raises(QuarantinedDocument) as caught:
        _inspect(tmp_path, name, data)
    assert caught.value.code == code
    assert ";" in caught.value.reason  # what is wrong; what to do


def test_truncated_pdf_is_corrupt(tmp_path: Path) -> None:
    data = documents.born_digital_pdf([["Patient: Jane Doe"]] * 2)
    with pytest.raises(QuarantinedDocument) as caught:
        _inspect(tmp_path, "cut.pdf", data[: len(data) // 2])
    assert caught.value.code == "corrupt_pdf"


def test_truncated_png_is_unreadable(tmp_path: Path) -> None:
    data = documents.image_bytes(documents.text_image(["hello"]), "PNG")
    with pytest.raises(QuarantinedDocument) as caught:
        _inspect(tmp_path, "cut.png", data[: len(data) // 2])
    assert caught.value.code == "unreadable_image"


def test_page_cap_and_file_cap(tmp_path: Path) -> None:
    four_pages = documents.born_digital_pdf([["page"]] * 4)
    with pytest.raises(QuarantinedDocument) as caught:
        _inspect(tmp_path, "long.pdf", four_pages, max_pages=3)
    assert caught.value.code == "too_many_pages"
    assert "4 pages" in caught.value.reason
    plan = _inspect(tmp_path, "long.pdf", four_pages, max_pages=4)
    assert plan.page_count == 4  # type: ignore[attr-defined]


def test_oversized_pdf_page_is_refused(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "poster.pdf"
    pdf = canvas.Canvas(str(path), pagesize=(14_000, 14_000), invariant=1)
    pdf.drawString(100, 100, "huge")
    pdf.showPage()
    pdf.save()
    with pytest.raises(QuarantinedDocument) as caught:
        _inspect(tmp_path, "poster.pdf", path.read_bytes())
    assert caught.value.code == "page_too_large"


def test_text_layer_is_planned_for_born_digital_only(tmp_path: Path) -> None:
    digital = _inspect(tmp_path, "d.pdf", documents.born_digital_pdf([["Patient: Jane Doe"], []]))
    layer = digital.text_layer  # type: ignore[attr-defined]
    assert layer is not None
    assert layer[0].words == ["Patient:", "Jane", "Doe"]
    assert layer[1].words == []
    scan = documents.scanned_pdf([documents.text_image(["Patient: Jane Doe"])])
    scanned = _inspect(tmp_path, "s.pdf", scan)
    assert all(not page.words for page in scanned.text_layer)  # type: ignore[attr-defined]
    forced = inspect_document(
        "file:///d.pdf",
        "d.pdf",
        documents.born_digital_pdf([["x"]]),
        documents.write(tmp_path, "f.pdf", documents.born_digital_pdf([["x"]])),
        PreprocessConfig(force_ocr=True),
    )
    assert forced.text_layer is None

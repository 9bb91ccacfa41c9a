"""The synthetic corpus generator: determinism, coverage, drift scenarios and exact ground truth."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import string
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from docloop.documents.synth import (
    DOC_TYPES,
    ENTITY_TYPES,
    LABELS_FILE,
    SCENARIOS,
    SynthDocument,
    generate_corpus,
)
from docloop.documents.synth.scan import PageScan, rotate_box
from docloop.errors import InvalidInput

pytestmark = pytest.mark.unit

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdfimages") is None,
    reason="poppler-utils (pdftotext, pdfimages) is not installed",
)
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract is not installed"
)

XHTML = "{http://www.w3.org/1999/xhtml}"
US_DATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")
VENDOR_DATE = re.compile(r"^(\d{1,2} [A-Z][a-z]{2} \d{4}|\d{4}-\d{2}-\d{2})$")
US_AMOUNT = re.compile(r"^\$\d{1,3}(,\d{3})*\.\d{2}$")
VENDOR_AMOUNT = re.compile(r"^(USD \d{1,3}(\.\d{3})*,\d{2}|\d+\.\d{2} USD)$")


def read_labels(folder: Path) -> list[SynthDocument]:
    lines = (folder / LABELS_FILE).read_text(encoding="utf-8").splitlines()
    return [SynthDocument.model_validate_json(line) for line in lines]


def text_layer(pdf: Path) -> list[list[tuple[str, list[float]]]]:
    """Words and 0-1000 boxes per page from `pdftotext -bbox`."""
    out = subprocess.run(
        ["pdftotext", "-bbox", "-q", str(pdf), "-"], capture_output=True, check=True
    ).stdout
    pages = []
    for page in ET.fromstring(out).iter(f"{XHTML}page"):
        width, height = float(page.attrib["width"]), float(page.attrib["height"])
        words = []
        for word in page.iter(f"{XHTML}word"):
            a = word.attrib
            box = [
                1000 * float(a["xMin"]) / width,
                1000 * float(a["yMin"]) / height,
                1000 * float(a["xMax"]) / width,
                1000 * float(a["yMax"]) / height,
            ]
            words.append(((word.text or "").strip(), box))
        pages.append(words)
    return pages


def iou(a: list[int] | list[float], b: list[int] | list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def base_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SynthDocument]]:
    folder = tmp_path_factory.mktemp("base")
    return folder, generate_corpus(folder, 60, 1234, "base", scanned_fraction=0.0)


@pytest.fixture(scope="module")
def scanned_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SynthDocument]]:
    folder = tmp_path_factory.mktemp("scanned")
    return folder, generate_corpus(folder, 3, 99, "base", scanned_fraction=1.0)


# --- API contract ---------------------------------------------------------------------------


def test_invalid_arguments_raise_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        generate_corpus(tmp_path, 2, 0, "nope")
    for name in SCENARIOS:
        assert name in str(excinfo.value)
    with pytest.raises(InvalidInput):
        generate_corpus(tmp_path, 0, 0)
    with pytest.raises(InvalidInput):
        generate_corpus(tmp_path, 1, 0, scanned_fraction=1.5)
    assert not list(tmp_path.iterdir())


def test_writes_pdfs_labels_and_reports_progress(tmp_path: Path) -> None:
    seen: list[int] = []
    docs = generate_corpus(tmp_path, 5, 7, scanned_fraction=0.4, on_document=seen.append)
    assert seen == [0, 1, 2, 3, 4]
    assert read_labels(tmp_path) == docs
    assert sorted(p.name for p in tmp_path.glob("*.pdf")) == sorted(d.file_name for d in docs)
    for index, doc in enumerate(docs):
        data = (tmp_path / doc.file_name).read_bytes()
        assert data.startswith(b"%PDF")
        assert doc.doc_id == hashlib.sha256(data).hexdigest()
        assert doc.file_name == f"base-{index:05d}-{doc.doc_type}.pdf"
        assert doc.template.startswith(f"{doc.doc_type}/")
        assert (doc.scenario, doc.seed) == ("base", 7)
        for entity in doc.entities:
            assert entity.value == " ".join(w.text for w in entity.words)
            assert entity.page < doc.page_count


def test_same_arguments_give_identical_bytes_and_seed_matters(tmp_path: Path) -> None:
    runs = {}
    for name, docs, seed in (("a", 4, 5), ("b", 4, 5), ("prefix", 2, 5), ("other", 4, 6)):
        runs[name] = generate_corpus(tmp_path / name, docs, seed, scanned_fraction=0.5)
    assert any(d.scanned for d in runs["a"]) and not all(d.scanned for d in runs["a"])
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # document i does not depend on the corpus size
    assert runs["prefix"] == runs["a"][:2]
    # another seed gives other documents
    assert {d.doc_id for d in runs["other"]}.isdisjoint({d.doc_id for d in runs["a"]})


# --- coverage and scenarios -----------------------------------------------------------------


def test_base_corpus_covers_types_entities_and_templates(
    base_corpus: tuple[Path, list[SynthDocument]],
) -> None:
    _, docs = base_corpus
    assert set(Counter(d.doc_type for d in docs)) == set(DOC_TYPES)
    assert {e.type for d in docs for e in d.entities} == set(ENTITY_TYPES)
    templates: dict[str, set[str]] = {}
    for doc in docs:
        templates.setdefault(doc.doc_type, set()).add(doc.template.split("/")[1])
    assert all(len(found) >= 3 for found in templates.values()), templates
    assert "D" not in set().union(*templates.values())
    for doc in docs:  # one label per entity type, several entities per document
        types = [e.type for e in doc.entities]
        assert len(types) == len(set(types)) and len(types) >= 5, doc
    long = [d for d in docs if d.page_count == 2]
    assert long and {d.doc_type for d in long} <= {"lab_report", "discharge_summary"}
    assert all(any(e.page == 1 for e in d.entities) for d in long)
    assert sum(d.page_count == 1 for d in docs) > 0.8 * len(docs)


def test_new_template_uses_template_d_for_exactly_two_types(tmp_path: Path) -> None:
    docs = generate_corpus(tmp_path, 36, 3, "new_template", scanned_fraction=0.0)
    with_d = {d.doc_type for d in docs if d.template.endswith("/D")}
    assert len(with_d) == 2
    for doc_type in with_d:
        own = [d for d in docs if d.doc_type == doc_type]
        assert sum(d.template.endswith("/D") for d in own) > len(own) / 2


def test_class_mix_shifts_type_frequencies(
    tmp_path: Path, base_corpus: tuple[Path, list[SynthDocument]]
) -> None:
    base = Counter(d.doc_type for d in base_corpus[1])
    mixed = Counter(
        d.doc_type for d in generate_corpus(tmp_path, 60, 1234, "class_mix", scanned_fraction=0.0)
    )
    assert set(base.values()) == {10}  # balanced
    assert mixed["invoice"] >= 15 > base["invoice"]
    assert mixed["invoice"] + mixed["lab_report"] > 30
    assert all(mixed[t] < 10 for t in DOC_TYPES if t not in ("invoice", "lab_report"))


def test_new_vendor_changes_entity_formats(
    tmp_path: Path, base_corpus: tuple[Path, list[SynthDocument]]
) -> None:
    vendor = generate_corpus(tmp_path, 18, 1234, "new_vendor", scanned_fraction=0.0)

    def values(docs: list[SynthDocument], *types: str) -> list[str]:
        return [e.value for d in docs for e in d.entities if e.type in types]

    base_docs = base_corpus[1]
    assert all(US_DATE.match(v) for v in values(base_docs, "date_of_birth", "date_of_service"))
    assert all(VENDOR_DATE.match(v) for v in values(vendor, "date_of_birth", "date_of_service"))
    assert all(US_AMOUNT.match(v) for v in values(base_docs, "total_amount"))
    assert all(VENDOR_AMOUNT.match(v) for v in values(vendor, "total_amount"))
    assert all(re.match(r"^MRN-[A-Z]{2}-\d{6}$", v) for v in values(vendor, "mrn"))
    assert not any(v.startswith("MRN-") for v in values(base_docs, "mrn"))
    assert all(re.match(r"^[A-Z]+, [A-Z][a-z]+$", v) for v in values(vendor, "patient_name"))
    assert set(values(vendor, "payer")).isdisjoint(values(base_docs, "payer"))


def test_scan_quality_scans_most_documents_harder(tmp_path: Path) -> None:
    docs = generate_corpus(tmp_path, 6, 4, "scan_quality")
    assert sum(d.scanned for d in docs) >= 4


# --- ground truth ---------------------------------------------------------------------------


@needs_poppler
def test_born_digital_labels_match_the_text_layer(
    base_corpus: tuple[Path, list[SynthDocument]],
) -> None:
    folder, docs = base_corpus
    checked = 0
    for doc in docs:
        assert not doc.scanned
        pages = text_layer(folder / doc.file_name)
        assert len(pages) == doc.page_count
        for entity in doc.entities:
            for word in entity.words:
                best = max(
                    (iou(word.box, box) for text, box in pages[entity.page] if text == word.text),
                    default=0.0,
                )
                assert best > 0.5, (doc.file_name, entity.type, word)
                checked += 1
    assert checked > 300


def test_rotate_box_follows_pillow_rotation() -> None:
    image = Image.new("L", (1700, 2200), 255)
    ImageDraw.Draw(image).rectangle((200, 300, 500, 340), fill=0)
    for angle in (-3.0, -0.7, 1.0, 2.5):
        rotated = np.asarray(image.rotate(angle, expand=False, fillcolor=255)) < 128
        ys, xs = np.nonzero(rotated)
        expected = [
            1000 * xs.min() / 1700,
            1000 * ys.min() / 2200,
            1000 * (xs.max() + 1) / 1700,
            1000 * (ys.max() + 1) / 2200,
        ]
        box = [
            round(1000 * 200 / 1700),
            round(1000 * 300 / 2200),
            round(1000 * 501 / 1700),
            round(1000 * 341 / 2200),
        ]
        got = rotate_box(box, PageScan(1700, 2200, angle))
        assert all(abs(g - e) <= 2 for g, e in zip(got, expected, strict=True)), (
            angle,
            got,
            expected,
        )


@needs_poppler
def test_scanned_documents_are_image_only_at_200_dpi(
    scanned_corpus: tuple[Path, list[SynthDocument]],
) -> None:
    folder, docs = scanned_corpus
    for doc in docs:
        assert doc.scanned
        pdf = folder / doc.file_name
        assert all(not words for words in text_layer(pdf))
        listing = subprocess.run(
            ["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[2:]
        assert len(listing) == doc.page_count  # one image per page
        for row in listing:
            cols = row.split()
            width, height, x_ppi, y_ppi = int(cols[3]), int(cols[4]), int(cols[12]), int(cols[13])
            assert abs(x_ppi - 200) <= 2 and abs(y_ppi - 200) <= 2
            assert 1600 <= width <= 1720 and 2150 <= height <= 2350


@needs_tesseract
@needs_poppler
def test_ocr_recovers_entities_inside_their_label_boxes(
    scanned_corpus: tuple[Path, list[SynthDocument]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytesseract
    from pdf2image import convert_from_path

    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    folder, docs = scanned_corpus

    def ocr(image: Image.Image) -> list[tuple[str, float, float]]:
        data = pytesseract.image_to_data(image, output_type=pytesseract.Output.DICT)
        width, height = image.size
        return [
            (text, 1000 * (left + w / 2) / width, 1000 * (top + h / 2) / height)
            for text, left, top, w, h in zip(
                data["text"], data["left"], data["top"], data["width"], data["height"], strict=True
            )
            if text.strip()
        ]

    images = [(d, convert_from_path(folder / d.file_name, dpi=200)) for d in docs]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        ocr_pages = [list(pool.map(ocr, pages)) for _, pages in images]

    def clean(text: str) -> str:
        return text.strip(string.punctuation + string.whitespace).lower()

    hits = total = 0
    for (doc, _), pages in zip(images, ocr_pages, strict=True):
        for entity in doc.entities:
            pad = 5
            x0 = min(w.box[0] for w in entity.words) - pad
            y0 = min(w.box[1] for w in entity.words) - pad
            x1 = max(w.box[2] for w in entity.words) + pad
            y1 = max(w.box[3] for w in entity.words) + pad
            found = " ".join(
                t for t, cx, cy in pages[entity.page] if x0 <= cx <= x1 and y0 <= cy <= y1
            )
            total += 1
            hits += clean(found) == clean(entity.value)
    rate = hits / total
    print(f"OCR entity recovery on {len(docs)} scanned base documents: {hits}/{total} = {rate:.3f}")
    assert total >= 15
    assert rate >= 0.9


@pytest.mark.parametrize("scenario", ["base", "new_template", "new_vendor"])
def test_text_layer_example_holds_the_laid_out_words_and_entities(scenario: str) -> None:
    from docloop.documents.synth.corpus import generate_document, text_layer_example

    for index in range(3):
        document, _ = generate_document(index, 5, scenario, 0.0)
        example = text_layer_example(index, 5, scenario)
        assert example.doc_type == document.doc_type
        assert example.page_count == document.page_count and example.ocr_pages == 0
        placed = {
            (page, word, tuple(box), tag)
            for page, word, box, tag in zip(
                example.pages, example.words, example.boxes, example.tags, strict=True
            )
        }
        for entity in document.entities:
            for position, word in enumerate(entity.words):
                tag = f"{'B' if position == 0 else 'I'}-{entity.type}"
                assert (entity.page, word.text, tuple(word.box), tag) in placed

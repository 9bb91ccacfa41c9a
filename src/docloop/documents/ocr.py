"""Words and boxes from a page: the PDF's own text layer (fast path) or tesseract OCR."""

from __future__ import annotations

import functools
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytesseract
from PIL import Image

TEXT_LAYER_TIMEOUT_S = 60


@dataclass(frozen=True)
class PageWords:
    """Words of one page, boxes normalised to 0-1000 with a top-left origin."""

    words: list[str]
    boxes: list[list[int]]
    confidences: list[float]


def normalise_box(
    x0: float, y0: float, x1: float, y1: float, width: float, height: float
) -> list[int]:
    """Scale a box in page units to 0-1000, clamped, with x0 <= x1 and y0 <= y1."""

    def scale(value: float, extent: float) -> int:
        return max(0, min(1000, round(1000 * value / extent)))

    left, right = sorted((scale(x0, width), scale(x1, width)))
    top, bottom = sorted((scale(y0, height), scale(y1, height)))
    return [left, top, right, bottom]


@functools.cache
def tesseract_version() -> str:
    """The installed tesseract's version, e.g. ``tesseract 5.3.0``."""
    return f"tesseract {pytesseract.get_tesseract_version()}"


@functools.cache
def poppler_version() -> str:
    """The installed poppler's version as reported by ``pdftotext -v``."""
    out = subprocess.run(["pdftotext", "-v"], capture_output=True, text=True, check=False)
    first = (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else ""
    return f"poppler {first.split()[-1]}" if first else "poppler"


def ocr_image(image: Image.Image, lang: str, psm: int, timeout_s: float) -> PageWords:
    """OCR one page image with tesseract ``image_to_data``.

    Raises:
        RuntimeError: from pytesseract when tesseract times out (message ``Tesseract process
            timeout``) or fails.
    """
    data = pytesseract.image_to_data(
        image,
        lang=lang,
        config=f"--psm {psm}",
        output_type=pytesseract.Output.DICT,
        timeout=timeout_s,
    )
    width, height = image.size
    words: list[str] = []
    boxes: list[list[int]] = []
    confidences: list[float] = []
    for text, conf, left, top, w, h in zip(
        data["text"],
        data["conf"],
        data["left"],
        data["top"],
        data["width"],
        data["height"],
        strict=True,
    ):
        word = text.strip()
        confidence = float(conf)
        if not word or confidence < 0:
            continue
        words.append(word)
        boxes.append(normalise_box(left, top, left + w, top + h, width, height))
        confidences.append(round(confidence, 2))
    return PageWords(words, boxes, confidences)


def text_layer_words(pdf_path: Path) -> list[PageWords]:
    """Words and boxes of every page from the PDF's text layer (``pdftotext -bbox``).

    Costs milliseconds per page. Image-only (scanned) pages come back with no words.

    Raises:
        subprocess.CalledProcessError: pdftotext could not read the file.
        subprocess.TimeoutExpired: pdftotext took longer than a minute.
    """
    result = subprocess.run(
        ["pdftotext", "-bbox", "-q", str(pdf_path), "-"],
        capture_output=True,
        check=True,
        timeout=TEXT_LAYER_TIMEOUT_S,
    )
    root = ET.fromstring(result.stdout)
    namespace = "{http://www.w3.org/1999/xhtml}"
    pages: list[PageWords] = []
    for page in root.iter(f"{namespace}page"):
        width, height = float(page.attrib["width"]), float(page.attrib["height"])
        words: list[str] = []
        boxes: list[list[int]] = []
        for word in page.iter(f"{namespace}word"):
            text = (word.text or "").strip()
            if not text:
                continue
            words.append(text)
            boxes.append(
                normalise_box(
                    float(word.attrib["xMin"]),
                    float(word.attrib["yMin"]),
                    float(word.attrib["xMax"]),
                    float(word.attrib["yMax"]),
                    width,
                    height,
                )
            )
        pages.append(PageWords(words, boxes, [100.0] * len(words)))
    return pages

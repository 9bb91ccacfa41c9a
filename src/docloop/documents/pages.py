"""The per-page work that runs in worker processes: render to JPG, then take words or OCR them.

Kept free of storage and config imports so a spawned worker starts quickly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import cv2
import pypdfium2 as pdfium
import pytesseract
from pdf2image import convert_from_path
from pdf2image.exceptions import PDFPageCountError, PDFSyntaxError
from PIL import Image, ImageOps

from docloop.documents.ocr import (
    OcrEngine,
    OcrSettings,
    PageWords,
    ocr_image,
    poppler_version,
    rapidocr_engine,
)
from docloop.documents.scan import Preparation
from docloop.errors import InvalidInput

logger = logging.getLogger(__name__)

_HAS_TEXT = re.compile(r"[0-9A-Za-z]")

FULL_PREPARATION = Preparation(text_height=30, binarise=True, deskew=True, border=10)
"""What a retry of an almost empty page applies (where the configured preparation did less)."""


@dataclass(frozen=True)
class PageTask:
    """One page to turn into a page record."""

    doc_id: str
    kind: str  # "pdf" | "image"
    path: str  # local copy of the document
    page: int
    dpi: int
    text_layer: PageWords | None  # words from the PDF itself; None means OCR
    ocr: OcrSettings
    jpeg_quality: int
    color: bool
    image_path: str  # where to write the page JPG
    fallback_engine: str = "none"  # "tesseract" | "rapidocr" | "none"
    retry_words: int = 10  # fewer text words than this: retry (see ocr_with_retries)
    min_words: int = 1  # fewer text words than this after retries: empty_page
    max_pixels: int = 0  # an image frame over this is refused before decoding (0: PIL's own cap)

    @property
    def has_text_layer(self) -> bool:
        """Whether the page's words come from the PDF itself (the fast path)."""
        return self.text_layer is not None and bool(self.text_layer.words)


@dataclass(frozen=True)
class PageResult:
    """What a worker made of a page: words, or a quarantine code and reason."""

    doc_id: str
    page: int
    width: int = 0
    height: int = 0
    dpi: int = 0
    source: str = ""
    words: PageWords | None = None
    engine: str = ""
    image_path: str = ""
    error_code: str | None = None
    error_reason: str | None = None


def init_worker(engines: Collection[str] = ()) -> None:
    """Give each OCR engine one thread: parallelism comes from worker processes instead.

    Tesseract reads ``OMP_THREAD_LIMIT``; RapidOCR's onnxruntime session is built with one intra-
    and one inter-op thread (``ocr.rapidocr_params``) and cached per process; OpenCV (image
    preparation, RapidOCR's pre- and post-processing) gets one thread too. With ``rapidocr``
    among ``engines`` its session is built now, so that loading the models is not charged to the
    first page's time budget.
    """
    os.environ["OMP_THREAD_LIMIT"] = "1"
    cv2.setNumThreads(1)
    if "rapidocr" in engines:
        rapidocr_engine()


def text_word_count(words: PageWords) -> int:
    """Words holding at least one letter or digit."""
    return sum(1 for word in words.words if _HAS_TEXT.search(word))


def ocr_with_retries(image: Image.Image, task: PageTask) -> tuple[PageWords, str]:
    """OCR a page, retrying when it yields almost nothing.

    With fewer than ``task.retry_words`` text words, the page is OCR'd again with full image
    preparation (when the configured one does less), then with the fallback engine. The
    attempt with the most text words wins (the first one on ties). An attempt that fails (an
    engine that cannot read the image) goes on to the next; when none reads the page, the first
    attempt's error is raised.

    Returns:
        The words and the description of the engine that produced them.
    """
    attempts = [task.ocr]
    if task.ocr.preparation != FULL_PREPARATION:
        attempts.append(dataclasses.replace(task.ocr, preparation=FULL_PREPARATION))
    if task.fallback_engine not in ("none", task.ocr.engine):
        fallback: OcrEngine = "rapidocr" if task.fallback_engine == "rapidocr" else "tesseract"
        attempts.append(dataclasses.replace(task.ocr, engine=fallback))
    best: tuple[int, PageWords, str] | None = None
    failure: Exception | None = None
    for number, settings in enumerate(attempts):
        if number:
            logger.info(
                "page %d of %s: %d words; retrying with %s",
                task.page + 1,
                task.doc_id[:12],
                best[0] if best else 0,
                settings.describe(),
            )
        try:
            words = ocr_image(image, settings)
        except (
            pytesseract.TesseractError,
            InvalidInput,
            RuntimeError,
            cv2.error,
            ValueError,
            OSError,
        ) as exc:
            # the first attempt's error is the one reported if no other attempt reads the page
            failure = failure or exc
            logger.warning("page %d with %s failed: %s", task.page + 1, settings.engine, exc)
            continue
        count = text_word_count(words)
        if best is None or count > best[0]:
            best = (count, words, settings.describe())
        if count >= task.retry_words:
            break
    if best is None:
        assert failure is not None
        raise failure
    return best[1], best[2]


def _render_with_pdfium(task: PageTask) -> Image.Image:
    """Render in-process with PDFium: ~10 ms a page, 15x cheaper than a pdftoppm subprocess."""
    pdf = pdfium.PdfDocument(task.path)
    try:
        bitmap = pdf[task.page].render(scale=task.dpi / 72, grayscale=not task.color)
        image: Image.Image = bitmap.to_pil()
        return image
    finally:
        pdf.close()


def _load_page_image(task: PageTask) -> tuple[Image.Image, int]:
    if task.kind == "pdf" and task.has_text_layer:
        # Text-layer pages only need a picture for people and page-image consumers.
        return _render_with_pdfium(task), task.dpi
    if task.kind == "pdf":
        # Pages to OCR are rendered by poppler (pdf2image); its cost is ~5 % of the OCR's.
        images = convert_from_path(
            task.path,
            dpi=task.dpi,
            first_page=task.page + 1,
            last_page=task.page + 1,
            grayscale=not task.color,
        )
        if not images:
            raise PDFSyntaxError(f"poppler rendered no image for page {task.page + 1}")
        return images[0], task.dpi
    if task.max_pixels:
        Image.MAX_IMAGE_PIXELS = task.max_pixels  # PIL's own bomb check follows the config
    with Image.open(task.path) as source:
        source.seek(task.page)
        width, height = source.size
        if task.max_pixels and width * height > task.max_pixels:
            raise FrameTooLarge(
                f"page {task.page + 1} is {width}x{height} = {width * height:,} pixels, over the "
                f"cap of {task.max_pixels:,} (preprocess.max_pixels; a decompression bomb?); "
                "downscale it or raise the cap"
            )
        image = ImageOps.exif_transpose(source)
        wanted = "RGB" if task.color else "L"
        if image.mode != wanted:
            image = image.convert(wanted)
        image.load()
        dpi_info = source.info.get("dpi")
    dpi = round(float(dpi_info[0])) if dpi_info and float(dpi_info[0]) > 0 else task.dpi
    return image, dpi


class FrameTooLarge(ValueError):
    """A page image whose declared size is over ``max_pixels`` (found before decoding it)."""


def process_page(task: PageTask) -> PageResult:  # noqa: PLR0911 (one return per outcome)
    """Render one page to JPG and take its words from the text layer or from OCR.

    Never raises for bad content: a page that cannot be rendered, times out in OCR or has no text
    comes back with ``error_code`` and a reason a person can act on. Only ``MemoryError`` goes
    through, for the worker to report against its budget.
    """
    try:
        image, dpi = _load_page_image(task)
    except (FrameTooLarge, Image.DecompressionBombError) as exc:
        return PageResult(
            task.doc_id,
            task.page,
            error_code="image_too_large",
            error_reason=str(exc)
            if isinstance(exc, FrameTooLarge)
            else f"page {task.page + 1} is too large to decode safely ({exc}); downscale it or "
            "raise preprocess.max_pixels",
        )
    except (
        PDFPageCountError,
        PDFSyntaxError,
        pdfium.PdfiumError,
        OSError,
        EOFError,
        ValueError,
    ) as exc:
        return PageResult(
            task.doc_id,
            task.page,
            error_code="unrenderable_page",
            error_reason=f"page {task.page + 1} cannot be rendered ({exc}); the file is damaged "
            "— re-export or re-scan it",
        )
    Path(task.image_path).parent.mkdir(parents=True, exist_ok=True)
    image.save(task.image_path, "JPEG", quality=task.jpeg_quality)
    width, height = image.size
    if task.has_text_layer and task.text_layer is not None:
        words, source, engine = task.text_layer, "text_layer", poppler_version()
    else:
        try:
            words, engine = ocr_with_retries(image, task)
        except pytesseract.TesseractError as exc:
            return PageResult(
                task.doc_id,
                task.page,
                error_code="ocr_failed",
                error_reason=f"tesseract rejected page {task.page + 1} ({exc.message}); check "
                "preprocess.ocr_lang names an installed language",
            )
        except InvalidInput as exc:  # an engine's model files are missing
            return PageResult(
                task.doc_id, task.page, error_code="ocr_failed", error_reason=str(exc)
            )
        except RuntimeError as exc:  # pytesseract's timeout
            return PageResult(
                task.doc_id,
                task.page,
                error_code="ocr_failed",
                error_reason=f"OCR of page {task.page + 1} failed ({exc}); a very dense or "
                "damaged page — check the scan, or raise the OCR timeout",
            )
        except (cv2.error, ValueError, OSError) as exc:
            return PageResult(
                task.doc_id,
                task.page,
                error_code="ocr_failed",
                error_reason=f"{task.ocr.engine} cannot read page {task.page + 1} "
                f"({type(exc).__name__}: {exc}); re-export the image as an 8-bit greyscale or "
                "RGB PNG/JPEG, or set preprocess.ocr_engine: tesseract",
            )
        source = "ocr"
    found = text_word_count(words)
    minimum = task.min_words if source == "ocr" else 1
    if found < minimum:
        what = "has no readable text" if not found else f"has only {found} readable word(s)"
        return PageResult(
            task.doc_id,
            task.page,
            width,
            height,
            dpi,
            source,
            error_code="empty_page",
            error_reason=f"page {task.page + 1} {what} (blank page, or a scan too "
            "faint/dark to read); remove the page or re-scan it with better contrast",
        )
    if source == "ocr" and found < task.retry_words:
        logger.warning(
            "page %d of %s: only %d readable words after retries", task.page + 1, task.doc_id, found
        )
    return PageResult(
        task.doc_id, task.page, width, height, dpi, source, words, engine, task.image_path
    )

"""Intake: decide what an input file is and whether it can be processed, before any OCR.

Everything that can be known from the bytes (type, encryption, page count, page sizes, the text
layer) is checked here, in milliseconds, so a bad file is quarantined with a reason before it costs
a worker any time.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import unicodedata
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Literal

import pypdfium2 as pdfium
from PIL import Image, UnidentifiedImageError

from docloop.config import PreprocessConfig
from docloop.documents.ocr import PageWords, text_layer_words
from docloop.errors import QuarantinedDocument

logger = logging.getLogger(__name__)

DocumentKind = Literal["pdf", "image"]

DOCUMENT_SUFFIXES: dict[str, DocumentKind] = {
    ".pdf": "pdf",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}
# Metadata that commonly sits beside documents (e.g. the synthetic corpus's labels.jsonl): ignored,
# not quarantined, so the quarantine report only lists things a person has to look at.
SIDECAR_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".md", ".txt", ".yaml", ".yml"})

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_KNOWN_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an Office document?)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
    (b"GIF8", "a GIF image"),
    (b"<", "an HTML/XML file"),
    (b"{", "a JSON file"),
)


@dataclass(frozen=True)
class DocumentPlan:
    """A document that passed intake: what it is and what each page needs."""

    doc_id: str
    source_uri: str
    kind: DocumentKind
    page_count: int
    text_layer: tuple[PageWords, ...] | None
    """Per page, the words of the PDF's text layer (None for images or when OCR is forced)."""


def document_id(data: bytes) -> str:
    """A document's id: the sha256 of its bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def classify_name(name: str) -> Literal["document", "sidecar", "unsupported"]:
    """Whether a file name looks like a document docloop reads, metadata beside it, or neither."""
    path = PurePosixPath(name)
    suffix = path.suffix.lower()
    if suffix in DOCUMENT_SUFFIXES:
        return "document"
    if suffix in SIDECAR_SUFFIXES or path.name.startswith("."):
        return "sidecar"
    return "unsupported"


def check_name(relative_name: str) -> None:
    """Reject names that could escape the output folder or confuse logs and shells.

    Raises:
        QuarantinedDocument: ``unsafe_name`` for ``..`` segments, absolute paths or control
            characters.
    """
    parts = relative_name.replace("\\", "/").split("/")
    if ".." in parts or relative_name.startswith("/"):
        raise QuarantinedDocument(
            "unsafe_name",
            f"file name {relative_name!r} contains a '..' segment or is absolute; rename the file "
            "so it stays inside its folder",
        )
    if any(unicodedata.category(char) == "Cc" for char in relative_name):
        raise QuarantinedDocument(
            "unsafe_name",
            f"file name {relative_name!r} contains control characters; rename the file using "
            "printable characters only",
        )


def sniff(data: bytes) -> str | None:
    """The file type from its first bytes: ``pdf``, ``png``, ``jpeg``, ``tiff`` or None."""
    head = data[:1024]
    if b"%PDF-" in head:  # PDFs may carry a few bytes of junk before the header
        return "pdf"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def _describe_unknown(data: bytes) -> str:
    for magic, description in _KNOWN_OTHER_MAGIC:
        if data.lstrip()[: len(magic)] == magic:
            return description
    return f"an unknown format (first bytes {data[:8]!r})"


def inspect_document(
    source_uri: str,
    name: str,
    data: bytes,
    local_path: Path,
    config: PreprocessConfig,
    doc_id: str | None = None,
) -> DocumentPlan:
    """Validate one input file and plan its pages.

    Args:
        source_uri: where the file came from (for messages and records).
        name: its name relative to the input prefix.
        data: its bytes.
        local_path: a local copy of the bytes (poppler tools read files).
        config: caps and OCR settings.
        doc_id: the bytes' sha256 when the caller already has it (it is computed otherwise).

    Returns:
        The plan of the document's pages.

    Raises:
        QuarantinedDocument: the file cannot be processed; the reason says why and what to do.
    """
    check_name(name)
    if not data:
        raise QuarantinedDocument("empty_file", "the file is empty (0 bytes); upload it again")
    size_mb = len(data) / 1_000_000
    if size_mb > config.max_file_mb:
        raise QuarantinedDocument(
            "file_too_large",
            f"the file is {size_mb:.1f} MB, over the {config.max_file_mb:g} MB cap "
            "(preprocess.max_file_mb); split it or raise the cap",
        )
    expected = DOCUMENT_SUFFIXES[PurePosixPath(name).suffix.lower()]
    sniffed = sniff(data)
    kind: DocumentKind | None = None
    if sniffed == "pdf":
        kind = "pdf"
    elif sniffed in {"png", "jpeg", "tiff"}:
        kind = "image"
    if kind is None:
        what = "a PDF" if expected == "pdf" else "an image"
        raise QuarantinedDocument(
            "not_a_pdf" if expected == "pdf" else "unreadable_image",
            f"the file is named like {what} but its content is {_describe_unknown(data)}; "
            "export it as PDF, PNG, JPEG or TIFF",
        )
    doc_id = doc_id or document_id(data)
    if kind == "pdf":
        return _inspect_pdf(doc_id, source_uri, data, local_path, config)
    return _inspect_image(doc_id, source_uri, data, config)


def _poppler_verdict(local_path: Path) -> str | None:
    """Why poppler cannot open a PDF PDFium refused: ``empty_pdf``, ``encrypted_pdf`` or None.

    PDFium's error code is its last error, which a failing open does not always reset (seen in
    CI: a zero-page PDF reported as password-protected right after an encrypted one), so the
    diagnosis asks poppler, which names both cases precisely.
    """
    result = subprocess.run(
        ["pdfinfo", str(local_path)], capture_output=True, text=True, timeout=30, check=False
    )
    if "Invalid page count 0" in result.stderr or "Pages:           0" in result.stdout:
        return "empty_pdf"
    if "Incorrect password" in result.stderr:
        return "encrypted_pdf"
    return None


def _inspect_pdf(
    doc_id: str, source_uri: str, data: bytes, local_path: Path, config: PreprocessConfig
) -> DocumentPlan:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        verdict = _poppler_verdict(local_path)
        if verdict == "empty_pdf":
            raise QuarantinedDocument(
                "empty_pdf", "the PDF has no pages; re-export the document"
            ) from exc
        if verdict == "encrypted_pdf":
            raise QuarantinedDocument(
                "encrypted_pdf",
                "the PDF is encrypted with a password; ask the sender for an unprotected copy "
                "(or remove the password) and upload it again",
            ) from exc
        raise QuarantinedDocument(
            "corrupt_pdf",
            f"the PDF cannot be parsed ({exc}): it is truncated or corrupt; re-export or upload "
            "it again",
        ) from exc
    try:
        page_count = len(pdf)
        if page_count == 0:
            raise QuarantinedDocument("empty_pdf", "the PDF has no pages; re-export the document")
        if page_count > config.max_pages:
            raise QuarantinedDocument(
                "too_many_pages",
                f"the PDF has {page_count} pages, over the cap of {config.max_pages} "
                "(preprocess.max_pages); split it or raise the cap",
            )
        scale = config.dpi / 72
        for index in range(page_count):
            width, height = pdf.get_page_size(index)
            pixels = round(width * scale) * round(height * scale)
            if pixels > config.max_pixels:
                raise QuarantinedDocument(
                    "page_too_large",
                    f"page {index + 1} is {width:.0f}x{height:.0f} pt, {pixels:,} pixels at "
                    f"{config.dpi} dpi, over the cap of {config.max_pixels:,} "
                    "(preprocess.max_pixels); lower preprocess.dpi or raise the cap",
                    page=index,
                )
    finally:
        pdf.close()
    text_layer: tuple[PageWords, ...] | None = None
    if not config.force_ocr:
        try:
            pages = text_layer_words(local_path)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ET.ParseError) as exc:
            logger.warning(
                "text layer of %s unreadable (%s); every page will be OCR'd", source_uri, exc
            )
            pages = []
        if len(pages) == page_count:
            text_layer = tuple(pages)
    return DocumentPlan(doc_id, source_uri, "pdf", page_count, text_layer)


def _inspect_image(
    doc_id: str, source_uri: str, data: bytes, config: PreprocessConfig
) -> DocumentPlan:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:
                width, height = image.size
                if width * height > config.max_pixels:
                    raise QuarantinedDocument(
                        "image_too_large",
                        f"the image is {width}x{height} = {width * height:,} pixels, over the cap "
                        f"of {config.max_pixels:,} (preprocess.max_pixels; a decompression bomb?); "
                        "downscale it or raise the cap",
                    )
                frames = getattr(image, "n_frames", 1)
                if frames > config.max_pages:
                    raise QuarantinedDocument(
                        "too_many_pages",
                        f"the image has {frames} frames, over the cap of {config.max_pages} "
                        "(preprocess.max_pages); split it or raise the cap",
                    )
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise QuarantinedDocument(
            "image_too_large",
            f"the image is too large to open safely ({exc}); downscale it or raise "
            "preprocess.max_pixels",
        ) from exc
    except UnidentifiedImageError as exc:
        raise QuarantinedDocument(
            "unreadable_image",
            "the image format is not supported or the file is damaged; export it as PNG, JPEG "
            "or TIFF",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise QuarantinedDocument(
            "unreadable_image",
            f"the image cannot be decoded ({exc}): it is truncated or damaged; upload it again",
        ) from exc
    return DocumentPlan(doc_id, source_uri, "image", frames, None)

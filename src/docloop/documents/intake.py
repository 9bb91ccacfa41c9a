"""Intake: decide what an input file is and whether it can be processed, before any OCR.

Everything that can be known from the bytes (type, encryption, page count, page sizes, the text
layer) is checked here, in milliseconds, so a bad file is quarantined with a reason before it costs
a worker any time.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import subprocess
import unicodedata
import warnings
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Literal

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
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


@dataclass(frozen=True)
class LocalInput:
    """A file found under a local input folder: a document to read, or one set aside.

    Attributes:
        path: where it was found (a link's own path, not its target's).
        size: the bytes to read (its target's, for a link).
        code: why it is set aside (``unsafe_link``, ``dangling_link``, ``special_file``), or None.
        reason: what is wrong and what to do; it never quotes the file or the link's target.
    """

    path: Path
    size: int = 0
    code: str | None = None
    reason: str = ""


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def _special(mode: int) -> str:
    for test, name in _SPECIAL_KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _classify_local(path: Path, root: Path) -> LocalInput | None:  # noqa: PLR0911 (one per kind)
    """What one entry under ``root`` is, without opening it (opening a FIFO blocks)."""
    info = os.lstat(path)
    if stat.S_ISREG(info.st_mode):
        return LocalInput(path, info.st_size)
    if not stat.S_ISLNK(info.st_mode):
        return LocalInput(
            path,
            code="special_file",
            reason=f"the entry is {_special(info.st_mode)}, not a file; only regular files are "
            "read (it was not opened)",
        )
    try:
        target = path.stat()
    except OSError as exc:
        what = "a loop of links" if exc.errno == errno.ELOOP else "nothing"
        return LocalInput(
            path,
            code="dangling_link",
            reason=f"the symbolic link points to {what}; fix or remove the link",
        )
    real = Path(os.path.realpath(path))
    if real != root and root not in real.parents:
        return LocalInput(
            path,
            code="unsafe_link",
            reason="the symbolic link points outside the input folder and was not followed; "
            "copy the document into the input folder instead",
        )
    if stat.S_ISDIR(target.st_mode):
        return None  # a folder inside the input: walked where it really is
    if not stat.S_ISREG(target.st_mode):
        return LocalInput(
            path,
            code="special_file",
            reason=f"the symbolic link points to {_special(target.st_mode)}, not a file; only "
            "regular files are read (it was not opened)",
        )
    return LocalInput(path, target.st_size)


def list_local_inputs(root: Path) -> list[LocalInput]:
    """Every entry under a local input folder (or the one file ``root``), sorted by path.

    Links are followed only when their target is inside ``root``; links out of it, dangling
    links and special files (FIFOs, sockets, devices) are returned with a quarantine code, so
    none is skipped silently and none is opened.
    """
    real_root = Path(os.path.realpath(root))
    if not real_root.is_dir():
        found = _classify_local(root, real_root.parent)
        return [found] if found is not None else []
    entries: list[LocalInput] = []
    for directory, dirnames, filenames in os.walk(root):
        links = [name for name in dirnames if Path(directory, name).is_symlink()]
        for name in sorted(filenames + links):
            found = _classify_local(Path(directory, name), real_root)
            if found is not None:
                entries.append(found)
    return sorted(entries, key=lambda entry: entry.path)


def read_local_input(path: Path) -> bytes:
    """Read a listed local file, refusing anything that is no longer a regular file.

    The file is opened non-blocking and checked on its descriptor, so a FIFO swapped in after the
    listing is refused instead of blocking the run.

    Raises:
        QuarantinedDocument: ``special_file`` when it is not a regular file any more.
        OSError: it cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise QuarantinedDocument(
                "special_file",
                f"the entry is {_special(mode)}, not a file; only regular files are read",
            )
        return handle.read()


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
    """What the bytes look like, in words (never the bytes themselves: they may be a secret)."""
    for magic, description in _KNOWN_OTHER_MAGIC:
        if data.lstrip()[: len(magic)] == magic:
            return description
    return "an unknown format"


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


_STREAM_START = re.compile(rb"(?<!end)stream\r?\n")
_IMAGE_DICT = re.compile(rb"/Subtype\s*/Image\b")
_FLATE = re.compile(rb"/FlateDecode\b")
_DIMENSION = re.compile(rb"/(Width|Height)\s+(\d+)(?!\s+\d+\s+R)")
_INFLATE_CHUNK = 1 << 20


def _pixels_over_cap(width: int, height: int, config: PreprocessConfig) -> bool:
    return width * height > config.max_pixels


def check_pdf_streams(data: bytes, config: PreprocessConfig) -> None:
    """Bound what a PDF's streams cost before PDFium or poppler parse any of them.

    Every image stream's declared ``/Width`` x ``/Height`` is held to ``max_pixels`` (embedded
    images, soft masks and unused images alike: the page box says nothing about them), and the
    non-image Flate streams (page content, fonts, object streams) are inflated into a counter,
    never kept, up to ``max_content_mb``: a few hundred kilobytes that inflate to gigabytes cost
    the parsers seconds and memory while showing a blank page.

    Raises:
        QuarantinedDocument: ``image_too_large`` or ``too_expensive``.
    """
    budget = int(config.max_content_mb * 1_000_000)
    inflated = 0
    position = 0
    while (match := _STREAM_START.search(data, position)) is not None:
        start = match.end()
        end = data.find(b"endstream", start)
        end = len(data) if end < 0 else end
        position = end
        head_start = data.rfind(b"obj", max(0, match.start() - 4096), match.start())
        dictionary = data[max(head_start, match.start() - 4096, 0) : match.start()]
        if _IMAGE_DICT.search(dictionary):
            sizes = {name: int(value) for name, value in _DIMENSION.findall(dictionary)}
            width, height = sizes.get(b"Width", 0), sizes.get(b"Height", 0)
            if _pixels_over_cap(width, height, config):
                raise QuarantinedDocument(
                    "image_too_large",
                    f"the PDF embeds a {width}x{height} image = {width * height:,} pixels, over "
                    f"the cap of {config.max_pixels:,} (preprocess.max_pixels; a decompression "
                    "bomb?); downscale the image or raise the cap",
                )
            continue
        if not _FLATE.search(dictionary):
            continue
        inflater = zlib.decompressobj()
        pending = data[start:end]
        try:
            while pending and inflated <= budget and not inflater.eof:
                produced = len(inflater.decompress(pending, _INFLATE_CHUNK))
                if not produced:
                    break  # what is left is not deflate data (the newline before endstream)
                inflated += produced
                pending = inflater.unconsumed_tail
        except zlib.error:
            continue  # a damaged or encrypted stream: PDFium decides what it makes of it
        if inflated > budget:
            raise QuarantinedDocument(
                "too_expensive",
                f"the PDF's content streams inflate to more than {config.max_content_mb:g} MB "
                f"from a {len(data) / 1_000_000:.1f} MB file (preprocess.max_content_mb; a "
                "decompression bomb?); re-export the document or raise the cap",
            )


def _check_page_images(pdf: pdfium.PdfDocument, index: int, config: PreprocessConfig) -> None:
    """Hold every image drawn on a page (in forms too) to ``max_pixels``, without decoding it."""
    page = pdf[index]
    try:
        for image in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,)):
            try:
                width, height = image.get_px_size()
            except pdfium.PdfiumError:
                continue
            if _pixels_over_cap(width, height, config):
                raise QuarantinedDocument(
                    "image_too_large",
                    f"page {index + 1} shows a {width}x{height} image = {width * height:,} "
                    f"pixels, over the cap of {config.max_pixels:,} (preprocess.max_pixels; a "
                    "decompression bomb?); downscale the image or raise the cap",
                    page=index,
                )
    finally:
        page.close()


def _inspect_pdf(
    doc_id: str, source_uri: str, data: bytes, local_path: Path, config: PreprocessConfig
) -> DocumentPlan:
    check_pdf_streams(data, config)
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
            _check_page_images(pdf, index, config)
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
                _check_frame(image, 0, config)
                frames = getattr(image, "n_frames", 1)
                if frames > config.max_pages:
                    raise QuarantinedDocument(
                        "too_many_pages",
                        f"the image has {frames} frames, over the cap of {config.max_pages} "
                        "(preprocess.max_pages); split it or raise the cap",
                    )
                if image.format == "TIFF":
                    # Each TIFF frame has its own size; seeking reads its header, not its pixels.
                    # (Other formats' frames are held to the first frame's canvas by PIL.)
                    for index in range(1, frames):
                        image.seek(index)
                        _check_frame(image, index, config)
                    image.seek(0)
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


def _check_frame(image: Image.Image, index: int, config: PreprocessConfig) -> None:
    """Hold the current frame's declared size to ``max_pixels`` (nothing is decoded)."""
    width, height = image.size
    if _pixels_over_cap(width, height, config):
        which = "the image" if index == 0 else f"frame {index + 1} of the image"
        raise QuarantinedDocument(
            "image_too_large",
            f"{which} is {width}x{height} = {width * height:,} pixels, over the cap of "
            f"{config.max_pixels:,} (preprocess.max_pixels; a decompression bomb?); downscale "
            "it or raise the cap",
        )

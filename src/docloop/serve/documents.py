"""Files sent to the predictor -> pages, with the preprocess component's own code.

The same ``inspect_document`` (type sniffing, encryption, page count and size caps, text layer)
and ``process_page`` (render, text layer or OCR with its retries, empty-page detection) run
here, inline in the calling thread and in a temporary folder, so a served document gets exactly
the words and boxes a preprocessed one would. What preprocess would quarantine becomes an HTTP
400 whose message names the field and carries the quarantine code and reason.

A served document's id is the server's, from its content (a client cannot choose it, so it cannot
keep its own words under another document's id, or pin its words under an id others will use): a
file is named by the sha256 of its bytes (``document_id``, as preprocess names it), a document
sent as pages by :func:`pages_doc_id`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from docloop.config import PreprocessConfig
from docloop.documents.intake import document_id, inspect_document, sniff
from docloop.documents.pages import process_page
from docloop.documents.preprocess import page_task
from docloop.documents.schema import QuarantineEntry
from docloop.errors import QuarantinedDocument
from docloop.serve.compat import InvalidInput
from docloop.serve.inputs import ServePage, TooLarge

logger = logging.getLogger(__name__)

SUFFIXES = {"pdf": ".pdf", "png": ".png", "jpeg": ".jpg", "tiff": ".tif"}
TOO_LARGE_CODES = frozenset(
    {"file_too_large", "too_many_pages", "page_too_large", "image_too_large", "too_expensive"}
)
"""Quarantine codes of a valid file over a cap: HTTP 413 rather than 400."""


def pages_doc_id(pages: Sequence[ServePage]) -> str:
    """The id of a document sent as pages: the sha256 of its canonical JSON, hex.

    The canonical form is ``[[page, words, boxes], ...]`` in page order, compact (no spaces),
    non-ASCII escaped: what a correction's word positions and retraining read. Equal words,
    boxes and page numbers give an equal id (the form predates server-owned ids, so documents
    kept before keep their id); OCR confidences and the page source are not part of it (they are
    logged per prediction).
    """
    ordered = sorted(pages, key=lambda page: page.page)
    canonical = [[page.page, page.words, page.boxes] for page in ordered]
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class DocumentPages:
    """What preprocessing made of one file."""

    doc_id: str
    page_count: int
    pages: list[ServePage]
    quarantined: list[QuarantineEntry]


def document_pages(
    data: bytes, field: str, source_uri: str, config: PreprocessConfig
) -> DocumentPages:
    """Inspect, render and OCR one file (blocking: call it from a worker thread).

    Args:
        data: the file's bytes.
        field: the request field it came from, for messages (``instances[0].document``).
        source_uri: recorded as the document's origin (e.g. ``request://<id>/0``).
        config: render, OCR and cap settings (the same section preprocess uses).

    Returns:
        The pages that have words, and the pages that were set aside with their reasons.

    Raises:
        TooLarge: the file is over a size or cost cap (HTTP 413).
        InvalidInput: the file is not a supported document, would be quarantined by preprocess,
            or has no readable page.
    """
    kind = sniff(data)
    if kind is None:
        raise InvalidInput(
            f"{field}: not a PDF, PNG, JPEG or TIFF file; send one of those, base64-encoded"
        )
    doc_id = document_id(data)
    suffix = SUFFIXES[kind]
    with tempfile.TemporaryDirectory(prefix="docloop-serve-") as tmp:
        local = Path(tmp) / f"{doc_id}{suffix}"
        local.write_bytes(data)
        try:
            plan = inspect_document(source_uri, f"document{suffix}", data, local, config)
        except QuarantinedDocument as exc:
            error = TooLarge if exc.code in TOO_LARGE_CODES else InvalidInput
            raise error(f"{field}: {exc.reason} ({exc.code})") from exc
        pages: list[ServePage] = []
        quarantined: list[QuarantineEntry] = []
        for page in range(plan.page_count):
            result = process_page(
                page_task(
                    config,
                    plan,
                    page,
                    path=str(local),
                    image_path=str(Path(tmp) / "images" / f"page-{page:04d}.jpg"),
                )
            )
            if result.error_code is not None or result.words is None:
                quarantined.append(
                    QuarantineEntry(
                        source_uri=source_uri,
                        code=result.error_code or "no_words",
                        reason=result.error_reason or "no words",
                        doc_id=doc_id,
                        page=page,
                    )
                )
                continue
            pages.append(
                ServePage(
                    page=page,
                    words=result.words.words,
                    boxes=result.words.boxes,
                    confidences=result.words.confidences,
                    source="ocr" if result.source == "ocr" else "text_layer",
                )
            )
    if not pages:
        reasons = "; ".join(f"page {e.page}: {e.reason} ({e.code})" for e in quarantined)
        raise InvalidInput(f"{field}: no page has readable text: {reasons}")
    if quarantined:
        logger.info("%s: %d page(s) set aside", source_uri, len(quarantined))
    return DocumentPages(doc_id, plan.page_count, pages, quarantined)

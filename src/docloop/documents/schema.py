"""Records that cross process boundaries: page records (Parquet) and quarantine entries (JSONL)."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

PAGE_SCHEMA_VERSION = 1

PageSource = Literal["ocr", "text_layer"]


class PageRecord(BaseModel):
    """One page of one document: its words, their boxes and where they came from.

    Boxes are ``[x0, y0, x1, y1]`` with a top-left origin, normalised to 0-1000 of the page's
    width and height (LayoutLM convention), so they do not depend on the render resolution.
    """

    model_config = ConfigDict(extra="forbid")

    doc_id: str = Field(description="sha256 of the document's bytes (hex).")
    source_uri: str = Field(description="Where the document was read from.")
    page: int = Field(ge=0, description="0-based page index.")
    page_count: int = Field(ge=1, description="Pages in the document.")
    width: int = Field(gt=0, description="Page image width in pixels at `dpi`.")
    height: int = Field(gt=0, description="Page image height in pixels at `dpi`.")
    dpi: int = Field(gt=0, description="Render resolution of the page image.")
    source: PageSource = Field(description="`ocr` (tesseract) or `text_layer` (the PDF's own).")
    image_uri: str = Field(description="The page rendered as JPG.")
    words: list[str]
    boxes: list[list[int]] = Field(description="One [x0, y0, x1, y1] (0-1000) per word.")
    confidences: list[float] = Field(
        description="Per-word confidence 0-100 (tesseract); 100 for text-layer words."
    )
    mean_confidence: float
    ocr_engine: str = Field(description="Engine and version, e.g. `tesseract 5.3.0`.")
    settings_digest: str = Field(description="Digest of the settings that produced this record.")


PAGE_ARROW_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=False),
        pa.field("page_count", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("dpi", pa.int32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("words", pa.list_(pa.string()), nullable=False),
        pa.field("boxes", pa.list_(pa.list_(pa.int16(), 4)), nullable=False),
        pa.field("confidences", pa.list_(pa.float32()), nullable=False),
        pa.field("mean_confidence", pa.float32(), nullable=False),
        pa.field("ocr_engine", pa.string(), nullable=False),
        pa.field("settings_digest", pa.string(), nullable=False),
    ],
    metadata={"docloop.page_schema_version": str(PAGE_SCHEMA_VERSION)},
)


def records_to_table(records: list[PageRecord]) -> pa.Table:
    """Convert page records to an Arrow table with the documented schema."""
    columns: dict[str, list[object]] = {name: [] for name in PAGE_ARROW_SCHEMA.names}
    for record in records:
        row = record.model_dump()
        for name in PAGE_ARROW_SCHEMA.names:
            columns[name].append(row[name])
    return pa.Table.from_pydict(columns, schema=PAGE_ARROW_SCHEMA)


def table_to_records(table: pa.Table) -> list[PageRecord]:
    """Convert an Arrow table (e.g. read from Parquet) back to validated page records."""
    return [PageRecord.model_validate(row) for row in table.to_pylist()]


class QuarantineEntry(BaseModel):
    """One input (or one page of it) that was set aside, with a reason a person can act on."""

    model_config = ConfigDict(extra="forbid")

    source_uri: str
    code: str = Field(description="Stable slug, e.g. `encrypted_pdf`, `empty_page`.")
    reason: str = Field(description="What is wrong and what to do about it.")
    doc_id: str | None = Field(default=None, description="sha256, when the bytes could be read.")
    page: int | None = Field(
        default=None, description="0-based page, when only a page is affected."
    )

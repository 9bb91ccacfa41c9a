"""Training examples: a document's OCR words and boxes with its type and per-word BIO tags.

One example per document (pages concatenated in reading order, each word keeps its page index),
so the classifier sees the whole document and the extractor sees every word once. Gold entity
labels are boxes on the final page; a word takes an entity's tag when its box centre lies inside
one of the entity's word boxes (``docloop.documents.labels.covered_word_indices``), so the same
rule tags born-digital text layers and noisy OCR alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from docloop.documents.labels import LabelledEntity, covered_word_indices
from docloop.documents.schema import PageRecord
from docloop.storage import Storage, join

logger = logging.getLogger(__name__)

OUTSIDE = "O"


class DocumentExample(BaseModel):
    """One document ready for training or scoring."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str
    source_uri: str
    doc_type: str | None = Field(description="Gold document type; None when unlabelled.")
    words: list[str]
    boxes: list[list[int]] = Field(description="[x0, y0, x1, y1] per word, 0-1000.")
    pages: list[int] = Field(description="0-based page index per word.")
    tags: list[str] = Field(description="IOB2 tag per word (`O`, `B-mrn`, `I-mrn`, ...).")
    page_count: int
    ocr_pages: int = Field(description="Pages whose words came from OCR (not the text layer).")
    mean_confidence: float


EXAMPLE_ARROW_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("doc_type", pa.string()),
        pa.field("words", pa.list_(pa.string()), nullable=False),
        pa.field("boxes", pa.list_(pa.list_(pa.int16(), 4)), nullable=False),
        pa.field("pages", pa.list_(pa.int16()), nullable=False),
        pa.field("tags", pa.list_(pa.string()), nullable=False),
        pa.field("page_count", pa.int32(), nullable=False),
        pa.field("ocr_pages", pa.int32(), nullable=False),
        pa.field("mean_confidence", pa.float64(), nullable=False),
    ]
)


def entity_types_of(tags: Iterable[str]) -> set[str]:
    """Entity types named by IOB2 tags."""
    return {tag[2:] for tag in tags if tag != OUTSIDE}


def tag_words(
    pages: Sequence[PageRecord], entities: Iterable[LabelledEntity]
) -> tuple[list[str], int]:
    """IOB2 tags for the words of ``pages`` (concatenated), and how many entities found no word."""
    offsets: dict[int, int] = {}
    total = 0
    for record in pages:
        offsets[record.page] = total
        total += len(record.words)
    by_page = {record.page: record for record in pages}
    tags = [OUTSIDE] * total
    unmatched = 0
    for entity in entities:
        page = by_page.get(entity.page)
        indices = covered_word_indices(page, entity.boxes) if page is not None else []
        if not indices:
            unmatched += 1
            continue
        base = offsets[entity.page]
        if any(tags[base + i] != OUTSIDE for i in indices):
            logger.debug(
                "entity %s overlaps another on %s; kept the first", entity.type, entity.doc_id
            )
            continue
        for position, index in enumerate(indices):
            tags[base + index] = f"{'B' if position == 0 else 'I'}-{entity.type}"
    return tags, unmatched


def build_examples(
    records: Iterable[PageRecord],
    doc_types: Mapping[str, str | None],
    entities: Iterable[LabelledEntity] = (),
) -> list[DocumentExample]:
    """Join page records with labels into one example per document (sorted by doc id).

    Args:
        records: page records from preprocess.
        doc_types: gold document type per doc id (documents missing here get ``None``).
        entities: gold entity labels.

    Returns:
        The examples; documents with no page records are skipped (they were quarantined).
    """
    pages_by_doc: dict[str, list[PageRecord]] = defaultdict(list)
    for record in records:
        pages_by_doc[record.doc_id].append(record)
    entities_by_doc: dict[str, list[LabelledEntity]] = defaultdict(list)
    for entity in entities:
        entities_by_doc[entity.doc_id].append(entity)
    examples: list[DocumentExample] = []
    unmatched_total = 0
    for doc_id in sorted(pages_by_doc):
        pages = sorted(pages_by_doc[doc_id], key=lambda r: r.page)
        tags, unmatched = tag_words(pages, entities_by_doc.get(doc_id, []))
        unmatched_total += unmatched
        words = [word for page in pages for word in page.words]
        confidences = [c for page in pages for c in page.confidences]
        examples.append(
            DocumentExample(
                doc_id=doc_id,
                source_uri=pages[0].source_uri,
                doc_type=doc_types.get(doc_id),
                words=words,
                boxes=[box for page in pages for box in page.boxes],
                pages=[page.page for page in pages for _ in page.words],
                tags=tags,
                page_count=pages[0].page_count,
                ocr_pages=sum(1 for page in pages if page.source == "ocr"),
                mean_confidence=round(sum(confidences) / len(confidences), 3)
                if confidences
                else 0.0,
            )
        )
    if unmatched_total:
        logger.info("%d labelled entities matched no OCR word (lost to OCR)", unmatched_total)
    return examples


def examples_digest(examples: Iterable[DocumentExample]) -> str:
    """A content digest of examples (order-independent): changes whenever any label or word does."""
    hashes = sorted(
        hashlib.sha256(example.model_dump_json().encode()).hexdigest() for example in examples
    )
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def write_examples(storage: Storage, uri: str, examples: Sequence[DocumentExample]) -> None:
    """Write examples as one Parquet file."""
    columns: dict[str, list[object]] = {name: [] for name in EXAMPLE_ARROW_SCHEMA.names}
    for example in examples:
        row = example.model_dump()
        for name in EXAMPLE_ARROW_SCHEMA.names:
            columns[name].append(row[name])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(columns, schema=EXAMPLE_ARROW_SCHEMA), buffer)
    storage.write_bytes(uri, buffer.getvalue())


def read_examples(storage: Storage, uri: str) -> list[DocumentExample]:
    """Read examples written by :func:`write_examples`."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    return [DocumentExample.model_validate(row) for row in table.to_pylist()]


SPLITS = ("train", "val", "holdout")


class DatasetManifest(BaseModel):
    """What a dataset folder holds: splits, label sets, counts and a digest per split."""

    model_config = ConfigDict(extra="forbid")

    doc_types: list[str]
    entity_types: list[str]
    counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    entity_counts: dict[str, dict[str, int]]
    digests: dict[str, str]
    seed: int

    @property
    def digest(self) -> str:
        """One digest for the whole dataset."""
        return hashlib.sha256(json.dumps(self.digests, sort_keys=True).encode()).hexdigest()


def split_of(doc_id: str, seed: int, val_fraction: float, holdout_fraction: float) -> str:
    """Assign a document to a split from its id alone, so a document never crosses splits."""
    draw = int(hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()[:12], 16) / 16**12
    if draw < holdout_fraction:
        return "holdout"
    if draw < holdout_fraction + val_fraction:
        return "val"
    return "train"


def write_dataset(
    storage: Storage,
    uri: str,
    splits: Mapping[str, Sequence[DocumentExample]],
    seed: int,
) -> DatasetManifest:
    """Write ``<uri>/<split>.parquet`` for each split plus ``manifest.json``."""
    all_examples = [example for examples in splits.values() for example in examples]
    doc_types = sorted({e.doc_type for e in all_examples if e.doc_type is not None})
    entity_types = sorted({t for e in all_examples for t in entity_types_of(e.tags)})
    class_counts: dict[str, dict[str, int]] = {}
    entity_counts: dict[str, dict[str, int]] = {}
    for name, examples in splits.items():
        write_examples(storage, join(uri, f"{name}.parquet"), examples)
        class_counts[name] = dict(
            sorted((t, sum(1 for e in examples if e.doc_type == t)) for t in doc_types)
        )
        entity_counts[name] = {
            t: sum(1 for e in examples for tag in e.tags if tag == f"B-{t}") for t in entity_types
        }
    manifest = DatasetManifest(
        doc_types=doc_types,
        entity_types=entity_types,
        counts={name: len(examples) for name, examples in splits.items()},
        class_counts=class_counts,
        entity_counts=entity_counts,
        digests={name: examples_digest(examples) for name, examples in splits.items()},
        seed=seed,
    )
    storage.write_text(join(uri, "manifest.json"), manifest.model_dump_json(indent=2))
    return manifest


def read_manifest(storage: Storage, uri: str) -> DatasetManifest:
    """Read a dataset folder's manifest."""
    return DatasetManifest.model_validate_json(storage.read_text(join(uri, "manifest.json")))

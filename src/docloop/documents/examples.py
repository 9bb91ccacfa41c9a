"""Training examples: a document's OCR words and boxes with its type and per-word BIO tags.

One example per document (pages concatenated in reading order, each word keeps its page index),
so the classifier sees the whole document and the extractor sees every word once. A gold entity
tags the words alignment decided for it (:mod:`docloop.documents.alignment`); an entity given
only boxes tags the words whose box centre lies inside one of them
(``docloop.documents.labels.covered_word_indices``), so the same rule tags born-digital text
layers and noisy OCR alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from docloop.documents.alignment import LabelReport
from docloop.documents.label_schema import LabelSchema
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
    field_values: dict[str, str] = Field(
        default_factory=dict,
        description="The value each field was labelled with (labels by value), located among "
        "the words or not: what field exact-match scores against. Empty for labels by word "
        "positions (their values are the tagged words).",
    )


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


FIELD_VALUES_COLUMN = "field_values"
FIELD_VALUES_TYPE = pa.map_(pa.string(), pa.string())
"""An optional column beside :data:`EXAMPLE_ARROW_SCHEMA`, written when any example has values.

Outside the schema on purpose: the retrain dataset's Arrow plumbing (served documents, replay)
never carries it; the frozen holdout, copied byte for byte, keeps it."""


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
        if page is None:
            indices: Sequence[int] = []
        elif entity.indices is not None:
            indices = entity.indices
        else:
            indices = covered_word_indices(page, entity.boxes)
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
    values: Mapping[str, Mapping[str, str]] | None = None,
) -> list[DocumentExample]:
    """Join page records with labels into one example per document (sorted by doc id).

    Args:
        records: page records from preprocess.
        doc_types: gold document type per doc id (documents missing here get ``None``).
        entities: gold entity labels.
        values: per doc id, the field values the labels gave (labels by value).

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
    values = values or {}
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
                field_values=dict(values.get(doc_id, {})),
            )
        )
    if unmatched_total:
        logger.info("%d labelled entities matched no OCR word (lost to OCR)", unmatched_total)
    return examples


def examples_digest(examples: Iterable[DocumentExample]) -> str:
    """A content digest of examples (order-independent): changes whenever any label or word does."""
    hashes = sorted(
        # without values the digest is the one examples had before they could carry values
        hashlib.sha256(
            example.model_dump_json(
                exclude=None if example.field_values else {"field_values"}
            ).encode()
        ).hexdigest()
        for example in examples
    )
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def examples_table(examples: Iterable[DocumentExample]) -> pa.Table:
    """Examples as an Arrow table with :data:`EXAMPLE_ARROW_SCHEMA` (one row per example)."""
    columns: dict[str, list[object]] = {name: [] for name in EXAMPLE_ARROW_SCHEMA.names}
    for example in examples:
        row = example.model_dump()
        for name in EXAMPLE_ARROW_SCHEMA.names:
            columns[name].append(row[name])
    return pa.Table.from_pydict(columns, schema=EXAMPLE_ARROW_SCHEMA)


def write_table(storage: Storage, uri: str, table: pa.Table, *, statistics: bool = True) -> str:
    """Write an examples table (:data:`EXAMPLE_ARROW_SCHEMA`) as one Parquet file.

    Args:
        storage: the object store.
        uri: the file to write.
        table: the examples.
        statistics: write column statistics (min/max per page; nothing here reads them, and
            skipping them makes writing large nested tables about 10 % faster).

    Returns:
        The SHA-256 of the bytes written (the file's digest, see :func:`file_digest`).
    """
    sink = pa.BufferOutputStream()  # an Arrow sink: encoding runs without the GIL
    pq.write_table(table, sink, write_statistics=statistics)
    data = sink.getvalue().to_pybytes()
    storage.write_bytes(uri, data)
    return file_digest(data)


def file_digest(data: bytes) -> str:
    """The digest of a split written from columns: the SHA-256 of its Parquet bytes.

    Unlike :func:`examples_digest` it depends on row order, as training does (the trainer's
    permutation is over rows in file order), and it can be checked with ``sha256sum``. The same
    rows written by another pyarrow version may give other bytes, hence another digest.
    """
    return hashlib.sha256(data).hexdigest()


def write_examples(storage: Storage, uri: str, examples: Sequence[DocumentExample]) -> None:
    """Write examples as one Parquet file (with the field values column when any has values)."""
    table = examples_table(examples)
    if any(example.field_values for example in examples):
        values = [sorted(example.field_values.items()) for example in examples]
        table = table.append_column(
            pa.field(FIELD_VALUES_COLUMN, FIELD_VALUES_TYPE), pa.array(values, FIELD_VALUES_TYPE)
        )
    write_table(storage, uri, table)


def read_table(storage: Storage, uri: str) -> pa.Table:
    """Read a Parquet file of examples as an Arrow table with :data:`EXAMPLE_ARROW_SCHEMA`."""
    table = pq.read_table(pa.BufferReader(storage.read_bytes(uri)))
    if table.schema != EXAMPLE_ARROW_SCHEMA:
        table = table.select(EXAMPLE_ARROW_SCHEMA.names).cast(EXAMPLE_ARROW_SCHEMA)
    return table


def read_examples(storage: Storage, uri: str) -> list[DocumentExample]:
    """Read examples written by :func:`write_examples`."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    rows = table.to_pylist()
    for row in rows:
        if FIELD_VALUES_COLUMN in row:  # Arrow maps come back as (key, value) pairs
            row[FIELD_VALUES_COLUMN] = dict(row[FIELD_VALUES_COLUMN] or ())
    return [DocumentExample.model_validate(row) for row in rows]


SPLITS = ("train", "val", "holdout")


SOURCES = ("corrected", "confirmed", "replay")
"""Where a retrain example comes from: a corrected or a confirmed reviewed document, or replay."""


class RetrainSampling(BaseModel):
    """How a retrain-mode dataset was sampled (the knobs in force and what they gave).

    Attributes:
        previous_digest: digest of the dataset it replays from and copies the frozen holdout of.
        settings: the ``retrain`` configuration used, plus ``val_fraction``.
        weak_entities: entity types whose champion F1 was below ``weak_entity_f1``.
        champion_entity_f1: the per-entity F1 the weak entities were read from.
        replay_target: replay rows the ratio asked for in training; ``replay_rows`` what it got.
        replay_rows: replay rows in the training split.
        oversampled: training documents repeated because their correction touched weak entities.
        floor_added: documents added per entity type to reach ``min_docs_per_entity``.
        below_floor: entity types still under the floor in training (not enough documents).
        skipped: reviewed documents left out, per reason.
        notes: sentences on anything a person should know (shortfalls, fallbacks).
    """

    model_config = ConfigDict(extra="forbid")

    previous_digest: str
    settings: dict[str, float | int | bool]
    weak_entities: list[str] = []
    champion_entity_f1: dict[str, float] = {}
    replay_target: int = 0
    replay_rows: int = 0
    oversampled: int = 0
    floor_added: dict[str, int] = {}
    below_floor: list[str] = []
    skipped: dict[str, int] = {}
    notes: list[str] = []


class DatasetManifest(BaseModel):
    """What a dataset folder holds: splits, label sets, counts and a digest per split.

    Retrain-mode datasets add a ``feedback_holdout`` split and fill the fields after ``seed``;
    their defaults keep manifests written before them valid.
    """

    model_config = ConfigDict(extra="forbid")

    doc_types: list[str]
    entity_types: list[str]
    counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    entity_counts: dict[str, dict[str, int]]
    digests: dict[str, str]
    seed: int
    mode: Literal["initial", "retrain"] = "initial"
    source_counts: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Examples per split and source (corrected, confirmed, replay); retrain only.",
    )
    digest_method: Literal["examples", "file"] = Field(
        default="examples",
        description="How ``digests`` were computed: ``examples_digest`` (content, any row order) "
        "or ``file_digest`` (SHA-256 of the Parquet file); the frozen holdout keeps the digest it "
        "was first written with.",
    )
    sampling: RetrainSampling | None = None
    label_schema: LabelSchema | None = Field(
        default=None,
        description="The schema the labels were checked against: document types, fields and "
        "their kinds (absent in manifests written before it).",
    )
    labels: LabelReport | None = Field(
        default=None,
        description="Coverage per field and every label not taken exactly (initial mode).",
    )

    @property
    def digest(self) -> str:
        """One digest for the whole dataset."""
        return hashlib.sha256(json.dumps(self.digests, sort_keys=True).encode()).hexdigest()


def split_draw(doc_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the document id and the seed."""
    return int(hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()[:12], 16) / 16**12


def split_of(doc_id: str, seed: int, val_fraction: float, holdout_fraction: float) -> str:
    """Assign a document to a split from its id alone, so a document never crosses splits."""
    draw = split_draw(doc_id, seed)
    if draw < holdout_fraction:
        return "holdout"
    if draw < holdout_fraction + val_fraction:
        return "val"
    return "train"


def _share(count: int, fraction: float) -> int:
    """Documents of a class that a split with ``fraction`` gets: at least one when asked for."""
    if fraction <= 0 or count < 3:
        return 0
    return max(1, round(count * fraction))


def stratified_splits(
    examples: Iterable[DocumentExample], seed: int, val_fraction: float, holdout_fraction: float
) -> dict[str, list[DocumentExample]]:
    """Split labelled documents by id, stratified by document type.

    Within each type, documents are ordered by a draw fixed by (seed, document id); the first
    ``holdout_fraction`` go to the holdout, the next ``val_fraction`` to validation, the rest to
    training. Every type with at least 3 documents is in every split, a document is in exactly
    one split, and the same documents and seed always give the same splits. Types with fewer
    than 3 documents train only (a holdout of one is no evidence).
    """
    by_type: dict[str, list[DocumentExample]] = defaultdict(list)
    for example in examples:
        by_type[str(example.doc_type)].append(example)
    splits: dict[str, list[DocumentExample]] = {name: [] for name in SPLITS}
    for doc_type in sorted(by_type):
        group = sorted(by_type[doc_type], key=lambda e: (split_draw(e.doc_id, seed), e.doc_id))
        holdout = _share(len(group), holdout_fraction)
        val = min(_share(len(group), val_fraction), len(group) - holdout - 1)
        splits["holdout"].extend(group[:holdout])
        splits["val"].extend(group[holdout : holdout + max(val, 0)])
        splits["train"].extend(group[holdout + max(val, 0) :])
        if holdout == 0:
            logger.warning(
                "document type %r has %d labelled documents: all go to training, none to the "
                "holdout or validation (label at least 3)",
                doc_type,
                len(group),
            )
    return {name: sorted(docs, key=lambda e: e.doc_id) for name, docs in splits.items()}


def write_dataset(
    storage: Storage,
    uri: str,
    splits: Mapping[str, Sequence[DocumentExample]],
    seed: int,
    *,
    label_schema: LabelSchema | None = None,
    labels: LabelReport | None = None,
) -> DatasetManifest:
    """Write ``<uri>/<split>.parquet`` for each split plus ``manifest.json``.

    ``label_schema`` and ``labels`` (the schema in force and the label report) go into the
    manifest as given.
    """
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
        label_schema=label_schema,
        labels=labels,
    )
    storage.write_text(join(uri, "manifest.json"), manifest.model_dump_json(indent=2))
    return manifest


def read_manifest(storage: Storage, uri: str) -> DatasetManifest:
    """Read a dataset folder's manifest."""
    return DatasetManifest.model_validate_json(storage.read_text(join(uri, "manifest.json")))

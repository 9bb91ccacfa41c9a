"""The label contract: what a document's gold labels are, and which OCR words they cover.

A labels file is JSON lines, one :class:`DocumentLabel` per document: its ``doc_id``, its type and
its entities, each an :class:`EntityLabel` with the type, the printed value, the page and the boxes
of the words it occupies (0-1000, in the final page's coordinates). The synthetic corpus's
``labels.jsonl`` is one. Entity types are checked against :data:`ENTITY_TYPES`.

Labels meet OCR by position: an OCR word belongs to an entity when its box centre falls inside one
of the entity's word boxes (padded a little for OCR's looser boxes). Build-dataset uses the same
rule to tag words for training.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from docloop.documents.schema import PageRecord
from docloop.errors import InvalidInput
from docloop.storage import Storage

DOC_TYPES: tuple[str, ...] = (
    "referral_letter",
    "lab_report",
    "prescription",
    "insurance_claim",
    "invoice",
    "discharge_summary",
)
"""Document classes, the targets of the classifier."""

ENTITY_TYPES: tuple[str, ...] = (
    "patient_name",
    "date_of_birth",
    "mrn",
    "provider_name",
    "npi",
    "date_of_service",
    "total_amount",
    "payer",
    "member_id",
    "diagnosis_code",
)
"""Entity types, the targets of the extractor."""

Box = Annotated[list[int], Field(min_length=4, max_length=4)]


class LabelWord(BaseModel):
    """One word of an entity value and where it is on its page.

    Attributes:
        text: the word as printed (whitespace-delimited token).
        box: ``[x0, y0, x1, y1]``, top-left origin, normalised to 0-1000 of the page width and
            height of the page as stored in the PDF (after any scan rotation).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)
    box: Box

    @field_validator("box")
    @classmethod
    def _box_is_ordered(cls, box: list[int]) -> list[int]:
        x0, y0, x1, y1 = box
        if not (0 <= x0 <= x1 <= 1000 and 0 <= y0 <= y1 <= 1000):
            msg = f"box {box} must satisfy 0 <= x0 <= x1 <= 1000 and 0 <= y0 <= y1 <= 1000"
            raise ValueError(msg)
        return box


class EntityLabel(BaseModel):
    """One labelled entity: its type, the exact printed value and the words it occupies.

    Attributes:
        type: one of :data:`ENTITY_TYPES`.
        value: the exact string printed (its words joined by single spaces).
        page: 0-based page index.
        words: the value's words in reading order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    value: str = Field(min_length=1)
    page: int = Field(ge=0)
    words: list[LabelWord] = Field(min_length=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in ENTITY_TYPES:
            msg = f"unknown entity type {value!r}; expected one of {', '.join(ENTITY_TYPES)}"
            raise ValueError(msg)
        return value


class DocumentLabel(BaseModel):
    """Gold labels of one document (extra fields, e.g. the corpus's own metadata, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    doc_id: str
    doc_type: str | None = None
    entities: list[EntityLabel] = []


def read_labels(storage: Storage, uri: str) -> list[DocumentLabel]:
    """Read a labels JSONL file.

    Raises:
        InvalidInput: a line is not a valid label; the message gives the line number.
    """
    labels: list[DocumentLabel] = []
    for number, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            labels.append(DocumentLabel.model_validate_json(line))
        except ValidationError as exc:
            raise InvalidInput(f"{uri} line {number} is not a valid label: {exc}") from exc
    return labels


DEFAULT_PAD = 6
_STRIP = string.punctuation + "\u2018\u2019\u201c\u201d"


def normalise_text(text: str) -> str:
    """Compare texts the way a reviewer would: case-folded, single spaces, no edge punctuation."""
    return " ".join(word.strip(_STRIP) for word in text.casefold().split()).strip()


def covered_word_indices(
    record: PageRecord, boxes: Iterable[Sequence[int]], pad: int = DEFAULT_PAD
) -> list[int]:
    """Indices (reading order) of the record's words whose box centre lies inside a label box."""
    padded = [(x0 - pad, y0 - pad, x1 + pad, y1 + pad) for x0, y0, x1, y1 in boxes]
    hits: list[int] = []
    for index, (x0, y0, x1, y1) in enumerate(record.boxes):
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if any(a <= cx <= c and b <= cy <= d for a, b, c, d in padded):
            hits.append(index)
    return hits


@dataclass
class RecoveryReport:
    """How many labelled entities OCR (or the text layer) reproduced exactly."""

    total: int = 0
    recovered: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    recovered_by_type: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    recovered_by_source: Counter[str] = field(default_factory=Counter)
    missing_pages: int = 0

    @property
    def rate(self) -> float:
        """Share of entities recovered (0 when there are none)."""
        return self.recovered / self.total if self.total else 0.0

    def rate_of(self, source: str) -> float:
        """Recovery rate for pages from one source (``ocr`` or ``text_layer``)."""
        total = self.by_source[source]
        return self.recovered_by_source[source] / total if total else 0.0


@dataclass(frozen=True)
class LabelledEntity:
    """The parts of an entity label that alignment needs."""

    doc_id: str
    type: str
    value: str
    page: int
    boxes: tuple[tuple[int, int, int, int], ...]


def entity_recovery(
    records: Iterable[PageRecord], entities: Iterable[LabelledEntity], pad: int = DEFAULT_PAD
) -> RecoveryReport:
    """Measure how many entities' values can be read back from the page records' words."""
    pages = {(record.doc_id, record.page): record for record in records}
    report = RecoveryReport()
    for entity in entities:
        record = pages.get((entity.doc_id, entity.page))
        if record is None:
            report.missing_pages += 1
            continue
        report.total += 1
        report.by_type[entity.type] += 1
        report.by_source[record.source] += 1
        words = [record.words[i] for i in covered_word_indices(record, entity.boxes, pad)]
        if normalise_text(" ".join(words)) == normalise_text(entity.value):
            report.recovered += 1
            report.recovered_by_type[entity.type] += 1
            report.recovered_by_source[record.source] += 1
    return report


def labelled_entities(labels: Iterable[DocumentLabel]) -> list[LabelledEntity]:
    """Flatten document labels into what word alignment needs."""
    return [
        LabelledEntity(
            doc_id=label.doc_id,
            type=entity.type,
            value=entity.value,
            page=entity.page,
            boxes=tuple((w.box[0], w.box[1], w.box[2], w.box[3]) for w in entity.words),
        )
        for label in labels
        for entity in label.entities
    ]

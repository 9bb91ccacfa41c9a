"""The label contract: what a document's gold labels are, and which OCR words they cover.

A labels file is JSON lines, one :class:`DocumentLabel` per document. It names its document by
``doc_id`` (sha256 of the bytes) or by ``source`` (its path below the input prefix), gives its
type, and labels fields in either or both of two forms:

- by word positions: ``entities``, each an :class:`EntityLabel` with the field, the printed value,
  the page and the words it occupies (text and box, 0-1000 in the final page's coordinates; the
  synthetic corpus's ``labels.jsonl`` is one);
- by value: ``fields: {name: value | [values]}`` (and optionally ``page``), located among the OCR
  words by :mod:`docloop.documents.locate`.

Names are checked against the user's schema (:mod:`docloop.documents.label_schema`) when labels
meet page records (:mod:`docloop.documents.alignment`), not here. Word positions meet OCR by
identity first (the same text in an overlapping box), else by position: an OCR word belongs to a
label word when its box centre falls inside the label word's box (padded a little for OCR's looser
boxes).
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from docloop.documents.schema import PageRecord
from docloop.errors import InvalidInput
from docloop.storage import Storage

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
    index: int | None = Field(
        default=None, ge=0, description="The word's index in its page record, when known."
    )

    @field_validator("box")
    @classmethod
    def _box_is_ordered(cls, box: list[int]) -> list[int]:
        x0, y0, x1, y1 = box
        if not (0 <= x0 <= x1 <= 1000 and 0 <= y0 <= y1 <= 1000):
            msg = f"box {box} must satisfy 0 <= x0 <= x1 <= 1000 and 0 <= y0 <= y1 <= 1000"
            raise ValueError(msg)
        return box


class EntityLabel(BaseModel):
    """One labelled entity: its field, the exact printed value and the words it occupies.

    Attributes:
        type: the field's name (checked against the schema when labels meet pages).
        value: the exact string printed (its words joined by single spaces).
        page: 0-based page index.
        words: the value's words in reading order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1)
    value: str = Field(min_length=1)
    page: int = Field(ge=0)
    words: list[LabelWord] = Field(min_length=1)


FieldValues = str | list[str]


class DocumentLabel(BaseModel):
    """Gold labels of one document (extra keys, e.g. the corpus's own metadata, are ignored).

    Attributes:
        doc_id: sha256 (hex) of the document's bytes; or
        source: its path below the preprocess input prefix, e.g. ``000.jpg`` or ``2024/a.pdf``.
        doc_type: its document type (may be left out when the schema has one type).
        entities: labels by word positions.
        fields: labels by value, ``{field: value}`` or ``{field: [values]}``.
        page: the 0-based page the ``fields`` values are on (all pages when left out).
    """

    model_config = ConfigDict(extra="ignore")

    doc_id: str | None = None
    source: str | None = Field(default=None, min_length=1)
    doc_type: str | None = None
    entities: list[EntityLabel] = []
    fields: dict[str, FieldValues] = {}
    page: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _names_a_document(self) -> DocumentLabel:
        if self.doc_id is None and self.source is None:
            raise ValueError(
                "a label names its document by doc_id (sha256 of the file) or by source "
                "(its path below the preprocess input, e.g. 000.jpg)"
            )
        return self

    @property
    def document(self) -> str:
        """How the label names its document (for messages)."""
        return self.source if self.source is not None else str(self.doc_id)

    def values(self) -> list[tuple[str, str]]:
        """``(field, value)`` pairs of ``fields``, in the order given."""
        return [
            (name, value)
            for name, given in self.fields.items()
            for value in ([given] if isinstance(given, str) else given)
        ]


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
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    indices: tuple[int, ...] | None = None
    """Word indices of the page record already decided (by alignment or location); None: by
    ``boxes`` (:func:`covered_word_indices`)."""


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
        if label.doc_id is not None
        for entity in label.entities
    ]


@dataclass(frozen=True)
class WordAlignment:
    """Which OCR words of a page record a word-position label took.

    Attributes:
        indices: the record's word indices taken, in reading order.
        taken: their text, joined by spaces.
        lost: the label's words that no OCR word was taken for.
        by_identity: label words matched by identity (index or same text in an overlapping box).
    """

    indices: tuple[int, ...]
    taken: str
    lost: tuple[str, ...]
    by_identity: int

    def reads_as(self, value: str) -> bool:
        """Whether the words taken read as ``value`` (case, spacing and punctuation aside)."""
        return _letters(self.taken) == _letters(value)


def _letters(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _overlap(a: Sequence[int], b: Sequence[int]) -> int:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0)


def align_words(
    record: PageRecord, words: Sequence[LabelWord], pad: int = DEFAULT_PAD
) -> WordAlignment:
    """Align a label's words with a page record's OCR words.

    Each label word takes, in order of preference: the record word at its ``index`` when that word
    reads the same; else the record word with the same text whose box overlaps its (padded) box
    most; else every record word whose box centre lies inside its padded box.
    """
    taken: set[int] = set()
    lost: list[str] = []
    identity = 0
    for word in words:
        text = _letters(word.text)
        if (
            word.index is not None
            and word.index < len(record.words)
            and _letters(record.words[word.index]) == text
        ):
            taken.add(word.index)
            identity += 1
            continue
        x0, y0, x1, y1 = word.box
        padded = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
        same = [
            (_overlap(padded, box), index)
            for index, box in enumerate(record.boxes)
            if text and _letters(record.words[index]) == text and _overlap(padded, box) > 0
        ]
        if same:
            taken.add(max(same)[1])
            identity += 1
            continue
        inside = covered_word_indices(record, [word.box], pad)
        if inside:
            taken.update(inside)
        else:
            lost.append(word.text)
    indices = tuple(sorted(taken))
    return WordAlignment(
        indices=indices,
        taken=" ".join(record.words[i] for i in indices),
        lost=tuple(lost),
        by_identity=identity,
    )

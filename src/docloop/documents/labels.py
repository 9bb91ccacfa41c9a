"""Ground truth meets OCR: which OCR words an entity label covers, and how many survive OCR.

Labels carry the boxes of the words an entity occupies (0-1000, in the final page's coordinates);
an OCR word belongs to the entity when its box centre falls inside one of those boxes (padded a
little for OCR's looser boxes). Build-dataset uses the same rule to tag words for training.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from docloop.documents.schema import PageRecord

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

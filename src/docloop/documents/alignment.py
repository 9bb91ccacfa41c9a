"""Labels meet page records: documents resolved, names checked, words aligned, values located.

Every label ends in exactly one of three places, counted per field in the :class:`LabelReport`:
located exactly (its words read as its value), located fuzzily (a value found within the OCR-error
bound, or word positions whose words do not read as the value), or not located. Everything that
is not exact, and every label that could not be used at all (unknown or quarantined document, a
name outside the schema, an empty value, a missing type), is an :class:`LabelIssue` naming the
document, the field, the value, what was taken or the best candidate, and what to do.

Values are located in two passes so that the tie rule of :func:`docloop.documents.locate.choose`
can use each field's typical position in the batch: the first pass collects the unambiguous
locations, the second resolves the rest.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict

from docloop.documents.label_schema import LabelSchema, schema_from_names
from docloop.documents.labels import DocumentLabel, LabelledEntity, align_words
from docloop.documents.locate import (
    Candidate,
    PageWords,
    candidates,
    choose,
    compact,
    max_distance,
    nearest_miss,
    typical_position,
)
from docloop.documents.schema import PageRecord, QuarantineEntry

logger = logging.getLogger(__name__)

IssueCode = Literal[
    "unknown_document",
    "ambiguous_source",
    "quarantined_document",
    "unknown_doc_type",
    "missing_doc_type",
    "conflicting_doc_type",
    "unknown_field",
    "empty_value",
    "missing_page",
    "not_located",
    "located_fuzzily",
    "misaligned",
    "overlapping",
]


class FieldCoverage(BaseModel):
    """How the values given for one field fared."""

    model_config = ConfigDict(extra="forbid")

    given: int = 0
    exact: int = 0
    fuzzy: int = 0
    not_located: int = 0

    @property
    def located(self) -> int:
        """Values located, exactly or fuzzily."""
        return self.exact + self.fuzzy


class LabelIssue(BaseModel):
    """One label (or labelled document) that was not taken exactly as given."""

    model_config = ConfigDict(extra="forbid")

    code: IssueCode
    document: str
    doc_id: str | None = None
    field: str | None = None
    value: str | None = None
    taken: str | None = None
    lost: str | None = None
    distance: int | None = None
    message: str


class LabelReport(BaseModel):
    """Coverage per field and every issue, as written to the dataset manifest."""

    model_config = ConfigDict(extra="forbid")

    documents: int = 0
    documents_used: int = 0
    coverage: dict[str, FieldCoverage] = {}
    issues: list[LabelIssue] = []

    @property
    def total(self) -> FieldCoverage:
        """All fields together."""
        total = FieldCoverage()
        for row in self.coverage.values():
            total.given += row.given
            total.exact += row.exact
            total.fuzzy += row.fuzzy
            total.not_located += row.not_located
        return total


@dataclass
class ResolvedLabels:
    """Labels turned into what examples are built from."""

    schema: LabelSchema
    doc_types: dict[str, str]
    entities: list[LabelledEntity]
    report: LabelReport
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per doc id, the value given for each field (labels by value; the first of several),
    located among the words or not."""


@dataclass
class _Pending:
    """A value waiting for the second pass."""

    doc_id: str
    document: str
    field: str
    value: str
    found: list[Candidate]


class _Documents:
    """Finds a label's document among page records and quarantine entries."""

    def __init__(self, records: Sequence[PageRecord], quarantine: Sequence[QuarantineEntry]):
        self.pages: dict[str, list[PageRecord]] = defaultdict(list)
        self.by_source: dict[str, set[str]] = defaultdict(set)
        for record in records:
            self.pages[record.doc_id].append(record)
            self.by_source[record.source_uri].add(record.doc_id)
        for pages in self.pages.values():
            pages.sort(key=lambda r: r.page)
        self.quarantine = list(quarantine)

    def quarantined(self, label: DocumentLabel) -> QuarantineEntry | None:
        for entry in self.quarantine:
            if (label.doc_id is not None and entry.doc_id == label.doc_id) or (
                label.source is not None and _names(entry.source_uri, label.source)
            ):
                return entry
        return None

    def resolve(self, label: DocumentLabel) -> tuple[str | None, LabelIssue | None]:
        """The label's doc id, or the issue that says why it has none."""
        if label.doc_id is not None and label.doc_id in self.pages:
            return label.doc_id, None
        if label.doc_id is None and label.source is not None:
            ids = sorted(
                {
                    i
                    for uri, found in self.by_source.items()
                    if _names(uri, label.source)
                    for i in found
                }
            )
            if len(ids) == 1:
                return ids[0], None
            if len(ids) > 1:
                return None, LabelIssue(
                    code="ambiguous_source",
                    document=label.document,
                    message=f"source {label.source!r} names {len(ids)} processed documents; give "
                    "more of its path (as below the preprocess input) or its doc_id",
                )
        entry = self.quarantined(label)
        if entry is not None:
            return None, LabelIssue(
                code="quarantined_document",
                document=label.document,
                doc_id=entry.doc_id,
                message=f"the document was quarantined by preprocess ({entry.code}: "
                f"{entry.reason}); its labels are not used until it is processed",
            )
        how = "doc_id" if label.doc_id is not None else "source"
        return None, LabelIssue(
            code="unknown_document",
            document=label.document,
            doc_id=label.doc_id,
            message=f"no processed document has this {how}; check it against the preprocess "
            "output (doc_id: sha256 of the file's bytes; source: its path below the input "
            "prefix) and run preprocess on the document if it is new; a file with the same "
            "bytes as another is processed once, under the other's name (label it by doc_id)",
        )


def _names(uri: str, source: str) -> bool:
    """Whether ``source`` (a path below the input prefix) names the object at ``uri``."""
    relative = source.lstrip("/")
    return (
        uri == source or uri.endswith("/" + relative) or PurePosixPath(uri).as_posix() == relative
    )


def _page_words(pages: Sequence[PageRecord], page: int | None) -> list[PageWords]:
    return [
        PageWords(page=r.page, words=r.words, boxes=r.boxes)
        for r in pages
        if page is None or r.page == page
    ]


class _Resolver:
    def __init__(
        self, schema: LabelSchema, max_char_error_rate: float, records: Sequence[PageRecord]
    ) -> None:
        self.schema = schema
        self.boxes = {(r.doc_id, r.page): r.boxes for r in records}
        self.rate = max_char_error_rate
        self.report = LabelReport(coverage={name: FieldCoverage() for name in schema.field_names})
        self.entities: list[LabelledEntity] = []
        self.taken: dict[str, set[tuple[int, int]]] = defaultdict(set)
        self.pending: list[_Pending] = []
        self.given: dict[str, dict[str, str]] = defaultdict(dict)

    def issue(self, issue: LabelIssue) -> None:
        self.report.issues.append(issue)

    def row(self, name: str) -> FieldCoverage:
        return self.report.coverage.setdefault(name, FieldCoverage())

    def _accept(
        self, doc_id: str, name: str, value: str, page: int, indices: Sequence[int]
    ) -> bool:
        """Keep an entity unless its words already belong to another (then report it)."""
        cells = {(page, i) for i in indices}
        if cells & self.taken[doc_id]:
            return False
        self.taken[doc_id] |= cells
        self.entities.append(
            LabelledEntity(doc_id=doc_id, type=name, value=value, page=page, indices=tuple(indices))
        )
        return True

    def word_positions(self, label: DocumentLabel, doc_id: str, pages: list[PageRecord]) -> None:
        by_page = {r.page: r for r in pages}
        for entity in label.entities:
            refusal = self.schema.unknown_field(entity.type)
            if refusal:
                self.issue(
                    _issue("unknown_field", label, doc_id, entity.type, entity.value, refusal)
                )
                continue
            row = self.row(entity.type)
            row.given += 1
            record = by_page.get(entity.page)
            if record is None:
                row.not_located += 1
                self.issue(
                    _issue(
                        "missing_page",
                        label,
                        doc_id,
                        entity.type,
                        entity.value,
                        f"the label is on page {entity.page} but the document has pages "
                        f"{sorted(by_page)}; correct the label's page",
                    )
                )
                continue
            aligned = align_words(record, entity.words)
            if not aligned.indices:
                row.not_located += 1
                self.issue(
                    _issue(
                        "not_located",
                        label,
                        doc_id,
                        entity.type,
                        entity.value,
                        "no OCR word lies in the label's boxes (lost to OCR, or boxes not in "
                        "0-1000 page coordinates)",
                        lost=" ".join(w.text for w in entity.words),
                    )
                )
                continue
            if not self._accept(doc_id, entity.type, entity.value, entity.page, aligned.indices):
                row.not_located += 1
                self.issue(
                    _issue(
                        "overlapping",
                        label,
                        doc_id,
                        entity.type,
                        entity.value,
                        "its words already belong to another label of the document; the first "
                        "label keeps them",
                        taken=aligned.taken,
                    )
                )
                continue
            if aligned.reads_as(entity.value) and not aligned.lost:
                row.exact += 1
                continue
            row.fuzzy += 1
            self.issue(
                _issue(
                    "misaligned",
                    label,
                    doc_id,
                    entity.type,
                    entity.value,
                    "the OCR words taken do not read as the value (neighbours picked up or "
                    "words lost); they are used as taken; check the boxes",
                    taken=aligned.taken,
                    lost=" ".join(aligned.lost) or None,
                )
            )

    def values(self, label: DocumentLabel, doc_id: str, pages: list[PageRecord]) -> None:
        for name, value in label.values():  # the gold values, whether the words are found or not
            if compact(value) and not self.schema.unknown_field(name):
                self.given[doc_id].setdefault(name, value)  # one value a field: the first
        words = _page_words(pages, label.page)
        if label.page is not None and not words:
            for name, value in label.values():
                self.row(name).given += 1
                self.row(name).not_located += 1
                self.issue(
                    _issue(
                        "missing_page",
                        label,
                        doc_id,
                        name,
                        value,
                        f"the label names page {label.page} but the document has pages "
                        f"{[r.page for r in pages]}; correct the label's page",
                    )
                )
            return
        # longer values first: they are the more specific, and a short one must not take their words
        ordered = sorted(label.values(), key=lambda pair: -len(compact(pair[1])))
        for name, value in ordered:
            refusal = self.schema.unknown_field(name)
            if refusal:
                self.issue(_issue("unknown_field", label, doc_id, name, value, refusal))
                continue
            row = self.row(name)
            row.given += 1
            if not compact(value):
                row.not_located += 1
                self.issue(
                    _issue(
                        "empty_value",
                        label,
                        doc_id,
                        name,
                        value,
                        "the value is empty (or punctuation only); give the printed value, or "
                        "leave the field out when the document does not have it",
                    )
                )
                continue
            found = candidates(
                words,
                value,
                self.schema.kind_of(name),
                self.rate,
                frozenset(self.taken[doc_id]),
            )
            if not found:
                row.not_located += 1
                miss = nearest_miss(words, value)
                self.issue(
                    _issue(
                        "not_located",
                        label,
                        doc_id,
                        name,
                        value,
                        f"no run of OCR words is within {max_distance(value, self.rate)} edits of "
                        "the value (OCR misread it, or the value is not printed as given)",
                        taken=miss.text if miss else None,
                        distance=miss.distance if miss else None,
                    )
                )
                continue
            if len(found) == 1:
                self._place(label, doc_id, name, value, found[0])
            else:
                self.pending.append(_Pending(doc_id, label.document, name, value, found))

    def _place(
        self, label: DocumentLabel | str, doc_id: str, name: str, value: str, chosen: Candidate
    ) -> None:
        document = label if isinstance(label, str) else label.document
        row = self.row(name)
        if not self._accept(doc_id, name, value, chosen.page, chosen.indices):
            row.not_located += 1
            self.issue(
                LabelIssue(
                    code="overlapping",
                    document=document,
                    doc_id=doc_id,
                    field=name,
                    value=value,
                    taken=chosen.text,
                    message="its words already belong to another value of the document",
                )
            )
            return
        if chosen.distance == 0:
            row.exact += 1
            return
        row.fuzzy += 1
        self.issue(
            LabelIssue(
                code="located_fuzzily",
                document=document,
                doc_id=doc_id,
                field=name,
                value=value,
                taken=chosen.text,
                distance=chosen.distance,
                message=f"located {chosen.distance} edit(s) away (OCR errors); the words are used "
                "as read",
            )
        )

    def second_pass(self) -> None:
        centres: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for name, centre in self._placed_centres():
            centres[name].append(centre)
        for pending in self.pending:
            found = [
                c
                for c in pending.found
                if not ({(c.page, i) for i in c.indices} & self.taken[pending.doc_id])
            ]
            if not found:
                self.row(pending.field).not_located += 1
                self.issue(
                    LabelIssue(
                        code="overlapping",
                        document=pending.document,
                        doc_id=pending.doc_id,
                        field=pending.field,
                        value=pending.value,
                        taken=pending.found[0].text,
                        message="every location of the value already belongs to another value",
                    )
                )
                continue
            kind = self.schema.kind_of(pending.field)
            chosen = choose(found, kind, typical_position(centres[pending.field]))
            self._place(pending.document, pending.doc_id, pending.field, pending.value, chosen)

    def _placed_centres(self) -> Iterable[tuple[str, tuple[float, float]]]:
        """Each field's centre in every document where it was placed before the second pass."""
        for entity in self.entities:
            boxes = self.boxes.get((entity.doc_id, entity.page), [])
            if not boxes or not entity.indices:
                continue
            xs = [(boxes[i][0] + boxes[i][2]) / 2 for i in entity.indices]
            ys = [(boxes[i][1] + boxes[i][3]) / 2 for i in entity.indices]
            yield entity.type, (sum(xs) / len(xs), sum(ys) / len(ys))


def _issue(
    code: IssueCode,
    label: DocumentLabel,
    doc_id: str | None,
    name: str | None,
    value: str | None,
    message: str,
    *,
    taken: str | None = None,
    lost: str | None = None,
    distance: int | None = None,
) -> LabelIssue:
    return LabelIssue(
        code=code,
        document=label.document,
        doc_id=doc_id,
        field=name,
        value=value,
        taken=taken,
        lost=lost,
        distance=distance,
        message=message,
    )


def schema_of_labels(labels: Iterable[DocumentLabel]) -> LabelSchema:
    """The schema the labels themselves name (when the config declares none)."""
    labels = list(labels)
    return schema_from_names(
        (label.doc_type for label in labels),
        [e.type for label in labels for e in label.entities]
        + [name for label in labels for name in label.fields],
    )


def resolve_labels(
    labels: Sequence[DocumentLabel],
    records: Sequence[PageRecord],
    schema: LabelSchema | None = None,
    quarantine: Sequence[QuarantineEntry] = (),
    *,
    max_char_error_rate: float = 0.2,
) -> ResolvedLabels:
    """Resolve labels against page records (see the module docstring).

    Args:
        labels: the labels file's lines.
        records: the preprocess output's page records.
        schema: the declared schema; None to take it from the labels.
        quarantine: preprocess's quarantine entries (to say why a labelled document is missing).
        max_char_error_rate: value location's OCR-error bound (edits per character).

    Returns:
        Each labelled document's type, the entities with their words decided, and the report.
    """
    schema = schema or schema_of_labels(labels)
    documents = _Documents(records, quarantine)
    resolver = _Resolver(schema, max_char_error_rate, records)
    doc_types: dict[str, str] = {}
    seen: set[str] = set()
    for label in labels:
        resolver.report.documents += 1
        doc_id, problem = documents.resolve(label)
        if doc_id is None:
            if problem is not None:
                resolver.issue(problem)
            continue
        doc_type = _doc_type(label, doc_id, schema, resolver)
        if doc_type is None:
            continue
        if doc_id in doc_types and doc_types[doc_id] != doc_type:
            resolver.issue(
                _issue(
                    "conflicting_doc_type",
                    label,
                    doc_id,
                    None,
                    doc_type,
                    f"an earlier line gives this document the type {doc_types[doc_id]!r}; that "
                    "one is kept; give one type per document",
                )
            )
        doc_types.setdefault(doc_id, doc_type)
        seen.add(doc_id)
        pages = documents.pages[doc_id]
        resolver.word_positions(label, doc_id, pages)
        resolver.values(label, doc_id, pages)
    resolver.second_pass()
    resolver.report.documents_used = len(seen)
    report = resolver.report
    report.coverage = dict(sorted(report.coverage.items()))
    return ResolvedLabels(
        schema=schema,
        doc_types=doc_types,
        entities=resolver.entities,
        report=report,
        values={doc_id: dict(values) for doc_id, values in resolver.given.items()},
    )


def _doc_type(
    label: DocumentLabel, doc_id: str, schema: LabelSchema, resolver: _Resolver
) -> str | None:
    if label.doc_type is None:
        if len(schema.doc_types) == 1:
            return schema.doc_types[0]
        resolver.issue(
            _issue(
                "missing_doc_type",
                label,
                doc_id,
                None,
                None,
                f"the schema has {len(schema.doc_types)} document types "
                f"({', '.join(schema.doc_types)}); give the label's doc_type",
            )
        )
        return None
    refusal = schema.unknown_doc_type(label.doc_type)
    if refusal:
        resolver.issue(_issue("unknown_doc_type", label, doc_id, None, label.doc_type, refusal))
        return None
    return label.doc_type

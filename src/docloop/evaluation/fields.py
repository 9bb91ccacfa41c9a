"""Field-level scoring: is each field's value, as a person reads it, right?

Entity F1 (seqeval) scores word tags; a user who asked for a document's ``total`` wants the value.
The field protocol is the SROIE key-information task's: per document and field, the predicted value
is right when it equals the gold value after normalisation (case folded, runs of whitespace made
one space, ends trimmed); precision is right / predicted values, recall right / gold values. Given
the fields' kinds, values compare as their kind reads them, by the rules labels are located with
(`docloop.documents.locate`): a ``date`` as an ISO date, an ``amount`` as a decimal (``RM9.00`` is
``9.00``, ``25/12/2018`` is ``25 Dec 2018``), a text or an id without case, spacing and
punctuation (``NO.5,JALAN`` is ``NO. 5, JALAN``); a misread letter or digit is still wrong.

One value per field, as a form would take it: `field_values` picks, from several spans of one
field, the most confident (the first on ties); the evaluation scores the extractor's own answer per
field (`docloop.models.inference.ExtractionResult.fields`), the one the predictor serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from docloop.documents.examples import DocumentExample
from docloop.documents.locate import amount_of, compact, field_value
from docloop.models.metrics import entity_spans

if TYPE_CHECKING:  # the gate reads field scores without loading torch
    from docloop.models.inference import EntityPrediction


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def normalise_value(value: str) -> str:
    """Case folded, whitespace runs as one space, ends trimmed."""
    return " ".join(value.casefold().split())


def normalise_field(value: str, kind: str = "text") -> str:
    """A value as its field's kind reads it: a date or amount by `field_value`, else `compact`.

    A date or an amount with nothing of its kind in it compares as a text.
    """
    if kind == "amount" and amount_of(value) is not None:
        return field_value(kind, value)
    if kind == "date":
        read = field_value(kind, value)
        if _ISO_DATE.fullmatch(read):
            return read
    return compact(value)


def field_values(entities: Iterable[EntityPrediction]) -> dict[str, str]:
    """One value per field: the most confident span of each type (first on ties)."""
    best: dict[str, EntityPrediction] = {}
    for entity in entities:
        kept = best.get(entity.type)
        if kept is None or entity.confidence > kept.confidence:
            best[entity.type] = entity
    return {kind: entity.text for kind, entity in best.items()}


def labelled_values(example: DocumentExample) -> dict[str, str]:
    """A holdout document's gold value per field.

    The values its labels gave when it was labelled by value (located among the OCR words or
    not: a correct answer for a value location missed is still correct); else the words of the
    first gold span of each field.
    """
    if example.field_values:
        return dict(example.field_values)
    values: dict[str, str] = {}
    for span in entity_spans(example.tags):
        values.setdefault(span.type, " ".join(example.words[span.start : span.end]))
    return values


@dataclass
class FieldScore:
    """Counts and rates of one field (or of all, micro-averaged)."""

    gold: int = 0
    predicted: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        """Right values among the predicted ones (0 when none was predicted)."""
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        """Right values among the gold ones (0 when there is no gold value)."""
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready counts and rates."""
        return {
            "gold": self.gold,
            "predicted": self.predicted,
            "correct": self.correct,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


@dataclass
class FieldReport:
    """Field-protocol scores per field and over all fields (micro)."""

    per_field: dict[str, FieldScore] = field(default_factory=dict)
    overall: FieldScore = field(default_factory=FieldScore)
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(document, field, gold, predicted) of every wrong or missing value."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready report (errors left out)."""
        return {
            "overall": self.overall.as_dict(),
            "per_field": {name: s.as_dict() for name, s in sorted(self.per_field.items())},
        }


def field_protocol(
    gold: Mapping[str, Mapping[str, str]],
    predicted: Mapping[str, Mapping[str, str]],
    kinds: Mapping[str, str] | None = None,
) -> FieldReport:
    """Score predicted field values against gold ones, per document and field.

    Args:
        gold: per document id, the gold value of each field it has.
        predicted: per document id, the predicted value of each field (documents missing here
            predicted nothing). Predictions for documents without gold are ignored.
        kinds: field name -> kind (``text``, ``date``, ``amount``, ``id``): values compare as
            their kinds read them (a field missing here as a text); None compares the printed
            strings (SROIE's protocol).
    """

    def read(name: str, value: str) -> str:
        if kinds is None:
            return normalise_value(value)
        return normalise_field(value, kinds.get(name, "text"))

    report = FieldReport()
    for doc_id, fields in gold.items():
        guesses = predicted.get(doc_id, {})
        for name in sorted(set(fields) | set(guesses)):
            score = report.per_field.setdefault(name, FieldScore())
            truth = read(name, fields.get(name) or "")
            guess = read(name, guesses.get(name) or "")
            for counts in (score, report.overall):
                counts.gold += bool(truth)
                counts.predicted += bool(guess)
                counts.correct += bool(truth) and truth == guess
            if name in fields and not (truth and truth == guess):
                report.errors.append((doc_id, name, fields[name], guesses.get(name) or ""))
    return report

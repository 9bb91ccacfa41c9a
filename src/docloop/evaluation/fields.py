"""Field-level scoring: is each field's value, as a person reads it, right?

Entity F1 (seqeval) scores word tags; a user who asked for a document's ``total`` wants the value.
The field protocol is the SROIE key-information task's: per document and field, the predicted value
is right when it equals the gold value after normalisation (case folded, runs of whitespace made
one space, ends trimmed); precision is right / predicted values, recall right / gold values.

When the extractor returns several spans of one field, the field's value is the span with the
highest mean word confidence (the first on ties): one value per field, as a form would take it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from docloop.models.inference import EntityPrediction


def normalise_value(value: str) -> str:
    """Case folded, whitespace runs as one space, ends trimmed."""
    return " ".join(value.casefold().split())


def field_values(entities: Iterable[EntityPrediction]) -> dict[str, str]:
    """One value per field: the most confident span of each type (first on ties)."""
    best: dict[str, EntityPrediction] = {}
    for entity in entities:
        kept = best.get(entity.type)
        if kept is None or entity.confidence > kept.confidence:
            best[entity.type] = entity
    return {kind: entity.text for kind, entity in best.items()}


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
    gold: Mapping[str, Mapping[str, str]], predicted: Mapping[str, Mapping[str, str]]
) -> FieldReport:
    """Score predicted field values against gold ones, per document and field.

    Args:
        gold: per document id, the gold value of each field it has.
        predicted: per document id, the predicted value of each field (documents missing here
            predicted nothing). Predictions for documents without gold are ignored.
    """
    report = FieldReport()
    for doc_id, fields in gold.items():
        guesses = predicted.get(doc_id, {})
        for name in sorted(set(fields) | set(guesses)):
            score = report.per_field.setdefault(name, FieldScore())
            truth = normalise_value(fields.get(name) or "")
            guess = normalise_value(guesses.get(name) or "")
            for counts in (score, report.overall):
                counts.gold += bool(truth)
                counts.predicted += bool(guess)
                counts.correct += bool(truth) and truth == guess
            if name in fields and not (truth and truth == guess):
                report.errors.append((doc_id, name, fields[name], guesses.get(name) or ""))
    return report

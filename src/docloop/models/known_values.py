"""Known values: read an extracted text as a value the model has seen labelled before.

Some fields repeat across a user's documents: a vendor's name and address come back on every
receipt of that vendor. The OCR misreads a letter here and there (``GARDENIA BAKERIES (EL)`` for
``(KL)``, ``Jalau`` for ``Jalan``), and field exact-match counts each as wrong however good the
span. For the fields a user names (``training.known_value_fields``), training keeps the values
its training split's labels gave (validation stays unseen for calibration); the extractor then
reads an answer that is close to exactly one of them as that value. ``text`` keeps the printed
words; ``value`` becomes the known value and the answer says so (``known_value``).

The rule, measured on real receipts (``python -m bench.real_documents``, docs/benchmarks.md):
texts compare as :func:`docloop.documents.locate.compact` writes them (case, spacing and
punctuation aside) by Levenshtein similarity (rapidfuzz's normalised ``ratio``, 0-1). The best
known value must reach ``similarity`` and lead the runner-up by ``margin``: two branches of one
chain differ in a unit number, and an answer between them stays as printed. On the validation
receipts this rule made no wrong replacement; without the margin, 3 of 6 address replacements
were wrong.

Only for fields whose values are not personal: the values are stored in the model artifact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from rapidfuzz import fuzz, process

from docloop.documents.locate import compact


def known_values(values: Iterable[str], previous: Iterable[str] = ()) -> list[str]:
    """One printed form per distinct value (the most frequent, then the first), sorted.

    ``previous`` (an incumbent's known values) count once each, after ``values``: a retrain keeps
    what the model knew and adds what its new labels show.
    """
    forms: dict[str, Counter[str]] = {}
    for value in [*values, *previous]:
        key = compact(value)
        if key:
            forms.setdefault(key, Counter())[" ".join(value.split())] += 1
    return sorted(counter.most_common(1)[0][0] for counter in forms.values())


@dataclass(frozen=True)
class KnownValueMatcher:
    """Reads texts of one field as its known values (see the module's rule)."""

    values: tuple[str, ...]
    similarity: float
    margin: float

    @cached_property
    def _by_key(self) -> dict[str, str]:
        return {compact(value): value for value in self.values}

    @cached_property
    def _keys(self) -> list[str]:
        return list(self._by_key)

    def match(self, text: str) -> str | None:
        """The known value ``text`` is read as, or None (no match, or two alike)."""
        key = compact(text)
        if not key or not self._keys:
            return None
        if key in self._by_key:
            return self._by_key[key]
        best = process.extract(key, self._keys, scorer=fuzz.ratio, limit=2)
        score = best[0][1] / 100
        runner_up = best[1][1] / 100 if len(best) > 1 else 0.0
        if score < self.similarity or score - runner_up < self.margin:
            return None
        return self._by_key[best[0][0]]


def matchers(
    values: Mapping[str, Iterable[str]], similarity: float, margin: float
) -> dict[str, KnownValueMatcher]:
    """A matcher per field that has known values."""
    return {
        name: KnownValueMatcher(tuple(field_values), similarity, margin)
        for name, field_values in values.items()
        if field_values
    }

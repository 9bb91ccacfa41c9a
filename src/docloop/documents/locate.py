"""Value location: where a field's printed value lies among a document's OCR words.

Texts are compared *compacted*: Unicode-normalised (NFKC), case-folded, every character that is
not a letter or a digit removed, so case, spacing and punctuation never count (``BOOK TA .K
(TAMAN DAYA)`` = ``BOOK TA .K(TAMAN DAYA)``). A candidate is a run of consecutive words of one
page in reading order (so a value may span lines: addresses); it must start and end on a word that
compacts to something. Its distance is the Levenshtein distance between its compacted text and the
value's; candidates within ``floor(max_char_error_rate * len(value))`` edits count (OCR errors),
distance 0 being an exact location.

Kinds widen what counts as the same value where the printed form varies:

- ``amount``: a word holding the same amount (``9.00`` = ``RM9.00`` = ``9.00RM``; thousands
  separators ignored) is an exact location of one word;
- ``date``: one to three words holding the same date (``25/12/2018`` = ``25-12-18`` =
  ``25 Dec 2018``; day, month, year compared) are an exact location;
- ``text``: characters only.

Edits are for OCR errors in letters, never for a different value: an ``amount`` or ``date``
located by characters must hold exactly the value's digits (``25/12/2016`` is not ``25/12/2018``,
``1,284.50`` not ``1,234.50``), and an ``id`` must match exactly.

Several candidates at the smallest distance are resolved by one rule (:func:`choose`): for an
``amount``, the last in reading order (totals follow the lines they sum); otherwise the one whose
centre is nearest the field's typical position (the median centre of that field's unambiguous
locations in the same batch), and the first in reading order when there is none.
"""

from __future__ import annotations

import datetime
import math
import re
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from docloop.config import FieldKind

MAX_DATE_WORDS = 3

_NOT_ALNUM = re.compile(r"[\W_]+")
_CENTS = re.compile(r"\d[.,]\d")
_AMOUNT = re.compile(r"\d[\d,]*(?:\.\d+)?|\d+")
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,4})\s*[/\-.]\s*(\d{1,2})\s*[/\-.]\s*(\d{2,4})(?!\d)")
_DAY_MONTH_NAME = re.compile(
    rf"(?<!\d)(\d{{1,2}})\s*[\-/.]?\s*({_MONTH})\.?\s*[\-/.,]?\s*(\d{{2,4}})"
)
_MONTH_NAME_DAY = re.compile(rf"({_MONTH})\.?\s*(\d{{1,2}})\s*,?\s*(\d{{2,4}})(?!\d)")


def compact(text: str) -> str:
    """``text`` as compared: NFKC, case-folded, letters and digits only."""
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", text).casefold())


def amount_of(text: str) -> str | None:
    """The amount a printed text holds, as ``digits.cc`` (None when it holds no number).

    The last number in the text counts (``RM9.00`` -> ``9.00``); commas are thousands separators
    unless the number ends with a comma and two digits (``9,00``).
    """
    numbers = _AMOUNT.findall(unicodedata.normalize("NFKC", text))
    if not numbers:
        return None
    number = numbers[-1]
    if re.fullmatch(r"[\d.]*\d,\d{2}", number) and "." not in number[-3:]:
        number = number[:-3].replace(".", "") + "." + number[-2:]
    number = number.replace(",", "")
    whole, _, cents = number.partition(".")
    if not whole.isdigit() or (cents and not cents.isdigit()):
        return None
    return f"{int(whole)}.{(cents + '00')[:2]}" if len(cents) <= 2 else f"{int(whole)}.{cents}"


def field_value(kind: FieldKind | str, text: str) -> str:
    """The value a printed text holds, as the field's kind writes it.

    A ``date`` is ISO ``YYYY-MM-DD`` and an ``amount`` ``digits.cc`` when the text holds one
    (``25 Dec 18`` -> ``2018-12-25``, ``RM 9.00`` -> ``9.00``); anything else, and a text that
    holds no valid date or amount, is the text with runs of whitespace made one space. So two
    answers compare by what they mean, not by how the document printed them.
    """
    spaced = " ".join(text.split())
    if kind == "amount":
        return amount_of(spaced) or spaced
    if kind == "date":
        parts = date_of(spaced)
        if parts is not None:
            day, month, year = parts
            try:
                return datetime.date(year, month, day).isoformat()
            except ValueError:
                return spaced
    return spaced


def _year(text: str) -> int:
    year = int(text)
    return year + 2000 if year < 100 else year


def date_of(text: str) -> tuple[int, int, int] | None:
    """The (day, month, year) a printed text holds, first form found (None when none)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    numeric = _NUMERIC_DATE.search(folded)
    if numeric:
        first, second, third = numeric.groups()
        if len(first) == 4:  # ISO: year first
            return int(third), int(second), int(first)
        return int(first), int(second), _year(third)
    named = _DAY_MONTH_NAME.search(folded)
    if named:
        return int(named.group(1)), _MONTHS[named.group(2)], _year(named.group(3))
    named = _MONTH_NAME_DAY.search(folded)
    if named:
        return int(named.group(2)), _MONTHS[named.group(1)], _year(named.group(3))
    return None


@dataclass(frozen=True)
class PageWords:
    """The words of one page in reading order, with their boxes (0-1000)."""

    page: int
    words: Sequence[str]
    boxes: Sequence[Sequence[int]]


@dataclass(frozen=True)
class Candidate:
    """A run of words ``[start, end)`` of one page that may hold the value."""

    page: int
    start: int
    end: int
    distance: int
    text: str
    centre: tuple[float, float]

    @property
    def indices(self) -> tuple[int, ...]:
        """Word indices of the page, in reading order."""
        return tuple(range(self.start, self.end))


def max_distance(value: str, max_char_error_rate: float) -> int:
    """Edits allowed for ``value``: ``floor(rate * compacted length)``."""
    return math.floor(max_char_error_rate * len(compact(value)))


def _centre(boxes: Sequence[Sequence[int]], start: int, end: int) -> tuple[float, float]:
    xs = [(boxes[i][0] + boxes[i][2]) / 2 for i in range(start, end)]
    ys = [(boxes[i][1] + boxes[i][3]) / 2 for i in range(start, end)]
    return sum(xs) / len(xs), sum(ys) / len(ys)


def _candidate(page: PageWords, start: int, end: int, distance: int) -> Candidate:
    return Candidate(
        page=page.page,
        start=start,
        end=end,
        distance=distance,
        text=" ".join(page.words[start:end]),
        centre=_centre(page.boxes, start, end),
    )


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _text_windows(
    page: PageWords,
    target: str,
    limit: int,
    taken: frozenset[tuple[int, int]],
    same_digits: bool = False,
) -> list[Candidate]:
    """Word runs whose compacted text is within ``limit`` edits of ``target``.

    With ``same_digits``, a run must also hold exactly the target's digits in order (an OCR
    error may garble a letter, never turn one amount or date into another).
    """
    digits = _digits(target)
    forms = [compact(word) for word in page.words]
    found: list[Candidate] = []
    for start, form in enumerate(forms):
        if not form or (page.page, start) in taken:
            continue
        text = ""
        for end in range(start, len(forms)):
            if (page.page, end) in taken:
                break
            text += forms[end]
            if len(text) > len(target) + limit:
                break
            if not forms[end]:
                continue
            distance = Levenshtein.distance(text, target, score_cutoff=limit)
            if distance <= limit and (not same_digits or _digits(text) == digits):
                found.append(_candidate(page, start, end + 1, distance))
    return found


def _kind_windows(
    page: PageWords, value: str, kind: FieldKind, taken: frozenset[tuple[int, int]]
) -> list[Candidate]:
    """Exact locations in the kind's printed forms (amounts: one word; dates: 1-3 words)."""
    if kind == "amount":
        target_amount = amount_of(value)
        if target_amount is None:
            return []
        cents = _CENTS.search(value) is not None
        return [
            _candidate(page, index, index + 1, 0)
            for index, word in enumerate(page.words)
            if (page.page, index) not in taken
            and (_CENTS.search(word) is not None) == cents
            and amount_of(word) == target_amount
        ]
    if kind == "date":
        target_date = date_of(value)
        if target_date is None:
            return []
        found: list[Candidate] = []
        covered: set[int] = set()
        for length in range(1, MAX_DATE_WORDS + 1):
            for start in range(len(page.words) - length + 1):
                span = range(start, start + length)
                if any(i in covered or (page.page, i) in taken for i in span):
                    continue
                if date_of(" ".join(page.words[start : start + length])) == target_date:
                    found.append(_candidate(page, start, start + length, 0))
                    covered.update(span)
        return found
    return []


def candidates(
    pages: Sequence[PageWords],
    value: str,
    kind: FieldKind = "text",
    max_char_error_rate: float = 0.2,
    taken: frozenset[tuple[int, int]] = frozenset(),
) -> list[Candidate]:
    """Every location of ``value`` at the smallest distance found (empty when none is in bounds).

    Args:
        pages: the document's pages (only the labelled page, when the label names one).
        value: the value as the label gives it.
        kind: the field's kind.
        max_char_error_rate: edits allowed per character of the compacted value.
        taken: ``(page, word index)`` already holding another value of the document.
    """
    target = compact(value)
    if not target:
        return []
    limit = 0 if kind == "id" else max_distance(value, max_char_error_rate)
    found: list[Candidate] = []
    for page in pages:
        found.extend(_kind_windows(page, value, kind, taken))
        found.extend(_text_windows(page, target, limit, taken, kind in ("date", "amount")))
    if not found:
        return []
    best = min(c.distance for c in found)
    unique = {(c.page, c.start, c.end): c for c in found if c.distance == best}
    return [unique[key] for key in sorted(unique)]


def nearest_miss(pages: Sequence[PageWords], value: str) -> Candidate | None:
    """The word run closest to ``value`` whatever the distance (for the unlocated list)."""
    target = compact(value)
    best: Candidate | None = None
    for page in pages:
        forms = [compact(word) for word in page.words]
        for start, form in enumerate(forms):
            if not form:
                continue
            text = ""
            for end in range(start, len(forms)):
                text += forms[end]
                if len(text) > 2 * len(target) + 2:
                    break
                if not forms[end]:
                    continue
                distance = Levenshtein.distance(text, target)
                if best is None or distance < best.distance:
                    best = _candidate(page, start, end + 1, distance)
    return best


def choose(
    found: Sequence[Candidate], kind: FieldKind, typical: tuple[float, float] | None
) -> Candidate:
    """One candidate among equally distant ones, by the rule in the module docstring."""
    ordered = sorted(found, key=lambda c: (c.page, c.start, -c.end))
    if kind == "amount":
        return ordered[-1]
    if typical is None:
        return ordered[0]
    tx, ty = typical
    return min(ordered, key=lambda c: math.hypot(c.centre[0] - tx, c.centre[1] - ty))


def typical_position(centres: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """The median centre of a field's unambiguous locations (None when there are none)."""
    if not centres:
        return None
    return statistics.median(c[0] for c in centres), statistics.median(c[1] for c in centres)

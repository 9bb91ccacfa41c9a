"""Corrections that name an entity by value: find its words in the served document.

A reviewer often knows *what* the right value is (``"total": "9.00"``) rather than which word
positions print it. Such an entity (no ``word_indices``) is located among the served document's
words with the same rules as labels by value (:mod:`docloop.documents.locate`: normalised text,
OCR errors within the configured rate, the field's kind — declared in the config's schema, else
read off the value — several equally good candidates resolved by the documented rule), and stored
with the positions found, so everything downstream sees
positions only. Location is deterministic, so a retried submission resolves to the same body and
its idempotency key matches. A value that cannot be located is a 422 naming the closest text the
document does hold, so the reviewer can correct the value or send positions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from docloop.config import FieldKind
from docloop.documents.examples import DocumentExample
from docloop.documents.locate import (
    PageWords,
    amount_of,
    candidates,
    choose,
    date_of,
    nearest_miss,
)
from docloop.feedback.contracts import CorrectedEntity, FeedbackEvent

Found = tuple[list[int], None] | tuple[None, str]


def _pages(document: DocumentExample) -> tuple[list[PageWords], dict[int, int]]:
    """The document's pages as :class:`PageWords` and the document offset of each page."""
    pages: list[PageWords] = []
    offsets: dict[int, int] = {}
    for index, page in enumerate(document.pages):
        if page not in offsets:
            offsets[page] = index
    for page, start in offsets.items():
        end = start
        while end < len(document.pages) and document.pages[end] == page:
            end += 1
        pages.append(PageWords(page, document.words[start:end], document.boxes[start:end]))
    return pages, offsets


_PRICE = re.compile(r"(?:[A-Za-z]{1,3}\s?|[$€£¥]\s?)?\d[\d,]*[.,]\d{2}(?:\s?[A-Za-z]{1,3})?")


def kind_of_value(value: str) -> FieldKind:
    """The kind a value reads as, for a field the deployment declares no kind for.

    A date (day, month, year) is a ``date``; a number with cents (``9.00``, ``RM 1,234.50``) an
    ``amount``; anything else ``text``. So ``"9.00"`` finds ``RM9.00`` without a declaration.
    """
    if date_of(value) is not None:
        return "date"
    if _PRICE.fullmatch(value.strip()) and amount_of(value) is not None:
        return "amount"
    return "text"


def locate_entity(
    document: DocumentExample,
    value: str,
    kind: FieldKind = "text",
    max_char_error_rate: float = 0.2,
    taken: frozenset[int] = frozenset(),
) -> Found:
    """The document positions of ``value`` (reading order), or why it was not found."""
    pages, offsets = _pages(document)
    held = frozenset(
        (page.page, position - offsets[page.page])
        for page in pages
        for position in taken
        if 0 <= position - offsets[page.page] < len(page.words)
    )
    found = candidates(pages, value, kind, max_char_error_rate, held)
    if found:
        best = choose(found, kind, None)
        return [offsets[best.page] + i for i in best.indices], None
    miss = nearest_miss(pages, value)
    if miss is None:
        return None, "the served document has no words"
    start = offsets[miss.page] + miss.start
    return None, (
        f"the closest text is {miss.text!r} at word_indices "
        f"{list(range(start, start + len(miss.indices)))} (distance {miss.distance})"
    )


def resolve_values(
    event: FeedbackEvent,
    document: DocumentExample,
    kinds: Mapping[str, FieldKind],
    max_char_error_rate: float,
) -> tuple[FeedbackEvent, list[tuple[int, str]]]:
    """The event with every by-value entity given its word positions; what was not found.

    Returns:
        The resolved event (unchanged when every entity had positions) and, per entity that
        could not be located, its index in ``correction.entities`` and the reason.
    """
    correction = event.correction
    if correction is None or not correction.entities:
        return event, []
    entities: Sequence[CorrectedEntity] = correction.entities
    if all(entity.word_indices is not None for entity in entities):
        return event, []
    taken = {i for entity in entities for i in entity.positions}
    resolved: list[CorrectedEntity] = []
    missing: list[tuple[int, str]] = []
    for index, entity in enumerate(entities):
        if entity.word_indices is not None:
            resolved.append(entity)
            continue
        positions, why = locate_entity(
            document,
            str(entity.value),
            kinds.get(entity.type) or kind_of_value(str(entity.value)),
            max_char_error_rate,
            frozenset(taken),
        )
        if positions is None:
            missing.append((index, str(why)))
            resolved.append(entity)
            continue
        taken.update(positions)
        resolved.append(entity.model_copy(update={"word_indices": positions}))
    updated = correction.model_copy(update={"entities": resolved})
    return event.model_copy(update={"correction": updated}), missing

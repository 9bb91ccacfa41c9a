"""The limits the predictor and the feedback API share, so everything answered can be reviewed.

A prediction the feedback API would refuse to name (an id too long, a page or word position out
of its range) is a prediction nobody can correct; the predictor therefore refuses it up front,
with HTTP 400, by the same numbers and the same id rule as the API.
"""

from __future__ import annotations

import unicodedata
from typing import Final

MAX_ID_CHARS: Final = 128
"""Request ids, idempotency keys, reviewer ids, model names and versions: at most this long."""
MAX_PAGES: Final = 10_000
"""Pages of one document; page numbers are 0 .. MAX_PAGES - 1 (stored as 16-bit integers)."""
MAX_INSTANCES: Final = 1_024
"""Documents in one predictor request; a verdict's ``instance`` is 0 .. MAX_INSTANCES - 1."""
MAX_WORDS: Final = 200_000
"""Words of one document; a verdict's word positions are 0 .. MAX_WORDS - 1."""

_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control, format (zero-width, bidi overrides), surrogate, private-use, unassigned, line breaks."""


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id a reviewer names, or None when it can.

    An id is 1 to :data:`MAX_ID_CHARS` characters, already in Unicode NFKC form (so look-alike
    spellings cannot name two different things), with no control, format or bidi characters.
    """
    if not value:
        return "is empty"
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters long, over the limit of {MAX_ID_CHARS}"
    if unicodedata.normalize("NFKC", value) != value:
        return "is not in Unicode NFKC form (it has look-alike or compatibility characters)"
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"contains the invisible or control character U+{ord(char):04X}"
    return None

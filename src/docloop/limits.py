"""The limits the predictor and the feedback API share, so everything answered can be reviewed.

A prediction the feedback API would refuse to name (an id too long, a page or word position out
of its range) is a prediction nobody can correct; the predictor therefore refuses it up front,
with HTTP 400, by the same numbers as the API (a client's id by
``feedback.contracts.client_request_id``).
"""

from __future__ import annotations

from typing import Final

MAX_ID_CHARS: Final = 128
"""Request ids, idempotency keys, reviewer ids, model names and versions: at most this long."""
MAX_PAGES: Final = 10_000
"""Pages of one document; page numbers are 0 .. MAX_PAGES - 1 (stored as 16-bit integers)."""
MAX_INSTANCES: Final = 1_024
"""Documents in one predictor request; a verdict's ``instance`` is 0 .. MAX_INSTANCES - 1."""
MAX_WORDS: Final = 200_000
"""Words of one document; a verdict's word positions are 0 .. MAX_WORDS - 1."""
MAX_JSON_DEPTH: Final = 32
"""Nesting of a request body's JSON (objects and arrays): at most this many levels."""

"""Verdicts as training labels: one row of label columns per reviewed document.

A reviewed document is labelled by its (latest accepted) verdict: the corrected type, or the
predicted one when the verdict confirms it or corrects only entities; the corrected entity list,
or the predicted entities (their ``word_indices``) when the verdict confirms them or corrects only
the type. Its source is ``corrected`` when the verdict changed anything, else ``confirmed``.

The label table is Arrow columns, not pydantic objects, which cost tens of microseconds each:
:func:`feedback_labels` builds it from ``FeedbackRecord`` objects;
:func:`~docloop.datasets.retrain.build.build_retrain_dataset_from_tables` also takes it directly.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa

from docloop.feedback.contracts import FeedbackRecord
from docloop.feedback.verdicts import (
    changed_entity_types,
    changes_prediction,
    predicted_spans,
    verdict_of,
    verdict_order,
)

logger = logging.getLogger(__name__)

ENTITY_STRUCT: Final = pa.struct(
    [pa.field("type", pa.string(), nullable=False), pa.field("word_indices", pa.list_(pa.int32()))]
)
FEEDBACK_LABEL_SCHEMA: Final = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("doc_type", pa.string()),
        pa.field("entities", pa.list_(ENTITY_STRUCT)),
        pa.field("touched_types", pa.list_(pa.string())),
        pa.field("feedback_id", pa.int64()),
    ]
)
"""One row per reviewed document: its verdict as training labels.

``source`` is ``corrected`` or ``confirmed``; ``entities`` the verdict's entity list (positions
sorted); ``touched_types`` the entity types whose spans the correction changed; ``feedback_id``
the event the labels come from.
"""


@dataclass(frozen=True)
class FeedbackLabels:
    """Reviewed documents as columns (:data:`FEEDBACK_LABEL_SCHEMA`) and what was left out.

    Attributes:
        table: one row per reviewed document, sorted by doc id.
        skipped: reviewed documents without usable labels, per reason.
    """

    table: pa.Table
    skipped: dict[str, int] = field(default_factory=dict)


def feedback_labels(records: Sequence[FeedbackRecord]) -> FeedbackLabels:
    """Turn accepted feedback into one labelled row per reviewed document.

    A document judged more than once is labelled by its latest record (``received_at``, then
    id); quality assessment leaves only agreeing verdicts, and disagreeing ones are logged. The
    source is ``corrected`` when any of its records changed the prediction.

    Args:
        records: quality-accepted feedback records.

    Returns:
        The label columns, and per reason the documents left out (``no_doc_type``: neither
        predicted nor corrected; ``no_entity_positions``: predicted entities without
        ``word_indices`` and no corrected entity list).
    """
    by_doc: dict[str, list[FeedbackRecord]] = {}
    for record in records:
        by_doc.setdefault(record.doc_id, []).append(record)
    skipped: Counter[str] = Counter()
    columns: dict[str, list[Any]] = {name: [] for name in FEEDBACK_LABEL_SCHEMA.names}
    disagreeing = 0
    for doc_id in sorted(by_doc):
        group = sorted(by_doc[doc_id], key=verdict_order)
        latest = group[-1]
        verdict = verdict_of(latest)
        verdicts = [verdict_of(record) for record in group]
        if any(other.agrees(verdict) is False for other in verdicts[:-1]):
            disagreeing += 1
        if verdict.doc_type is None:
            skipped["no_doc_type"] += 1
            continue
        if verdict.entities is None:
            skipped["no_entity_positions"] += 1
            continue
        corrected = any(
            changes_prediction(record, other)
            for record, other in zip(group, verdicts, strict=True)
            if other.agrees(verdict) is not False
        )
        touched = sorted(
            {
                kind
                for record, other in zip(group, verdicts, strict=True)
                if other.agrees(verdict) is not False
                for kind in changed_entity_types(record)
            }
        )
        columns["doc_id"].append(doc_id)
        columns["source"].append("corrected" if corrected else "confirmed")
        columns["doc_type"].append(verdict.doc_type)
        columns["entities"].append(
            [
                {"type": kind, "word_indices": list(indices)}
                for kind, indices in sorted(verdict.entities, key=lambda s: (s[1], s[0]))
            ]
        )
        columns["touched_types"].append(touched)
        columns["feedback_id"].append(latest.id)
    if disagreeing:
        logger.warning(
            "%d documents have disagreeing accepted verdicts; the latest of each is used. Run "
            "docloop.feedback.quality.assess_feedback first so conflicts are settled by trust",
            disagreeing,
        )
    table = pa.Table.from_pydict(columns, schema=FEEDBACK_LABEL_SCHEMA)
    return FeedbackLabels(table, dict(sorted(skipped.items())))


def entity_f1_from_feedback(records: Sequence[FeedbackRecord]) -> dict[str, float]:
    """Per-entity F1 of the predictions the feedback judged, against the accepted verdicts.

    Exact-span matching (type and word positions), micro over documents: what the champion's
    per-entity F1 on reviewed production documents is when no other figure is given.

    Args:
        records: quality-accepted feedback.

    Returns:
        F1 per entity type found in the predictions or the verdicts (types with no span: absent).
    """
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for record in records:
        gold = verdict_of(record).entities
        predicted = predicted_spans(record.predicted_entities)
        if gold is None or predicted is None:
            continue
        for kind, _ in gold & predicted:
            tp[kind] += 1
        for kind, _ in predicted - gold:
            fp[kind] += 1
        for kind, _ in gold - predicted:
            fn[kind] += 1
    types = set(tp) | set(fp) | set(fn)
    return {
        kind: round(2 * tp[kind] / (2 * tp[kind] + fp[kind] + fn[kind]), 6)
        for kind in sorted(types)
    }

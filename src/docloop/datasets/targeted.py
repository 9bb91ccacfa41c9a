"""Retrain mode of build-dataset: reviewed production documents plus replay, sampled by need.

Inputs: quality-accepted feedback (``docloop.feedback.quality``), the served documents it judges,
and the previous dataset folder. Output: a dataset folder like the initial one (``train``,
``val``, ``holdout`` Parquet + ``manifest.json``) plus ``feedback_holdout.parquet``.

Labels. A reviewed document is labelled by its (latest accepted) verdict: the corrected type, or
the predicted one when the verdict confirms it or corrects only entities; the corrected entity
list, or the predicted entities (their ``word_indices``) when the verdict confirms them or
corrects only the type. Entities become IOB2 tags over the served document's words (``B-`` on
each entity's first word and after any gap in its positions; where two entities claim a word,
the first in the list keeps it). Its source is ``corrected`` when the verdict changed anything,
else ``confirmed``.

Splits, in order (every draw is a hash of (seed, purpose, doc id), so a seed fixes the dataset):

1. **Frozen holdout**: ``holdout.parquet`` is copied byte for byte from the previous dataset (same
   digest); its document ids are excluded from everything else.
2. **Feedback holdout**: ``feedback_holdout_fraction`` of the reviewed documents per type (the
   first by draw; types with fewer than 3 documents give none), chosen before any sampling among
   documents no earlier dataset trained on, so the gate can score candidate and champion on
   reviewed production documents neither has seen.
3. **Feedback training documents**: every corrected document; confirmed documents, about
   ``confirmed_per_corrected`` per corrected one, spread over types in proportion to what is
   available (``balance_classes``: no type above the median per-type count), documents with a
   weak entity drawn first; then confirmed documents for any entity type with fewer than
   ``min_docs_per_entity`` documents. Without any correction, every confirmed document trains.
4. **Validation**: ``val_fraction`` of the feedback training documents, stratified by (source,
   type), by document id.
5. **Oversampling**: a training document whose correction changed an entity type whose champion
   F1 is below ``weak_entity_f1`` is repeated ``error_oversample`` times (the fractional part by
   draw).
6. **Replay**: documents of the previous ``train.parquet`` (not reviewed now, not in a holdout),
   as many as make replay ``replay_ratio`` of the training rows, with validation taking its
   share. With ``balance_classes`` they top up the types the feedback training documents have
   fewest of first (:func:`top_up`), so a type that the drifted traffic rarely shows is not
   forgotten (measured: ``bench/retrain_strategies`` class_mix); without it they follow the
   previous data's type mix. Then replay documents for entity types still under
   ``min_docs_per_entity``. A validation document of such a type moves to training.

Each split file holds its reviewed documents first (in label-table order: doc-id order when the
labels come from :func:`feedback_labels`), then its replay documents (in the previous file's
order), so the same inputs and seed write the same bytes; the manifest's digests are the SHA-256
of those files (``digest_method="file"``), except the frozen holdout's, which is carried over. An
earlier ``feedback_holdout.parquet`` is not carried over: each retrain holds out its own reviews.

The core works on Arrow columns and numpy arrays (one row per reviewed document), not on pydantic
objects, which cost tens of microseconds each: :func:`feedback_labels` turns ``FeedbackRecord``
objects into the label columns; :func:`build_retrain_dataset_from_tables` takes columns directly
(``python -m bench.build_dataset`` times a million rows).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, select

from docloop.config import RetrainConfig, load_config, store_url
from docloop.documents.examples import (
    EXAMPLE_ARROW_SCHEMA,
    OUTSIDE,
    DatasetManifest,
    DocumentExample,
    RetrainSampling,
    examples_table,
    read_manifest,
    read_table,
    write_table,
)
from docloop.errors import DocloopError, InvalidInput
from docloop.feedback.contracts import FeedbackRecord, read_served_document
from docloop.feedback.quality import (
    Verdict,
    assess_feedback,
    audited_labels,
    persist_statuses,
    predicted_spans,
    verdict_of,
)
from docloop.feedback.records import accepted_feedback
from docloop.storage import Storage, join
from docloop.store.db import Store, open_store
from docloop.store.tables import RetrainAttempt

logger = logging.getLogger(__name__)

FEEDBACK_HOLDOUT: Final = "feedback_holdout"
RETRAIN_SPLITS: Final = ("train", "val", "holdout", FEEDBACK_HOLDOUT)
DEFAULT_VAL_FRACTION: Final = 0.15
LOAD_THREADS: Final = 8
WRITE_THREADS: Final = 2

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

# purposes of the per-document draws
_HOLDOUT, _CONFIRMED, _VAL, _OVERSAMPLE, _REPLAY, _FLOOR = range(1, 7)
_HASH_CHUNK: Final = 1 << 16

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
DocumentSource = Mapping[str, DocumentExample] | Callable[[str], DocumentExample]


# ------------------------------------------------------------------------------ feedback labels


@dataclass(frozen=True)
class FeedbackLabels:
    """Reviewed documents as columns (:data:`FEEDBACK_LABEL_SCHEMA`) and what was left out.

    Attributes:
        table: one row per reviewed document, sorted by doc id.
        skipped: reviewed documents without usable labels, per reason.
    """

    table: pa.Table
    skipped: dict[str, int] = field(default_factory=dict)


def _changed_types(record: FeedbackRecord, verdict: Verdict) -> list[str]:
    """Entity types whose spans the correction changed (empty when it corrected no entities)."""
    correction = record.correction
    if record.kind != "correction" or correction is None or correction.entities is None:
        return []
    corrected = verdict.entities or frozenset()
    predicted = predicted_spans(record.predicted_entities)
    if predicted is None:
        return sorted({kind for kind, _ in corrected})
    return sorted({kind for kind, _ in corrected.symmetric_difference(predicted)})


def _is_correction(record: FeedbackRecord, verdict: Verdict) -> bool:
    """The verdict differs from the prediction (a no-op correction counts as a confirmation)."""
    if record.kind != "correction":
        return False
    if verdict.doc_type != record.predicted_doc_type:
        return True
    return verdict.entities != predicted_spans(record.predicted_entities)


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
        group = sorted(by_doc[doc_id], key=lambda r: (r.received_at, r.id))
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
            _is_correction(record, other)
            for record, other in zip(group, verdicts, strict=True)
            if other.agrees(verdict) is not False
        )
        touched = sorted(
            {
                kind
                for record, other in zip(group, verdicts, strict=True)
                if other.agrees(verdict) is not False
                for kind in _changed_types(record, other)
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


# ------------------------------------------------------------------------------------ draws


def _splitmix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of each value (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def id_hashes(doc_ids: pa.Array | pa.ChunkedArray, seed: int) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each document id under ``seed`` (vectorised; equal ids, equal hashes).

    The UTF-8 bytes of each id, zero-padded to a multiple of 8, are read as little-endian 64-bit
    words and folded with SplitMix64 together with the length, so the value depends on the id and
    the seed only (not on the machine or the row order).
    """
    array = doc_ids.combine_chunks() if isinstance(doc_ids, pa.ChunkedArray) else doc_ids
    array = array.cast(pa.large_binary())
    count = len(array)
    hashes = np.full(count, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if count == 0:
        return hashes
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[array.offset : array.offset + count + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else None
    if data is None or len(data) == 0:
        data = np.zeros(1, dtype=np.uint8)
    lengths = np.diff(offsets)
    hashes = _splitmix(hashes ^ lengths.astype(np.uint64))
    width = int(lengths[0])
    if width % 8 == 0 and bool((lengths == width).all()):  # e.g. sha256 hex ids: no copy
        words = data[offsets[0] : offsets[-1]].view("<u8").reshape(count, width // 8)
        for word in range(words.shape[1]):
            hashes = _splitmix(hashes ^ words[:, word])
        return hashes
    for begin in range(0, count, _HASH_CHUNK):
        stop = min(count, begin + _HASH_CHUNK)
        length = lengths[begin:stop]
        width = max(8, -(-int(length.max(initial=0)) // 8) * 8)
        column = np.arange(width)
        index = np.minimum(offsets[begin:stop, None] + column, len(data) - 1)
        block = np.where(column < length[:, None], data[index], 0).astype(np.uint8)
        chunk = np.ascontiguousarray(block).view("<u8")
        state = hashes[begin:stop]
        for word in range(chunk.shape[1]):
            state = _splitmix(state ^ chunk[:, word])
        hashes[begin:stop] = state
    return hashes


def draws(hashes: npt.NDArray[np.uint64], purpose: int) -> FloatArray:
    """Uniform numbers in [0, 1), one per hash, independent between purposes."""
    mixed = _splitmix(hashes ^ _splitmix(np.full(1, np.uint64(purpose), dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# ------------------------------------------------------------------------------- allocation


def allocate(total: int, available: IntArray, balance: bool) -> IntArray:
    """How many of ``total`` to take from each class, given what each class has.

    Proportional to availability (largest remainders, ties to the lower class index), capped at
    what is available. With ``balance``, each class is first capped at the median of the
    non-empty classes' counts, so no class dominates. When the capped classes hold fewer than
    ``total``, all of them are taken.

    Args:
        total: how many to take in all.
        available: per class, how many there are.
        balance: cap classes at the median count.

    Returns:
        Per class, how many to take.
    """
    capacity = available.astype(np.int64).copy()
    if balance and (capacity > 0).any():
        median = math.ceil(float(np.median(capacity[capacity > 0])))
        capacity = np.minimum(capacity, median)
    total = max(0, min(int(total), int(capacity.sum())))
    if total == 0:
        return np.zeros_like(capacity)
    quota = capacity * (total / capacity.sum())
    taken: IntArray = np.minimum(np.floor(quota).astype(np.int64), capacity)
    # the remainders sum to what is left, each below 1: the largest ones get one more
    left = total - int(taken.sum())
    order = np.lexsort((np.arange(len(taken)), -(quota - taken)))
    taken[order[:left]] += 1
    return taken


def top_up(total: int, have: IntArray, available: IntArray) -> IntArray:
    """How many of ``total`` to add to each class so the classes end as even as they can.

    Water-filling: the classes with the fewest (``have``) are filled first, each at most with
    what it has ``available``, up to the highest common level ``total`` reaches; what is left
    below one more full level goes one each to the lowest class indices at that level. Classes
    with nothing available get nothing.

    Args:
        total: how many to add in all.
        have: per class, how many there already are.
        available: per class, how many can be added.

    Returns:
        Per class, how many to add.
    """
    have = have.astype(np.int64)
    available = available.astype(np.int64)
    total = max(0, min(int(total), int(available.sum())))
    if total == 0:
        return np.zeros_like(available)

    def fill(level: int) -> IntArray:
        return np.minimum(available, np.maximum(0, level - have))

    low, high = 0, int((have + available).max())
    while low < high:  # the highest level whose fill fits in total
        middle = (low + high + 1) // 2
        if int(fill(middle).sum()) <= total:
            low = middle
        else:
            high = middle - 1
    taken = fill(low)
    growing = np.flatnonzero((taken < available) & (have + taken <= low))
    taken[growing[: total - int(taken.sum())]] += 1
    return taken


def _take_by_class(
    candidates: IntArray,
    classes: IntArray,
    wanted: IntArray,
    priority: FloatArray,
) -> IntArray:
    """The first ``wanted[c]`` candidates of each class ``c`` in ``priority`` order (< 2)."""
    if len(candidates) == 0:
        return candidates
    key = classes[candidates] * 4.0 + priority[candidates]
    ordered = candidates[np.argsort(key, kind="stable")]
    ordered_classes = classes[ordered]
    starts = np.searchsorted(ordered_classes, ordered_classes, side="left")
    rank = np.arange(len(ordered)) - starts
    return np.sort(ordered[rank < wanted[ordered_classes]])


def _stratified_share(
    candidates: IntArray, strata: IntArray, draw: FloatArray, fraction: float, min_count: int
) -> IntArray:
    """Per stratum, ``max(1, round(n * fraction))`` of its candidates by ``draw``.

    Strata with fewer than ``min_count`` candidates give none, and each stratum keeps at least
    one candidate out of the share.
    """
    if fraction <= 0 or len(candidates) == 0:
        return np.zeros(0, dtype=np.int64)
    counts_all = np.bincount(strata[candidates])
    values = np.flatnonzero(counts_all)
    counts = counts_all[values]
    share = np.where(
        counts >= min_count,
        np.minimum(np.maximum(1, np.rint(counts * fraction)), counts - 1),
        0,
    ).astype(np.int64)
    wanted = np.zeros(int(strata.max()) + 1, dtype=np.int64)
    wanted[values] = share
    return _take_by_class(candidates, strata, wanted, draw)


# ---------------------------------------------------------------------------- column helpers


def _codes(values: pa.Array | pa.ChunkedArray, vocabulary: Sequence[str]) -> IntArray:
    """Position of each value in ``vocabulary`` (-1 for null or unknown)."""
    index = pc.index_in(values, value_set=pa.array(list(vocabulary), pa.string()))
    return np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _index_in(values: pa.Array, value_set: pa.Array) -> IntArray:
    """Position of each value's first occurrence in ``value_set`` (-1 where absent)."""
    index = pc.index_in(values, value_set=value_set)
    return np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _mask(values: pa.Array | pa.ChunkedArray) -> BoolArray:
    """A boolean Arrow array as numpy (null is False)."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _value_counts(values: pa.Array | pa.ChunkedArray, names: Sequence[str]) -> dict[str, int]:
    """Occurrences of each of ``names`` in ``values`` (0 for absent names)."""
    counts = {item["values"].as_py(): item["counts"].as_py() for item in pc.value_counts(values)}
    return {name: int(counts.get(name, 0)) for name in names}


def _flat_entities(labels: pa.Table) -> tuple[IntArray, pa.Array, pa.Array]:
    """Entity rows: the label row of each entity, its type and its word positions (lists)."""
    entities = labels.column("entities").combine_chunks()
    flat = pc.list_flatten(entities)
    parents = np.asarray(pc.list_parent_indices(entities).to_numpy(), dtype=np.int64)
    return parents, flat.field("type"), flat.field("word_indices")


def _presence(rows: IntArray, kinds: IntArray, n_rows: int, n_types: int) -> npt.NDArray[np.int32]:
    """An ``(n_rows, n_types)`` count matrix of (row, type) pairs (unknown types ignored)."""
    known = kinds >= 0
    flat = rows[known] * max(n_types, 1) + kinds[known]
    counts = np.bincount(flat, minlength=n_rows * max(n_types, 1)).astype(np.int32)
    return counts.reshape(n_rows, max(n_types, 1))[:, :n_types]


def _tag_entity_counts(
    tags: pa.ChunkedArray | pa.Array, vocabulary: Sequence[str]
) -> npt.NDArray[np.int32]:
    """Per example and entity type, the number of ``B-`` tags (entities)."""
    tags = tags.combine_chunks() if isinstance(tags, pa.ChunkedArray) else tags
    flat = pc.list_flatten(tags)
    parents = np.asarray(pc.list_parent_indices(tags).to_numpy(), dtype=np.int64)
    begins = pc.starts_with(flat, "B-")
    kinds = _codes(pc.utf8_slice_codeunits(flat.filter(begins), 2), vocabulary)
    rows = parents[np.asarray(begins.to_numpy(zero_copy_only=False), dtype=bool)]
    return _presence(rows, kinds, len(tags), len(vocabulary))


def iob2_tags(
    labels: pa.Table, word_counts: IntArray, vocabulary: Sequence[str]
) -> tuple[pa.ListArray, npt.NDArray[np.int32]]:
    """IOB2 tags of labelled documents from their entities' word positions.

    Args:
        labels: rows of :data:`FEEDBACK_LABEL_SCHEMA` (only ``entities`` is read).
        word_counts: words of each row's document (positions must be below it).
        vocabulary: entity types (every type in ``labels`` must be in it).

    Returns:
        The tags (a list per row) and the entity count per row and type.
    """
    n_rows = labels.num_rows
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(word_counts, out=offsets[1:])
    codes = np.zeros(int(offsets[-1]), dtype=np.int32)
    parents, kinds_text, positions = _flat_entities(labels)
    kinds = _codes(kinds_text, vocabulary)
    entity_of_word = np.asarray(pc.list_parent_indices(positions).to_numpy(), dtype=np.int64)
    word = np.asarray(pc.list_flatten(positions).to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(word):
        order = np.lexsort((word, entity_of_word))
        entity_of_word, word = entity_of_word[order], word[order]
        first = np.ones(len(word), dtype=bool)
        same = entity_of_word[1:] == entity_of_word[:-1]
        first[1:] = ~same | (word[1:] != word[:-1] + 1)
        kind = kinds[entity_of_word]
        value = np.where(first, 1 + 2 * kind, 2 + 2 * kind).astype(np.int32)
        position = offsets[parents[entity_of_word]] + word
        unique, first_seen = np.unique(position, return_index=True)
        codes[unique] = value[first_seen]
    names = [OUTSIDE, *(f"{prefix}-{kind}" for kind in vocabulary for prefix in ("B", "I"))]
    tags = pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)), pa.array(names, pa.string()).take(pa.array(codes))
    )
    begins = (codes % 2 == 1).nonzero()[0]
    rows = np.searchsorted(offsets, begins, side="right") - 1
    counts = _presence(rows, (codes[begins].astype(np.int64) - 1) // 2, n_rows, len(vocabulary))
    return tags, counts


# -------------------------------------------------------------------------------- the plan


@dataclass
class RetrainPlan:
    """Which rows go where: indices into the label table (feedback) and the replay table.

    Attributes:
        feedback_train: label rows in training, repeated for oversampling.
        feedback_val: label rows in validation.
        feedback_holdout: label rows in the feedback holdout.
        replay_train: replay rows in training.
        replay_val: replay rows in validation.
        sampling: what the sampling did (for the manifest).
    """

    feedback_train: IntArray
    feedback_val: IntArray
    feedback_holdout: IntArray
    replay_train: IntArray
    replay_val: IntArray
    sampling: RetrainSampling


@dataclass(frozen=True)
class FeedbackColumns:
    """The label table reduced to what sampling needs (numpy, one entry per label row).

    Attributes:
        valid: usable (document found, positions in range, not in the frozen holdout).
        seen: in the previous dataset's train or val split (not a feedback-holdout candidate).
        corrected: the source is ``corrected``.
        classes: type code per row.
        entities: ``(rows, entity types)`` entity counts.
        touched_weak: the correction changed a weak entity type.
        hashes: per-document hash for the draws.
    """

    valid: BoolArray
    seen: BoolArray
    corrected: BoolArray
    classes: IntArray
    entities: npt.NDArray[np.int32]
    touched_weak: BoolArray
    hashes: npt.NDArray[np.uint64]


@dataclass(frozen=True)
class ReplayColumns:
    """The replay pool reduced to what sampling needs (one entry per replay document).

    Attributes:
        classes: type code per document.
        entities: ``(documents, entity types)`` entity counts.
        hashes: per-document hash for the draws.
    """

    classes: IntArray
    entities: npt.NDArray[np.int32]
    hashes: npt.NDArray[np.uint64]


def plan_retrain(
    feedback: FeedbackColumns,
    replay: ReplayColumns,
    config: RetrainConfig,
    *,
    entity_types: Sequence[str],
    val_fraction: float,
    sampling: RetrainSampling,
) -> RetrainPlan:
    """Targeted sampling on columns (see the module docstring for the rules and their order).

    Args:
        feedback: the reviewed documents.
        replay: the replay pool (already free of reviewed documents and holdout documents).
        config: the sampling knobs.
        entity_types: the entity vocabulary (columns of the entity matrices).
        val_fraction: share of validation per (source, type) stratum.
        sampling: the manifest's sampling record (``weak_entities`` set); filled in here.

    Returns:
        The plan.
    """
    return _Planner(feedback, replay, config, entity_types, val_fraction, sampling).run()


class _Planner:
    """The steps of :func:`plan_retrain` over shared boolean masks."""

    def __init__(
        self,
        feedback: FeedbackColumns,
        replay: ReplayColumns,
        config: RetrainConfig,
        entity_types: Sequence[str],
        val_fraction: float,
        sampling: RetrainSampling,
    ) -> None:
        self.fb = feedback
        self.rp = replay
        self.config = config
        self.entity_types = list(entity_types)
        self.val_fraction = val_fraction
        self.sampling = sampling
        self.floor = config.min_docs_per_entity
        self.n_classes = 1 + int(
            max(feedback.classes.max(initial=-1), replay.classes.max(initial=-1))
        )
        self.has_entity = feedback.entities > 0
        self.replay_has = replay.entities > 0
        n, m = len(feedback.valid), len(replay.classes)
        self.holdout = np.zeros(n, dtype=bool)
        self.selected = np.zeros(n, dtype=bool)
        self.in_val = np.zeros(n, dtype=bool)
        self.in_train = np.zeros(n, dtype=bool)
        self.copies = np.ones(n, dtype=np.int64)
        self.replay_in = np.zeros(m, dtype=bool)
        self.replay_in_val = np.zeros(m, dtype=bool)
        self.floor_added: Counter[str] = Counter()
        self.balance_note = (
            " (balance_classes caps each type at the median)" if config.balance_classes else ""
        )

    def run(self) -> RetrainPlan:
        self.feedback_holdout()
        self.feedback_training()
        self.feedback_floor()
        self.validation()
        self.oversampling()
        self.replay()
        below = self.training_floor()
        train_docs = np.flatnonzero(self.in_train)
        replay_train = np.flatnonzero(self.replay_in & ~self.replay_in_val)
        self.sampling.oversampled = int((self.copies[train_docs] > 1).sum())
        self.sampling.replay_rows = len(replay_train)
        self.sampling.floor_added = {k: n for k, n in sorted(self.floor_added.items()) if n}
        self.sampling.below_floor = below
        return RetrainPlan(
            feedback_train=np.repeat(train_docs, self.copies[train_docs]),
            feedback_val=np.flatnonzero(self.in_val),
            feedback_holdout=np.flatnonzero(self.holdout),
            replay_train=replay_train,
            replay_val=np.flatnonzero(self.replay_in_val),
            sampling=self.sampling,
        )

    def feedback_holdout(self) -> None:
        """Step 2: a share of each type's unseen reviewed documents, before any sampling."""
        eligible = np.flatnonzero(self.fb.valid & ~self.fb.seen)
        fraction = self.config.feedback_holdout_fraction
        chosen = _stratified_share(
            eligible, self.fb.classes, draws(self.fb.hashes, _HOLDOUT), fraction, 3
        )
        self.holdout[chosen] = True
        self.pool = self.fb.valid & ~self.holdout

    def feedback_training(self) -> None:
        """Step 3: every corrected document and a class-spread share of confirmed ones."""
        corrected = np.flatnonzero(self.pool & self.fb.corrected)
        confirmed = np.flatnonzero(self.pool & ~self.fb.corrected)
        weak = np.asarray([k in self.sampling.weak_entities for k in self.entity_types], bool)
        has_weak = self.has_entity[:, weak].any(axis=1)
        priority = draws(self.fb.hashes, _CONFIRMED) + np.where(has_weak, 0.0, 1.0)
        if len(corrected):
            budget = round(self.config.confirmed_per_corrected * len(corrected))
        else:
            budget = len(confirmed)
            if budget:
                self.sampling.notes.append(
                    "no corrected document: every confirmed document trains "
                    "(confirmed_per_corrected needs corrections to count from)"
                )
        available = np.bincount(self.fb.classes[confirmed], minlength=self.n_classes)
        wanted = allocate(budget, available, self.config.balance_classes)
        chosen = _take_by_class(confirmed, self.fb.classes, wanted, priority)
        if len(chosen) < budget:
            self.sampling.notes.append(
                f"asked for {budget} confirmed documents "
                f"({self.config.confirmed_per_corrected:g} per corrected), took {len(chosen)}"
                + self.balance_note
            )
        self.selected[corrected] = True
        self.selected[chosen] = True

    def feedback_floor(self) -> None:
        """Step 3b: confirmed documents for entity types under ``min_docs_per_entity``."""
        floor_draw = draws(self.fb.hashes, _FLOOR)
        for t, kind in enumerate(self.entity_types):
            have = int(self.has_entity[self.selected, t].sum())
            if have >= self.floor:
                continue
            spare = np.flatnonzero(self.pool & ~self.selected & self.has_entity[:, t])
            extra = spare[np.argsort(floor_draw[spare], kind="stable")][: self.floor - have]
            self.selected[extra] = True
            self.floor_added[kind] += len(extra)

    def validation(self) -> None:
        """Step 4: validation from the selected documents, by (type, source)."""
        members = np.flatnonzero(self.selected)
        strata = self.fb.classes * 2 + self.fb.corrected.astype(np.int64)
        draw = draws(self.fb.hashes, _VAL)
        self.in_val[_stratified_share(members, strata, draw, self.val_fraction, 3)] = True
        self.in_train = self.selected & ~self.in_val

    def oversampling(self) -> None:
        """Step 5: corrections that changed weak entities count ``error_oversample`` times."""
        boost = self.fb.touched_weak & self.fb.corrected
        whole = math.floor(self.config.error_oversample)
        extra = draws(self.fb.hashes, _OVERSAMPLE) < self.config.error_oversample - whole
        self.copies[boost] = whole + extra[boost].astype(np.int64)

    def replay(self) -> None:
        """Step 6: replay documents, evening out the types, so they make ``replay_ratio``."""
        ratio = self.config.replay_ratio
        feedback_rows = int(self.copies[self.in_train].sum())
        target = round(ratio / (1 - ratio) * feedback_rows)
        with_val = round(target / (1 - self.val_fraction))
        available = np.bincount(self.rp.classes, minlength=self.n_classes)
        if self.config.balance_classes:
            have = np.bincount(self.fb.classes[self.in_train], minlength=self.n_classes)
            wanted = top_up(with_val, have, available)
        else:
            wanted = allocate(with_val, available, False)
        everyone = np.arange(len(self.rp.classes))
        chosen = _take_by_class(everyone, self.rp.classes, wanted, draws(self.rp.hashes, _REPLAY))
        self.replay_in[chosen] = True
        val_draw = draws(self.rp.hashes, _VAL)
        val = _stratified_share(chosen, self.rp.classes, val_draw, self.val_fraction, 3)
        self.replay_in_val[val] = True
        self.sampling.replay_target = target
        if len(chosen) < with_val:
            self.sampling.notes.append(
                f"replay wanted {with_val} documents (train + val) for replay_ratio {ratio:g}; "
                f"the previous training data gave {len(chosen)}"
            )

    def training_floor(self) -> list[str]:
        """Step 6b: lift entity types under the floor in training; return those still under.

        First unused replay documents with the type are added, then validation documents with it
        move to training.
        """
        replay_draw = draws(self.rp.hashes, _FLOOR)
        below: list[str] = []
        for t, kind in enumerate(self.entity_types):
            replay_train = self.replay_in & ~self.replay_in_val
            have = int(self.has_entity[self.in_train, t].sum())
            have += int(self.replay_has[replay_train, t].sum())
            if have < self.floor:
                spare = np.flatnonzero(~self.replay_in & self.replay_has[:, t])
                extra = spare[np.argsort(replay_draw[spare], kind="stable")][: self.floor - have]
                self.replay_in[extra] = True
                self.floor_added[kind] += len(extra)
                have += len(extra)
            if have < self.floor:
                moved = np.flatnonzero(self.in_val & self.has_entity[:, t])[: self.floor - have]
                self.in_val[moved] = False
                self.in_train[moved] = True
                have += len(moved)
            if have < self.floor:
                moved = np.flatnonzero(self.replay_in_val & self.replay_has[:, t])
                moved = moved[: self.floor - have]
                self.replay_in_val[moved] = False
                have += len(moved)
            if have < self.floor:
                below.append(kind)
        if below:
            self.sampling.notes.append(
                f"entity types with fewer than min_docs_per_entity={self.floor} training "
                f"documents even after adding every available one: {', '.join(below)}; collect "
                "feedback on them"
            )
        return below


# ----------------------------------------------------------------------------- the builders


@contextmanager
def _phase(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[name]`` (when timings are kept)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _read_doc_ids(storage: Storage, uri: str) -> pa.Array:
    table = pq.read_table(pa.BufferReader(storage.read_bytes(uri)), columns=["doc_id"])
    return table.column("doc_id").combine_chunks()


def _in_sorted(values: npt.NDArray[np.uint64], ordered: npt.NDArray[np.uint64]) -> BoolArray:
    """Which ``values`` occur in the sorted array ``ordered`` (binary search, no hashing)."""
    if len(ordered) == 0:
        return np.zeros(len(values), dtype=bool)
    index = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
    return np.asarray(ordered[index] == values, dtype=bool)


def _dedupe(
    table: pa.Table, hashes: npt.NDArray[np.uint64]
) -> tuple[pa.Table, npt.NDArray[np.uint64]]:
    """Keep the first row of each doc id (oversampled copies of an earlier retrain)."""
    order = np.argsort(hashes, kind="stable")
    repeated = np.zeros(len(hashes), dtype=bool)
    repeated[order[1:]] = hashes[order[1:]] == hashes[order[:-1]]
    if not repeated.any():
        return table, hashes
    ids = table.column("doc_id").combine_chunks()
    first = _index_in(ids, ids)  # each id's first row
    keep = first == np.arange(len(first))
    return table.filter(pa.array(keep)), hashes[keep]


@dataclass(frozen=True)
class _Previous:
    """The previous dataset: manifest, training table, and the ids (with hashes) it holds."""

    uri: str
    manifest: DatasetManifest
    train: pa.Table
    train_hashes: npt.NDArray[np.uint64]
    frozen_ids: pa.Array
    frozen_hashes: npt.NDArray[np.uint64]
    seen_ids: pa.Array
    seen_hashes: npt.NDArray[np.uint64]


def _read_previous(storage: Storage, uri: str, seed: int) -> _Previous:
    manifest = read_manifest(storage, uri)
    table = read_table(storage, join(uri, "train.parquet"))
    train, train_hashes = _dedupe(table, id_hashes(table.column("doc_id"), seed))
    val = _read_doc_ids(storage, join(uri, "val.parquet"))
    frozen = _read_doc_ids(storage, join(uri, "holdout.parquet"))
    return _Previous(
        uri=uri,
        manifest=manifest,
        train=train,
        train_hashes=train_hashes,
        frozen_ids=frozen,
        frozen_hashes=id_hashes(frozen, seed),
        seen_ids=pa.concat_arrays([train.column("doc_id").combine_chunks(), val]),
        seen_hashes=np.concatenate([train_hashes, id_hashes(val, seed)]),
    )


def _member(
    ids: pa.Array,
    hashes: npt.NDArray[np.uint64],
    set_ids: pa.Array,
    set_hashes: npt.NDArray[np.uint64],
) -> BoolArray:
    """Which ``ids`` are in ``set_ids``: by hash first, then exactly for the hash matches."""
    maybe = _in_sorted(hashes, np.sort(set_hashes))
    if not maybe.any():
        return maybe
    exact = _mask(pc.is_in(ids.filter(pa.array(maybe)), value_set=set_ids))
    found = np.zeros(len(hashes), dtype=bool)
    found[np.flatnonzero(maybe)[exact]] = True
    return found


@dataclass
class _Joined:
    """Label rows joined with their documents, and which of them can train."""

    labels: pa.Table
    documents: pa.Table
    hashes: npt.NDArray[np.uint64]
    doc_row: IntArray
    word_counts: IntArray
    valid: BoolArray
    seen: BoolArray
    entity_rows: IntArray
    entity_kinds: pa.Array
    skipped: Counter[str]


def _document_rows(label_ids: pa.Array, documents: pa.Table) -> IntArray:
    """Row of each label's document (-1: none); no lookup when both are in the same order."""
    doc_ids = documents.column("doc_id").combine_chunks()
    if len(doc_ids) == len(label_ids) and doc_ids.equals(label_ids):
        return np.arange(len(label_ids), dtype=np.int64)
    return _index_in(label_ids, doc_ids)


def _join(
    labels: pa.Table,
    documents: pa.Table,
    previous: _Previous,
    skipped: Mapping[str, int],
    seed: int,
) -> _Joined:
    """Find each label row's document and check it can train (found, positions, type)."""
    label_ids = labels.column("doc_id").combine_chunks()
    hashes = id_hashes(label_ids, seed)
    ordered = np.sort(hashes)
    distinct = bool((ordered[1:] != ordered[:-1]).all()) or (
        pc.count_distinct(label_ids).as_py() == labels.num_rows
    )
    if not distinct:
        raise InvalidInput(
            "labels must hold one row per document; build them with feedback_labels(records)"
        )
    doc_row = _document_rows(label_ids, documents)
    in_frozen = _member(label_ids, hashes, previous.frozen_ids, previous.frozen_hashes)
    found = doc_row >= 0
    word_counts = np.zeros(labels.num_rows, dtype=np.int64)
    lengths = np.asarray(pc.list_value_length(documents.column("words")).to_numpy(), np.int64)
    word_counts[found] = lengths[doc_row[found]]
    parents, kinds, positions = _flat_entities(labels)
    word = np.asarray(pc.list_flatten(positions).to_numpy(zero_copy_only=False), dtype=np.int64)
    word_entity = np.asarray(pc.list_parent_indices(positions).to_numpy(), dtype=np.int64)
    span_lengths = np.asarray(
        pc.fill_null(pc.list_value_length(positions), 0).to_numpy(zero_copy_only=False), np.int64
    )
    bad = np.zeros(labels.num_rows, dtype=bool)
    out_of_range = (word < 0) | (word >= word_counts[parents[word_entity]])
    bad[parents[word_entity[out_of_range]]] = True
    bad[parents[span_lengths == 0]] = True
    bad &= found & ~in_frozen
    typed = _mask(labels.column("doc_type").is_valid())
    counts: Counter[str] = Counter(skipped)
    for reason, mask in (
        ("missing_document", ~found),
        ("in_frozen_holdout", found & in_frozen),
        ("bad_word_positions", bad),
        ("no_doc_type", found & ~in_frozen & ~bad & ~typed),
    ):
        if mask.any():
            counts[reason] += int(mask.sum())
    valid = found & ~in_frozen & ~bad & typed
    if not valid.any():
        raise InvalidInput(
            f"none of the {labels.num_rows} reviewed documents can train ({dict(counts)}); check "
            "that the served documents are kept under <data_root>/served-documents/ and that the "
            "feedback passed the quality step"
        )
    return _Joined(
        labels=labels,
        documents=documents,
        hashes=hashes,
        doc_row=doc_row,
        word_counts=word_counts,
        valid=valid,
        seen=_member(label_ids, hashes, previous.seen_ids, previous.seen_hashes),
        entity_rows=parents,
        entity_kinds=kinds,
        skipped=counts,
    )


def _vocabularies(joined: _Joined, previous: _Previous) -> tuple[list[str], list[str]]:
    """Document and entity types: the previous dataset's plus what usable feedback brings."""
    usable = pa.array(joined.valid[joined.entity_rows])
    feedback_entities = pc.unique(joined.entity_kinds.filter(usable)).to_pylist()
    entity_types = sorted(set(previous.manifest.entity_types) | set(feedback_entities))
    replay_types = pc.unique(previous.train.column("doc_type")).to_pylist()
    label_types = pc.unique(joined.labels.column("doc_type").filter(pa.array(joined.valid)))
    found = {t for t in [*replay_types, *label_types.to_pylist()] if t is not None}
    return sorted(set(previous.manifest.doc_types) | found), entity_types


def _feedback_columns(
    joined: _Joined,
    doc_types: Sequence[str],
    entity_types: Sequence[str],
    weak_entities: Sequence[str],
) -> FeedbackColumns:
    labels = joined.labels
    touched = labels.column("touched_types").combine_chunks()
    touched_rows = np.asarray(pc.list_parent_indices(touched).to_numpy(), dtype=np.int64)
    weak = pa.array(list(weak_entities), pa.string())
    touched_weak = np.zeros(labels.num_rows, dtype=bool)
    touched_weak[touched_rows[_mask(pc.is_in(pc.list_flatten(touched), value_set=weak))]] = True
    return FeedbackColumns(
        valid=joined.valid,
        seen=joined.seen,
        corrected=_mask(pc.equal(labels.column("source"), "corrected")),
        classes=_codes(labels.column("doc_type"), doc_types),
        entities=_presence(
            joined.entity_rows,
            _codes(joined.entity_kinds, entity_types),
            labels.num_rows,
            len(entity_types),
        ),
        touched_weak=touched_weak,
        hashes=joined.hashes,
    )


def _replay_pool(
    previous: _Previous,
    joined: _Joined,
    doc_types: Sequence[str],
    entity_types: Sequence[str],
) -> tuple[pa.Table, ReplayColumns]:
    """The replay pool: previous training documents with a type, not held out, not reviewed now.

    A document reviewed now trains with its new label instead of its replayed one.
    """
    ids = previous.train.column("doc_id").combine_chunks()
    labels = joined.labels.column("doc_id").combine_chunks().filter(pa.array(joined.valid))
    reviewed = _member(ids, previous.train_hashes, labels, joined.hashes[joined.valid])
    held = _member(ids, previous.train_hashes, previous.frozen_ids, previous.frozen_hashes)
    classes = _codes(previous.train.column("doc_type"), doc_types)
    keep = ~(reviewed | held) & (classes >= 0)
    replay = previous.train if keep.all() else previous.train.filter(pa.array(keep))
    columns = ReplayColumns(
        classes=classes[keep],
        entities=_tag_entity_counts(replay.column("tags"), entity_types),
        hashes=previous.train_hashes[keep],
    )
    return replay, columns


@dataclass(frozen=True)
class _Split:
    """What the manifest records of one written split."""

    rows: int
    classes: dict[str, int]
    sources: dict[str, int]
    entities: dict[str, int]
    digest: str


@dataclass(frozen=True)
class _SplitWriter:
    """Builds split tables (labelled reviewed documents, then replay) and writes them."""

    joined: _Joined
    corrected: BoolArray
    replay: pa.Table
    replay_columns: ReplayColumns
    doc_types: Sequence[str]
    entity_types: Sequence[str]
    storage: Storage
    output_uri: str

    def table(self, feedback_rows: IntArray, replay_rows: IntArray) -> tuple[pa.Table, IntArray]:
        """The split's examples and its entity count per type."""
        schema = EXAMPLE_ARROW_SCHEMA
        labels = self.joined.labels.take(pa.array(feedback_rows))
        word_counts = self.joined.word_counts[feedback_rows]
        tags, tag_counts = iob2_tags(labels, word_counts, self.entity_types)
        unlabelled = self.joined.documents.drop_columns(["doc_type", "tags"])
        words = unlabelled.take(pa.array(self.joined.doc_row[feedback_rows]))
        columns = {"doc_type": labels.column("doc_type"), "tags": tags}
        feedback = pa.Table.from_arrays(
            [columns[name] if name in columns else words.column(name) for name in schema.names],
            schema=schema,
        )
        table = pa.concat_tables([feedback, self.replay.take(pa.array(replay_rows))])
        entities = tag_counts.sum(axis=0) + self.replay_columns.entities[replay_rows].sum(axis=0)
        return table, entities

    def write(
        self,
        name: str,
        parts: Sequence[Future[tuple[pa.Table, IntArray]]],
        feedback_rows: IntArray,
        replay_rows: IntArray,
    ) -> _Split:
        """Write ``<output_uri>/<name>.parquet`` from its built parts, in order, and count."""
        built = [part.result() for part in parts]
        table = pa.concat_tables([item[0] for item in built])
        entities = np.sum([item[1] for item in built], axis=0)
        digest = write_table(
            self.storage, join(self.output_uri, f"{name}.parquet"), table, statistics=False
        )
        n_corrected = int(self.corrected[feedback_rows].sum())
        return _Split(
            rows=table.num_rows,
            classes=_value_counts(table.column("doc_type"), self.doc_types),
            sources={
                "corrected": n_corrected,
                "confirmed": len(feedback_rows) - n_corrected,
                "replay": len(replay_rows),
            },
            entities={kind: int(entities[i]) for i, kind in enumerate(self.entity_types)},
            digest=digest,
        )


def _write_splits(
    writer: _SplitWriter, plan: RetrainPlan, previous: _Previous
) -> dict[str, _Split]:
    """Build and write the three new splits and copy the frozen holdout.

    Two threads (Arrow's take and the Parquet writer release the GIL). Writing one Parquet file
    is serial, so the training split, the largest, is built in two halves and written first,
    while the other thread builds and writes the two holdout-sized splits.
    """
    none = np.zeros(0, dtype=np.int64)
    half = len(plan.feedback_train) // 2
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        # every write waits only on builds queued before it, so two workers cannot deadlock
        train = [
            pool.submit(writer.table, plan.feedback_train[:half], none),
            pool.submit(writer.table, plan.feedback_train[half:], plan.replay_train),
        ]
        feedback = pool.submit(writer.table, plan.feedback_holdout, none)
        writes = {
            "train": pool.submit(
                writer.write, "train", train, plan.feedback_train, plan.replay_train
            )
        }
        val = pool.submit(writer.table, plan.feedback_val, plan.replay_val)
        writes[FEEDBACK_HOLDOUT] = pool.submit(
            writer.write, FEEDBACK_HOLDOUT, [feedback], plan.feedback_holdout, none
        )
        writes["val"] = pool.submit(writer.write, "val", [val], plan.feedback_val, plan.replay_val)
        holdout = writer.storage.read_bytes(join(previous.uri, "holdout.parquet"))
        writer.storage.write_bytes(join(writer.output_uri, "holdout.parquet"), holdout)
        return {name: writes[name].result() for name in ("train", "val", FEEDBACK_HOLDOUT)}


def _retrain_manifest(
    previous: _Previous,
    splits: Mapping[str, _Split],
    doc_types: Sequence[str],
    entity_types: Sequence[str],
    seed: int,
    sampling: RetrainSampling,
) -> DatasetManifest:
    """The manifest: the new splits' counts and digests, the frozen holdout's carried over."""
    old = previous.manifest
    return DatasetManifest(
        doc_types=list(doc_types),
        entity_types=list(entity_types),
        counts={
            **{name: part.rows for name, part in splits.items()},
            "holdout": old.counts.get("holdout", 0),
        },
        class_counts={
            **{name: part.classes for name, part in splits.items()},
            "holdout": {t: old.class_counts.get("holdout", {}).get(t, 0) for t in doc_types},
        },
        entity_counts={
            **{name: part.entities for name, part in splits.items()},
            "holdout": {t: old.entity_counts.get("holdout", {}).get(t, 0) for t in entity_types},
        },
        digests={
            **{name: part.digest for name, part in splits.items()},
            "holdout": old.digests["holdout"],
        },
        seed=seed,
        mode="retrain",
        source_counts={name: part.sources for name, part in splits.items()},
        digest_method="file",
        sampling=sampling,
    )


def build_retrain_dataset_from_tables(
    labels: pa.Table,
    documents: pa.Table,
    previous_dataset_uri: str,
    output_uri: str,
    config: RetrainConfig,
    champion_entity_f1: Mapping[str, float] | None,
    seed: int,
    storage: Storage,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    skipped: Mapping[str, int] | None = None,
    timings: dict[str, float] | None = None,
) -> DatasetManifest:
    """Build the retrain dataset from columns (see the module docstring).

    Args:
        labels: reviewed documents, :data:`FEEDBACK_LABEL_SCHEMA` (one row per document).
        documents: the served documents, :data:`~docloop.documents.examples.EXAMPLE_ARROW_SCHEMA`
            (any order, extra documents ignored; their type and tags are replaced by the labels).
        previous_dataset_uri: the dataset folder to replay from and copy the frozen holdout of.
        output_uri: the new dataset folder.
        config: the sampling knobs.
        champion_entity_f1: the champion's F1 per entity type (weak types are oversampled);
            None: no type is weak.
        seed: fixes every draw.
        storage: the object store.
        val_fraction: share of validation.
        skipped: reviewed documents already left out upstream, per reason (reported).
        timings: if given, seconds per phase are added to it (for benchmarks).

    Returns:
        The manifest written to ``<output_uri>/manifest.json``.

    Raises:
        InvalidInput: no reviewed document is usable, or ``val_fraction`` is out of range.
        StorageError: the previous dataset cannot be read or the output written.
    """
    if not 0 <= val_fraction < 1:
        raise InvalidInput(f"val_fraction must be in [0, 1), got {val_fraction}")
    with _phase(timings, "read previous dataset"):
        previous = _read_previous(storage, previous_dataset_uri, seed)
    with _phase(timings, "join labels and documents"):
        labels = labels.select(FEEDBACK_LABEL_SCHEMA.names).cast(FEEDBACK_LABEL_SCHEMA)
        documents = documents.select(EXAMPLE_ARROW_SCHEMA.names).cast(EXAMPLE_ARROW_SCHEMA)
        joined = _join(labels, documents, previous, skipped or {}, seed)
        doc_types, entity_types = _vocabularies(joined, previous)
    f1 = {kind: float(value) for kind, value in (champion_entity_f1 or {}).items()}
    sampling = RetrainSampling(
        previous_digest=previous.manifest.digest,
        settings={**config.model_dump(), "val_fraction": val_fraction},
        weak_entities=sorted(kind for kind, value in f1.items() if value < config.weak_entity_f1),
        champion_entity_f1=dict(sorted(f1.items())),
    )
    if champion_entity_f1 is None:
        sampling.notes.append("no champion per-entity F1 given: no entity type counts as weak")
    with _phase(timings, "sampling columns"):
        columns = _feedback_columns(joined, doc_types, entity_types, sampling.weak_entities)
        replay, replay_columns = _replay_pool(previous, joined, doc_types, entity_types)
    with _phase(timings, "plan (targeted sampling)"):
        plan = plan_retrain(
            columns,
            replay_columns,
            config,
            entity_types=entity_types,
            val_fraction=val_fraction,
            sampling=sampling,
        )
    sampling.skipped = dict(sorted(joined.skipped.items()))
    writer = _SplitWriter(
        joined,
        columns.corrected,
        replay,
        replay_columns,
        doc_types,
        entity_types,
        storage,
        output_uri,
    )
    with _phase(timings, "tags, split tables, parquet (2 threads)"):
        splits = _write_splits(writer, plan, previous)
    manifest = _retrain_manifest(previous, splits, doc_types, entity_types, seed, sampling)
    storage.write_text(join(output_uri, "manifest.json"), manifest.model_dump_json(indent=2))
    logger.info(
        "retrain dataset %s: train %d %s, val %d, feedback holdout %d, frozen holdout %d",
        output_uri,
        manifest.counts["train"],
        manifest.source_counts["train"],
        manifest.counts["val"],
        manifest.counts[FEEDBACK_HOLDOUT],
        manifest.counts["holdout"],
    )
    return manifest


def _load_documents(
    doc_ids: Sequence[str], served_documents: DocumentSource
) -> tuple[list[DocumentExample], int]:
    """The served documents of ``doc_ids`` that can be found, and how many could not."""
    if isinstance(served_documents, Mapping):
        found = [served_documents[i] for i in doc_ids if i in served_documents]
        return found, len(doc_ids) - len(found)
    loader = served_documents

    def load(doc_id: str) -> DocumentExample | None:
        try:
            return loader(doc_id)
        except (KeyError, DocloopError) as exc:
            logger.warning("served document %s cannot be read (%s); it is left out", doc_id, exc)
            return None

    with ThreadPoolExecutor(max_workers=LOAD_THREADS) as pool:
        loaded = list(pool.map(load, doc_ids))
    found = [example for example in loaded if example is not None]
    return found, len(doc_ids) - len(found)


def build_retrain_dataset(
    feedback: Sequence[FeedbackRecord],
    served_documents: DocumentSource,
    previous_dataset_uri: str,
    output_uri: str,
    config: RetrainConfig,
    champion_entity_f1: Mapping[str, float] | None,
    seed: int,
    storage: Storage,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> DatasetManifest:
    """Build the retrain dataset from quality-accepted feedback (see the module docstring).

    Args:
        feedback: quality-accepted feedback records
            (``docloop.feedback.quality.QualityReport.accepted``).
        served_documents: the served documents by doc id, or a loader of one (e.g.
            ``functools.partial(read_served_document, storage, config)``); documents it cannot
            find are left out and counted.
        previous_dataset_uri: the dataset folder to replay from and copy the frozen holdout of.
        output_uri: the new dataset folder.
        config: the sampling knobs (``retrain`` section).
        champion_entity_f1: the champion's F1 per entity type; None: no type is weak.
        seed: fixes every draw.
        storage: the object store.
        val_fraction: share of validation.

    Returns:
        The manifest written to ``<output_uri>/manifest.json``.

    Raises:
        InvalidInput: no reviewed document is usable.
        StorageError: the previous dataset cannot be read or the output written.
    """
    labels = feedback_labels(feedback)
    ids = labels.table.column("doc_id").to_pylist()
    documents, missing = _load_documents(ids, served_documents)
    skipped = dict(labels.skipped)
    if missing:
        logger.warning("%d of %d reviewed documents have no served document", missing, len(ids))
    return build_retrain_dataset_from_tables(
        labels.table,
        examples_table(documents),
        previous_dataset_uri,
        output_uri,
        config,
        champion_entity_f1,
        seed,
        storage,
        val_fraction=val_fraction,
        skipped=skipped,
    )


# ------------------------------------------------------------------------------ component glue


def last_successful_retrain(store: Store) -> datetime | None:
    """When the last promoted retrain attempt started (None if there was none).

    Feedback received after that start was not in the promoted model's data.
    """
    with store.read() as session:
        started: datetime | None = session.scalar(
            select(func.max(RetrainAttempt.started_at)).where(RetrainAttempt.outcome == "promoted")
        )
    return started


@dataclass(frozen=True)
class RetrainDatasetResult:
    """What the build-dataset component returns in retrain mode.

    Attributes:
        manifest: the dataset's manifest.
        quality: the feedback quality summary (counts per status and reason, reviewer trust).
        since: the start of the feedback window (None: all feedback).
    """

    manifest: DatasetManifest
    quality: dict[str, object]
    since: datetime | None


def run_component(
    previous_dataset_uri: str,
    output_uri: str,
    *,
    config_path: str | None = None,
    champion_entity_f1: Mapping[str, float] | None = None,
    seed: int = 0,
    since: datetime | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> RetrainDatasetResult:
    """The build-dataset component in retrain mode: store -> quality -> targeted dataset.

    Reads the configuration (:func:`~docloop.config.load_config`), opens the state store, reads
    the accepted feedback since ``since`` (default: the start of the last promoted retrain, else
    all), assesses its quality and writes every event's status back, loads the served documents
    of the accepted verdicts and builds the dataset.

    Args:
        previous_dataset_uri: the dataset folder of the champion (replay + frozen holdout).
        output_uri: the new dataset folder.
        config_path: a ``docloop.yaml``; None: the usual lookup.
        champion_entity_f1: the champion's F1 per entity type; None: measured on the accepted
            feedback itself (:func:`entity_f1_from_feedback`).
        seed: fixes every draw.
        since: start of the feedback window.
        val_fraction: share of validation.

    Returns:
        The manifest, the quality summary and the window start.

    Raises:
        InvalidInput: there is no accepted feedback, or none of it is usable.
        StoreError: the state store cannot be read or written.
        StorageError: a dataset or a served document cannot be read, or the output written.
    """
    config = load_config(config_path)
    storage = Storage(config.storage)
    store = open_store(store_url(config.store))
    try:
        window = since if since is not None else last_successful_retrain(store)
        records = accepted_feedback(store, window)
        if not records:
            raise InvalidInput(
                "no accepted feedback "
                + (f"since {window.isoformat()}" if window else "in the store")
                + "; collect reviewer verdicts through the feedback API before retraining"
            )
        audits = audited_labels(records, config.feedback.auditors)
        report = assess_feedback(records, config.feedback, audits)
        persist_statuses(store, report)
    finally:
        store.close()
    accepted = report.accepted(records)
    if not accepted:
        raise InvalidInput(
            f"none of the {len(records)} feedback events passed the quality rules "
            f"({report.reasons}); their statuses and reasons are in feedback_events: audit them, "
            "or relax feedback.min_trust / feedback.label_issue_threshold"
        )
    f1 = champion_entity_f1
    if f1 is None:
        f1 = entity_f1_from_feedback(accepted)
    manifest = build_retrain_dataset(
        accepted,
        partial(read_served_document, storage, config),
        previous_dataset_uri,
        output_uri,
        config.retrain,
        f1,
        seed,
        storage,
        val_fraction=val_fraction,
    )
    return RetrainDatasetResult(manifest, report.summary(), window)

"""The previous dataset and the join: label rows meet their served documents and the replay pool.

Each label row is looked up among the served documents (by doc id; no lookup when both are in the
same order) and checked: the document is found, its word positions are in range, it has a type
and it is not in the frozen holdout. Membership in the previous dataset's splits is decided by
64-bit id hashes (:func:`~docloop.datasets.retrain.sampling.id_hashes`) first and by exact id
only for the hash matches. The results are the columns that
:mod:`docloop.datasets.retrain.sampling` plans on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from docloop.datasets.retrain.columns import (
    BoolArray,
    IntArray,
    as_mask,
    flat_entities,
    index_in,
    presence,
    tag_entity_counts,
    vocabulary_codes,
)
from docloop.datasets.retrain.sampling import FeedbackColumns, ReplayColumns, id_hashes
from docloop.documents.examples import DatasetManifest, read_manifest, read_table
from docloop.errors import InvalidInput
from docloop.storage import Storage, join


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
    first = index_in(ids, ids)  # each id's first row
    keep = first == np.arange(len(first))
    return table.filter(pa.array(keep)), hashes[keep]


@dataclass(frozen=True)
class PreviousDataset:
    """The previous dataset: manifest, training table, and the ids (with hashes) it holds."""

    uri: str
    manifest: DatasetManifest
    train: pa.Table
    train_hashes: npt.NDArray[np.uint64]
    frozen_ids: pa.Array
    frozen_hashes: npt.NDArray[np.uint64]
    seen_ids: pa.Array
    seen_hashes: npt.NDArray[np.uint64]


def read_previous(storage: Storage, uri: str, seed: int) -> PreviousDataset:
    """Read the previous dataset folder: training rows once per document, ids hashed by ``seed``."""
    manifest = read_manifest(storage, uri)
    table = read_table(storage, join(uri, "train.parquet"))
    train, train_hashes = _dedupe(table, id_hashes(table.column("doc_id"), seed))
    val = _read_doc_ids(storage, join(uri, "val.parquet"))
    frozen = _read_doc_ids(storage, join(uri, "holdout.parquet"))
    return PreviousDataset(
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
    exact = as_mask(pc.is_in(ids.filter(pa.array(maybe)), value_set=set_ids))
    found = np.zeros(len(hashes), dtype=bool)
    found[np.flatnonzero(maybe)[exact]] = True
    return found


@dataclass
class JoinedLabels:
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
    return index_in(label_ids, doc_ids)


def join_labels(
    labels: pa.Table,
    documents: pa.Table,
    previous: PreviousDataset,
    skipped: Mapping[str, int],
    seed: int,
) -> JoinedLabels:
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
    parents, kinds, positions = flat_entities(labels)
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
    typed = as_mask(labels.column("doc_type").is_valid())
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
    return JoinedLabels(
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


def vocabularies(joined: JoinedLabels, previous: PreviousDataset) -> tuple[list[str], list[str]]:
    """Document and entity types: the previous dataset's plus what usable feedback brings."""
    usable = pa.array(joined.valid[joined.entity_rows])
    feedback_entities = pc.unique(joined.entity_kinds.filter(usable)).to_pylist()
    entity_types = sorted(set(previous.manifest.entity_types) | set(feedback_entities))
    replay_types = pc.unique(previous.train.column("doc_type")).to_pylist()
    label_types = pc.unique(joined.labels.column("doc_type").filter(pa.array(joined.valid)))
    found = {t for t in [*replay_types, *label_types.to_pylist()] if t is not None}
    return sorted(set(previous.manifest.doc_types) | found), entity_types


def feedback_columns(
    joined: JoinedLabels,
    doc_types: Sequence[str],
    entity_types: Sequence[str],
    weak_entities: Sequence[str],
) -> FeedbackColumns:
    """The joined label rows as the planner's columns (types as codes, weak corrections marked)."""
    labels = joined.labels
    touched = labels.column("touched_types").combine_chunks()
    touched_rows = np.asarray(pc.list_parent_indices(touched).to_numpy(), dtype=np.int64)
    weak = pa.array(list(weak_entities), pa.string())
    touched_weak = np.zeros(labels.num_rows, dtype=bool)
    touched_weak[touched_rows[as_mask(pc.is_in(pc.list_flatten(touched), value_set=weak))]] = True
    return FeedbackColumns(
        valid=joined.valid,
        seen=joined.seen,
        corrected=as_mask(pc.equal(labels.column("source"), "corrected")),
        classes=vocabulary_codes(labels.column("doc_type"), doc_types),
        entities=presence(
            joined.entity_rows,
            vocabulary_codes(joined.entity_kinds, entity_types),
            labels.num_rows,
            len(entity_types),
        ),
        touched_weak=touched_weak,
        hashes=joined.hashes,
    )


def replay_pool(
    previous: PreviousDataset,
    joined: JoinedLabels,
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
    classes = vocabulary_codes(previous.train.column("doc_type"), doc_types)
    keep = ~(reviewed | held) & (classes >= 0)
    replay = previous.train if keep.all() else previous.train.filter(pa.array(keep))
    columns = ReplayColumns(
        classes=classes[keep],
        entities=tag_entity_counts(replay.column("tags"), entity_types),
        hashes=previous.train_hashes[keep],
    )
    return replay, columns

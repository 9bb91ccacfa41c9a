"""Arrow columns as numpy arrays: codes, masks, per-type counts, and IOB2 tags from positions.

The retrain core works on Arrow columns and numpy arrays (one row per reviewed document), not on
pydantic objects (``python -m bench.build_dataset`` times a million rows). Entities become IOB2
tags over the served document's words: ``B-`` on each entity's first word and after any gap in
its positions; where two entities claim a word, the first in the list keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from docloop.documents.examples import OUTSIDE

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


def vocabulary_codes(values: pa.Array | pa.ChunkedArray, vocabulary: Sequence[str]) -> IntArray:
    """Position of each value in ``vocabulary`` (-1 for null or unknown)."""
    index = pc.index_in(values, value_set=pa.array(list(vocabulary), pa.string()))
    return np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def index_in(values: pa.Array, value_set: pa.Array) -> IntArray:
    """Position of each value's first occurrence in ``value_set`` (-1 where absent)."""
    index = pc.index_in(values, value_set=value_set)
    return np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def as_mask(values: pa.Array | pa.ChunkedArray) -> BoolArray:
    """A boolean Arrow array as numpy (null is False)."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def value_counts(values: pa.Array | pa.ChunkedArray, names: Sequence[str]) -> dict[str, int]:
    """Occurrences of each of ``names`` in ``values`` (0 for absent names)."""
    counts = {item["values"].as_py(): item["counts"].as_py() for item in pc.value_counts(values)}
    return {name: int(counts.get(name, 0)) for name in names}


def flat_entities(labels: pa.Table) -> tuple[IntArray, pa.Array, pa.Array]:
    """Entity rows: the label row of each entity, its type and its word positions (lists)."""
    entities = labels.column("entities").combine_chunks()
    flat = pc.list_flatten(entities)
    parents = np.asarray(pc.list_parent_indices(entities).to_numpy(), dtype=np.int64)
    return parents, flat.field("type"), flat.field("word_indices")


def presence(rows: IntArray, kinds: IntArray, n_rows: int, n_types: int) -> npt.NDArray[np.int32]:
    """An ``(n_rows, n_types)`` count matrix of (row, type) pairs (unknown types ignored)."""
    known = kinds >= 0
    flat = rows[known] * max(n_types, 1) + kinds[known]
    counts = np.bincount(flat, minlength=n_rows * max(n_types, 1)).astype(np.int32)
    return counts.reshape(n_rows, max(n_types, 1))[:, :n_types]


def tag_entity_counts(
    tags: pa.ChunkedArray | pa.Array, vocabulary: Sequence[str]
) -> npt.NDArray[np.int32]:
    """Per example and entity type, the number of ``B-`` tags (entities)."""
    tags = tags.combine_chunks() if isinstance(tags, pa.ChunkedArray) else tags
    flat = pc.list_flatten(tags)
    parents = np.asarray(pc.list_parent_indices(tags).to_numpy(), dtype=np.int64)
    begins = pc.starts_with(flat, "B-")
    kinds = vocabulary_codes(pc.utf8_slice_codeunits(flat.filter(begins), 2), vocabulary)
    rows = parents[np.asarray(begins.to_numpy(zero_copy_only=False), dtype=bool)]
    return presence(rows, kinds, len(tags), len(vocabulary))


def iob2_tags(
    labels: pa.Table, word_counts: IntArray, vocabulary: Sequence[str]
) -> tuple[pa.ListArray, npt.NDArray[np.int32]]:
    """IOB2 tags of labelled documents from their entities' word positions.

    Args:
        labels: rows of :data:`~docloop.datasets.retrain.labels.FEEDBACK_LABEL_SCHEMA` (only
            ``entities`` is read).
        word_counts: words of each row's document (positions must be below it).
        vocabulary: entity types (every type in ``labels`` must be in it).

    Returns:
        The tags (a list per row) and the entity count per row and type.
    """
    n_rows = labels.num_rows
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(word_counts, out=offsets[1:])
    codes = np.zeros(int(offsets[-1]), dtype=np.int32)
    parents, kinds_text, positions = flat_entities(labels)
    kinds = vocabulary_codes(kinds_text, vocabulary)
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
    counts = presence(rows, (codes[begins].astype(np.int64) - 1) // 2, n_rows, len(vocabulary))
    return tags, counts

"""Retrain-mode column helpers: IOB2 tags from entity word positions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from docloop.datasets.retrain.columns import iob2_tags

pytestmark = pytest.mark.unit


def test_iob2_tags_first_entity_wins_a_word() -> None:
    labels = pa.Table.from_pylist(
        [
            {
                "entities": [
                    {"type": "mrn", "word_indices": [1, 2]},
                    {"type": "dob", "word_indices": [2, 3]},
                ]
            },
            {"entities": []},
        ]
    )
    tags, counts = iob2_tags(labels, np.array([5, 2]), ["dob", "mrn"])
    assert tags.to_pylist() == [["O", "B-mrn", "I-mrn", "I-dob", "O"], ["O", "O"]]
    assert counts.tolist() == [[0, 1], [0, 0]]

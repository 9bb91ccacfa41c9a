"""Retrain-mode sampling arithmetic: allocation, top-up, id hashes and their draws."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from docloop.datasets.retrain.sampling import allocate, draws, id_hashes, top_up

pytestmark = pytest.mark.unit


def test_allocate_is_proportional_capped_and_balanced() -> None:
    assert allocate(10, np.array([50, 30, 20]), False).tolist() == [5, 3, 2]
    assert allocate(100, np.array([5, 3, 0]), False).tolist() == [5, 3, 0]
    assert allocate(7, np.array([1, 1, 1]), False).tolist() == [1, 1, 1]
    assert allocate(2, np.array([1, 1, 1]), False).tolist() == [1, 1, 0]
    # balance: no class above the median of the non-empty ones (20)
    assert allocate(100, np.array([60, 20, 10, 0]), True).tolist() == [20, 20, 10, 0]
    assert allocate(25, np.array([60, 20, 10]), True).tolist() == [10, 10, 5]


def test_top_up_fills_the_classes_with_fewest_first() -> None:
    # 23 to add on top of 4/4/20/22/0/4: the four small classes rise to 8 or 9, the big get none
    assert top_up(23, np.array([4, 4, 20, 22, 0, 4]), np.array([18] * 6)).tolist() == [
        5,
        5,
        0,
        0,
        9,
        4,
    ]
    assert top_up(6, np.array([0, 0, 0]), np.array([5, 5, 5])).tolist() == [2, 2, 2]
    # capped by availability, and a class with nothing available gets nothing
    assert top_up(100, np.array([0, 0, 0]), np.array([5, 1, 5])).tolist() == [5, 1, 5]
    assert top_up(7, np.array([10, 0, 3]), np.array([5, 2, 5])).tolist() == [0, 2, 5]
    assert top_up(4, np.array([0, 1]), np.array([0, 9])).tolist() == [0, 4]
    assert top_up(0, np.array([0, 1]), np.array([3, 9])).tolist() == [0, 0]


def test_id_hashes_depend_on_the_id_and_seed_only() -> None:
    values = ["a", "doc-1", "é" * 20, "x" * 70, "doc-1"]
    hashes = id_hashes(pa.array(values), 3)
    assert hashes[1] == hashes[4] and len(set(hashes.tolist())) == 4
    assert id_hashes(pa.array(values[::-1]), 3).tolist() == hashes[::-1].tolist()
    assert id_hashes(pa.array(values), 4)[0] != hashes[0]
    sha = "ab" * 32  # equal-length ids take a no-copy path that must agree with the general one
    assert id_hashes(pa.array([sha, sha]), 3)[0] == id_hashes(pa.array(["a", sha]), 3)[1]
    sliced = pa.array(["zz", *values]).slice(1)
    assert id_hashes(sliced, 3).tolist() == hashes.tolist()
    u = draws(id_hashes(pa.array([str(i) for i in range(10_000)]), 0), 1)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02

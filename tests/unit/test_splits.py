"""Initial splits: by document, stratified by type, stable for a seed, frozen holdout."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from docloop.documents.examples import DocumentExample, stratified_splits
from tests.datasets import make_example

pytestmark = pytest.mark.unit


def corpus(sizes: dict[str, int]) -> list[DocumentExample]:
    rng = random.Random(0)
    examples = []
    index = 0
    for doc_type, count in sizes.items():
        for _ in range(count):
            example = make_example(index, rng).model_copy(update={"doc_type": doc_type})
            examples.append(example)
            index += 1
    return examples


def test_every_type_is_in_every_split_in_proportion() -> None:
    examples = corpus({"invoice": 40, "lab_report": 10, "referral_letter": 5})
    splits = stratified_splits(examples, seed=1, val_fraction=0.15, holdout_fraction=0.2)
    holdout = Counter(e.doc_type for e in splits["holdout"])
    val = Counter(e.doc_type for e in splits["val"])
    assert holdout == {"invoice": 8, "lab_report": 2, "referral_letter": 1}
    assert val == {"invoice": 6, "lab_report": 2, "referral_letter": 1}
    ids = [e.doc_id for split in splits.values() for e in split]
    assert sorted(ids) == sorted(e.doc_id for e in examples)  # each document exactly once


def test_splits_are_stable_and_depend_on_the_seed() -> None:
    examples = corpus({"invoice": 30, "lab_report": 30})
    first = stratified_splits(examples, 3, 0.15, 0.2)
    shuffled = list(reversed(examples))
    again = stratified_splits(shuffled, 3, 0.15, 0.2)
    assert {k: [e.doc_id for e in v] for k, v in first.items()} == {
        k: [e.doc_id for e in v] for k, v in again.items()
    }
    other = stratified_splits(examples, 4, 0.15, 0.2)
    assert [e.doc_id for e in other["holdout"]] != [e.doc_id for e in first["holdout"]]


def test_rare_types_train_only() -> None:
    splits = stratified_splits(corpus({"invoice": 20, "fax_cover": 2}), 0, 0.15, 0.2)
    assert all(e.doc_type != "fax_cover" for e in splits["holdout"] + splits["val"])
    assert sum(e.doc_type == "fax_cover" for e in splits["train"]) == 2

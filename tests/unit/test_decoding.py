"""The extractor's windows with overlap, Viterbi decoding, field answers and calibration."""

from __future__ import annotations

import itertools
import logging
import random

import numpy as np
import pytest

from docloop.documents.examples import DocumentExample
from docloop.documents.locate import field_value
from docloop.models.artifact import ModelCard
from docloop.models.calibration import expected_calibration_error, fit_calibration
from docloop.models.encoder import load_tokenizer, resolve_encoder
from docloop.models.features import context_depth, extractor_windows, holds_entity
from docloop.models.inference import EntityPrediction, field_answers, spans, viterbi
from docloop.models.training import entity_free_sampled, gold_field_values
from tests.datasets import make_example, receipt

pytestmark = pytest.mark.unit

LABELS = ["O", "B-total", "I-total", "B-company", "I-company"]


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return load_tokenizer(resolve_encoder(None))


def long_example(copies: int = 6) -> DocumentExample:
    example = make_example(0, random.Random(1))
    return example.model_copy(
        update={
            "words": example.words * copies,
            "boxes": example.boxes * copies,
            "pages": [0] * len(example.words) * copies,
            "tags": example.tags * copies,
        }
    )


def test_overlapping_windows_share_whole_words_and_cover_every_word(tokenizer) -> None:  # type: ignore[no-untyped-def]
    example = long_example()
    windows = extractor_windows([example], tokenizer, {}, max_length=40, overlap=12)
    assert len(windows) > 3
    read = [[w for w in window.word_at_token if w >= 0] for window in windows]
    assert sorted({w for words in read for w in words}) == list(range(len(example.words)))
    for (window, before), after in itertools.pairwise(zip(windows, read, strict=True)):
        shared = sorted(set(before) & set(after[1]))
        assert shared, "consecutive windows share words"
        assert shared == before[-len(shared) :]  # the tail of one is the head of the next
        assert after[1][0] > before[0]  # always moves on
        first_shared_token = window.word_at_token.index(shared[0])
        assert len(window.input_ids) - 1 - first_shared_token <= 12  # within the overlap
    without = extractor_windows([example], tokenizer, {}, max_length=40, overlap=0)
    flat = [w for window in without for w in window.word_at_token if w >= 0]
    assert flat == list(range(len(example.words)))  # overlap 0: each word exactly once


def test_a_word_is_predicted_by_the_window_where_it_has_most_context(tokenizer) -> None:  # type: ignore[no-untyped-def]
    example = long_example()
    windows = extractor_windows([example], tokenizer, {}, max_length=40, overlap=12)
    first, second = windows[0], windows[1]
    shared = sorted(
        set(w for w in first.word_at_token if w >= 0)
        & set(w for w in second.word_at_token if w >= 0)
    )
    last = shared[-1]
    depth_first = context_depth(first, first.word_at_token.index(last))
    depth_second = context_depth(second, second.word_at_token.index(last))
    assert depth_second > depth_first  # the last shared word sits deeper in the next window


def test_viterbi_never_starts_a_span_with_inside_and_keeps_multi_word_values_whole() -> None:
    # argmax reads I-total (an invalid start), B-company, O, I-company: repaired, that is two
    # fragments of the company; the best valid sequence keeps it one span
    probabilities = np.array(
        [
            [0.30, 0.05, 0.60, 0.03, 0.02],
            [0.05, 0.01, 0.01, 0.90, 0.03],
            [0.40, 0.01, 0.01, 0.18, 0.40 - 0.05],
            [0.05, 0.01, 0.01, 0.03, 0.90],
        ]
    )
    argmax = [LABELS[i] for i in probabilities.argmax(axis=1)]
    assert argmax[2] == "O"
    path = [LABELS[i] for i in viterbi(probabilities, LABELS)]
    assert not path[0].startswith("I-")
    assert path[1:] == ["B-company", "I-company", "I-company"]  # one span, not two fragments
    assert viterbi(np.zeros((0, 5)), LABELS) == []


def test_a_field_decoding_left_empty_still_answers_its_most_probable_span() -> None:
    card = ModelCard(
        task="extract",
        labels=LABELS,
        field_kinds={"total": "amount", "company": "text"},
        encoder="x",
        max_length=32,
    )
    example = receipt(["ACME", "SDN", "BHD", "TOTAL", "RM9.00"], ["O"] * 5)
    probabilities = np.full((5, 5), 0.01)
    probabilities[:, 0] = 0.96
    probabilities[4] = [0.55, 0.40, 0.02, 0.02, 0.01]  # total lost to O, but it is the best B
    probabilities[0] = [0.10, 0.01, 0.01, 0.86, 0.02]
    probabilities[1] = [0.20, 0.01, 0.01, 0.03, 0.75]
    probabilities[2] = [0.30, 0.01, 0.01, 0.03, 0.65]
    path = viterbi(probabilities, LABELS)
    tags = [LABELS[i] for i in path]
    confidences = [float(probabilities[w, i]) for w, i in enumerate(path)]
    entities = spans(example, tags, confidences)
    assert [e.type for e in entities] == ["company"]
    answers = field_answers(card, example, entities, probabilities)
    assert answers["company"].text == "ACME SDN BHD"
    assert answers["company"].confidence == pytest.approx((0.86 + 0.75 + 0.65) / 3, abs=1e-6)
    assert answers["total"].text == "RM9.00"
    assert answers["total"].value == "9.00"  # the amount, not the printed string
    assert answers["total"].confidence == pytest.approx(0.40)
    assert not answers["total"].calibrated


def test_field_values_are_normalised_by_kind() -> None:
    assert field_value("date", "25 Dec 18") == "2018-12-25"
    assert field_value("date", "25/12/2018") == "2018-12-25"
    assert field_value("date", "31/02/2018") == "31/02/2018"  # not a date: the text
    assert field_value("amount", "RM 1,234.5") == "1234.50"
    assert field_value("text", "  ACME   SDN ") == "ACME SDN"
    card = ModelCard(
        task="extract", labels=LABELS, field_kinds={"total": "amount"}, encoder="x", max_length=8
    )
    example = receipt(
        ["TOTAL", "RM9.00", "CASH", "9.00", "X"], ["O", "B-total", "O", "B-total", "B-company"]
    )
    assert gold_field_values(card, example) == {"total": {"9.00"}, "company": {"X"}}


def test_calibration_maps_scores_to_the_share_right_and_lowers_ece() -> None:
    rng = random.Random(0)
    scores = [rng.uniform(0.5, 1.0) for _ in range(400)]
    # over-confident: a score s is right with probability 2s - 1
    right = [rng.random() < 2 * s - 1 for s in scores]
    fitted = fit_calibration(scores, right)
    assert fitted is not None
    assert fitted.ece_raw > 0.15
    assert fitted.ece < 0.05
    assert fitted.ece < fitted.ece_raw
    assert fitted.apply(0.55) < 0.3 < 0.7 < fitted.apply(0.95)
    assert fit_calibration(scores[:5], right[:5]) is None  # too few answers
    assert fit_calibration(scores, [True] * len(scores)) is None  # nothing to tell apart
    assert expected_calibration_error([1.0, 1.0], [True, False]) == pytest.approx(0.5)
    assert expected_calibration_error([], []) == 0.0


def test_entity_free_windows_are_kept_up_to_their_share(tokenizer, caplog) -> None:  # type: ignore[no-untyped-def]
    tag_ids = {label: i for i, label in enumerate(["O", "B-patient_name", "I-patient_name"])}
    example = make_example(0, random.Random(1))
    empty = example.model_copy(update={"tags": ["O"] * len(example.words)})
    windows = extractor_windows([example] * 2 + [empty] * 30, tokenizer, tag_ids, 64)
    labelled = [w for w in windows if holds_entity(w, 0)]
    assert labelled and len(labelled) < len(windows)
    with caplog.at_level(logging.INFO):
        kept = entity_free_sampled(windows, 0, 0.25, seed=0)
    free = [w for w in kept if not holds_entity(w, 0)]
    assert all(w in kept for w in labelled)
    assert len(free) == int(0.25 * len(labelled) / 0.75)
    assert [windows.index(w) for w in kept] == sorted(windows.index(w) for w in kept)
    assert entity_free_sampled(windows, 0, 0.25, seed=0) == kept  # the draw follows the seed
    assert entity_free_sampled(windows, 0, 1.0, seed=0) == windows
    assert "entity-free" in caplog.text


def test_entity_prediction_keeps_its_shape() -> None:
    entity = EntityPrediction("total", "9.00", 0, [0, 0, 1, 1], 0.5, [1])
    assert entity.word_indices == [1]

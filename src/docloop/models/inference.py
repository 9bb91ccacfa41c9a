"""Batched inference for both models: document types with probabilities, entities with boxes.

The extractor's per-word tag probabilities become spans by Viterbi decoding: the most probable
tag sequence in which every ``I-x`` follows a ``B-x`` or an ``I-x``. Each field then answers once
(:func:`field_answers`): the decoded span with the highest score, else the fallback span the
probabilities still hold (:func:`_fallback_span`); its value goes through
:func:`docloop.documents.locate.field_value`, its confidence through the card's calibration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from docloop.documents.examples import OUTSIDE, DocumentExample
from docloop.documents.locate import field_value
from docloop.models.artifact import LoadedModel, ModelCard
from docloop.models.features import (
    classifier_features,
    collate_classifier,
    collate_extractor,
    context_depth,
    extractor_windows,
)
from docloop.models.known_values import KnownValueMatcher, matchers


@dataclass(frozen=True)
class TypePrediction:
    """A document's predicted type."""

    label: str
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class EntityPrediction:
    """One extracted entity: its words, where they are, how sure the model is."""

    type: str
    text: str
    page: int
    box: list[int]
    confidence: float
    word_indices: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class FieldPrediction:
    """One field's answer: its best span, the value it holds, how likely that value is right."""

    name: str
    text: str
    value: str
    confidence: float
    page: int
    box: list[int]
    word_indices: list[int]
    calibrated: bool = False
    known_value: bool = False
    """``value`` is a known value the printed text was read as (``training.known_value_fields``)."""


@dataclass(frozen=True)
class ExtractionResult:
    """Per-word tags (valid IOB2), the entities they form and each field's best answer."""

    tags: list[str]
    confidences: list[float]
    entities: list[EntityPrediction]
    fields: dict[str, FieldPrediction] = field(default_factory=dict)


def _device(model: LoadedModel) -> torch.device:
    return next(model.network.parameters()).device


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a GPU that supports it (as in training); plain fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def classify(
    model: LoadedModel, examples: Sequence[DocumentExample], batch_size: int = 16
) -> list[TypePrediction]:
    """Predict each document's type."""
    card = model.card
    features = classifier_features(examples, model.tokenizer, {}, card.max_length, card.max_pages)
    device = _device(model)
    predictions: list[TypePrediction] = []
    for start in range(0, len(features), batch_size):
        batch = collate_classifier(features[start : start + batch_size])
        with _autocast(device):
            logits = model.network(
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["page_mask"].to(device),
            )
        probabilities = torch.softmax(logits.float(), dim=-1).cpu()
        for row in probabilities:
            best = int(row.argmax())
            predictions.append(
                TypePrediction(
                    label=card.labels[best],
                    confidence=round(float(row[best]), 6),
                    probabilities={
                        label: round(float(p), 6) for label, p in zip(card.labels, row, strict=True)
                    },
                )
            )
    return predictions


def repair_tags(tags: Sequence[str]) -> list[str]:
    """Make tags valid IOB2: an ``I-x`` that does not continue an ``x`` becomes ``B-x``."""
    repaired: list[str] = []
    previous = OUTSIDE
    for tag in tags:
        fixed = "B-" + tag[2:] if tag.startswith("I-") and previous[2:] != tag[2:] else tag
        repaired.append(fixed)
        previous = fixed
    return repaired


def spans(
    example: DocumentExample, tags: Sequence[str], confidences: Sequence[float]
) -> list[EntityPrediction]:
    """Entities formed by IOB2 ``tags`` over the example's words (split at page breaks)."""
    entities: list[EntityPrediction] = []
    current: list[int] = []
    kind = ""

    def close() -> None:
        if not current:
            return
        boxes = [example.boxes[i] for i in current]
        entities.append(
            EntityPrediction(
                type=kind,
                text=" ".join(example.words[i] for i in current),
                page=example.pages[current[0]],
                box=[
                    min(b[0] for b in boxes),
                    min(b[1] for b in boxes),
                    max(b[2] for b in boxes),
                    max(b[3] for b in boxes),
                ],
                confidence=round(sum(confidences[i] for i in current) / len(current), 6),
                word_indices=list(current),
            )
        )
        current.clear()

    for index, tag in enumerate(tags):
        same_page = not current or example.pages[current[-1]] == example.pages[index]
        if tag.startswith("I-") and tag[2:] == kind and same_page:
            current.append(index)
            continue
        close()
        if tag != OUTSIDE:
            kind = tag[2:]
            current.append(index)
    close()
    return entities


def allowed_transitions(labels: Sequence[str]) -> np.ndarray:
    """``[from, to]`` log-weights of IOB2 transitions.

    0 where allowed, -inf where ``to`` is an ``I-x`` that ``from`` neither opens nor continues.
    """
    size = len(labels)
    weights = np.zeros((size, size))
    for to, tag in enumerate(labels):
        if tag.startswith("I-"):
            kind = tag[2:]
            for source, previous in enumerate(labels):
                if previous[2:] != kind or previous == OUTSIDE:
                    weights[source, to] = -np.inf
    return weights


def viterbi(probabilities: np.ndarray, labels: Sequence[str]) -> list[int]:
    """The most probable valid IOB2 tag sequence for ``[words, labels]`` probabilities."""
    if len(probabilities) == 0:
        return []
    emissions = np.log(np.clip(probabilities, 1e-12, 1.0))
    transitions = allowed_transitions(labels)
    opening = np.array([-np.inf if tag.startswith("I-") else 0.0 for tag in labels])
    score = emissions[0] + opening
    back = np.zeros(emissions.shape, dtype=np.int64)
    for word in range(1, len(emissions)):
        candidates = score[:, None] + transitions
        back[word] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + emissions[word]
    path = [int(score.argmax())]
    for word in range(len(emissions) - 1, 0, -1):
        path.append(int(back[word, path[-1]]))
    return path[::-1]


def _fallback_span(
    example: DocumentExample, probabilities: np.ndarray, labels: Sequence[str], kind: str
) -> tuple[list[int], float] | None:
    """The span the probabilities hold for ``kind`` when decoding gave it none.

    It starts at the word most probably ``B-kind`` and takes the following words of the same page
    while ``I-kind`` is more probable than ``O`` for them; its score is the mean probability of
    those tags, as for a decoded span.
    """
    begin, inside, outside = (
        labels.index(f"B-{kind}"),
        labels.index(f"I-{kind}"),
        labels.index(OUTSIDE),
    )
    if len(probabilities) == 0:
        return None
    start = int(probabilities[:, begin].argmax())
    words = [start]
    scores = [float(probabilities[start, begin])]
    following = start + 1
    while (
        following < len(probabilities)
        and example.pages[following] == example.pages[start]
        and probabilities[following, inside] > probabilities[following, outside]
    ):
        words.append(following)
        scores.append(float(probabilities[following, inside]))
        following += 1
    return words, sum(scores) / len(scores)


def _span_of(example: DocumentExample, words: list[int]) -> tuple[str, int, list[int]]:
    boxes = [example.boxes[i] for i in words]
    box = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    return " ".join(example.words[i] for i in words), example.pages[words[0]], box


def field_answers(
    card: ModelCard,
    example: DocumentExample,
    entities: Sequence[EntityPrediction],
    probabilities: np.ndarray,
    known: Mapping[str, KnownValueMatcher] | None = None,
) -> dict[str, FieldPrediction]:
    """Each field's best span (decoded, else the fallback) with its value and confidence.

    A field with known values (``card.known_values``) reads its text as the one it is close to
    (:mod:`docloop.models.known_values`); ``text`` stays the printed words. ``known``: the card's
    matchers, when the caller answers many documents with one card (built here otherwise).
    """
    answers: dict[str, FieldPrediction] = {}
    if known is None:
        known = card_matchers(card)
    for kind in card.entity_types:
        spans_of_kind = [e for e in entities if e.type == kind]
        if spans_of_kind:
            best = max(spans_of_kind, key=lambda e: e.confidence)
            words, score = list(best.word_indices), best.confidence
        else:
            fallback = _fallback_span(example, probabilities, card.labels, kind)
            if fallback is None:
                continue
            words, score = fallback
        text, page, box = _span_of(example, words)
        calibration = card.calibration.get(kind)
        matched = known[kind].match(text) if kind in known else None
        answers[kind] = FieldPrediction(
            name=kind,
            text=text,
            value=field_value(card.field_kinds.get(kind, "text"), matched or text),
            confidence=round(calibration.apply(score) if calibration else score, 6),
            page=page,
            box=box,
            word_indices=words,
            calibrated=calibration is not None,
            known_value=matched is not None,
        )
    return answers


@torch.inference_mode()
def word_probabilities(
    model: LoadedModel, examples: Sequence[DocumentExample], batch_size: int = 16
) -> list[np.ndarray]:
    """Per document, the ``[words, labels]`` tag probabilities.

    Each word's come from the window that reads it with the most context around it.
    """
    card = model.card
    windows = extractor_windows(
        examples, model.tokenizer, {}, card.window_length, card.window_overlap
    )
    device = _device(model)
    outside = card.labels.index(OUTSIDE)
    probabilities = [np.zeros((len(e.words), len(card.labels)), dtype=np.float32) for e in examples]
    for array in probabilities:
        array[:, outside] = 1.0
    word_depth: list[list[int]] = [[-1] * len(e.words) for e in examples]
    # windows of like length in one batch: less padding to compute
    windows = sorted(windows, key=lambda w: len(w.input_ids))
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        batch = collate_extractor(chunk)
        with _autocast(device):
            logits = model.network(
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["bbox"].to(device),
            )
        batch_probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        for row, window in enumerate(chunk):
            depths = word_depth[window.doc_index]
            target = probabilities[window.doc_index]
            for token, word in enumerate(window.word_at_token):
                if word < 0:
                    continue
                # a word read by two overlapping windows takes the one with more context around it
                depth = context_depth(window, token)
                if depth <= depths[word]:
                    continue
                depths[word] = depth
                target[word] = batch_probabilities[row, token]
    return probabilities


def extract(
    model: LoadedModel, examples: Sequence[DocumentExample], batch_size: int = 16
) -> list[ExtractionResult]:
    """Tag every word of every document, group the tags into entities, answer each field."""
    card = model.card
    known = card_matchers(card)
    results: list[ExtractionResult] = []
    for example, probabilities in zip(
        examples, word_probabilities(model, examples, batch_size), strict=True
    ):
        path = viterbi(probabilities, card.labels)
        tags = repair_tags([card.labels[i] for i in path])
        confidences = [float(probabilities[w, i]) for w, i in enumerate(path)]
        raw = spans(example, tags, confidences)
        entities = [_calibrated(card, entity) for entity in raw]
        results.append(
            ExtractionResult(
                tags, confidences, entities, field_answers(card, example, raw, probabilities, known)
            )
        )
    return results


def card_matchers(card: ModelCard) -> dict[str, KnownValueMatcher]:
    """The known-value matcher of each field the card has values for."""
    return matchers(card.known_values, card.known_value_similarity, card.known_value_margin)


def _calibrated(card: ModelCard, entity: EntityPrediction) -> EntityPrediction:
    calibration = card.calibration.get(entity.type)
    if calibration is None:
        return entity
    return replace(entity, confidence=round(calibration.apply(entity.confidence), 6))

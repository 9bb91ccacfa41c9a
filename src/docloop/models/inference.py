"""Batched inference for both models: document types with probabilities, entities with boxes."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from docloop.documents.examples import OUTSIDE, DocumentExample
from docloop.models.artifact import LoadedModel
from docloop.models.features import (
    classifier_features,
    collate_classifier,
    collate_extractor,
    extractor_windows,
)


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
class ExtractionResult:
    """Per-word tags (repaired to valid IOB2) and the entities they form."""

    tags: list[str]
    confidences: list[float]
    entities: list[EntityPrediction]


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


@torch.inference_mode()
def extract(
    model: LoadedModel, examples: Sequence[DocumentExample], batch_size: int = 16
) -> list[ExtractionResult]:
    """Tag every word of every document and group the tags into entities."""
    card = model.card
    windows = extractor_windows(examples, model.tokenizer, {}, card.max_length)
    device = _device(model)
    word_tags: list[list[str]] = [[OUTSIDE] * len(e.words) for e in examples]
    word_conf: list[list[float]] = [[1.0] * len(e.words) for e in examples]
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        batch = collate_extractor(chunk)
        with _autocast(device):
            logits = model.network(
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["bbox"].to(device),
            )
        probabilities = torch.softmax(logits.float(), dim=-1).cpu()
        best = probabilities.max(dim=-1)
        for row, window in enumerate(chunk):
            for token, word in enumerate(window.word_at_token):
                if word < 0:
                    continue
                word_tags[window.doc_index][word] = card.labels[int(best.indices[row, token])]
                word_conf[window.doc_index][word] = float(best.values[row, token])
    results: list[ExtractionResult] = []
    for example, tags, confidences in zip(examples, word_tags, word_conf, strict=True):
        valid = repair_tags(tags)
        results.append(ExtractionResult(valid, confidences, spans(example, valid, confidences)))
    return results

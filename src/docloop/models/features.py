"""Examples -> tensors: page chunks for the classifier, word-aligned windows for the extractor.

The extractor labels words, not sub-tokens: each word's label sits on its first sub-token and the
other sub-tokens are ignored (-100) in the loss and in prediction. Documents longer than one window
are cut into windows of whole words (no word is split across windows) that overlap by up to
``overlap`` tokens, so a value near a window's edge is also read with the context on its other side;
inference keeps, for each word, the prediction of the window in which it sits furthest from an edge
(:func:`context_depth`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from docloop.documents.examples import DocumentExample

IGNORE_INDEX = -100
SPECIAL_BOX = (0, 0, 0, 0)


@dataclass(frozen=True)
class ClassifierFeatures:
    """One document as page chunks: ``input_ids`` and ``attention_mask`` are [pages, tokens]."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    label: int


@dataclass(frozen=True)
class ExtractorWindow:
    """One window of a document: tokens, their boxes, labels and the words they start."""

    doc_index: int
    input_ids: list[int]
    bbox: list[tuple[int, int, int, int]]
    labels: list[int]
    word_at_token: list[int]  # word index for a word's first sub-token, -1 elsewhere


def classifier_features(
    examples: Sequence[DocumentExample],
    tokenizer: Any,
    label_ids: dict[str, int],
    max_length: int,
    max_pages: int,
) -> list[ClassifierFeatures]:
    """Tokenise the first ``max_length`` tokens of each of the first ``max_pages`` pages."""
    features: list[ClassifierFeatures] = []
    for example in examples:
        page_words: dict[int, list[str]] = {}
        for word, page in zip(example.words, example.pages, strict=True):
            page_words.setdefault(page, []).append(word)
        chunks = [page_words[p] for p in sorted(page_words)[:max_pages]] or [[""]]
        encoded = tokenizer(
            chunks,
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            padding="max_length",
        )
        label = label_ids.get(example.doc_type, IGNORE_INDEX) if example.doc_type else IGNORE_INDEX
        features.append(ClassifierFeatures(encoded["input_ids"], encoded["attention_mask"], label))
    return features


def collate_classifier(batch: Sequence[ClassifierFeatures]) -> dict[str, torch.Tensor]:
    """Pad page counts within a batch; ``page_mask`` marks real pages."""
    pages = max(len(item.input_ids) for item in batch)
    tokens = len(batch[0].input_ids[0])
    input_ids = torch.zeros((len(batch), pages, tokens), dtype=torch.long)
    attention = torch.zeros((len(batch), pages, tokens), dtype=torch.long)
    page_mask = torch.zeros((len(batch), pages), dtype=torch.long)
    for row, item in enumerate(batch):
        count = len(item.input_ids)
        input_ids[row, :count] = torch.tensor(item.input_ids)
        attention[row, :count] = torch.tensor(item.attention_mask)
        page_mask[row, :count] = 1
    labels = torch.tensor([item.label for item in batch], dtype=torch.long)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "page_mask": page_mask,
        "labels": labels,
    }


def extractor_windows(
    examples: Sequence[DocumentExample],
    tokenizer: Any,
    tag_ids: dict[str, int],
    max_length: int,
    overlap: int = 0,
) -> list[ExtractorWindow]:
    """Cut each document into windows of whole words of at most ``max_length`` tokens.

    Consecutive windows share the whole words of up to ``overlap`` tokens at the end of the first
    (at least one word always moves on, so a document of n words gives at most n windows).
    """
    budget = max_length - 2  # [CLS] ... [SEP]
    windows: list[ExtractorWindow] = []
    for doc_index, example in enumerate(examples):
        if not example.words:
            continue
        # the whole document is tokenised once and cut below: the tokenizer's warning about
        # sequences longer than the model's maximum does not apply (verbose=False)
        pieces = tokenizer(
            example.words, is_split_into_words=True, add_special_tokens=False, verbose=False
        )
        ids: list[int] = pieces["input_ids"]
        word_ids: list[int | None] = pieces.word_ids()
        per_word: list[list[int]] = [[] for _ in example.words]
        for token, word in zip(ids, word_ids, strict=True):
            if word is not None:
                per_word[word].append(token)
        # a pathological "word" longer than a window keeps only its first pieces
        per_word = [tokens[:budget] for tokens in per_word]
        start = 0
        while start < len(example.words):
            tokens: list[int] = []
            end = start
            while end < len(example.words):
                word_tokens = per_word[end] or [tokenizer.unk_token_id]
                if tokens and len(tokens) + len(word_tokens) > budget:
                    break
                tokens.extend(word_tokens)
                end += 1
            windows.append(_window(doc_index, example, tokenizer, tag_ids, per_word, start, end))
            if end >= len(example.words):
                break
            start = _next_start(per_word, start, end, overlap)
    return windows


def _next_start(per_word: list[list[int]], start: int, end: int, overlap: int) -> int:
    """The first word of the next window: back from ``end`` by whole words within ``overlap``."""
    shared = 0
    following = end
    while following - 1 > start:
        size = len(per_word[following - 1]) or 1
        if shared + size > overlap:
            break
        shared += size
        following -= 1
    return following


def context_depth(window: ExtractorWindow, token: int) -> int:
    """How far ``token`` sits from its window's nearer edge, in tokens (0 at the edge)."""
    return min(token - 1, len(window.input_ids) - 2 - token)


def holds_entity(window: ExtractorWindow, outside_id: int) -> bool:
    """Whether any word of the window is labelled with something other than ``O``."""
    return any(label not in (IGNORE_INDEX, outside_id) for label in window.labels)


def _window(
    doc_index: int,
    example: DocumentExample,
    tokenizer: Any,
    tag_ids: dict[str, int],
    per_word: list[list[int]],
    start: int,
    end: int,
) -> ExtractorWindow:
    input_ids = [tokenizer.cls_token_id]
    bbox: list[tuple[int, int, int, int]] = [SPECIAL_BOX]
    labels = [IGNORE_INDEX]
    word_at_token = [-1]
    for word in range(start, end):
        word_tokens = per_word[word] or [tokenizer.unk_token_id]
        box = tuple(example.boxes[word])
        for position, token in enumerate(word_tokens):
            input_ids.append(token)
            bbox.append((box[0], box[1], box[2], box[3]))
            first = position == 0
            labels.append(tag_ids.get(example.tags[word], IGNORE_INDEX) if first else IGNORE_INDEX)
            word_at_token.append(word if first else -1)
    input_ids.append(tokenizer.sep_token_id)
    bbox.append(SPECIAL_BOX)
    labels.append(IGNORE_INDEX)
    word_at_token.append(-1)
    return ExtractorWindow(doc_index, input_ids, bbox, labels, word_at_token)


def collate_extractor(batch: Sequence[ExtractorWindow]) -> dict[str, torch.Tensor]:
    """Pad windows to the longest in the batch."""
    length = max(len(item.input_ids) for item in batch)
    size = len(batch)
    input_ids = torch.zeros((size, length), dtype=torch.long)
    attention = torch.zeros((size, length), dtype=torch.long)
    bbox = torch.zeros((size, length, 4), dtype=torch.long)
    labels = torch.full((size, length), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        input_ids[row, :n] = torch.tensor(item.input_ids)
        attention[row, :n] = 1
        bbox[row, :n] = torch.tensor(item.bbox)
        labels[row, :n] = torch.tensor(item.labels)
    return {"input_ids": input_ids, "attention_mask": attention, "bbox": bbox, "labels": labels}

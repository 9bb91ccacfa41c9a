"""A simulated reviewer: one verdict per answered document, judged from the gold labels.

It confirms right predictions and corrects wrong ones with the gold labels; ``wrong_rate`` of its
corrections are deliberately wrong (a random other type), so the feedback-quality rules have
something to catch. The demo, the retrain-strategies benchmark and the loop's tests use it on
synthetic corpora, whose exact labels stand in for a person.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

from docloop.documents.examples import OUTSIDE, DocumentExample
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackEvent


def gold_entities(example: DocumentExample) -> list[CorrectedEntity]:
    """The example's entities (from its IOB2 tags) as word positions."""
    entities: list[CorrectedEntity] = []
    current: tuple[str, list[int]] | None = None
    for index, tag in enumerate([*example.tags, OUTSIDE]):
        inside = tag.startswith("I-") and current is not None and current[0] == tag[2:]
        if inside and current is not None:
            current[1].append(index)
            continue
        if current is not None:
            words = " ".join(example.words[i] for i in current[1])
            entities.append(CorrectedEntity(type=current[0], word_indices=current[1], value=words))
            current = None
        if tag.startswith(("B-", "I-")):
            current = (tag[2:], [index])
    return entities


def _spans(entities: Sequence[CorrectedEntity] | Sequence[dict[str, Any]]) -> set[tuple[str, ...]]:
    spans: set[tuple[str, ...]] = set()
    for entity in entities:
        if isinstance(entity, CorrectedEntity):
            kind, indices = entity.type, entity.positions
        else:
            kind, indices = str(entity["type"]), list(entity.get("word_indices", []))
        spans.add((kind, *(str(i) for i in indices)))
    return spans


def review(
    answers: Sequence[dict[str, Any]],
    examples: Sequence[DocumentExample],
    *,
    rng: random.Random,
    wrong_rate: float = 0.0,
    reviewers: Sequence[str] = ("reviewer-a", "reviewer-b", "reviewer-c"),
    careless_reviewer: str | None = None,
) -> list[FeedbackEvent]:
    """One verdict per answered document, from the gold labels.

    Args:
        answers: The predictor's answers (``request_predictions``), in example order; each is
            named by its server ``request_id`` and ``instance``.
        examples: The gold examples the answers are for.
        rng: Draws reviewers and wrong corrections.
        wrong_rate: Share of corrections replaced by a wrong type (noise for the quality rules).
        reviewers: Reviewer ids, drawn at random.
        careless_reviewer: If set, this reviewer makes every wrong correction (a low-trust
            reviewer for the trust rules); else they are spread over all reviewers.

    Returns:
        The verdicts, each with a fresh idempotency key.
    """
    events: list[FeedbackEvent] = []
    for answer, example in zip(answers, examples, strict=True):
        predicted_type = (answer.get("doc_type") or {}).get("label")
        gold = gold_entities(example)
        type_wrong = predicted_type != example.doc_type
        entities_wrong = _spans(gold) != _spans(answer.get("entities", []))
        reviewer = rng.choice(list(reviewers))
        correction: Correction | None = None
        if type_wrong or entities_wrong:
            correction = Correction(
                doc_type=example.doc_type if type_wrong else None,
                entities=gold if entities_wrong else None,
            )
            if rng.random() < wrong_rate:
                others = sorted(
                    set((answer.get("doc_type") or {}).get("probabilities", {}))
                    - {str(example.doc_type), str(predicted_type)}
                )
                if others:
                    correction = Correction(doc_type=rng.choice(others), entities=None)
                    reviewer = careless_reviewer or reviewer
        key = hashlib.sha256(f"{answer['request_id']}:{answer['instance']}".encode()).hexdigest()
        events.append(
            FeedbackEvent(
                idempotency_key=f"sim-{key[:32]}",
                model_name=str(answer["model_name"]),
                model_version=str(answer["model_version"]),
                request_id=str(answer["request_id"]),
                instance=int(answer["instance"]),
                reviewer_id=reviewer,
                kind="correction" if correction is not None else "confirmation",
                correction=correction,
            )
        )
    return events

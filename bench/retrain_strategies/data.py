"""The benchmark's inputs: corpora, the shared V1 dataset, the simulated feedback, the datasets.

Everything a strategy trains on comes from the product's own code paths: the corpora from
``docloop.documents.synth`` through real preprocessing (OCR for scanned pages), the feedback
from V1's answers judged by ``docloop.feedback.simulated_reviewer.review`` (gold labels, a share
of deliberately wrong corrections) and filtered by ``docloop.feedback.quality.assess_feedback``,
and every retraining dataset from ``docloop.datasets.retrain.build.build_retrain_dataset`` — with
the policy under test, or with targeting switched off for the baselines — so the strategies differ
only in what they sample, never in how labels become training rows.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from docloop.config import DocloopConfig, FeedbackConfig, RetrainConfig
from docloop.datasets.retrain.build import build_retrain_dataset
from docloop.datasets.retrain.labels import entity_f1_from_feedback
from docloop.datasets.retrain.write import FEEDBACK_HOLDOUT
from docloop.datasets.synthetic import labelled_examples
from docloop.documents.examples import (
    DatasetManifest,
    DocumentExample,
    read_examples,
    stratified_splits,
    write_dataset,
)
from docloop.feedback.contracts import FeedbackRecord
from docloop.feedback.quality import assess_feedback
from docloop.feedback.simulated_reviewer import review
from docloop.models.artifact import LoadedModel
from docloop.models.inference import classify, extract
from docloop.storage import Storage

logger = logging.getLogger(__name__)

SCENARIOS: Final = ("new_template", "class_mix", "scan_quality", "new_vendor")
WRONG_RATE: Final = 0.05
"""Share of the simulated reviewer's corrections that are wrong (the quality rules' work)."""


@dataclass(frozen=True)
class Size:
    """How big one run of the benchmark is.

    Attributes:
        name: ``default`` or ``quick``.
        base_docs: labelled ``base`` documents V1 is trained from (split train/val/holdout).
        traffic_docs: served and reviewed documents per drift scenario (the feedback), the first
            of a generated corpus of ``traffic_corpus`` documents.
        traffic_corpus: documents generated per traffic corpus (cached, so shared by sizes).
        test_docs: drifted holdout documents per scenario (never served, never trained).
        seeds: repetitions per scenario (reviewer draws, sampling and training seeds).
        scenarios: the drift scenarios run.
        scanned_fraction: share of scanned (OCR) documents, except ``scan_quality`` (its own 0.9).
        max_length: tokens per window.
        epochs: epochs of a training run from the encoder (V1's recipe, and the full retrain's).
        finetune_epochs: epochs of a warm-started fine-tune from V1 (the retrain pipeline's
            ``epochs`` parameter), the same for every warm-started strategy.
        encoder_layers: transformer layers of the encoder kept (all-MiniLM-L6-v2 has 6).
    """

    name: str
    base_docs: int
    traffic_docs: int
    traffic_corpus: int
    test_docs: int
    seeds: int
    scenarios: tuple[str, ...]
    scanned_fraction: float
    max_length: int
    epochs: int
    finetune_epochs: int
    encoder_layers: int


SIZES: Final = {
    "default": Size("default", 200, 40, 40, 50, 3, SCENARIOS, 0.25, 128, 4, 2, 1),
    "quick": Size("quick", 24, 10, 10, 6, 1, ("new_template", "class_mix"), 0.0, 128, 1, 1, 1),
}
HOLDOUT_FRACTION: Final = 0.3
VAL_FRACTION: Final = 0.15


@dataclass(frozen=True)
class Corpora:
    """The labelled documents of one benchmark size."""

    base: list[DocumentExample]
    traffic: dict[str, list[DocumentExample]]
    test: dict[str, list[DocumentExample]]


def corpora(workdir: Path, size: Size, config: DocloopConfig) -> Corpora:
    """Generate and preprocess (once; cached under ``workdir``) every corpus of ``size``."""

    def load(name: str, scenario: str, docs: int, seed: int) -> list[DocumentExample]:
        fraction = 0.9 if scenario == "scan_quality" else size.scanned_fraction
        return labelled_examples(workdir, name, scenario, docs, seed, config, fraction)

    base = load("base", "base", size.base_docs, 1)
    traffic = {
        s: load(f"traffic-{s}", s, size.traffic_corpus, 11 + i)[: size.traffic_docs]
        for i, s in enumerate(SCENARIOS)
        if s in size.scenarios
    }
    test = {
        s: load(f"test-{s}", s, size.test_docs, 101 + i)
        for i, s in enumerate(SCENARIOS)
        if s in size.scenarios
    }
    return Corpora(base, traffic, test)


def write_v1_dataset(
    storage: Storage, uri: str, base: Sequence[DocumentExample]
) -> DatasetManifest:
    """V1's dataset: the ``base`` corpus split by document id (its holdout is the old holdout)."""
    splits = stratified_splits(
        base, seed=0, val_fraction=VAL_FRACTION, holdout_fraction=HOLDOUT_FRACTION
    )
    return write_dataset(storage, uri, splits, seed=0)


# ------------------------------------------------------------------------- simulated feedback


def answers_of(
    classifier: LoadedModel, extractor: LoadedModel, examples: Sequence[DocumentExample]
) -> list[dict[str, Any]]:
    """V1's answers in the predictor's response shape (what the simulated reviewer judges)."""
    types = classify(classifier, examples)
    entities = extract(extractor, examples)
    return [
        {
            "doc_type": {"label": t.label, "probabilities": t.probabilities},
            "entities": [
                {
                    "type": e.type,
                    "word_indices": e.word_indices,
                    "confidence": e.confidence,
                    "text": e.text,
                }
                for e in result.entities
            ],
            "request_id": f"bench-{example.doc_id[:16]}",
            "instance": 0,
            "model_name": "docloop",
            "model_version": "1",
        }
        for example, t, result in zip(examples, types, entities, strict=True)
    ]


@dataclass(frozen=True)
class Feedback:
    """One scenario's reviewed traffic for one seed: accepted records and what they give."""

    accepted: list[FeedbackRecord]
    documents: dict[str, DocumentExample]
    champion_entity_f1: dict[str, float]
    counts: dict[str, int]


def simulated_feedback(
    answers: Sequence[dict[str, Any]], examples: Sequence[DocumentExample], seed: int
) -> Feedback:
    """The reviewer's verdicts on V1's answers, through the feedback quality rules.

    The same ``seed`` gives the same verdicts, so every strategy of a (scenario, seed) cell
    learns from identical feedback.
    """
    events = review(answers, examples, rng=random.Random(seed), wrong_rate=WRONG_RATE)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = [
        FeedbackRecord(
            id=index + 1,
            idempotency_key=event.idempotency_key,
            model_name=event.model_name,
            model_version=event.model_version,
            request_id=event.request_id,
            instance=event.instance,
            doc_id=example.doc_id,
            reviewer_id=event.reviewer_id,
            kind=event.kind,
            correction=event.correction,
            received_at=(start + timedelta(seconds=index)).isoformat(),
            status="accepted",
            predicted_doc_type=answer["doc_type"]["label"],
            predicted_probabilities=answer["doc_type"]["probabilities"],
            predicted_entities=answer["entities"],
        )
        for index, (event, answer, example) in enumerate(
            zip(events, answers, examples, strict=True)
        )
    ]
    report = assess_feedback(records, FeedbackConfig())
    accepted = report.accepted(records)
    corrected = sum(1 for r in accepted if r.kind == "correction")
    return Feedback(
        accepted=accepted,
        documents={e.doc_id: e for e in examples},
        champion_entity_f1=entity_f1_from_feedback(accepted),
        counts={
            "reviewed": len(records),
            "accepted": len(accepted),
            "corrections": corrected,
            "confirmations": len(accepted) - corrected,
        },
    )


# ------------------------------------------------------------------------------ the datasets

FEEDBACK_ONLY: Final = RetrainConfig(
    replay_ratio=0.0,
    feedback_holdout_fraction=0.0,
    confirmed_per_corrected=0.0,
    balance_classes=False,
    min_docs_per_entity=0,
    error_oversample=1.0,
)
"""Targeting off: the corrections alone (no confirmed documents, no replay, no oversampling).

Its feedback holdout is empty: :func:`corrections_for` already leaves out the targeted
dataset's feedback holdout, which the gate scores every strategy on."""


def corrections_for(feedback: Feedback, task: str, held_out: set[str]) -> Feedback:
    """The feedback that corrected this model: type corrections (classifier) or entity ones.

    The naive loop fine-tunes each model on its own mistakes; documents in ``held_out`` (the
    gate's feedback holdout) are left out.
    """
    part = "doc_type" if task == "classify" else "entities"
    kept = [
        record
        for record in feedback.accepted
        if record.doc_id not in held_out
        and record.kind == "correction"
        and record.correction is not None
        and getattr(record.correction, part) is not None
    ]
    return replace(feedback, accepted=kept)


EVERYTHING: Final = RetrainConfig(
    replay_ratio=0.95,
    confirmed_per_corrected=1e6,
    balance_classes=False,
    min_docs_per_entity=0,
    error_oversample=1.0,
)
"""Targeting off, everything in: every reviewed document and all of V1's training data."""


def retrain_dataset(
    storage: Storage,
    uri: str,
    feedback: Feedback,
    previous_uri: str,
    policy: RetrainConfig,
    seed: int,
) -> DatasetManifest:
    """A retrain dataset from the product's builder with ``policy`` (same seed: same holdout)."""
    return build_retrain_dataset(
        feedback.accepted,
        feedback.documents,
        previous_uri,
        uri,
        policy,
        feedback.champion_entity_f1,
        seed,
        storage,
        val_fraction=VAL_FRACTION,
    )


def random_dataset(
    storage: Storage,
    uri: str,
    everything_uri: str,
    budget: DatasetManifest,
    seed: int,
) -> DatasetManifest:
    """Uniform random rows of the everything-dataset, as many as ``budget`` has per split.

    Training and validation are drawn from the same pool the targeted builder samples from
    (accepted reviewed documents outside the feedback holdout, plus V1's training data); the
    frozen holdout and the feedback holdout are the everything-dataset's (the same documents as
    the targeted one's, since the holdout draws depend only on the seed and the document ids).
    """
    rng = random.Random(seed)
    splits: dict[str, list[DocumentExample]] = {}
    for name in ("train", "val"):
        pool = read_examples(storage, f"{everything_uri}/{name}.parquet")
        splits[name] = rng.sample(pool, min(budget.counts[name], len(pool)))
    for name in ("holdout", FEEDBACK_HOLDOUT):
        splits[name] = read_examples(storage, f"{everything_uri}/{name}.parquet")
    return write_dataset(storage, uri, splits, seed)

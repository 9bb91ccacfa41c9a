"""build-retrain-dataset through kfp.local: reviewed feedback in the store becomes a dataset."""

import random
from datetime import UTC, datetime

import pytest

from tests.datasets import make_example, write_tiny_dataset
from tests.loop import World

pytestmark = pytest.mark.local

TYPES = ("invoice", "referral_letter")  # the tiny dataset's
SERVED = 40
CORRECTED = 12  # the first documents were predicted with the other type and corrected


def review(world: World) -> None:
    """Predictions of ``SERVED`` documents, their served copies, and a verdict on each.

    The classifier was unsure (0.6 on the right type): a correction that contradicted a confident
    prediction from an untrusted reviewer would be quarantined by the quality rules.
    """
    from docloop.config import load_config
    from docloop.feedback.contracts import FeedbackEvent, write_served_document
    from docloop.feedback.records import find_prediction, record_feedback
    from docloop.serve.sink import PredictionRecord, SqlSink
    from docloop.storage import Storage
    from docloop.store import open_store

    config = load_config()
    store = open_store(world.store_url)
    examples = [
        make_example(i, random.Random(i)).model_copy(update={"doc_id": f"srv{i:05d}"})
        for i in range(SERVED)
    ]
    predicted = [
        TYPES[1 - TYPES.index(e.doc_type)] if i < CORRECTED else e.doc_type
        for i, e in enumerate(examples)
    ]
    SqlSink(store).write(
        [
            PredictionRecord(
                timestamp=datetime(2026, 1, 1, tzinfo=UTC).isoformat(), request_id=f"req-{i}",
                instance=0, doc_id=e.doc_id, source_uri="request://x/0", model_name="docloop",
                model_version="1", model_versions={"classify": "1"}, protocol="v1",
                input="pages", doc_type=predicted[i], doc_type_confidence=0.6,
                probabilities={t: 0.6 if t == e.doc_type else 0.4 for t in TYPES},
                entities=[], entity_types=[], entity_count=0, pages=1, words=len(e.words),
                mean_confidence=90.0, ocr_pages=1, latency_ms=1.0,
            )
            for i, e in enumerate(examples)
        ]
    )  # fmt: skip
    for i, example in enumerate(examples):
        unlabelled = example.model_copy(
            update={"doc_type": None, "tags": ["O"] * len(example.words)}
        )
        write_served_document(Storage(), config, unlabelled)
        body: dict[str, object] = {
            "idempotency_key": f"key-{i:05d}", "model_name": "docloop", "model_version": "1",
            "request_id": f"req-{i}", "reviewer_id": f"rev-{i % 4}", "kind": "confirmation",
        }  # fmt: skip
        if i < CORRECTED:
            body |= {"kind": "correction", "correction": {"doc_type": example.doc_type}}
        verdict = FeedbackEvent.model_validate(body)
        found = find_prediction(store, verdict.request_id)
        assert found is not None
        record_feedback(store, verdict, found)
    store.close()


@pytest.mark.slow  # a kfp.local run over a real store
def test_corrections_train_and_the_frozen_holdout_stays(world: World) -> None:
    from pathlib import Path

    from components.build_retrain_dataset import build_retrain_dataset
    from docloop.documents.examples import read_manifest
    from docloop.storage import Storage

    previous = write_tiny_dataset(world.root / "previous")
    review(world)

    task = build_retrain_dataset(previous_dataset_uri=str(previous))

    manifest = read_manifest(Storage(), str(Path(task.outputs["dataset"].path)))
    before = read_manifest(Storage(), str(previous))
    assert manifest.digests["holdout"] == before.digests["holdout"]
    corrected = sum(split.get("corrected", 0) for split in manifest.source_counts.values())
    assert corrected == CORRECTED
    assert task.outputs["dataset"].metadata["quality"]["counts"]["quarantined"] == 0
    assert CORRECTED <= task.outputs["feedback"] <= SERVED
    assert task.outputs["train"] == manifest.counts["train"] > 0

"""A field added through feedback becomes a field the retrained extractor predicts.

End to end on the real pieces: V1 is trained on a schema without ``title``; reviewers correct
served documents with the new field (the feedback API accepts it once declared, see
tests/unit/test_feedback_values.py); build-retrain-dataset grows the schema; V2, warm-started from
V1, keeps V1's heads first, appends ``B-title``/``I-title`` and predicts the new field.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from docloop.config import RetrainConfig, TrackingConfig, TrainingConfig
from docloop.datasets.retrain.build import build_retrain_dataset
from docloop.documents.examples import read_manifest
from docloop.models.artifact import load_model
from docloop.models.inference import extract
from docloop.models.training import train
from docloop.storage import Storage
from tests.datasets import make_example, write_tiny_dataset
from tests.feedback import correction, feedback_record

pytestmark = pytest.mark.slow  # two real training runs of the packaged encoder


def test_a_field_taught_through_feedback_is_predicted_by_the_next_model(tmp_path: Path) -> None:
    first = write_tiny_dataset(tmp_path / "v1-data")
    tracking = TrackingConfig(enabled=False)
    quick = TrainingConfig(max_length=64, batch_size=4, max_steps=4, learning_rate=1e-4)
    v1 = train("extract", str(first), str(tmp_path / "v1"), quick, tracking).card
    assert "B-title" not in v1.labels

    # Reviewers mark the title (the first two words) on served documents, with the old labels.
    rng = random.Random(7)
    served = [
        make_example(100 + i, rng).model_copy(update={"doc_id": f"srv{i:03d}"}) for i in range(24)
    ]
    records = []
    for i, example in enumerate(served):
        old = [(t[2:], [j]) for j, t in enumerate(example.tags) if t.startswith("B-")]
        spans = [
            (kind, [j for j in range(start, len(example.tags)) if example.tags[j][2:] == kind])
            for kind, (start,) in old
        ]
        records.append(
            feedback_record(
                i + 1,
                correction=correction(entities=[("title", [0, 1]), *spans]),
                doc_id=example.doc_id,
                predicted_doc_type=example.doc_type,
                predicted_entities=[{"type": k, "word_indices": w} for k, w in spans],
            )
        )
    documents = {
        e.doc_id: e.model_copy(update={"tags": ["O"] * len(e.words), "doc_type": None})
        for e in served
    }
    retrain = tmp_path / "v2-data"
    build_retrain_dataset(
        records, documents, str(first), str(retrain), RetrainConfig(), None, 0, Storage()
    )
    manifest = read_manifest(Storage(), str(retrain))
    assert "title" in manifest.entity_types
    assert manifest.label_schema is not None and "title" in manifest.label_schema.kinds

    longer = quick.model_copy(update={"max_steps": 60, "learning_rate": 3e-4})
    v2 = train(
        "extract",
        str(retrain),
        str(tmp_path / "v2"),
        longer,
        tracking,
        init_from=str(tmp_path / "v1"),
    ).card
    assert v2.labels[: len(v1.labels)] == v1.labels  # the known heads first, unchanged order
    assert v2.labels[len(v1.labels) :] == ["B-title", "I-title"]
    assert v2.field_kinds["title"] == "text"

    model = load_model(tmp_path / "v2")
    unseen = [make_example(500 + i, random.Random(i)) for i in range(8)]
    predicted = [r.entities for r in extract(model, unseen)]
    titled = sum(any(e.type == "title" for e in entities) for entities in predicted)
    assert titled >= 6, [[(e.type, e.text) for e in entities] for entities in predicted]

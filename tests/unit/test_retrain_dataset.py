"""Retrain-mode build-dataset: labels from feedback, targeted sampling, holdouts, manifest."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from docloop.config import DocloopConfig, RetrainConfig
from docloop.datasets.retrain.build import build_retrain_dataset
from docloop.datasets.retrain.labels import entity_f1_from_feedback, feedback_labels
from docloop.datasets.retrain.write import FEEDBACK_HOLDOUT
from docloop.documents.examples import (
    DatasetManifest,
    DocumentExample,
    read_examples,
    read_manifest,
    write_dataset,
)
from docloop.documents.label_schema import schema_from_names
from docloop.errors import InvalidInput
from docloop.feedback.contracts import FeedbackRecord, PredictedEntity
from docloop.storage import Storage
from tests.datasets import make_example
from tests.feedback import correction, feedback_record

pytestmark = pytest.mark.unit

TYPES = ("invoice", "referral_letter", "lab_report")
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SPLITS = ("train", "val", "holdout")


def gold_spans(example: DocumentExample) -> list[tuple[str, list[int]]]:
    spans: list[tuple[str, list[int]]] = []
    for index, tag in enumerate(example.tags):
        if tag.startswith("B-"):
            spans.append((tag[2:], [index]))
        elif tag.startswith("I-"):
            spans[-1][1].append(index)
    return spans


def document(index: int, doc_type: str, prefix: str = "srv") -> DocumentExample:
    """A labelled example (its gold labels) with a chosen type and id."""
    example = make_example(index, random.Random(index))
    return example.model_copy(update={"doc_id": f"{prefix}{index:05d}", "doc_type": doc_type})


def served(example: DocumentExample) -> DocumentExample:
    """What the predictor keeps: the words, no labels."""
    return example.model_copy(update={"doc_type": None, "tags": ["O"] * len(example.words)})


def predicted_entities(
    spans: Sequence[tuple[str, Sequence[int]]], confidence: float = 0.9
) -> list[dict[str, object]]:
    return [
        {"type": kind, "word_indices": list(indices), "confidence": confidence}
        for kind, indices in spans
    ]


def record(
    id_: int,
    example: DocumentExample,
    *,
    predicted_type: str | None = None,
    correct_type: str | None = None,
    correct_entities: Sequence[tuple[str, Sequence[int]]] | None = None,
    predicted: Sequence[tuple[str, Sequence[int]]] | None = None,
    reviewer: str = "r1",
    minutes: int = 0,
) -> FeedbackRecord:
    """A feedback record on ``example``: a confirmation unless a correction is given."""
    spans = gold_spans(example) if predicted is None else list(predicted)
    predicted_type = predicted_type or example.doc_type
    probabilities = {t: (0.9 if t == predicted_type else 0.05) for t in TYPES}
    return feedback_record(
        id_,
        correction=correction(correct_type, correct_entities),
        doc_id=example.doc_id,
        reviewer_id=reviewer,
        received_at=T0 + timedelta(minutes=minutes),
        predicted_doc_type=predicted_type,
        predicted_probabilities=probabilities,
        predicted_entities=predicted_entities(spans),
    )


def previous_dataset(folder: Path, per_type: int = 30, dob_every: int = 0) -> Path:
    """A previous dataset: ``per_type`` documents of each type, split 70/10/20 by id.

    With ``dob_every``, every such document also has a ``dob`` entity (word 8).
    """
    examples = []
    for i in range(per_type * len(TYPES)):
        example = document(i, TYPES[i % len(TYPES)], prefix="old")
        if dob_every and i % dob_every == 0:
            tags = list(example.tags)
            tags[8] = "B-dob"
            example = example.model_copy(update={"tags": tags})
        examples.append(example)
    n = len(examples)
    splits = {
        "train": examples[: int(n * 0.7)],
        "val": examples[int(n * 0.7) : int(n * 0.8)],
        "holdout": examples[int(n * 0.8) :],
    }
    write_dataset(Storage(), str(folder), splits, seed=0)
    return folder


class Scenario:
    """Reviewed documents: type corrections first, then confirmations, types in turn."""

    def __init__(
        self,
        corrected: int,
        confirmed: int,
        *,
        corrected_types: Sequence[str] = TYPES,
        confirmed_types: Sequence[str] = TYPES,
        start: int = 1000,
    ) -> None:
        self.examples: list[DocumentExample] = []
        self.records: list[FeedbackRecord] = []
        for i in range(corrected):
            doc_type = corrected_types[i % len(corrected_types)]
            wrong = next(t for t in TYPES if t != doc_type)
            self.add(document(start + i, doc_type), predicted_type=wrong, correct_type=doc_type)
        for i in range(confirmed):
            doc_type = confirmed_types[i % len(confirmed_types)]
            self.add(document(start + corrected + i, doc_type))

    def add(self, example: DocumentExample, **kwargs: object) -> FeedbackRecord:
        item = record(len(self.records) + 1, example, **kwargs)  # type: ignore[arg-type]
        self.examples.append(example)
        self.records.append(item)
        return item

    @property
    def documents(self) -> dict[str, DocumentExample]:
        return {e.doc_id: served(e) for e in self.examples}


def build(
    tmp_path: Path,
    scenario: Scenario,
    config: RetrainConfig | None = None,
    *,
    f1: dict[str, float] | None = None,
    seed: int = 0,
    name: str = "out",
    previous: Path | None = None,
    val_fraction: float = 0.15,
) -> tuple[DatasetManifest, Path]:
    if previous is None:
        previous = tmp_path / "prev"
        if not previous.exists():
            previous_dataset(previous)
    output = tmp_path / name
    manifest = build_retrain_dataset(
        scenario.records,
        scenario.documents,
        str(previous),
        str(output),
        config or RetrainConfig(),
        f1,
        seed,
        Storage(),
        val_fraction=val_fraction,
    )
    return manifest, output


def split(output: Path, name: str) -> list[DocumentExample]:
    return read_examples(Storage(), str(output / f"{name}.parquet"))


def ids(examples: Sequence[DocumentExample]) -> set[str]:
    return {e.doc_id for e in examples}


def spans_of(example: DocumentExample) -> list[tuple[str, list[int]]]:
    return gold_spans(example)


NO_HOLDOUT = {"feedback_holdout_fraction": 0.0}


# ----------------------------------------------------------------------------------- labels


def test_labels_follow_the_verdicts(tmp_path: Path) -> None:
    scenario = Scenario(0, 0)
    a = scenario.add(document(1, "invoice"), predicted_type="lab_report", correct_type="invoice")
    b = scenario.add(document(2, "invoice"), correct_entities=[("mrn", [7])])
    c = scenario.add(document(3, "lab_report"))
    d = scenario.add(document(4, "invoice"), correct_entities=[("mrn", [3, 5]), ("dob", [8])])
    config = RetrainConfig(
        confirmed_per_corrected=10, replay_ratio=0.0, min_docs_per_entity=0, **NO_HOLDOUT
    )
    manifest, output = build(tmp_path, scenario, config, val_fraction=0.0)
    train = {e.doc_id: e for e in split(output, "train")}
    assert set(train) == {a.doc_id, b.doc_id, c.doc_id, d.doc_id}
    # a type correction keeps the predicted entities
    assert train[a.doc_id].doc_type == "invoice"
    assert spans_of(train[a.doc_id]) == [("patient_name", [3, 4]), ("mrn", [6])]
    # an entity-only correction keeps the predicted type
    assert train[b.doc_id].doc_type == "invoice"
    assert spans_of(train[b.doc_id]) == [("mrn", [7])]
    assert train[b.doc_id].tags.count("O") == len(train[b.doc_id].words) - 1
    # a confirmation takes the prediction
    assert train[c.doc_id].doc_type == "lab_report"
    # positions with a gap start a new entity; new entity types join the label set
    assert train[d.doc_id].tags[3:9] == ["B-mrn", "O", "B-mrn", "O", "O", "B-dob"]
    assert "dob" in manifest.entity_types
    # words and boxes are the served document's
    assert train[a.doc_id].words == scenario.documents[a.doc_id].words
    assert manifest.source_counts["train"] == {"corrected": 3, "confirmed": 1, "replay": 0}


def test_feedback_labels_take_the_latest_verdict_and_report_unusable_ones() -> None:
    example = document(1, "invoice")
    first = record(1, example, correct_type="lab_report", minutes=1)
    later = record(2, example, minutes=5, reviewer="r2")
    untyped = record(3, document(2, "invoice")).model_copy(update={"predicted_doc_type": None})
    no_positions = record(4, document(3, "invoice")).model_copy(
        update={"predicted_entities": [PredictedEntity(type="mrn", confidence=0.9)]}
    )
    labels = feedback_labels([later, first, untyped, no_positions])
    rows = labels.table.to_pylist()
    assert [(r["doc_id"], r["doc_type"], r["feedback_id"]) for r in rows] == [
        (example.doc_id, "invoice", 2)
    ]
    assert labels.skipped == {"no_doc_type": 1, "no_entity_positions": 1}


def test_entity_f1_from_feedback_scores_the_predictions() -> None:
    example = document(1, "invoice")
    fixed = record(1, example, correct_entities=[("patient_name", [3, 4]), ("mrn", [7])])
    confirmed = record(2, document(2, "invoice"))
    f1 = entity_f1_from_feedback([fixed, confirmed])
    assert f1 == {"mrn": 0.5, "patient_name": 1.0}


# -------------------------------------------------------------------------------- proportions


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_replay_makes_up_the_replay_ratio_of_training(tmp_path: Path, ratio: float) -> None:
    previous_dataset(tmp_path / "prev", per_type=80)
    config = RetrainConfig(replay_ratio=ratio, balance_classes=False)
    manifest, output = build(tmp_path, Scenario(60, 120), config)
    sources = manifest.source_counts["train"]
    assert sources["replay"] / manifest.counts["train"] == pytest.approx(ratio, abs=0.02)
    assert sum(sources.values()) == manifest.counts["train"] == len(split(output, "train"))
    assert manifest.sampling is not None and manifest.sampling.replay_rows == sources["replay"]
    # replay is stratified by type like the previous training data (equal thirds here)
    replay_types = Counter(e.doc_type for e in split(output, "train") if e.doc_id.startswith("old"))
    assert max(replay_types.values()) - min(replay_types.values()) <= 2
    # validation mirrors training: both sources, in about the same proportion
    val = manifest.source_counts["val"]
    assert val["replay"] / manifest.counts["val"] == pytest.approx(ratio, abs=0.1)


def test_replay_tops_up_the_types_the_feedback_lacks(tmp_path: Path) -> None:
    """Traffic heavy in invoices: replay goes to the other types, so none is forgotten."""
    previous_dataset(tmp_path / "prev", per_type=40)
    scenario = Scenario(30, 0, corrected_types=["invoice"] * 4 + ["lab_report"])
    _, output = build(tmp_path, scenario, RetrainConfig(replay_ratio=0.5, **NO_HOLDOUT))
    train = split(output, "train")
    replayed = Counter(e.doc_type for e in train if e.doc_id.startswith("old"))
    reviewed = Counter(e.doc_type for e in train if not e.doc_id.startswith("old"))
    assert reviewed["invoice"] > 3 * reviewed["lab_report"] and not reviewed["referral_letter"]
    assert replayed["invoice"] == 0 < replayed["lab_report"] < replayed["referral_letter"]
    # the budget does not reach the invoices' count: the two others end level with each other
    totals = reviewed + replayed
    assert abs(totals["lab_report"] - totals["referral_letter"]) <= 1 < totals["referral_letter"]
    # without balance_classes, replay follows the previous data's (even) type mix
    plain = RetrainConfig(replay_ratio=0.5, balance_classes=False, **NO_HOLDOUT)
    _, output = build(tmp_path, scenario, plain, name="plain")
    replayed = Counter(e.doc_type for e in split(output, "train") if e.doc_id.startswith("old"))
    assert max(replayed.values()) - min(replayed.values()) <= 2


@pytest.mark.parametrize("per_corrected", [1.0, 0.5])
def test_confirmed_documents_balance_the_corrected_ones(
    tmp_path: Path, per_corrected: float
) -> None:
    config = RetrainConfig(confirmed_per_corrected=per_corrected, **NO_HOLDOUT)
    manifest, _ = build(tmp_path, Scenario(30, 150), config)
    pool = Counter(manifest.source_counts["train"]) + Counter(manifest.source_counts["val"])
    assert pool["corrected"] == 30
    assert pool["confirmed"] == round(30 * per_corrected)


def test_balance_classes_caps_each_type_at_the_median(tmp_path: Path) -> None:
    confirmed = ["invoice"] * 6 + ["lab_report"] * 2 + ["referral_letter"]  # 60 / 20 / 10
    scenario = Scenario(9, 90, confirmed_types=confirmed)
    config = RetrainConfig(confirmed_per_corrected=10, replay_ratio=0.0, **NO_HOLDOUT)
    manifest, output = build(tmp_path, scenario, config)
    chosen = Counter(
        e.doc_type
        for name in ("train", "val")
        for e in split(output, name)
        if int(e.doc_id[3:]) >= 1009  # the confirmed ones
    )
    assert chosen == {"invoice": 20, "lab_report": 20, "referral_letter": 10}
    assert manifest.sampling is not None
    assert any("median" in note for note in manifest.sampling.notes)
    unbalanced = RetrainConfig(
        confirmed_per_corrected=10, replay_ratio=0.0, balance_classes=False, **NO_HOLDOUT
    )
    manifest, _ = build(tmp_path, scenario, unbalanced, name="unbalanced")
    assert (
        manifest.source_counts["train"]["confirmed"] + manifest.source_counts["val"]["confirmed"]
        == 90
    )


def test_every_entity_type_keeps_its_floor_from_replay(tmp_path: Path) -> None:
    previous_dataset(tmp_path / "prev", per_type=30, dob_every=9)  # 10 documents with a dob
    config = RetrainConfig(min_docs_per_entity=6, replay_ratio=0.1)
    manifest, output = build(tmp_path, Scenario(20, 20), config)
    train = split(output, "train")
    with_dob = [e for e in train if "B-dob" in e.tags]
    assert len(with_dob) >= 6
    assert all(e.doc_id.startswith("old") for e in with_dob)
    assert manifest.sampling is not None and manifest.sampling.floor_added.get("dob", 0) > 0
    assert manifest.entity_counts["train"]["dob"] == len(with_dob)


def test_the_floor_takes_confirmed_feedback_first_and_reports_shortfalls(tmp_path: Path) -> None:
    scenario = Scenario(10, 0)
    dob = [("patient_name", [3, 4]), ("mrn", [6]), ("zip", [8])]
    for i in range(4):
        scenario.add(document(2000 + i, "invoice"), predicted=dob)
    config = RetrainConfig(confirmed_per_corrected=0, min_docs_per_entity=6, **NO_HOLDOUT)
    manifest, output = build(tmp_path, scenario, config)
    train = split(output, "train")
    assert sum("B-zip" in e.tags for e in train) == 4  # all of them, none left in validation
    assert manifest.sampling is not None
    assert manifest.sampling.floor_added == {"zip": 4}
    assert manifest.sampling.below_floor == ["zip"]
    assert any("zip" in note for note in manifest.sampling.notes)


def test_corrections_of_weak_entities_are_oversampled(tmp_path: Path) -> None:
    scenario = Scenario(0, 30)
    weak = [
        scenario.add(
            document(3000 + i, "invoice"), correct_entities=[("patient_name", [3, 4]), ("mrn", [7])]
        )
        for i in range(6)
    ]
    strong = [
        scenario.add(
            document(3100 + i, "invoice"), correct_entities=[("patient_name", [3]), ("mrn", [6])]
        )
        for i in range(6)
    ]
    config = RetrainConfig(error_oversample=2.0, **NO_HOLDOUT)
    f1 = {"mrn": 0.5, "patient_name": 0.95}
    manifest, output = build(tmp_path, scenario, config, f1=f1, val_fraction=0.0)
    copies = Counter(e.doc_id for e in split(output, "train"))
    assert all(copies[r.doc_id] == 2 for r in weak)
    assert all(copies[r.doc_id] == 1 for r in strong)
    assert manifest.sampling is not None
    assert manifest.sampling.weak_entities == ["mrn"] and manifest.sampling.oversampled == 6
    assert manifest.source_counts["train"]["corrected"] == 18  # 6 x 2 + 6
    # fractional weights repeat a share of the documents once more
    config = RetrainConfig(error_oversample=2.5, **NO_HOLDOUT)
    _, output = build(tmp_path, scenario, config, f1=f1, name="frac", val_fraction=0.0)
    copies = Counter(e.doc_id for e in split(output, "train"))
    assert {copies[r.doc_id] for r in weak} <= {2, 3}


# ------------------------------------------------------------------------- holdouts, leaks


def test_the_frozen_holdout_is_copied_and_never_leaks(tmp_path: Path) -> None:
    previous = previous_dataset(tmp_path / "prev")
    frozen = split(previous, "holdout")
    scenario = Scenario(30, 60)
    for example in frozen[:5]:  # production sent documents that are in the frozen holdout
        scenario.add(
            example,
            predicted_type=next(t for t in TYPES if t != example.doc_type),
            correct_type=example.doc_type,
        )
    manifest, output = build(tmp_path, scenario, previous=previous)
    assert (output / "holdout.parquet").read_bytes() == (previous / "holdout.parquet").read_bytes()
    old = read_manifest(Storage(), str(previous))
    assert manifest.digests["holdout"] == old.digests["holdout"]
    assert manifest.class_counts["holdout"] == old.class_counts["holdout"]
    held = ids(frozen)
    for name in ("train", "val", FEEDBACK_HOLDOUT):
        assert not held & ids(split(output, name)), name
    assert manifest.sampling is not None
    assert manifest.sampling.skipped == {"in_frozen_holdout": 5}


def test_splits_are_disjoint_by_document(tmp_path: Path) -> None:
    manifest, output = build(tmp_path, Scenario(40, 80))
    train, val, feedback = (ids(split(output, n)) for n in ("train", "val", FEEDBACK_HOLDOUT))
    assert not train & val and not train & feedback and not val & feedback
    # the feedback holdout: about the configured share of each type, reviewed documents only
    assert all(i.startswith("srv") for i in feedback)
    assert manifest.counts[FEEDBACK_HOLDOUT] == pytest.approx(0.2 * 120, abs=3)
    per_type = Counter(e.doc_type for e in split(output, FEEDBACK_HOLDOUT))
    assert set(per_type) == set(TYPES)


def test_a_field_added_through_feedback_grows_the_schema(tmp_path: Path) -> None:
    """The previous dataset's declared schema knows no ``vendor``; a reviewer labels one."""
    previous = previous_dataset(tmp_path / "prev")
    storage = Storage()
    old = read_manifest(storage, str(previous))
    kinds = {name: "text" for name in old.entity_types} | {"mrn": "id"}
    schema = schema_from_names(old.doc_types, old.entity_types, kinds).model_copy(
        update={"declared": True}
    )
    splits = {n: read_examples(storage, str(previous / f"{n}.parquet")) for n in SPLITS}
    write_dataset(storage, str(previous), splits, 0, label_schema=schema)
    scenario = Scenario(0, 30)
    for i in range(4):
        scenario.add(document(4000 + i, "invoice"), correct_entities=[("vendor", [2, 3])])
    manifest, output = build(tmp_path, scenario, previous=previous)
    assert "vendor" in manifest.entity_types
    assert manifest.label_schema is not None
    assert manifest.label_schema.kinds == {**kinds, "vendor": "text"}
    assert manifest.label_schema.declared
    tagged = [e for e in split(output, "train") if "B-vendor" in e.tags]
    assert tagged and all(e.tags[2:4] == ["B-vendor", "I-vendor"] for e in tagged)
    # declared in the config as an id: the new field keeps that kind
    declared = build_retrain_dataset(
        scenario.records, scenario.documents, str(previous), str(tmp_path / "declared"),
        RetrainConfig(), None, 0, storage, declared_kinds={"vendor": "id"},
    )  # fmt: skip
    assert declared.label_schema is not None
    assert declared.label_schema.kinds["vendor"] == "id"
    # a previous dataset written before schemas: the new one reads it off the names
    bare = previous_dataset(tmp_path / "bare")
    manifest, _ = build(tmp_path, scenario, previous=bare, name="from-bare")
    assert manifest.label_schema is not None and "vendor" in manifest.label_schema.kinds


def test_previously_trained_documents_retrain_with_their_new_label(tmp_path: Path) -> None:
    previous = previous_dataset(tmp_path / "prev")
    trained = split(previous, "train")[:10]
    scenario = Scenario(20, 20)
    for example in trained:
        other = next(t for t in TYPES if t != example.doc_type)
        scenario.add(example, predicted_type=example.doc_type, correct_type=other)
    config = RetrainConfig(feedback_holdout_fraction=0.5)
    _, output = build(tmp_path, scenario, config, previous=previous)
    assert not ids(trained) & ids(split(output, FEEDBACK_HOLDOUT))
    rows = [e for n in ("train", "val") for e in split(output, n) if e.doc_id in ids(trained)]
    assert len(rows) == 10 == len(ids(rows))  # once each, never also as replay
    originals = {e.doc_id: e.doc_type for e in trained}
    assert all(e.doc_type != originals[e.doc_id] for e in rows)


def test_the_dataset_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    scenario = Scenario(30, 90)
    first, out1 = build(tmp_path, scenario, name="a", seed=7)
    again, out2 = build(tmp_path, scenario, name="b", seed=7)
    other, out3 = build(tmp_path, scenario, name="c", seed=8)
    assert first.digests == again.digests
    assert (out1 / "train.parquet").read_bytes() == (out2 / "train.parquet").read_bytes()
    assert first.digests["holdout"] == other.digests["holdout"]
    assert ids(split(out1, FEEDBACK_HOLDOUT)) != ids(split(out3, FEEDBACK_HOLDOUT))
    # the order of the feedback does not matter
    shuffled = Scenario(30, 90)
    shuffled.records.reverse()
    reordered, _ = build(tmp_path, shuffled, name="d", seed=7)
    assert reordered.digests == first.digests


# -------------------------------------------------------------------------------- manifest


def test_the_manifest_counts_sources_and_old_manifests_still_load(tmp_path: Path) -> None:
    manifest, output = build(tmp_path, Scenario(30, 60))
    assert read_manifest(Storage(), str(output)) == manifest
    assert set(manifest.counts) == {"train", "val", "holdout", FEEDBACK_HOLDOUT}
    for name in ("train", "val", FEEDBACK_HOLDOUT):
        assert sum(manifest.source_counts[name].values()) == manifest.counts[name]
        assert sum(manifest.class_counts[name].values()) == manifest.counts[name]
        data = (output / f"{name}.parquet").read_bytes()
        assert manifest.digests[name] == hashlib.sha256(data).hexdigest()
    assert manifest.digest_method == "file" and manifest.mode == "retrain"
    old = (tmp_path / "prev" / "manifest.json").read_text()
    loaded = DatasetManifest.model_validate_json(old)
    assert loaded.mode == "initial" and loaded.sampling is None and loaded.source_counts == {}


def test_missing_documents_and_bad_positions_are_skipped(tmp_path: Path) -> None:
    scenario = Scenario(20, 20)
    lost = scenario.add(document(5000, "invoice"), correct_type="lab_report")
    scenario.add(document(5001, "invoice"), correct_entities=[("mrn", [999])])
    documents = scenario.documents
    del documents[lost.doc_id]
    manifest = build_retrain_dataset(
        scenario.records,
        documents,
        str(previous_dataset(tmp_path / "prev")),
        str(tmp_path / "out"),
        RetrainConfig(),
        None,
        0,
        Storage(),
    )
    assert manifest.sampling is not None
    assert manifest.sampling.skipped == {"bad_word_positions": 1, "missing_document": 1}


def test_a_loader_stands_in_for_the_mapping(tmp_path: Path) -> None:
    scenario = Scenario(10, 10)
    documents = scenario.documents

    def load(doc_id: str) -> DocumentExample:
        return documents[doc_id]

    manifest = build_retrain_dataset(
        scenario.records,
        load,
        str(previous_dataset(tmp_path / "prev")),
        str(tmp_path / "out"),
        RetrainConfig(),
        None,
        0,
        Storage(),
    )
    assert manifest.counts["train"] > 0


def test_no_usable_feedback_is_an_error_with_the_fix(tmp_path: Path) -> None:
    scenario = Scenario(3, 0)
    with pytest.raises(InvalidInput, match="served-documents"):
        build_retrain_dataset(
            scenario.records,
            {},
            str(previous_dataset(tmp_path / "prev")),
            str(tmp_path / "out"),
            RetrainConfig(),
            None,
            0,
            Storage(),
        )


# --------------------------------------------------------------------------- component glue


def test_run_component_reads_the_store_assesses_and_builds(tmp_path: Path) -> None:
    from docloop.datasets.retrain.build import run_component
    from docloop.feedback.contracts import FeedbackEvent as Verdict
    from docloop.feedback.contracts import write_served_document
    from docloop.feedback.records import find_prediction, record_feedback
    from docloop.serve.sink import PredictionRecord, SqlSink
    from docloop.store import open_store
    from docloop.store.tables import FeedbackEvent as Row
    from docloop.store.tables import RetrainAttempt

    url = f"sqlite:///{tmp_path / 'state.db'}"
    config_file = tmp_path / "docloop.yaml"
    config_file.write_text(f"data_root: {(tmp_path / 'data').as_uri()}\nstore:\n  url: {url}\n")
    config = DocloopConfig(data_root=(tmp_path / "data").as_uri())
    previous = previous_dataset(tmp_path / "prev")
    store = open_store(url)
    examples = [document(7000 + i, TYPES[i % 3]) for i in range(40)]
    SqlSink(store).write(
        [
            PredictionRecord(
                timestamp=T0.isoformat(), request_id=f"req-{i}", instance=0, doc_id=e.doc_id,
                source_uri="request://x/0", model_name="docloop", model_version="1",
                model_versions={"classify": "1"}, protocol="v1", input="pages",
                doc_type=TYPES[(i + 1) % 3] if i < 12 else e.doc_type, doc_type_confidence=0.6,
                probabilities={t: 0.6 if t == e.doc_type else 0.2 for t in TYPES},
                entities=predicted_entities(gold_spans(e)), entity_types=["mrn", "patient_name"],
                entity_count=2, pages=1, words=len(e.words), mean_confidence=90.0, ocr_pages=1,
                latency_ms=1.0,
            )
            for i, e in enumerate(examples)
        ]
    )  # fmt: skip
    for example in examples:
        write_served_document(Storage(), config, served(example))

    def send(i: int, reviewer: str, doc_type: str | None = None) -> None:
        body: dict[str, object] = {
            "idempotency_key": f"key-{i}-{reviewer}", "model_name": "docloop",
            "model_version": "1", "request_id": f"req-{i}", "reviewer_id": reviewer,
            "kind": "confirmation",
        }  # fmt: skip
        if doc_type is not None:
            body |= {"kind": "correction", "correction": {"doc_type": doc_type}}
        verdict = Verdict.model_validate(body)
        found = find_prediction(store, verdict.request_id)
        assert found is not None
        record_feedback(store, verdict, found)

    send(0, "early")  # before the last promoted retrain: not read again
    with store.write() as session:
        session.add(RetrainAttempt(trigger={}, outcome="promoted"))
    for i in range(1, 40):
        send(i, f"rev-{i % 4}", examples[i].doc_type if i < 12 else None)
    send(39, "dissenter", TYPES[0] if examples[39].doc_type != TYPES[0] else TYPES[1])

    result = run_component(str(previous), str(tmp_path / "out"), config_path=str(config_file))
    assert result.since is not None
    # the dissenter contradicts a confident incumbent alone: quarantined, the confirmation stands
    assert result.quality["counts"] == {"accepted": 39, "quarantined": 1, "superseded": 0}
    assert result.quality["reasons"] == {"clean": 39, "suspicious_doc_type": 1}
    assert result.manifest.mode == "retrain"
    pool = Counter(result.manifest.source_counts["train"]) + Counter(
        result.manifest.source_counts["val"]
    )
    pool += Counter(result.manifest.source_counts[FEEDBACK_HOLDOUT])
    assert pool["corrected"] == 11 and pool["confirmed"] > 0
    with store.read() as session:
        statuses = Counter(
            (row.reviewer_id, row.status)
            for row in session.query(Row).filter(Row.doc_id == examples[39].doc_id)
        )
        first = session.query(Row).filter(Row.reviewer_id == "early").one()
    store.close()
    assert statuses == {("dissenter", "quarantined"): 1, ("rev-3", "accepted"): 1}
    assert first.status == "accepted"


def test_a_retrain_dataset_is_a_valid_previous_dataset(tmp_path: Path) -> None:
    scenario = Scenario(0, 30)
    for i in range(6):
        scenario.add(document(3000 + i, "invoice"), correct_entities=[("mrn", [7])])
    f1 = {"mrn": 0.5}
    first, out1 = build(tmp_path, scenario, RetrainConfig(**NO_HOLDOUT), f1=f1, name="gen1")
    assert len(split(out1, "train")) > len(ids(split(out1, "train")))  # oversampled copies
    second, out2 = build(tmp_path, Scenario(20, 20, start=8000), previous=out1, name="gen2")
    assert second.digests["holdout"] == first.digests["holdout"]
    replayed = [e for e in split(out2, "train") if not e.doc_id.startswith("srv08")]
    assert len(replayed) == len(ids(replayed))  # replay takes each earlier document once
    assert second.sampling is not None and second.sampling.previous_digest == first.digest

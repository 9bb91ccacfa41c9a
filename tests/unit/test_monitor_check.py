"""run_drift_check end to end: a real state store (SQLite and PostgreSQL), a tiny trained model.

The store is seeded the way the predictor and the feedback API fill it (``predictions`` rows with
``outputs``/``ocr`` JSON, served documents as one-row Parquet files, ``feedback_events`` rows whose
payload is the whole validated event); the check then reads, decides, writes its files, records
the attempt and moves the watermark.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from docloop.config import DocloopConfig, DriftConfig, TrackingConfig, TrainingConfig, TriggerConfig
from docloop.documents.examples import write_examples
from docloop.errors import StoreError
from docloop.feedback.contracts import CorrectedEntity, Correction, write_served_document
from docloop.feedback.contracts import FeedbackEvent as FeedbackBody
from docloop.models.artifact import LoadedModel, card_version, load_model
from docloop.monitor import sources
from docloop.monitor.check import (
    CHECK_FILE,
    DECISION_FILE,
    METRICS_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    DriftCheckResult,
    run_drift_check,
)
from docloop.monitor.drift import DriftSample, OcrShift, detect_drift
from docloop.monitor.performance import feedback_performance
from docloop.monitor.report import ReportInputs, render_html, render_markdown
from docloop.monitor.trigger import TriggerDecision, decide_trigger
from docloop.steps import drift_check as drift_check_step
from docloop.storage import Storage
from docloop.store.db import Store, open_store
from docloop.store.tables import DriftCheck, FeedbackEvent, Prediction, RetrainAttempt
from tests.datasets import make_example, tiny_encoder, write_tiny_dataset
from tests.unit.test_monitor_performance import record

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC).replace(microsecond=0)
DOCS = 40


@dataclass(frozen=True)
class Champion:
    dataset: Path
    folder: Path
    model: LoadedModel


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    from docloop.models.training import train

    root = tmp_path_factory.mktemp("champion")
    dataset = write_tiny_dataset(root / "dataset")
    config = TrainingConfig(
        encoder=str(tiny_encoder(root / "encoder")),
        max_length=32,
        batch_size=4,
        epochs=1,
        max_steps=2,
    )
    train("classify", str(dataset), str(root / "model"), config, TrackingConfig(enabled=False))
    return Champion(dataset, root / "model", load_model(root / "model"))


def settings(tmp_path: Path) -> DocloopConfig:
    return DocloopConfig(
        data_root=(tmp_path / "data").as_uri(),
        drift=DriftConfig(permutations=100, max_embedding_rows=100),
        trigger=TriggerConfig(min_new_samples=20, performance_floor=0.8, cooldown_hours=24),
    )


def seed_store(
    store: Store,
    config: DocloopConfig,
    *,
    corrections: int,
    reviews: int = 30,
    at: datetime = NOW,
    version: str = "classify=1",
    entity_corrections: int = 0,
    ocr: dict[str, object] | None = None,
    served_as: str | None = None,
) -> None:
    """DOCS predictions (2 h before ``at``), ``reviews`` verdicts of which ``corrections`` fix the
    type and ``entity_corrections`` the entities (1 h before ``at``), every served document kept.

    ``ocr`` replaces the logged ``ocr`` JSON (default: one page, OCR'd, provenance not recorded);
    ``served_as`` is the ``input`` the predictor logged (``pages`` or ``document``; default none).
    """
    storage = Storage()
    rng = random.Random(11)
    created = at - timedelta(hours=2)
    with store.write() as session:
        for i in range(DOCS):
            example = make_example(500 + i, rng).model_copy(
                update={"doc_id": f"served-{at.timestamp():.0f}-{i:03d}", "doc_type": None}
            )
            write_served_document(storage, config, example)
            predicted = "invoice" if i % 2 == 0 else "referral_letter"
            session.add(
                Prediction(
                    request_id=f"req-{at.timestamp():.0f}-{i}",
                    instance=0,
                    model_name="docloop",
                    model_version=version,
                    doc_id=example.doc_id,
                    outputs={
                        "doc_type": predicted,
                        "probabilities": {predicted: 0.9},
                        "entities": [
                            {"type": "mrn", "text": "1", "word_indices": [5], "confidence": 0.9}
                        ],
                        **({"input": served_as} if served_as else {}),
                    },
                    confidence=0.9,
                    ocr=ocr
                    or {
                        "pages": 1,
                        "words": len(example.words),
                        "mean_confidence": 95.0,
                        "ocr_pages": 1,
                    },
                    created_at=created + timedelta(seconds=i),
                )
            )
        for i in range(reviews):
            fix = i < corrections
            predicted = "invoice" if i % 2 == 0 else "referral_letter"
            body = FeedbackBody(
                idempotency_key=f"verdict-{at.timestamp():.0f}-{i:04d}",
                model_name="docloop",
                model_version=version,
                request_id=f"req-{at.timestamp():.0f}-{i}",
                reviewer_id="alice",
                kind="correction" if fix or i < entity_corrections else "confirmation",
                correction=Correction(
                    doc_type=(
                        ("referral_letter" if predicted == "invoice" else "invoice")
                        if fix
                        else None
                    ),
                    entities=[CorrectedEntity(type="mrn", word_indices=[6])]
                    if i < entity_corrections
                    else None,
                )
                if fix or i < entity_corrections
                else None,
            )
            session.add(
                FeedbackEvent(
                    idempotency_key=body.idempotency_key,
                    model_name=body.model_name,
                    model_version=body.model_version,
                    request_id=body.request_id,
                    doc_id=f"served-{at.timestamp():.0f}-{i:03d}",
                    reviewer_id=body.reviewer_id,
                    kind=body.kind,
                    payload=body.model_dump(mode="json"),
                    received_at=at - timedelta(hours=1) + timedelta(seconds=i),
                    status="accepted",
                )
            )


def checks(store: Store) -> list[DriftCheck]:
    return list(reversed(sources.recent_checks(store)))


@pytest.mark.parametrize("champion_only", [True, False])
def test_only_the_champions_predictions_and_verdicts_are_judged(
    champion: Champion, tmp_path: Path, champion_only: bool
) -> None:
    """A window right after a promotion: the old version's bad verdicts do not count."""
    config = settings(tmp_path)
    config = config.model_copy(
        update={"drift": config.drift.model_copy(update={"champion_only": champion_only})}
    )
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    served = f"classify={card_version(champion.model.card)},extract=7"
    try:
        seed_store(store, config, corrections=20, version="classify=old,extract=7")
        seed_store(store, config, corrections=0, at=NOW - timedelta(minutes=5), version=served)
        result = run_drift_check(
            config, store, Storage(), champion.model, str(champion.dataset), None, NOW
        )
        if champion_only:
            assert result.predictions == DOCS and result.performance.documents == 30
            assert result.performance.accuracy.value == 1.0 and not result.trigger
            assert result.metrics["other_versions_left_out"] == DOCS + 30
        else:
            assert result.predictions == 2 * DOCS and result.performance.documents == 60
            assert result.performance.accuracy.value == pytest.approx(40 / 60)
            assert result.metrics["other_versions_left_out"] == 0
    finally:
        store.close()


def test_each_model_is_judged_on_its_own_versions_predictions(
    champion: Champion, tmp_path: Path
) -> None:
    """The canary changed only the extractor: types on every verdict, entities on the new one's."""
    config = settings(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    classifier = card_version(champion.model.card)
    try:  # the old extractor had every entity wrong, the new one every entity right
        seed_store(
            store, config, corrections=0, entity_corrections=30,
            version=f"classify={classifier},extract=old",
        )  # fmt: skip
        seed_store(
            store, config, corrections=0, at=NOW - timedelta(minutes=5),
            version=f"classify={classifier},extract=new",
        )  # fmt: skip
        judged = run_drift_check(
            config, store, Storage(), champion.model, str(champion.dataset), None, NOW,
            champion_extractor_version="new",
        )  # fmt: skip
        perf = judged.performance
        assert perf.type_documents == 60 and perf.accuracy.value == 1.0  # one classifier
        assert perf.entity_documents == 30 and perf.entity_f1 == 1.0  # the new extractor only
        assert perf.entity_corrections == 0 and perf.documents == 60
        assert judged.metrics["other_versions_left_out"] == 0  # every verdict judges a champion

    finally:
        store.close()


def test_a_deployment_without_a_classifier_is_judged_on_its_extractors_versions(
    tmp_path: Path,
) -> None:
    """One document type: no classifier, the extractor is the champion; its old version's bad
    verdicts do not count, its own do (they used to be filtered by a classify version that the
    extractor-only predictions never carry, so the whole window was checked)."""
    from docloop.models.training import train

    dataset = write_tiny_dataset(tmp_path / "dataset")
    training = TrainingConfig(
        encoder=str(tiny_encoder(tmp_path / "encoder")), max_length=32, batch_size=4,
        epochs=1, max_steps=2,
    )  # fmt: skip
    train("extract", str(dataset), str(tmp_path / "model"), training, TrackingConfig(enabled=False))
    extractor = load_model(tmp_path / "model")
    version = card_version(extractor.card)
    config = settings(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        seed_store(store, config, corrections=0, entity_corrections=30, version="extract=old")
        seed_store(
            store,
            config,
            corrections=0,
            at=NOW - timedelta(minutes=5),
            version=f"extract={version}",
        )
        result = run_drift_check(config, store, Storage(), extractor, str(dataset), None, NOW)
        assert result.predictions == DOCS
        assert result.performance.entity_documents == 30 and result.performance.entity_f1 == 1.0
        assert result.metrics["other_versions_left_out"] == DOCS + 30
    finally:
        store.close()


def test_without_the_extractors_version_its_entities_are_judged_on_every_verdict(
    champion: Champion, tmp_path: Path
) -> None:
    config = settings(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    classifier = card_version(champion.model.card)
    try:
        seed_store(
            store, config, corrections=0, entity_corrections=30,
            version=f"classify={classifier},extract=old",
        )  # fmt: skip
        seed_store(
            store, config, corrections=0, at=NOW - timedelta(minutes=5),
            version=f"classify={classifier},extract=new",
        )  # fmt: skip
        mixed = run_drift_check(
            config, store, Storage(), champion.model, str(champion.dataset), None, NOW
        )
        assert mixed.performance.entity_documents == 60
        assert mixed.performance.entity_f1 == pytest.approx(0.5)
    finally:
        store.close()


def reference_parquet(tmp_path: Path, *, ocr_pages: int) -> str:
    """DOCS one-page reference documents, all text-layer (0) or all OCR'd (1)."""
    rng = random.Random(3)
    examples = [
        make_example(i, rng).model_copy(update={"ocr_pages": ocr_pages}) for i in range(DOCS)
    ]
    path = tmp_path / "reference.parquet"
    write_examples(Storage(), str(path), examples)
    return str(path)


def ocr_share_test(result: DriftCheckResult) -> OcrShift:
    (test,) = [t for t in result.drift.ocr if t.name == "ocr.ocr_page_share"]
    return test


@pytest.mark.parametrize(
    ("ocr", "served_as", "ran", "drifted"),
    [
        # words a client sent without a page source: as the demo logged them before provenance
        ({"pages": 1, "words": 20, "ocr_pages": 1}, "pages", False, False),
        (
            {"pages": 1, "words": 20, "ocr_pages": 0, "text_source": "unknown"},
            "pages",
            False,
            False,
        ),
        # OCR'd pages, said by the client or known because the server read the file
        ({"pages": 1, "words": 20, "ocr_pages": 1, "text_source": "ocr"}, "pages", True, True),
        ({"pages": 1, "words": 20, "ocr_pages": 1}, "document", True, True),
        # text-layer pages against a text-layer reference: like with like, no drift
        (
            {"pages": 1, "words": 20, "ocr_pages": 0, "text_source": "text_layer"},
            "pages",
            True,
            False,
        ),
    ],
)
def test_only_pages_with_ocr_provenance_count_as_ocrd(
    champion: Champion,
    tmp_path: Path,
    ocr: dict[str, object],
    served_as: str,
    ran: bool,
    drifted: bool,
) -> None:
    config = settings(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        seed_store(store, config, corrections=0, ocr=ocr, served_as=served_as)
        result = run_drift_check(
            config, store, Storage(), champion.model, reference_parquet(tmp_path, ocr_pages=0),
            None, NOW,
        )  # fmt: skip
        test = ocr_share_test(result)
        assert (test.ran, test.drift) == (ran, drifted)
        assert (test.current_mean == 1.0) is drifted
        assert ("share of OCR'd pages" in " ".join(result.decision.reasons)) is drifted
    finally:
        store.close()


def attempts(store: Store) -> list[RetrainAttempt]:
    with store.read() as session:
        return list(session.scalars(select(RetrainAttempt).order_by(RetrainAttempt.id)))


def test_a_failing_window_triggers_records_an_attempt_and_advances_the_watermark(
    champion: Champion, store_url: str, tmp_path: Path
) -> None:
    config = settings(tmp_path)
    store = open_store(store_url)
    try:
        seed_store(store, config, corrections=15)
        output = tmp_path / "check"
        result = run_drift_check(
            config,
            store,
            Storage(),
            champion.model,
            str(champion.dataset),
            0.9,
            NOW,
            output_uri=str(output),
        )

        assert result.trigger and result.decision.trigger
        assert result.predictions == DOCS and result.performance.documents == 30
        assert result.performance.accuracy.value == pytest.approx(0.5)
        assert "performance_floor" in result.decision.headline
        assert result.embedded_documents == DOCS and result.missing_documents == 0
        assert result.drift.embedding.ran and result.drift.label.ran
        # the layout/format test profiles the same served and reference documents
        assert result.drift.profile.ran and result.drift.profile.n_current == DOCS
        assert result.drift.profile.n_reference == result.drift.embedding.used_reference
        assert result.window_end == NOW - timedelta(seconds=60)

        (attempt,) = attempts(store)
        assert attempt.id == result.attempt_id and attempt.outcome == "pending"
        assert attempt.reasons == result.decision.reasons
        assert attempt.trigger["signals"][0] == "performance_floor"
        assert attempt.trigger["metrics"]["feedback.accuracy"] == pytest.approx(0.5)
        assert store.get_watermark(sources.WATERMARK) == result.window_end.isoformat()

        files = {path.name for path in output.iterdir()}
        assert files == {REPORT_FILE, SUMMARY_FILE, METRICS_FILE, CHECK_FILE, DECISION_FILE}
        page = (output / REPORT_FILE).read_text(encoding="utf-8")
        assert page == result.html and page.count("data:image/png;base64,") == 4
        assert ">RETRAIN</p>" in page
        summary = (output / SUMMARY_FILE).read_text(encoding="utf-8")
        assert (
            summary.startswith("# Drift check: **RETRAIN**") and "| performance_floor |" in summary
        )
        metrics = json.loads((output / METRICS_FILE).read_text(encoding="utf-8"))
        assert metrics["trigger"] == 1.0 and metrics["feedback.accuracy"] == pytest.approx(0.5)
        assert "drift.embedding_mmd.p_value" in metrics
        assert "drift.layout_format.p_value" in metrics
        decision = TriggerDecision.model_validate_json((output / DECISION_FILE).read_text())
        assert decision == result.decision
        saved = DriftCheckResult.model_validate(
            {**json.loads((output / CHECK_FILE).read_text()), "html": "", "markdown": ""}
        )
        assert saved.drift == result.drift

        # an hour later: an empty window, and the cooldown of the attempt just made
        later = run_drift_check(
            config, store, Storage(), champion.model, str(champion.dataset), 0.9,
            NOW + timedelta(hours=1),
        )  # fmt: skip
        assert not later.trigger and not later.watermark_advanced
        assert later.window_start == result.window_end and later.predictions == 0
        assert "started 1.0 h ago" in later.decision.reasons[2]
        assert len(attempts(store)) == 1
        assert store.get_watermark(sources.WATERMARK) == result.window_end.isoformat()

        # both checks are rows of drift_checks: the trigger with its attempt, then the decline
        first, second = checks(store)
        assert (first.trigger, first.attempt_id, first.conclusive) == (True, attempt.id, True)
        assert first.signals == [rule.rule for rule in result.decision.signals]
        assert first.signals[0] == "performance_floor" and first.reasons == result.decision.reasons
        assert first.report_uri == str(output / REPORT_FILE)
        assert first.metrics["feedback.accuracy"] == pytest.approx(0.5)
        assert first.window_end == result.window_end and first.window_start is None
        assert (second.trigger, second.attempt_id, second.watermark_advanced) == (
            False,
            None,
            False,
        )
        assert "cooldown" in second.blockers and second.headline == later.decision.headline
    finally:
        store.close()


def test_a_healthy_window_declines_without_an_attempt_row(
    champion: Champion, tmp_path: Path
) -> None:
    config = settings(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        seed_store(store, config, corrections=0)
        result = run_drift_check(
            config, store, Storage(), str(champion.folder), str(champion.dataset), None, NOW
        )
        assert not result.trigger and result.decision.conclusive and result.watermark_advanced
        assert result.attempt_id is None and attempts(store) == []
        (declined,) = checks(store)  # a "no" is recorded too, and is not a retrain attempt
        assert not declined.trigger and declined.conclusive and declined.signals == []
        assert declined.reasons == result.decision.reasons and declined.report_uri is None
        assert store.get_watermark(sources.WATERMARK) == result.window_end.isoformat()
        assert "holdout score is unknown" in result.decision.reasons[5]
        assert result.champion_uri == str(champion.folder)
        assert ">NO RETRAIN</p>" in result.html and result.files == {}
    finally:
        store.close()


def test_nothing_is_recorded_when_another_check_moved_the_watermark(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.set_watermark(sources.WATERMARK, "2026-01-02T00:00:00+00:00")
        with pytest.raises(StoreError, match="moved"):
            sources.record_check(
                store,
                expected_watermark="2026-01-01T00:00:00+00:00",
                new_watermark="2026-01-03T00:00:00+00:00",
                attempt={"source": "drift_check"},
                reasons=["x"],
                started_at=NOW,
                check={},
            )
        assert attempts(store) == [] and checks(store) == []
        assert store.get_watermark(sources.WATERMARK) == "2026-01-02T00:00:00+00:00"
    finally:
        store.close()


def test_the_drift_check_step_reads_the_configuration(
    champion: Champion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = settings(tmp_path).model_copy(update={"store": {"url": url}})
    store = open_store(url)
    try:
        seed_store(store, config, corrections=15, at=datetime.now(UTC))
    finally:
        store.close()
    monkeypatch.setenv(
        "DOCLOOP_CONFIG_YAML",
        json.dumps(
            {
                "data_root": config.data_root,
                "store": {"url": url},
                "drift": {"permutations": 100, "max_embedding_rows": 100},
                "trigger": {"min_new_samples": 20},
            }
        ),
    )
    result = drift_check_step.run(
        str(tmp_path / "out"), str(champion.folder), "", reference_dataset_uri=str(champion.dataset)
    )
    assert result.trigger and (tmp_path / "out" / DECISION_FILE).is_file()
    assert result.attempt_id is not None


def test_the_report_and_summary_escape_data() -> None:
    nasty = "<script>alert(1)</script>|x"
    performance = feedback_performance(
        [record(i, "confirmation", nasty if i % 2 else "invoice") for i in range(1, 21)]
    )
    rng = np.random.default_rng(0)
    ocr = {"mean_confidence": rng.normal(90, 3, 50)}
    drift = detect_drift(
        DriftSample({nasty: 25, "invoice": 25}, ocr, None),
        DriftSample({nasty: 45, "invoice": 5}, {"mean_confidence": rng.normal(90, 3, 50)}, None),
        DriftConfig(),
    )
    assert drift.label.drift
    decision = decide_trigger(
        TriggerConfig(min_new_samples=10),
        now=NOW,
        new_samples=performance.documents,
        accuracy=performance.accuracy,
        metric="macro_f1",
        feedback_score=performance.macro_f1,
        champion_score=0.9,
        drift_detected=drift.detected,
        drift_reasons=[test.reason for test in drift.drifted],
    )
    inputs = ReportInputs(
        decision=decision,
        performance=performance,
        drift=drift,
        window_start=None,
        window_end=NOW,
        predictions=50,
        champion_uri="s3://bucket/<b>champion</b>",
        reference_uri="file:///ref",
        champion_score=0.9,
        metric="macro_f1",
        reference_ocr={"mean_confidence": ocr["mean_confidence"]},
        current_ocr={},
        watermark_advanced=True,
        attempt_recorded=decision.trigger,
    )
    page, summary = render_html(inputs), render_markdown(inputs)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>champion" not in page
    assert "<script>" not in summary and "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in summary

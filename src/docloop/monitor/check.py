"""The drift check: the recurring run's first step, from the state store to ``trigger: bool``.

:func:`run_drift_check`, in order:

1. reads the window ``[watermark, now - settle)``: logged predictions and accepted feedback
   (``docloop.feedback.records``);
2. scores the champion on the reviewed documents (``monitor.performance``): document types on
   the verdicts of the champion classifier's predictions, entities on those of the champion
   extractor's (``sources.champion_window``);
3. compares the window with the champion's training documents (``monitor.drift``): label shares,
   OCR statistics, embeddings of the served documents from the champion's encoder
   (``monitor.embeddings``; the reference side is cached per model and reference sample), and
   the documents' layout and value formats (``monitor.profiles``; the same samples);
4. applies the trigger policy (``monitor.trigger``) with the retrain attempts of the cooldown and
   budget windows: the classifier's accuracy and key metric, drift, and the extractor's entity F1
   (against the floor, and against the champion extractor's holdout entity F1 when given);
5. writes ``report.html``, ``summary.md``, ``metrics.json``, ``check.json`` and, last,
   ``decision.json`` under the output URI;
6. only then, in one store transaction: inserts a ``pending`` ``retrain_attempts`` row when the
   trigger fires (its ``reasons`` are the decision's sentences) and moves the ``drift_check``
   watermark to the window's end when the decision was conclusive (see ``monitor.trigger``).

A declined decision is not a ``retrain_attempts`` row: the table's outcomes have no "declined"
(it would take a migration), and such rows would count against the cooldown and the budget unless
every reader filtered them out. Declined decisions are recorded in the report, ``decision.json``
and the metrics instead.

Any failure before step 6 leaves the store untouched, so the next run checks the same window
again. The window ends ``settle_s`` (60 s) before ``now`` so that rows still being committed are
read by the next check rather than skipped.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from docloop.config import DocloopConfig
from docloop.documents.examples import DocumentExample
from docloop.errors import InvalidInput
from docloop.models.artifact import LoadedModel, card_version
from docloop.monitor import sources
from docloop.monitor.drift import DriftReport, DriftSample, detect_drift
from docloop.monitor.embeddings import embed_documents
from docloop.monitor.performance import PerformanceReport, feedback_performance
from docloop.monitor.profiles import Profiles, document_profiles
from docloop.monitor.report import ReportInputs, render_html, render_markdown
from docloop.monitor.trigger import TriggerDecision, decide_trigger
from docloop.storage import Storage, join
from docloop.store.db import Store
from docloop.store.tables import utcnow

logger = logging.getLogger(__name__)

REPORT_FILE: Final = "report.html"
SUMMARY_FILE: Final = "summary.md"
METRICS_FILE: Final = "metrics.json"
CHECK_FILE: Final = "check.json"
DECISION_FILE: Final = "decision.json"
DEFAULT_SETTLE_S: Final = 60.0


class DriftCheckResult(BaseModel):
    """What a drift check decided and measured (also written under ``output_uri``)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    trigger: bool = Field(description="Launch the retrain pipeline.")
    decision: TriggerDecision
    performance: PerformanceReport
    drift: DriftReport
    window_start: datetime | None
    window_end: datetime
    predictions: int = Field(description="Predictions in the window.")
    embedded_documents: int = Field(description="Current documents embedded for the MMD test.")
    missing_documents: int = Field(description="Sampled documents whose served copy is gone.")
    champion_uri: str
    reference_uri: str
    metric: str = Field(description="The key metric compared with the champion's holdout score.")
    champion_score: float | None
    champion_extract_score: float | None = Field(
        default=None, description="The champion extractor's holdout entity F1 (None: unknown)."
    )
    metrics: dict[str, float]
    attempt_id: int | None = Field(description="The pending retrain attempt's id, if recorded.")
    watermark_advanced: bool
    output_uri: str | None
    html: str = Field(repr=False)
    markdown: str = Field(repr=False)

    @property
    def files(self) -> dict[str, str]:
        """The URIs of the written files (empty when nothing was written)."""
        if self.output_uri is None:
            return {}
        names = (REPORT_FILE, SUMMARY_FILE, METRICS_FILE, CHECK_FILE, DECISION_FILE)
        return {name: join(self.output_uri, name) for name in names}


def _load_champion(
    champion: str | LoadedModel, config: DocloopConfig, storage: Storage, cache: Path
) -> tuple[LoadedModel, str]:
    if isinstance(champion, LoadedModel):
        return champion, str(champion.path)
    from docloop.models.artifact import fetch_model_folder, load_model
    from docloop.store.registry import resolve_model_uri

    uri = resolve_model_uri(champion, config.tracking)
    model = load_model(fetch_model_folder(storage, uri, cache))
    if model.card.task == "extract":
        logger.info(
            "the champion at %s is an extractor: a deployment without a classifier (one "
            "document type) is judged on the extractor's own predictions",
            champion,
        )
    return model, champion


def _reference_sample(
    reference: list[DocumentExample], config: DocloopConfig
) -> list[DocumentExample]:
    indices = sources.sample_indices(
        len(reference), config.drift.max_embedding_rows, config.drift.seed
    )
    return [reference[int(i)] for i in indices]


def _reference_embeddings(
    model: LoadedModel,
    chosen: list[DocumentExample],
    storage: Storage,
    config: DocloopConfig,
    batch_size: int,
) -> npt.NDArray[np.float32]:
    key = sources.embedding_cache_key(
        model.card.model_dump_json(), [example.doc_id for example in chosen]
    )
    uri = sources.embedding_cache_uri(config, key)
    cached = sources.load_cached_embeddings(storage, uri)
    if cached is not None and len(cached) == len(chosen):
        logger.info("reference embeddings from the cache %s", uri)
        return cached
    logger.info("embedding %d reference documents", len(chosen))
    embeddings = embed_documents(model, chosen, batch_size)
    sources.save_cached_embeddings(storage, uri, embeddings)
    return embeddings


def _current_documents(
    doc_ids: list[str], config: DocloopConfig, storage: Storage
) -> tuple[list[DocumentExample], int]:
    if not doc_ids:
        return [], 0
    indices = sources.sample_indices(
        len(doc_ids), config.drift.max_embedding_rows, config.drift.seed + 1
    )
    return sources.served_documents(storage, config, [doc_ids[int(i)] for i in indices])


def _current_embeddings(
    model: LoadedModel, documents: list[DocumentExample], batch_size: int
) -> npt.NDArray[np.float32] | None:
    if not documents:
        return None
    logger.info("embedding %d current documents", len(documents))
    return embed_documents(model, documents, batch_size)


def _profiles(
    reference: list[DocumentExample], current: list[DocumentExample], config: DocloopConfig
) -> Profiles | None:
    if not current:
        return None
    return document_profiles(
        reference,
        current,
        min_documents=config.drift.profile_min_documents,
        max_vocabulary=config.drift.profile_max_features,
    )


def _score(value: float | None) -> float | None:
    if value is None or math.isnan(value) or value < 0:
        return None
    return float(value)


def run_drift_check(
    config: DocloopConfig,
    store: Store,
    storage: Storage,
    champion_classifier: str | LoadedModel,
    reference_dataset_uri: str,
    champion_holdout_score: float | None,
    now: datetime | None = None,
    *,
    output_uri: str | None = None,
    model_name: str | None = None,
    batch_size: int = 32,
    settle_s: float | None = None,
    champion_extract_score: float | None = None,
    champion_extractor_version: str | None = None,
) -> DriftCheckResult:
    """Check the window since the last check, decide whether to retrain, and record it.

    Args:
        config: The configuration (``drift``, ``trigger``, ``gate.classify_metric``, ``tracking``,
            ``data_root`` for served documents and the embedding cache).
        store: The state store.
        storage: The object store.
        champion_classifier: The champion classifier: a loaded model, a folder URI, or
            ``models:/<name>@champion``; the champion extractor where the deployment has no
            classifier (one document type).
        reference_dataset_uri: The dataset folder the champion was trained on (its
            ``train.parquet`` is the reference), or a ``.parquet`` of examples.
        champion_holdout_score: The champion's ``gate.classify_metric`` on its holdout (from its
            ``gate.json`` / model card); None, NaN or negative: unknown (the drop rule is skipped).
        now: The check's time (aware); defaults to the current time.
        output_uri: Where the report and the JSON files go; None writes no file.
        model_name: Only predictions and feedback of this served model name.
        batch_size: Documents per embedding forward pass.
        settle_s: The window ends this many seconds before ``now``; None: ``drift.settle_s``.
        champion_extract_score: The champion extractor's ``gate.extract_metric`` (micro entity
            F1) on its holdout; None, NaN or negative: unknown (the extractor's drop rule is
            unchecked; its floor still applies).
        champion_extractor_version: The champion extractor's version as the prediction log names it
            (its card's MLflow run id); with ``drift.champion_only`` its entities are judged on
            its own predictions only. None: on the champion classifier's predictions, whichever
            extractor made them (a warning).

    Returns:
        The result; ``result.trigger`` says whether to retrain.

    Raises:
        InvalidInput: A bad reference, watermark, model URI or naive ``now``.
        StorageError: The reference, a served document or the output cannot be read or written.
        StoreError: The state store failed, or another check moved the watermark meanwhile.
    """
    now = now or utcnow()
    if now.tzinfo is None:
        raise InvalidInput("now is a naive datetime; pass an aware one, e.g. datetime.now(UTC)")
    until = now - timedelta(seconds=config.drift.settle_s if settle_s is None else settle_s)
    if output_uri is not None:
        storage.ensure_writable(output_uri)

    window = sources.read_window(store, until, model_name=model_name)
    reference = sources.read_reference(storage, reference_dataset_uri)
    reference_ocr = sources.example_ocr_statistics(reference)

    with tempfile.TemporaryDirectory(prefix="docloop-drift-") as cache:
        model, champion_uri = _load_champion(champion_classifier, config, storage, Path(cache))
        other_versions = 0
        if config.drift.champion_only:
            versions: dict[str, str] = {model.card.task: card_version(model.card)}
            if champion_extractor_version and model.card.task != "extract":
                versions["extract"] = champion_extractor_version
            window, other_versions = sources.champion_window(window, versions)
        performance = feedback_performance(
            window.feedback, entity_records=window.entity_feedback, seed=config.drift.seed
        )
        current_ocr = sources.prediction_ocr_statistics(window.predictions)
        doc_ids = list(dict.fromkeys(prediction.doc_id for prediction in window.predictions))
        reference_sample = _reference_sample(reference, config)
        reference_embeddings = _reference_embeddings(
            model, reference_sample, storage, config, batch_size
        )
        current_documents, missing = _current_documents(doc_ids, config, storage)
        current_embeddings = _current_embeddings(model, current_documents, batch_size)
        profiles = _profiles(reference_sample, current_documents, config)

    drift = detect_drift(
        DriftSample(
            sources.label_counts(example.doc_type for example in reference),
            reference_ocr,
            reference_embeddings,
            None if profiles is None else profiles.reference,
            () if profiles is None else profiles.names,
        ),
        DriftSample(
            sources.label_counts(prediction.doc_type for prediction in window.predictions),
            current_ocr,
            current_embeddings,
            None if profiles is None else profiles.current,
            () if profiles is None else profiles.names,
        ),
        config.drift,
    )
    metric = config.gate.classify_metric
    champion_score = _score(champion_holdout_score)
    extract_score = _score(champion_extract_score)
    attempts = sources.attempt_starts(
        store,
        sources.lookback_start(
            now, config.trigger.cooldown_hours, config.trigger.budget_window_days
        ),
    )
    decision = decide_trigger(
        config.trigger,
        now=now,
        new_samples=performance.documents,
        accuracy=performance.accuracy,
        metric=metric,
        feedback_score=performance.metric(metric),
        champion_score=champion_score,
        drift_detected=drift.detected,
        drift_reasons=[test.reason for test in drift.drifted],
        attempts=attempts,
        performance=performance,
        champion_extract_score=extract_score,
        min_entity_support=config.gate.min_support,
    )
    advance = decision.conclusive
    metrics: dict[str, float] = {
        "trigger": float(decision.trigger),
        "conclusive": float(decision.conclusive),
        "watermark_advanced": float(advance),
        "predictions": float(len(window.predictions)),
        "other_versions_left_out": float(other_versions),
        "new_samples": float(decision.new_samples),
        "signals": float(len(decision.signals)),
        "blockers": float(len(decision.blockers)),
        **({"champion_holdout_score": champion_score} if champion_score is not None else {}),
        **({"champion_extract_holdout_score": extract_score} if extract_score is not None else {}),
        **performance.flat(),
        **drift.flat(),
    }
    inputs = ReportInputs(
        decision=decision,
        performance=performance,
        drift=drift,
        window_start=window.start,
        window_end=until,
        predictions=len(window.predictions),
        champion_uri=champion_uri,
        reference_uri=reference_dataset_uri,
        champion_score=champion_score,
        metric=metric,
        reference_ocr=reference_ocr,
        current_ocr=current_ocr,
        watermark_advanced=advance,
        attempt_recorded=decision.trigger,
    )
    result = DriftCheckResult(
        trigger=decision.trigger,
        decision=decision,
        performance=performance,
        drift=drift,
        window_start=window.start,
        window_end=until,
        predictions=len(window.predictions),
        embedded_documents=0 if current_embeddings is None else len(current_embeddings),
        missing_documents=missing,
        champion_uri=champion_uri,
        reference_uri=reference_dataset_uri,
        metric=metric,
        champion_score=champion_score,
        champion_extract_score=extract_score,
        metrics=metrics,
        attempt_id=None,
        watermark_advanced=advance,
        output_uri=output_uri,
        html=render_html(inputs),
        markdown=render_markdown(inputs),
    )
    if output_uri is not None:
        _write_outputs(storage, result)

    attempt_id = sources.record_check(
        store,
        expected_watermark=window.watermark,
        new_watermark=until.isoformat() if advance else None,
        attempt=_attempt_trigger(result) if decision.trigger else None,
        reasons=decision.reasons,
        started_at=now,
        check=_check_row(result, model_name),
    )
    logger.info(
        "drift check: %s%s%s",
        decision.headline,
        f" (retrain attempt {attempt_id} pending)" if attempt_id is not None else "",
        "" if advance else "; watermark kept",
    )
    return result.model_copy(update={"attempt_id": attempt_id})


def _attempt_trigger(result: DriftCheckResult) -> dict[str, Any]:
    """The ``trigger`` JSON of a retrain attempt: what fired, on which window, the key numbers."""
    decision = result.decision
    keys = (
        "feedback.accuracy",
        f"feedback.{result.metric}",
        "feedback.entity_f1",
        "drift.detected",
        "new_samples",
    )
    return {
        "source": "drift_check",
        "signals": [rule.rule for rule in decision.signals],
        "window_start": result.window_start.isoformat() if result.window_start else None,
        "window_end": result.window_end.isoformat(),
        "champion": result.champion_uri,
        "reference": result.reference_uri,
        "metric": result.metric,
        "champion_score": result.champion_score,
        "champion_extract_score": result.champion_extract_score,
        "metrics": {key: result.metrics[key] for key in keys if key in result.metrics},
        "drifted_tests": [test.name for test in result.drift.drifted],
    }


def _check_row(result: DriftCheckResult, model_name: str | None) -> dict[str, Any]:
    """The ``drift_checks`` columns of a finished check (declined ones included)."""
    decision = result.decision
    return {
        "window_start": result.window_start,
        "window_end": result.window_end,
        "model_name": model_name,
        "champion": result.champion_uri,
        "trigger": decision.trigger,
        "conclusive": decision.conclusive,
        "watermark_advanced": result.watermark_advanced,
        "headline": decision.headline,
        "reasons": list(decision.reasons),
        "signals": [rule.rule for rule in decision.signals],
        "blockers": [rule.rule for rule in decision.blockers],
        # JSONB refuses NaN: an undefined number is stored as null
        "metrics": {k: v if math.isfinite(v) else None for k, v in result.metrics.items()},
        "report_uri": result.files.get(REPORT_FILE),
    }


def _write_outputs(storage: Storage, result: DriftCheckResult) -> None:
    """Report, summary, metrics, the full result, then the decision (last: a finished check)."""
    files = result.files
    storage.write_bytes(
        files[REPORT_FILE], result.html.encode(), content_type="text/html; charset=utf-8"
    )
    storage.write_bytes(
        files[SUMMARY_FILE], result.markdown.encode(), content_type="text/markdown; charset=utf-8"
    )
    storage.write_bytes(
        files[METRICS_FILE],
        json.dumps(result.metrics, indent=2).encode(),
        content_type="application/json",
    )
    storage.write_bytes(
        files[CHECK_FILE],
        result.model_dump_json(indent=2, exclude={"html", "markdown"}).encode(),
        content_type="application/json",
    )
    storage.write_bytes(
        files[DECISION_FILE],
        result.decision.model_dump_json(indent=2).encode(),
        content_type="application/json",
    )

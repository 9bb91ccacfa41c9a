"""The drift check's I/O: the window from the state store, the reference data, recording the result.

Everything the statistics need is read here and handed on as plain records and arrays, so the
statistics (``performance``, ``drift``, ``trigger``) stay pure.

The watermark ``drift_check`` holds the end of the last conclusive window as an ISO-8601 UTC
time; a window is ``[watermark, until)`` on ``predictions.created_at`` and
``feedback_events.received_at``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from docloop.config import DocloopConfig
from docloop.documents.examples import DocumentExample, read_examples
from docloop.errors import InvalidInput, StorageError, StoreError
from docloop.feedback.contracts import (
    FeedbackRecord,
    TextSource,
    read_served_document,
    served_document_uri,
)
from docloop.feedback.records import StoredPrediction, accepted_feedback, predictions_since
from docloop.storage import Storage, join
from docloop.store.db import Store
from docloop.store.tables import DriftCheck, RetrainAttempt, Watermark, utcnow

logger = logging.getLogger(__name__)

WATERMARK: Final = "drift_check"
REFERENCE_SPLIT: Final = "train.parquet"
EMBEDDING_CACHE: Final = "monitor/reference-embeddings"


@dataclass(frozen=True)
class Window:
    """What was served and reviewed in ``[start, end)``.

    Attributes:
        start: Inclusive start (the watermark), None for "since the beginning".
        end: Exclusive end.
        watermark: The watermark's stored value when the window was read (None: never set).
        predictions: The logged predictions.
        feedback: Accepted feedback with the predictions it judges (scores the classifier).
        entity_feedback: The verdicts that score the extractor; None: the same as ``feedback``.
    """

    start: datetime | None
    end: datetime
    watermark: str | None
    predictions: list[StoredPrediction]
    feedback: list[FeedbackRecord]
    entity_feedback: list[FeedbackRecord] | None = None

    @property
    def extractor_feedback(self) -> list[FeedbackRecord]:
        """The verdicts that score the extractor."""
        return self.feedback if self.entity_feedback is None else self.entity_feedback


def parse_watermark(value: str | None) -> datetime | None:
    """The time a ``drift_check`` watermark holds.

    Raises:
        InvalidInput: The value is not an aware ISO-8601 time.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(
            f"watermark {WATERMARK!r} holds {value!r}, not an ISO-8601 time; set it to one (e.g. "
            "2026-01-01T00:00:00+00:00) or delete the row to check everything"
        ) from exc
    if parsed.tzinfo is None:
        raise InvalidInput(f"watermark {WATERMARK!r} holds the naive time {value!r}; add +00:00")
    return parsed


def read_window(store: Store, until: datetime, *, model_name: str | None = None) -> Window:
    """Read predictions and accepted feedback since the ``drift_check`` watermark.

    Raises:
        InvalidInput: A malformed watermark.
        StoreError: The database failed.
    """
    stored = store.get_watermark(WATERMARK)
    start = parse_watermark(stored)
    if start is not None and start >= until:
        logger.warning("watermark %s is not before the window end %s", start, until)
    predictions = predictions_since(store, start, until, model_name=model_name)
    feedback = accepted_feedback(store, start, until, model_name=model_name)
    logger.info(
        "window [%s, %s): %d predictions, %d accepted feedback events",
        start.isoformat() if start else "beginning",
        until.isoformat(),
        len(predictions),
        len(feedback),
    )
    return Window(start, until, stored, predictions, feedback)


def served_task_version(model_version: str, task: str) -> str:
    """The version of ``task`` in a served ``model_version`` (``classify=a,extract=b`` or ``a``)."""
    if "=" not in model_version:
        return model_version
    for part in model_version.split(","):
        name, _, version = part.partition("=")
        if name.strip() == task:
            return version.strip()
    return ""


def task_version(versions: Mapping[str, str], model_version: str, task: str) -> str:
    """The version of ``task`` a prediction or verdict names (its per-task map, else its string)."""
    return versions.get(task) or served_task_version(model_version, task)


def champion_window(window: Window, versions: Mapping[str, str]) -> tuple[Window, int]:
    """Only what the champion's models served, and the verdicts on each model's own predictions.

    Right after a promotion, or while a canary takes part of the traffic, one window holds
    several releases' predictions; the check judges the champion alone, each model on what *that*
    model version predicted. The predictions (label shares, OCR, embeddings) and the verdicts
    that score document types are those of the champion classifier (``versions["classify"]``);
    the verdicts that score entities are those of the champion extractor
    (``versions["extract"]``; without it, the classifier's verdicts, with a warning). A deployment
    without a classifier (one document type: ``versions`` names only ``extract``) is judged on
    the extractor's predictions and verdicts throughout. When nothing in the window names the
    champion's version (a predictor started with ``--model-version`` names its own versions) the
    window is kept whole, with a warning.

    Returns:
        The filtered window and how many predictions and verdicts it left out (a verdict counts
        once, when neither model's version matches).

    Raises:
        ValueError: ``versions`` names neither a ``classify`` nor an ``extract`` version.
    """
    primary = "classify" if "classify" in versions else "extract"
    if primary not in versions:
        raise ValueError(f"a champion window needs a classify or extract version, got {versions}")
    champion = versions[primary]
    extractor = versions.get("extract")
    predictions = [
        p
        for p in window.predictions
        if task_version(p.model_versions, p.model_version, primary) == champion
    ]
    feedback = [
        f for f in window.feedback if served_task_version(f.model_version, primary) == champion
    ]
    if not predictions and not feedback and (window.predictions or window.feedback):
        logger.warning(
            "no prediction in the window was served by the champion's %s version %s "
            "(served: %s); checking the whole window",
            primary,
            champion,
            ", ".join(sorted({p.model_version for p in window.predictions})[:5]) or "-",
        )
        return window, 0
    if extractor is None:
        logger.warning(
            "the champion extractor's version is unknown: its entities are judged on the verdicts "
            "of the champion classifier's predictions, whichever extractor made them"
        )
        entity_feedback = feedback
    else:
        entity_feedback = [
            f
            for f in window.feedback
            if served_task_version(f.model_version, "extract") == extractor
        ]
    judged = {f.id for f in feedback} | {f.id for f in entity_feedback}
    left_out = len(window.predictions) - len(predictions) + len(window.feedback) - len(judged)
    if left_out:
        logger.info("left out %d rows served by other versions than %s", left_out, dict(versions))
    return (
        Window(window.start, window.end, window.watermark, predictions, feedback, entity_feedback),
        left_out,
    )


def attempt_starts(store: Store, since: datetime) -> list[datetime]:
    """Start times of retrain attempts that started at or after ``since`` (any outcome).

    Raises:
        StoreError: The database failed.
    """
    statement = select(RetrainAttempt.started_at).where(RetrainAttempt.started_at >= since)
    with store.read() as session:
        return sorted(session.scalars(statement))


def record_check(
    store: Store,
    *,
    expected_watermark: str | None,
    new_watermark: str | None,
    attempt: dict[str, Any] | None,
    reasons: Sequence[str],
    started_at: datetime,
    check: dict[str, Any],
) -> int | None:
    """Record a finished check in one transaction: its row, a pending attempt, the new watermark.

    Every check is a ``drift_checks`` row, declines included (they are not retrain attempts, so
    they never count against the cooldown or the budget).

    The watermark row is re-read inside the write transaction (locked with ``FOR UPDATE`` on
    PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers): if another check moved
    it since this one read its window, nothing is written.

    Args:
        store: The state store.
        expected_watermark: The watermark value the window was read with.
        new_watermark: The value to store; None leaves the watermark as it is.
        attempt: The ``trigger`` JSON of a new ``pending`` retrain attempt; None: no attempt.
        reasons: The attempt's reasons.
        started_at: The attempt's start time (also the check's time).
        check: The ``drift_checks`` columns other than ``checked_at`` and ``attempt_id``.

    Returns:
        The new attempt's id, or None.

    Raises:
        StoreError: The database failed, or another check moved the watermark meanwhile.
    """
    with store.write() as session:
        current = session.scalar(
            select(Watermark.value).where(Watermark.name == WATERMARK).with_for_update()
        )
        if current != expected_watermark:
            raise StoreError(
                f"watermark {WATERMARK!r} moved from {expected_watermark!r} to {current!r} while "
                "this drift check ran (two checks at once?); nothing was recorded — run the check "
                "again (the pipeline's recurring run should use max_concurrency=1)"
            )
        attempt_id: int | None = None
        if attempt is not None:
            row = RetrainAttempt(
                trigger=attempt, started_at=started_at, outcome="pending", reasons=list(reasons)
            )
            session.add(row)
            session.flush()
            attempt_id = int(row.id)
        session.add(DriftCheck(**check, checked_at=started_at, attempt_id=attempt_id))
        if new_watermark is not None:
            insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
            now = utcnow()
            statement = insert(Watermark).values(
                name=WATERMARK, value=new_watermark, updated_at=now
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=[Watermark.name],
                    set_={"value": new_watermark, "updated_at": now},
                )
            )
    return attempt_id


# --- per-document OCR statistics ------------------------------------------------------------------


def example_ocr_statistics(
    examples: Sequence[DocumentExample],
) -> dict[str, npt.NDArray[np.float64]]:
    """Mean OCR confidence, words per page and OCR'd-page share of each document."""
    pages = np.array([max(example.page_count, 1) for example in examples], dtype=np.float64)
    return {
        "mean_confidence": np.array([e.mean_confidence for e in examples], dtype=np.float64),
        "words_per_page": np.array([len(e.words) for e in examples], dtype=np.float64) / pages,
        "ocr_page_share": np.array([e.ocr_pages for e in examples], dtype=np.float64) / pages,
    }


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)


def text_source(prediction: StoredPrediction) -> TextSource:
    """Where a logged prediction's words came from.

    The ``ocr`` column's ``text_source`` when recorded; for rows logged before it was, a file the
    server read itself (``input: document``) is known from its OCR'd-page count, and pages a
    client sent are ``unknown``.
    """
    recorded = prediction.ocr.get("text_source")
    if recorded in ("ocr", "text_layer", "mixed", "unknown"):
        return cast(TextSource, recorded)
    pages, ocr_pages = (
        _number(prediction.ocr.get("pages")),
        _number(prediction.ocr.get("ocr_pages")),
    )
    if prediction.outputs.get("input") != "document" or not pages > 0 or math.isnan(ocr_pages):
        return "unknown"
    if ocr_pages == 0:
        return "text_layer"
    return "ocr" if ocr_pages >= pages else "mixed"


def prediction_ocr_statistics(
    predictions: Sequence[StoredPrediction],
) -> dict[str, npt.NDArray[np.float64]]:
    """The same statistics from the prediction log's ``ocr`` column (NaN where not recorded).

    The OCR'd-page share is NaN for a document of unknown provenance (:func:`text_source`): words
    a client sent without a page ``source`` are neither OCR'd nor text-layer pages.
    """
    pages = np.array([_number(p.ocr.get("pages")) for p in predictions], dtype=np.float64)
    pages = np.where(pages > 0, pages, np.nan)
    words = np.array([_number(p.ocr.get("words")) for p in predictions], dtype=np.float64)
    ocr_pages = np.array(
        [
            _number(p.ocr.get("ocr_pages")) if text_source(p) != "unknown" else math.nan
            for p in predictions
        ],
        dtype=np.float64,
    )
    return {
        "mean_confidence": np.array(
            [_number(p.ocr.get("mean_confidence")) for p in predictions], dtype=np.float64
        ),
        "words_per_page": words / pages,
        "ocr_page_share": ocr_pages / pages,
    }


def label_counts(labels: Iterable[str | None]) -> dict[str, int]:
    """Documents per label (None left out)."""
    return dict(sorted(Counter(label for label in labels if label is not None).items()))


# --- reference data -------------------------------------------------------------------------------


def reference_examples_uri(uri: str) -> str:
    """The reference's Parquet: a dataset folder's ``train.parquet``, or a ``.parquet`` file."""
    return uri if uri.endswith(".parquet") else join(uri, REFERENCE_SPLIT)


def read_reference(storage: Storage, uri: str) -> list[DocumentExample]:
    """The champion's training documents.

    Raises:
        InvalidInput: The file is missing or empty.
        StorageError: It cannot be read.
    """
    parquet = reference_examples_uri(uri)
    if not storage.exists(parquet):
        raise InvalidInput(
            f"reference {parquet} does not exist; pass the dataset folder the champion was "
            f"trained on (build-dataset writes {REFERENCE_SPLIT} there) or a .parquet of examples"
        )
    examples = read_examples(storage, parquet)
    if not examples:
        raise InvalidInput(f"reference {parquet} holds no documents")
    return examples


def sample_indices(count: int, max_rows: int, seed: int) -> npt.NDArray[np.int64]:
    """At most ``max_rows`` sorted indices out of ``count``, fixed by ``seed``."""
    if count <= max_rows:
        return np.arange(count, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=max_rows, replace=False)).astype(np.int64)


def served_documents(
    storage: Storage, config: DocloopConfig, doc_ids: Sequence[str]
) -> tuple[list[DocumentExample], int]:
    """The served documents of ``doc_ids`` that are kept; and how many were missing.

    Raises:
        StorageError: A kept document cannot be read.
    """
    found: list[DocumentExample] = []
    missing = 0
    for doc_id in doc_ids:
        if not storage.exists(served_document_uri(config, doc_id)):
            missing += 1
            continue
        found.append(read_served_document(storage, config, doc_id))
    if missing:
        logger.warning(
            "%d of %d served documents are not kept under %s; the embedding test uses the rest",
            missing,
            len(doc_ids),
            join(config.data_root, "served-documents"),
        )
    return found, missing


def embedding_cache_uri(config: DocloopConfig, key: str) -> str:
    """Where the reference embeddings for ``key`` are cached."""
    return join(config.data_root, EMBEDDING_CACHE, f"{key}.npy")


def embedding_cache_key(card_json: str, doc_ids: Sequence[str]) -> str:
    """A key that changes with the model (its card) and the sampled reference documents."""
    digest = hashlib.sha256(card_json.encode())
    for doc_id in doc_ids:
        digest.update(b"\0" + doc_id.encode())
    return digest.hexdigest()[:32]


def load_cached_embeddings(storage: Storage, uri: str) -> npt.NDArray[np.float32] | None:
    """Cached embeddings, or None when absent or unreadable (a warning)."""
    try:
        if not storage.exists(uri):
            return None
        array = np.load(io.BytesIO(storage.read_bytes(uri)), allow_pickle=False)
    except (StorageError, OSError, ValueError) as exc:
        logger.warning("ignoring the embedding cache %s: %s", uri, exc)
        return None
    return np.asarray(array, dtype=np.float32)


def save_cached_embeddings(storage: Storage, uri: str, embeddings: npt.NDArray[np.float32]) -> None:
    """Cache embeddings (a failure only costs recomputation next time: a warning)."""
    buffer = io.BytesIO()
    np.save(buffer, embeddings, allow_pickle=False)
    try:
        storage.write_bytes(uri, buffer.getvalue(), content_type="application/octet-stream")
    except StorageError as exc:
        logger.warning("could not cache reference embeddings at %s: %s", uri, exc)


def lookback_start(now: datetime, cooldown_hours: float, budget_window_days: float) -> datetime:
    """How far back retrain attempts matter to the trigger's cooldown and budget."""
    return now - max(timedelta(hours=cooldown_hours), timedelta(days=budget_window_days))


def recent_checks(store: Store, limit: int = 20) -> list[DriftCheck]:
    """The newest ``limit`` drift checks, newest first (detached rows, safe to read after).

    Raises:
        StoreError: The database failed.
    """
    statement = select(DriftCheck).order_by(DriftCheck.id.desc()).limit(limit)
    with store.read() as session:
        rows = list(session.scalars(statement))
        session.expunge_all()
    return rows

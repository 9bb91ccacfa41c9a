"""The prediction log: one record per predicted document, written off the event loop.

``PredictionSink`` is the storage interface: files (``JsonlSink``, ``ParquetSink``) or the state
store's ``predictions`` table (``SqlSink``, what the feedback API validates verdicts against).
Sinks are called from one background thread only (``BackgroundWriter``), so they may block and
need no locking. The event loop only puts records on a bounded in-memory queue; when the queue is
full (the disk is far slower than the traffic), records are dropped and counted rather than
slowing requests down.

The same thread keeps every served document (``ServedDocuments``: its words, boxes and pages as a
one-row ``DocumentExample`` Parquet under ``<data_root>/served-documents/``, once per document
id), written *before* the document's prediction record, so that by the time a prediction can be
judged its document is there for retraining.

``open_prediction_log(target)`` picks the sink from ``docloop serve --prediction-log``: a
SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``) selects ``SqlSink``, anything
else is a directory for the file sinks.

Files under the log directory:

``predictions-<YYYY-MM-DD>-<host>.jsonl``
    ``JsonlSink``: one JSON object per line, appended as records arrive (UTC day, host name so
    that replicas sharing a volume never write the same file).
``predictions-<UTC timestamp>-<host>-<n>.parquet``
    ``ParquetSink``: a file per ``rows_per_file`` records or per idle flush; nested fields
    (probabilities, entities, model versions) are JSON strings so the schema never changes.
"""

from __future__ import annotations

import abc
import atexit
import json
import logging
import queue
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects import postgresql, sqlite

from docloop.config import DocloopConfig
from docloop.documents.examples import DocumentExample
from docloop.errors import DocloopError, StoreBusy, StoreError
from docloop.feedback.contracts import (
    FieldAnswer,
    PredictedEntity,
    TextSource,
    write_served_document,
)
from docloop.storage import Storage
from docloop.store.db import Store, normalize_url, open_store
from docloop.store.tables import Prediction

logger = logging.getLogger(__name__)

LogFormat = Literal["jsonl", "parquet"]

# What a failing sink may raise; the writer logs it, counts the records as dropped and carries on.
SINK_ERRORS: Final = (OSError, ValueError, pa.ArrowException, DocloopError)
_URL_RE: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
DOC_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
"""A document id: safe as a file name (no ``/``, no leading ``.``) and as a store key."""


class PredictionRecord(BaseModel):
    """One predicted document: who asked, which model answered, what it said, what it read."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    timestamp: str = Field(description="UTC ISO-8601 time of the answer.")
    request_id: str = Field(description="The server's id of the request (with instance: the key).")
    instance: int = Field(description="Position of the document in its request.")
    client_request_id: str | None = Field(
        default=None,
        description="The client's x-request-id (or v2 id): correlation only, never a key.",
    )
    doc_id: str = Field(description="The server's content digest of the document.")
    source_uri: str
    model_name: str
    model_version: str
    model_versions: dict[str, str] = Field(description="Version per task (classify, extract).")
    protocol: Literal["v1", "v2"]
    input: Literal["pages", "document"]
    doc_type: str | None = None
    doc_type_confidence: float | None = None
    probabilities: dict[str, float] = Field(default_factory=dict)
    entities: list[PredictedEntity] = Field(
        default_factory=list,
        description="Predicted entities: type, text, page, box, confidence and word_indices "
        "(positions in the document's words, reading order).",
    )
    entity_types: list[str] = Field(
        default_factory=list,
        description="Every entity type the extractor can predict (empty without an extractor); "
        "the feedback API checks corrected entity types against it.",
    )
    fields: dict[str, FieldAnswer] = Field(
        default_factory=dict,
        description="One answer per field: value normalised by the field's kind and calibrated "
        "confidence (empty without an extractor).",
    )
    entity_count: int = 0
    mean_entity_confidence: float | None = None
    pages: int
    words: int
    mean_confidence: float | None = Field(description="Mean OCR confidence 0-100, if known.")
    ocr_pages: int
    text_source: TextSource = Field(
        default="unknown", description="Where the words came from (OCR provenance)."
    )
    quarantined_pages: int = 0
    latency_ms: float


class PredictionSink(abc.ABC):
    """Where prediction records go. Called from one background thread; may block."""

    @abc.abstractmethod
    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Store ``records`` (may buffer them).

        Raises:
            OSError: the storage cannot be written (the writer logs it and carries on).
        """

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op for unbuffered sinks
        """Make buffered records durable (called when the writer is idle and before close)."""

    def close(self) -> None:
        """Flush and release resources."""
        self.flush()


def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


class JsonlSink(PredictionSink):
    """Appends JSON lines to one file per UTC day and host.

    Args:
        directory: the log directory (created if missing).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = _host()

    def path_for(self, day: str) -> Path:
        """The file that records of ``day`` (``YYYY-MM-DD``) go to."""
        return self.directory / f"predictions-{day}-{self.host}.jsonl"

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Append ``records`` (one line each) and flush the file."""
        by_day: dict[str, list[str]] = {}
        for record in records:
            by_day.setdefault(record.timestamp[:10], []).append(record.model_dump_json())
        for day, lines in by_day.items():
            with self.path_for(day).open("a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")


PARQUET_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("instance", pa.int32(), nullable=False),
        pa.field("client_request_id", pa.string()),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("model_versions", pa.string(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("input", pa.string(), nullable=False),
        pa.field("doc_type", pa.string()),
        pa.field("doc_type_confidence", pa.float64()),
        pa.field("probabilities", pa.string(), nullable=False),
        pa.field("entities", pa.string(), nullable=False),
        pa.field("fields", pa.string(), nullable=False),
        pa.field("entity_count", pa.int32(), nullable=False),
        pa.field("mean_entity_confidence", pa.float64()),
        pa.field("pages", pa.int32(), nullable=False),
        pa.field("words", pa.int32(), nullable=False),
        pa.field("mean_confidence", pa.float64()),
        pa.field("ocr_pages", pa.int32(), nullable=False),
        pa.field("text_source", pa.string(), nullable=False),
        pa.field("quarantined_pages", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
    ]
)
_JSON_COLUMNS = ("model_versions", "probabilities", "entities", "fields")


class ParquetSink(PredictionSink):
    """Buffers records and writes them as Parquet files.

    Args:
        directory: the log directory (created if missing).
        rows_per_file: write a file as soon as this many records are buffered.
    """

    def __init__(self, directory: Path, rows_per_file: int = 1000) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rows_per_file = rows_per_file
        self.host = _host()
        self._buffer: list[PredictionRecord] = []
        self._files = 0

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Buffer ``records``; write a file when the buffer is full."""
        self._buffer.extend(records)
        if len(self._buffer) >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one Parquet file (atomically: temp name, then rename)."""
        if not self._buffer:
            return
        columns: dict[str, list[object]] = {name: [] for name in PARQUET_SCHEMA.names}
        for record in self._buffer:
            row = record.model_dump()
            for name in PARQUET_SCHEMA.names:
                value = row[name]
                columns[name].append(json.dumps(value) if name in _JSON_COLUMNS else value)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self._files += 1
        final = self.directory / f"predictions-{stamp}-{self.host}-{self._files}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        pq.write_table(pa.Table.from_pydict(columns, schema=PARQUET_SCHEMA), partial)
        partial.replace(final)
        self._buffer.clear()


def prediction_row(record: PredictionRecord) -> dict[str, Any]:
    """The ``predictions`` table row of a record (column name -> value).

    ``outputs`` holds what the model said and how it was asked (doc type, probabilities, entities
    with their word positions, the extractor's entity types, per-task versions, protocol, input,
    the client's correlation id);
    ``ocr`` what it read (pages, words, mean OCR confidence, OCR'd and set-aside pages, where the
    words came from, latency).

    Raises:
        ValueError: the record's timestamp is not an ISO-8601 time with a zone.
    """
    created_at = datetime.fromisoformat(record.timestamp)
    if created_at.tzinfo is None:
        raise ValueError(
            f"prediction record {record.request_id}/{record.instance} has the naive timestamp "
            f"{record.timestamp!r}; write it as UTC, e.g. datetime.now(UTC).isoformat()"
        )
    return {
        "request_id": record.request_id,
        "instance": record.instance,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "doc_id": record.doc_id,
        "outputs": {
            "doc_type": record.doc_type,
            "probabilities": record.probabilities,
            "entities": [entity.model_dump() for entity in record.entities],
            "entity_types": record.entity_types,
            "fields": {name: answer.model_dump() for name, answer in record.fields.items()},
            "model_versions": record.model_versions,
            "protocol": record.protocol,
            "input": record.input,
            "source_uri": record.source_uri,
            "client_request_id": record.client_request_id,
        },
        "confidence": record.doc_type_confidence,
        "ocr": {
            "pages": record.pages,
            "words": record.words,
            "mean_confidence": record.mean_confidence,
            "ocr_pages": record.ocr_pages,
            "text_source": record.text_source,
            "quarantined_pages": record.quarantined_pages,
            "latency_ms": record.latency_ms,
        },
        "created_at": created_at.astimezone(UTC),
    }


class SqlSink(PredictionSink):
    """Writes records into the state store's ``predictions`` table.

    Each ``write`` is one transaction; a record whose ``(request_id, instance)`` is already stored
    (a retried write: request ids are the server's, drawn per request) is skipped by the database
    (``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL), never an error. A write that
    finds the store locked is retried a few times before it gives up (the writer then counts the
    records as dropped).

    Args:
        store: an open state store (see :func:`docloop.store.open_store`).
        attempts: tries per write while the store reports ``StoreBusy``.
        owns_store: close the store's connections when the sink is closed.
    """

    def __init__(self, store: Store, *, attempts: int = 3, owns_store: bool = False) -> None:
        self.store = store
        self.attempts = max(1, attempts)
        self.owns_store = owns_store
        self.inserted = 0
        self.duplicates = 0

    @classmethod
    def from_url(cls, url: str) -> SqlSink:
        """Open (and migrate) the store at ``url`` and write into it.

        Raises:
            StoreError: the URL is not supported or the database cannot be reached or migrated.
        """
        return cls(open_store(url), owns_store=True)

    def write(self, records: Sequence[PredictionRecord]) -> None:
        """Insert ``records``, skipping ``(request_id, instance)`` pairs already stored.

        Raises:
            StoreError: the database failed (or stayed locked through every attempt).
            ValueError: a record's timestamp has no time zone.
        """
        if not records:
            return
        rows = [prediction_row(record) for record in records]
        insert = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
        statement = (
            insert(Prediction)
            .on_conflict_do_nothing(index_elements=[Prediction.request_id, Prediction.instance])
            .returning(Prediction.id)
        )
        for attempt in range(1, self.attempts + 1):
            try:
                with self.store.write() as session:
                    inserted = 0
                    for row in rows:  # one statement per row: RETURNING says whether it was new
                        if session.scalar(statement.values(**row)) is not None:
                            inserted += 1
                break
            except StoreBusy:
                if attempt == self.attempts:
                    raise
                logger.info("the state store is busy; retrying the prediction-log write")
                time.sleep(0.05 * attempt)
        self.inserted += inserted
        self.duplicates += len(rows) - inserted
        if inserted < len(rows):
            logger.debug("%d prediction record(s) were already stored", len(rows) - inserted)

    def close(self) -> None:
        """Release the store's connections when this sink opened the store."""
        if self.owns_store:
            self.store.close()


def open_sink(directory: Path, log_format: LogFormat = "jsonl") -> PredictionSink:
    """The file sink for ``log_format`` under ``directory``."""
    if log_format == "parquet":
        return ParquetSink(directory)
    return JsonlSink(directory)


def is_store_url(target: str) -> bool:
    """Whether a ``--prediction-log`` value is a SQLAlchemy URL (not a directory)."""
    match = _URL_RE.match(target)
    if match is not None:
        return match.group("scheme").lower() != "file"
    return target.startswith("sqlite:") or target.startswith(("postgresql:", "postgres:"))


def open_prediction_log(target: str | Path, log_format: LogFormat = "jsonl") -> PredictionSink:
    """The sink ``docloop serve --prediction-log TARGET`` writes to.

    Args:
        target: a SQLAlchemy URL (``sqlite:///state.db``, ``postgresql+psycopg://host/db``):
            the store's ``predictions`` table; else a directory (a path or ``file://`` URI) for
            the JSONL/Parquet files.
        log_format: ``jsonl`` or ``parquet``, for a directory.

    Returns:
        The sink.

    Raises:
        StoreError: ``target`` is a URL of a scheme that is neither a supported database nor
            ``file://``, or the database cannot be reached or migrated.
    """
    if isinstance(target, Path):
        if is_store_url(str(target)):
            # Path("sqlite:///state.db") is "sqlite:/state.db": the URL cannot be recovered.
            raise StoreError(
                f"--prediction-log {str(target)!r} looks like a database URL that was turned "
                "into a file path (its '//' collapsed); pass the URL as a string (ServeOptions"
                "(prediction_log='sqlite:///...')), or a directory that is not named like a URL"
            )
        return open_sink(target, log_format)
    if is_store_url(target):
        try:
            normalize_url(target)
        except StoreError as exc:
            raise StoreError(
                f"--prediction-log {target!r} is neither a directory nor a supported database "
                f"URL ({exc}); pass a local directory, sqlite:///path/state.db or "
                "postgresql+psycopg://user@host:5432/db"
            ) from exc
        return SqlSink.from_url(target)
    match = _URL_RE.match(target)
    directory = Path(target[match.end() :]) if match is not None else Path(target)
    return open_sink(directory, log_format)


class ServedDocuments:
    """Keeps each served document once (``write_served_document``), from the writer thread.

    Args:
        storage: the object store of ``config.data_root``.
        config: the configuration (its ``data_root`` decides where documents go).
        remember: document ids remembered as already kept (beyond, the store is asked again).
    """

    def __init__(self, storage: Storage, config: DocloopConfig, *, remember: int = 100_000) -> None:
        self.storage = storage
        self.config = config
        self.remember = remember
        self._kept: OrderedDict[str, None] = OrderedDict()
        self.checked = 0

    @classmethod
    def from_config(cls, config: DocloopConfig) -> ServedDocuments:
        """Keep documents under ``config.data_root`` with ``config.storage`` settings."""
        return cls(Storage(config.storage), config)

    def keep(self, examples: Sequence[DocumentExample]) -> int:
        """Write the documents not kept yet; return how many were looked up in the store.

        Raises:
            StorageError: the object store cannot be written.
        """
        checked = 0
        for example in examples:
            if example.doc_id in self._kept:
                self._kept.move_to_end(example.doc_id)
                continue
            if not DOC_ID_RE.fullmatch(example.doc_id):  # never a path outside the folder
                logger.error("not keeping served document %r: unsafe id", example.doc_id[:60])
                continue
            write_served_document(self.storage, self.config, example)
            checked += 1
            self._kept[example.doc_id] = None
            if len(self._kept) > self.remember:
                self._kept.popitem(last=False)
        self.checked += checked
        return checked


class BackgroundWriter:
    """Feeds a sink (and the served-documents keeper) from a daemon thread; never blocks callers.

    Args:
        sink: where records go.
        max_queue: batches held in memory at most; beyond it, records are dropped.
        idle_flush_s: the sink is flushed after this long without new records.
        on_drop: called with the number of records dropped (metrics).
        documents: keeps the served documents submitted with the records (None: not kept).
    """

    def __init__(
        self,
        sink: PredictionSink,
        *,
        max_queue: int = 10_000,
        idle_flush_s: float = 1.0,
        on_drop: Callable[[int], None] | None = None,
        documents: ServedDocuments | None = None,
    ) -> None:
        self.sink = sink
        self.documents = documents
        self.idle_flush_s = idle_flush_s
        self._on_drop = on_drop
        # None is the stop sentinel.
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self.written = 0
        self.dropped = 0
        self.document_failures = 0
        self._thread = threading.Thread(
            target=self._run, name="docloop-prediction-log", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def submit(
        self,
        records: Sequence[PredictionRecord],
        documents: Sequence[DocumentExample] = (),
    ) -> None:
        """Queue ``records`` (and the served ``documents``) for writing.

        Nothing blocks: when the queue is full or the writer closed, the records are dropped and
        counted.
        """
        if not records and not documents:
            return
        if self._closed:
            self._drop(len(records), "the prediction log is closed")
            return
        try:
            self._queue.put_nowait(_Batch(list(records), list(documents)))
        except queue.Full:
            self._drop(len(records), "the prediction-log writer is behind")

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        logger.warning("dropped %d prediction record(s): %s", count, why)
        if self._on_drop is not None:
            self._on_drop(count)

    def _keep_documents(self, documents: list[DocumentExample]) -> None:
        if self.documents is None or not documents:
            return
        try:
            self.documents.keep(documents)
        except SINK_ERRORS as exc:
            self.document_failures += len(documents)
            logger.error(
                "could not keep %d served document(s) (feedback on them cannot train a model): %s",
                len(documents),
                exc,
            )

    def _write(self, records: list[PredictionRecord]) -> None:
        if not records:
            return
        try:
            self.sink.write(records)
            self.written += len(records)
        except SINK_ERRORS as exc:
            self._drop(len(records), f"the sink failed: {exc}")

    def _flush(self) -> None:
        try:
            self.sink.flush()
        except SINK_ERRORS as exc:
            logger.error("flushing the prediction log failed: %s", exc)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.idle_flush_s)
            except queue.Empty:
                self._flush()
                continue
            pending: list[PredictionRecord] = []
            documents: list[DocumentExample] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                    break
                pending.extend(item.records)
                documents.extend(item.documents)
                if len(pending) >= 1000:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            # Documents first: once a prediction is visible, its document is already kept.
            self._keep_documents(documents)
            self._write(pending)
            if stop:
                self._flush()
                return

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, flush and close the sink (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)
        try:
            self.sink.close()
        except SINK_ERRORS as exc:
            logger.error("closing the prediction log failed: %s", exc)
        atexit.unregister(self.close)


class _Batch:
    """What one ``submit`` queued: prediction records and the documents they were made from."""

    __slots__ = ("documents", "records")

    def __init__(self, records: list[PredictionRecord], documents: list[DocumentExample]) -> None:
        self.records = records
        self.documents = documents

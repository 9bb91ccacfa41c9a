"""The prediction log: one record per predicted document, written off the event loop.

``PredictionSink`` is the storage interface (files here; a SQL sink can implement the same three
methods). Sinks are called from one background thread only (``BackgroundWriter``), so they may
block and need no locking. The event loop only puts records on a bounded in-memory queue; when the
queue is full (the disk is far slower than the traffic), records are dropped and counted rather
than slowing requests down.

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
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

LogFormat = Literal["jsonl", "parquet"]


class PredictionRecord(BaseModel):
    """One predicted document: who asked, which model answered, what it said, what it read."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    timestamp: str = Field(description="UTC ISO-8601 time of the answer.")
    request_id: str
    instance: int = Field(description="Position of the document in its request.")
    doc_id: str
    source_uri: str
    model_name: str
    model_version: str
    model_versions: dict[str, str] = Field(description="Version per task (classify, extract).")
    protocol: Literal["v1", "v2"]
    input: Literal["pages", "document"]
    doc_type: str | None = None
    doc_type_confidence: float | None = None
    probabilities: dict[str, float] = Field(default_factory=dict)
    entities: list[dict[str, Any]] = Field(default_factory=list)
    entity_count: int = 0
    mean_entity_confidence: float | None = None
    pages: int
    words: int
    mean_confidence: float | None = Field(description="Mean OCR confidence 0-100, if known.")
    ocr_pages: int
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
        pa.field("entity_count", pa.int32(), nullable=False),
        pa.field("mean_entity_confidence", pa.float64()),
        pa.field("pages", pa.int32(), nullable=False),
        pa.field("words", pa.int32(), nullable=False),
        pa.field("mean_confidence", pa.float64()),
        pa.field("ocr_pages", pa.int32(), nullable=False),
        pa.field("quarantined_pages", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
    ]
)
_JSON_COLUMNS = ("model_versions", "probabilities", "entities")


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


def open_sink(directory: Path, log_format: LogFormat = "jsonl") -> PredictionSink:
    """The file sink for ``log_format`` under ``directory``."""
    if log_format == "parquet":
        return ParquetSink(directory)
    return JsonlSink(directory)


class BackgroundWriter:
    """Feeds a sink from a daemon thread; ``submit`` never blocks the caller.

    Args:
        sink: where records go.
        max_queue: batches held in memory at most; beyond it, records are dropped.
        idle_flush_s: the sink is flushed after this long without new records.
        on_drop: called with the number of records dropped (metrics).
    """

    def __init__(
        self,
        sink: PredictionSink,
        *,
        max_queue: int = 10_000,
        idle_flush_s: float = 1.0,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.sink = sink
        self.idle_flush_s = idle_flush_s
        self._on_drop = on_drop
        # None is the stop sentinel.
        self._queue: queue.Queue[list[PredictionRecord] | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self.written = 0
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._run, name="docloop-prediction-log", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def submit(self, records: Sequence[PredictionRecord]) -> None:
        """Queue ``records`` for writing; drop them (and count) if the queue is full or closed."""
        if not records:
            return
        if self._closed:
            self._drop(len(records), "the prediction log is closed")
            return
        try:
            self._queue.put_nowait(list(records))
        except queue.Full:
            self._drop(len(records), "the prediction-log writer is behind")

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        logger.warning("dropped %d prediction record(s): %s", count, why)
        if self._on_drop is not None:
            self._on_drop(count)

    def _write(self, records: list[PredictionRecord]) -> None:
        try:
            self.sink.write(records)
            self.written += len(records)
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._drop(len(records), f"the sink failed: {exc}")

    def _flush(self) -> None:
        try:
            self.sink.flush()
        except (OSError, ValueError, pa.ArrowException) as exc:
            logger.error("flushing the prediction log failed: %s", exc)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.idle_flush_s)
            except queue.Empty:
                self._flush()
                continue
            pending: list[PredictionRecord] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                    break
                pending.extend(item)
                if len(pending) >= 1000:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if pending:
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
        except (OSError, ValueError, pa.ArrowException) as exc:
            logger.error("closing the prediction log failed: %s", exc)
        atexit.unregister(self.close)

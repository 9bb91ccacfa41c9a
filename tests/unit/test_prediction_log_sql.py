"""The prediction log in the state store (``SqlSink``) and the served documents it keeps.

On both store backends (``store_url``: a SQLite file and a PostgreSQL database): rows carry what
the feedback API and the drift check need, a repeated ``(request_id, instance)`` is skipped
without failing the writer, and each served document is written once. The last test runs the
real predictor (two tiny trained models) into a ``SqlSink``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from docloop.config import DocloopConfig
from docloop.documents.examples import DocumentExample
from docloop.errors import StoreError
from docloop.feedback.contracts import read_served_document, served_document_uri
from docloop.feedback.records import find_prediction, iter_predictions, predictions_since
from docloop.serve.sink import (
    BackgroundWriter,
    JsonlSink,
    ParquetSink,
    PredictionRecord,
    ServedDocuments,
    SqlSink,
    is_store_url,
    open_prediction_log,
    prediction_row,
)
from docloop.storage import Storage
from docloop.store import Store, open_store
from docloop.store.tables import Prediction

if TYPE_CHECKING:
    from tests.serving import TinyModels

pytest_plugins = ["tests.serving"]
pytestmark = pytest.mark.unit


def record(
    request_id: str, instance: int = 0, *, doc_id: str = "doc-a", stamp: str | None = None
) -> PredictionRecord:
    return PredictionRecord(
        timestamp=stamp or "2026-11-25T10:00:00+00:00", request_id=request_id, instance=instance,
        doc_id=doc_id, source_uri=f"request://{request_id}/{instance}", model_name="docloop",
        model_version="v1", model_versions={"classify": "v1", "extract": "v1"}, protocol="v2",
        input="pages", doc_type="invoice", doc_type_confidence=0.9,
        probabilities={"invoice": 0.9, "letter": 0.1},
        entities=[{"type": "mrn", "text": "4821937", "page": 0, "box": [1, 2, 3, 4],
                   "confidence": 0.8, "word_indices": [2]}],
        entity_types=["mrn", "patient_name"],
        fields={"mrn": {"text": "4821937", "value": "4821937", "confidence": 0.7,
                        "calibrated": True, "page": 0, "box": [1, 2, 3, 4],
                        "word_indices": [2]}},
        entity_count=1, mean_entity_confidence=0.8,
        pages=1, words=3, mean_confidence=91.5, ocr_pages=1, text_source="ocr",
        quarantined_pages=0, latency_ms=5.0,
    )  # fmt: skip


def example(doc_id: str, words: int = 3) -> DocumentExample:
    return DocumentExample(
        doc_id=doc_id, source_uri=f"request://r/{doc_id}", doc_type=None,
        words=[f"w{i}" for i in range(words)], boxes=[[i, 0, i + 1, 1] for i in range(words)],
        pages=[0] * words, tags=["O"] * words, page_count=1, ocr_pages=1, mean_confidence=90.0,
    )  # fmt: skip


@pytest.fixture
def store(store_url: str) -> Any:
    opened = open_store(store_url)
    yield opened
    opened.close()


def count(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(Prediction)) or 0)


def test_records_become_prediction_rows(store: Store) -> None:
    sink = SqlSink(store)
    sink.write([record("req-1", 0), record("req-1", 1, doc_id="doc-b")])
    stored = find_prediction(store, "req-1", 1)
    assert stored is not None
    assert (stored.model_name, stored.model_version, stored.doc_id) == ("docloop", "v1", "doc-b")
    assert stored.created_at == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert stored.confidence == 0.9 and stored.doc_type == "invoice"
    assert stored.probabilities == {"invoice": 0.9, "letter": 0.1}
    assert stored.entities[0]["word_indices"] == [2]
    assert stored.entity_types == ["mrn", "patient_name"]
    assert stored.outputs["fields"]["mrn"]["value"] == "4821937"
    assert stored.outputs["fields"]["mrn"]["calibrated"] is True
    assert stored.model_versions == {"classify": "v1", "extract": "v1"}
    assert (stored.outputs["protocol"], stored.outputs["input"]) == ("v2", "pages")
    assert stored.ocr == {
        "pages": 1, "words": 3, "mean_confidence": 91.5, "ocr_pages": 1,
        "text_source": "ocr", "quarantined_pages": 0, "latency_ms": 5.0,
    }  # fmt: skip
    assert stored.word_count == 3 and stored.doc_types == ["invoice", "letter"]


def test_duplicate_request_and_instance_are_skipped_not_fatal(store: Store) -> None:
    sink = SqlSink(store)
    sink.write([record("req-1")])
    sink.write([record("req-1"), record("req-2"), record("req-2")])  # replays, and within a batch
    assert count(store) == 2
    assert (sink.inserted, sink.duplicates) == (2, 2)
    writer = BackgroundWriter(sink)
    writer.submit([record("req-1"), record("req-3")])
    writer.close()
    assert writer.written == 2 and writer.dropped == 0 and count(store) == 3


def test_predictions_since_streams_in_time_order_across_pages(store: Store) -> None:
    stamps = [f"2026-11-25T10:00:{second:02d}+00:00" for second in range(12)]
    SqlSink(store).write([record(f"r{i}", stamp=stamp) for i, stamp in enumerate(stamps)])
    since = datetime(2026, 11, 25, 10, 0, 3, tzinfo=UTC)
    until = datetime(2026, 11, 25, 10, 0, 10, tzinfo=UTC)
    paged = list(iter_predictions(store, since, until, chunk_size=2))
    assert [p.request_id for p in paged] == [f"r{i}" for i in range(3, 10)]
    assert [p.request_id for p in predictions_since(store)] == [f"r{i}" for i in range(12)]
    assert predictions_since(store, model_name="other") == []


def test_a_naive_timestamp_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="naive timestamp"):
        prediction_row(record("r", stamp="2026-11-25T10:00:00"))


def test_the_writer_survives_a_failing_sql_sink(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    writer = BackgroundWriter(SqlSink(store))
    writer.submit([record("bad", stamp="2026-11-25T10:00:00")])  # naive: the sink raises
    deadline = time.monotonic() + 10
    while writer.dropped == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.submit([record("good")])  # the writer thread is still alive
    writer.close()
    assert (writer.written, writer.dropped) == (1, 1)
    assert find_prediction(store, "good") is not None
    store.close()


class CountingStorage(Storage):
    """A local Storage that counts the objects written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        self.writes.append(uri)
        super().write_bytes(uri, data, content_type)


def test_served_documents_are_written_once_and_before_their_predictions(
    store: Store, tmp_path: Path
) -> None:
    config = DocloopConfig(data_root=(tmp_path / "data").as_uri())
    storage = CountingStorage()
    documents = ServedDocuments(storage, config)
    order: list[str] = []

    class Recording(SqlSink):
        def write(self, records: Any) -> None:
            order.append("records")
            super().write(records)

    original_keep = documents.keep

    def keep(examples: Any) -> int:
        order.append("documents")
        return original_keep(examples)

    documents.keep = keep  # type: ignore[method-assign]
    writer = BackgroundWriter(Recording(store), documents=documents)
    writer.submit([record("r1", doc_id="doc-a")], [example("doc-a")])
    writer.submit([record("r2", doc_id="doc-a")], [example("doc-a")])  # same document again
    writer.submit([record("r3", doc_id="doc-b")], [example("doc-b", words=5)])
    writer.close()
    assert sorted(storage.writes) == [
        served_document_uri(config, "doc-a"),
        served_document_uri(config, "doc-b"),
    ]
    assert order[0] == "documents"
    assert read_served_document(storage, config, "doc-b").words == [f"w{i}" for i in range(5)]
    # a new process (empty memory) finds the documents kept and does not rewrite them
    again = ServedDocuments(storage, config)
    again.keep([example("doc-a"), example("doc-b")])
    assert len(storage.writes) == 2 and count(store) == 3
    again.keep([example("../outside")])  # never a path out of served-documents/
    assert len(storage.writes) == 2


def test_prediction_log_target_selects_the_sink(tmp_path: Path) -> None:
    assert is_store_url("sqlite:///x.db") and is_store_url("postgresql+psycopg://h/db")
    assert not is_store_url(str(tmp_path)) and not is_store_url((tmp_path / "x").as_uri())
    sql = open_prediction_log(f"sqlite:///{tmp_path / 'log.db'}")
    assert isinstance(sql, SqlSink) and sql.store.dialect == "sqlite"
    sql.close()
    assert isinstance(open_prediction_log(str(tmp_path / "dir")), JsonlSink)
    assert isinstance(open_prediction_log(tmp_path / "dir2", "parquet"), ParquetSink)
    files = open_prediction_log((tmp_path / "dir3").as_uri())
    assert isinstance(files, JsonlSink) and files.directory == tmp_path / "dir3"
    with pytest.raises(StoreError, match="neither a directory nor a supported database"):
        open_prediction_log("s3://bucket/predictions")
    with pytest.raises(StoreError, match="pass the URL as a string"):
        open_prediction_log(Path(f"sqlite:///{tmp_path / 'log.db'}"))  # what typer's Path makes


def test_the_predictor_logs_word_positions_label_sets_and_documents(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    from docloop.serve.server import ServeOptions, build_model

    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = DocloopConfig(data_root=(tmp_path / "data").as_uri())
    options = ServeOptions(
        models=(tiny_models.classifier, tiny_models.extractor),
        name="docs",
        model_version="v7",
        prediction_log=url,  # what `docloop serve --prediction-log sqlite:///...` passes
        config=config,
    )
    model = build_model(options)  # loads the models; the log's writer is the SqlSink
    assert model.prediction_log is not None
    assert isinstance(model.prediction_log.sink, SqlSink)
    words = ["Invoice", "Patient:", "Jane", "Doe", "MRN", "4821937"]
    pages = {"words": words, "boxes": [[10 * i, 10, 10 * i + 8, 20] for i in range(6)]}
    headers = {"x-request-id": "req-served"}
    answer = asyncio.run(model.predict({"instances": [{"pages": [pages]}]}, headers, {}))
    model.stop()  # closes the writer (and the sink's store): everything queued is written
    (predicted,) = answer["predictions"]
    store = open_store(url)
    assert find_prediction(store, "req-served", 0) is None  # the client's id is not a key
    stored = find_prediction(store, predicted["request_id"], predicted["instance"])
    assert stored is not None and stored.outputs["client_request_id"] == "req-served"
    assert stored.model_version == "v7"
    assert stored.entity_types == list(tiny_models.entity_types)
    assert stored.entities == predicted["entities"]
    assert predicted["fields"] and stored.outputs["fields"] == predicted["fields"]
    assert all("word_indices" in entity for entity in stored.entities)
    assert set(stored.probabilities) == set(tiny_models.doc_types)
    assert stored.word_count == len(words)
    kept = read_served_document(Storage(), config, stored.doc_id)
    assert kept.words == words and kept.doc_type is None and set(kept.tags) == {"O"}

    # the loop closes: a reviewer corrects this very prediction through the feedback API
    from fastapi.testclient import TestClient

    from docloop.feedback.api import create_app

    other = next(t for t in tiny_models.doc_types if t != predicted["doc_type"]["label"])
    verdict = {
        "idempotency_key": "rev-1:req-served:0",
        "model_name": predicted["model_name"],
        "model_version": predicted["model_version"],
        "request_id": predicted["request_id"],
        "reviewer_id": "rev-1",
        "kind": "correction",
        "correction": {
            "doc_type": other,
            "entities": [{"type": tiny_models.entity_types[0], "word_indices": [5]}],
        },
    }
    with TestClient(create_app(config, store)) as client:
        response = client.post("/v1/feedback", json=verdict)
        assert response.status_code == 201, response.text
        beyond = verdict | {"idempotency_key": "rev-1:req-served:0:b"}
        entity = {"type": tiny_models.entity_types[0], "word_indices": [len(words)]}
        beyond["correction"] = {"entities": [entity]}
        rejected = client.post("/v1/feedback", json=beyond)
        assert rejected.status_code == 422
        assert rejected.json()["code"] == "word_index_out_of_range"
    store.close()

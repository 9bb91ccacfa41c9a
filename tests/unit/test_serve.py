"""The predictor's logic in-process (no server): payload validation, the micro-batcher, the
prediction log, model resolution, and ``DocloopModel.predict`` on two tiny trained models.

The HTTP behaviour (a real ``docloop serve`` subprocess) is in ``test_serve_http.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
import pytest

from docloop.config import PreprocessConfig
from docloop.serve.batching import DirectRunner, Lanes, MicroBatcher
from docloop.serve.compat import InferInput, InferRequest, InferResponse, InvalidInput
from docloop.serve.documents import document_pages
from docloop.serve.inputs import (
    DocumentInstance,
    PagesInstance,
    ServeLimits,
    parse_v1,
    parse_v2,
)
from docloop.serve.predictor import DocloopModel, ModelFolders, resolve_model_folders
from docloop.serve.server import BodySizeLimit, _location
from docloop.serve.sink import (
    BackgroundWriter,
    JsonlSink,
    ParquetSink,
    PredictionRecord,
    PredictionSink,
)
from tests.documents import born_digital_pdf, image_bytes, text_image

if TYPE_CHECKING:  # imported for real by pytest_plugins
    from tests.serving import TinyModels

pytest_plugins = ["tests.serving"]
pytestmark = pytest.mark.unit

LIMITS = ServeLimits(max_instances=4, max_pages=3, max_words=50)


def page(words: list[str], index: int | None = None, **extra: Any) -> dict[str, Any]:
    boxes = [[10 * i, 10, 10 * i + 8, 20] for i in range(len(words))]
    record: dict[str, Any] = {"words": words, "boxes": boxes, **extra}
    if index is not None:
        record["page"] = index
    return record


def test_importing_kserve_ignores_the_command_line() -> None:
    """kserve.model_server parses sys.argv on import; docloop hides it (a subprocess, to import
    KServe afresh with a command line it would reject)."""
    code = (
        "import sys; sys.argv = ['docloop', 'serve', '--model', 'x', '--http_port', 'oops']\n"
        "from docloop.serve.compat import model_server\n"
        "print(model_server.args.http_port, model_server.args.model_name)"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8080", "model"]


# --- payload validation ------------------------------------------------------------------------
def test_v1_instances_become_pages_or_documents() -> None:
    pdf = born_digital_pdf([["hello"]])
    instances = parse_v1(
        {
            "instances": [
                {"pages": [page(["b"], 1), page(["a"], 0, confidences=[80.0])]},
                {"document": base64.b64encode(pdf).decode()},
            ]
        },
        LIMITS,
    )
    first, second = instances
    assert isinstance(first, PagesInstance) and [p.page for p in first.pages] == [0, 1]
    assert first.page_count == 2 and first.field == "instances[0].pages"
    assert isinstance(second, DocumentInstance) and second.data == pdf


def test_pages_without_numbers_are_numbered_in_order() -> None:
    (instance,) = parse_v1({"instances": [{"pages": [page(["a"]), page(["b"])]}]}, LIMITS)
    assert isinstance(instance, PagesInstance)
    assert [(p.page, p.words) for p in instance.pages] == [(0, ["a"]), (1, ["b"])]


def test_a_full_page_record_is_accepted() -> None:
    record = {
        "doc_id": "abc", "source_uri": "file:///x.pdf", "page": 0, "page_count": 1, "width": 10,
        "height": 10, "dpi": 200, "source": "text_layer", "image_uri": "file:///p.jpg",
        "words": ["a"], "boxes": [[0, 0, 1, 1]], "confidences": [100.0], "mean_confidence": 100.0,
        "ocr_engine": "poppler 22.12.0", "settings_digest": "0123",
    }  # fmt: skip
    (instance,) = parse_v1({"instances": [{"pages": [record]}]}, LIMITS)
    assert isinstance(instance, PagesInstance) and instance.pages[0].source == "text_layer"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"raw", "payload: expected a JSON object"),
        (
            {"instances": [{"pages": [page(["a"], 0), page(["b"], 0)]}]},
            "instances[0].pages[1].page",
        ),
        ({"instances": [{"pages": [page(["a"] * 51)]}]}, "instances[0].pages[0].words"),
        (
            {"instances": [{"pages": [page(["a"] * 30), page(["b"] * 30)]}]},
            "instances[0].pages: 60 words",
        ),
        ({"instances": [{"pages": [page(["a"])] * 4}]}, "instances[0].pages: 4 pages"),
        (
            {"instances": [{"pages": [page(["a"], confidences=[1.0, 2.0])]}]},
            "instances[0].pages[0].confidences",
        ),
        (
            {"instances": [{"pages": [page(["a"], confidences=[101.0])]}]},
            "instances[0].pages[0].confidences[0]",
        ),
        (
            {"instances": [{"pages": [page(["a"], boxes=[[5, 0, 1, 1]])]}]},
            "instances[0].pages[0].boxes[0]: expected x0 <= x1",
        ),
        (
            {"instances": [{"pages": [page(["a"], boxes=[[0.5, 0, 1, 1]])]}]},
            "instances[0].pages[0].boxes[0][0]",
        ),
        (
            {"instances": [{"pages": [page(["a"])], "document": "aGk="}]},
            "instances[0]: give exactly one",
        ),
        (
            {"instances": [{"pages": [page(["a"])], "doc_id": "mine"}]},
            "instances[0].doc_id: a document's id is assigned by the server",
        ),
        (
            {"instances": [{"pages": [page(["a"])], "doc_id": "../../etc/x"}]},
            "instances[0].doc_id: a document's id is assigned by the server",
        ),
        ({"instances": [{"document": ""}]}, "instances[0].document: the document is empty"),
        (
            {"instances": [{"document": "data:text/plain,hello"}]},
            "instances[0].document: a data URL",
        ),
        (
            {"instances": [{"pages": [page(["a"])]}] * 5},
            "instances: 5 instances, over the limit of 4",
        ),
    ],
)
def test_v1_errors_name_the_field(payload: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_v1(payload, LIMITS)
    assert message in str(caught.value)


def v2_request(
    data: list[Any], name: str = "document_json", datatype: str = "BYTES"
) -> InferRequest:
    return InferRequest(
        model_name="m",
        infer_inputs=[InferInput(name=name, shape=[len(data)], datatype=datatype, data=data)],
    )


def test_v2_accepts_json_strings_and_nested_shapes() -> None:
    instance = json.dumps({"pages": [page(["a"])]})
    assert len(parse_v2(v2_request([instance, instance]), LIMITS)) == 2
    assert len(parse_v2(v2_request([[instance], [instance]]), LIMITS)) == 2  # shape [2, 1]
    with pytest.raises(InvalidInput, match=r"inputs\[0\]\.data: no instances"):
        parse_v2(v2_request([]), LIMITS)
    with pytest.raises(InvalidInput, match=r"inputs\[0\]\.data\[1\]\.pages"):
        parse_v2(v2_request([instance, json.dumps({"pages": []})]), LIMITS)


def test_schema_error_locations_read_like_fields() -> None:
    assert _location(("body", "InferenceRequest", "inputs", 0, "datatype")) == "inputs[0].datatype"
    assert _location(("body",)) == "payload"


# --- files through the preprocess code ----------------------------------------------------------
def test_a_born_digital_pdf_uses_its_text_layer() -> None:
    pdf = born_digital_pdf([["Invoice 42"], ["second page"]])
    result = document_pages(pdf, "instances[0].document", "request://r/0", PreprocessConfig())
    assert result.page_count == 2 and not result.quarantined
    assert [p.words for p in result.pages] == [["Invoice", "42"], ["second", "page"]]
    assert {p.source for p in result.pages} == {"text_layer"}
    assert all(0 <= v <= 1000 for p in result.pages for box in p.boxes for v in box)


def test_files_preprocess_would_quarantine_are_invalid_input() -> None:
    config = PreprocessConfig()
    with pytest.raises(InvalidInput, match=r"instances\[0\]\.document: .*\(encrypted_pdf\)"):
        document_pages(
            born_digital_pdf([["x"]], encrypt="pw"), "instances[0].document", "r", config
        )
    blank = image_bytes(text_image([]), "PNG")
    with pytest.raises(InvalidInput, match=r"no page has readable text: page 0: .*\(empty_page\)"):
        document_pages(blank, "instances[0].document", "r", config)
    with pytest.raises(InvalidInput, match="not a PDF, PNG, JPEG or TIFF"):
        document_pages(b"GIF89a....", "instances[0].document", "r", config)


# --- batching -----------------------------------------------------------------------------------
class Recorder:
    """A batch function that remembers its batches and takes a little time, like a forward pass."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.batches: list[list[int]] = []
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
        time.sleep(self.seconds)
        return [item * 10 for item in items]


def test_the_micro_batcher_groups_concurrent_callers() -> None:
    recorder = Recorder()
    sizes: list[int] = []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        batcher: MicroBatcher[int, int] = MicroBatcher(
            recorder, pool, max_batch_size=8, max_wait_s=0.01, on_batch=sizes.append
        )

        async def main() -> list[list[int]]:
            return await asyncio.gather(*(batcher.run([i, 100 + i]) for i in range(10)))

        results = asyncio.run(main())
    assert results == [[i * 10, (100 + i) * 10] for i in range(10)]
    assert sorted(x for batch in recorder.batches for x in batch) == sorted(
        [*range(10), *range(100, 110)]
    )
    assert max(sizes) == 8 and len(recorder.batches) == 3  # 20 items, at most 8 per batch
    assert batcher.batches == 3 and batcher.items == 20


def test_the_micro_batcher_passes_errors_to_every_caller_and_keeps_working() -> None:
    def explode(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("bad batch")
        return items

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        batcher: MicroBatcher[int, int] = MicroBatcher(explode, pool, max_wait_s=0.001)

        async def main() -> tuple[list[Any], list[int]]:
            failed = await asyncio.gather(
                batcher.run([13]), batcher.run([1]), return_exceptions=True
            )
            return failed, await batcher.run([2, 3])

        failed, later = asyncio.run(main())
    assert all(isinstance(outcome, ValueError) for outcome in failed)
    assert later == [2, 3]


def test_without_batching_each_request_is_its_own_forward_pass() -> None:
    recorder = Recorder(0.005)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        runner: DirectRunner[int, int] = DirectRunner(recorder, pool)

        async def main() -> list[list[int]]:
            return await asyncio.gather(*(runner.run([i]) for i in range(5)))

        assert asyncio.run(main()) == [[i * 10] for i in range(5)]
    assert sorted(recorder.batches) == [[i] for i in range(5)]


def test_docloop_serve_batches_by_default_on_a_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU batching cost throughput (bench.predictor: 0.75x at 16 concurrent requests)."""
    import torch

    from docloop.serve.batching import batches_by_default

    assert not batches_by_default("cpu")
    assert batches_by_default("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not batches_by_default("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert batches_by_default("auto")


def test_a_lone_request_does_not_wait_for_company() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        # a minute's window: a batcher that waited for it would time the call out
        batcher: MicroBatcher[int, int] = MicroBatcher(Recorder(), pool, max_wait_s=60.0)

        async def main() -> list[int]:
            return await asyncio.wait_for(batcher.run([4]), timeout=30)

        assert asyncio.run(main()) == [40]


def test_a_batch_waits_for_announced_callers_only() -> None:
    recorder = Recorder()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        batcher: MicroBatcher[int, int] = MicroBatcher(recorder, pool, max_wait_s=60.0)

        async def main() -> list[list[int]]:
            batcher.arriving(1)  # a second request is being parsed
            first = asyncio.create_task(batcher.run([1]))
            await asyncio.sleep(0.01)
            batcher.arriving(-1)
            second = await asyncio.wait_for(batcher.run([2]), timeout=30)
            return [await first, second]

        assert asyncio.run(main()) == [[10], [20]]
    assert recorder.batches == [[1, 2]]


def test_bulk_items_run_beside_the_small_ones() -> None:
    small_done = threading.Event()
    order: list[str] = []

    def small(items: list[int]) -> list[int]:
        order.append("small")
        small_done.set()
        return items

    def bulk(items: list[int]) -> list[int]:
        # holds its lane until a small item was answered: one shared lane would wait here
        small_done.wait(30)
        order.append("bulk")
        return items

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as small_pool, ThreadPoolExecutor(1) as bulk_pool:
        lanes: Lanes[int, int] = Lanes(
            MicroBatcher(small, small_pool, max_wait_s=0.0),
            DirectRunner(bulk, bulk_pool),
            lambda item: item >= 1000,
        )

        async def main() -> tuple[list[int], list[int]]:
            huge = asyncio.create_task(lanes.run([5000]))
            await asyncio.sleep(0.01)
            return await lanes.run([2, 7000, 3]), await huge

        assert asyncio.run(main()) == ([2, 7000, 3], [5000])
    assert order[:2] == ["small", "bulk"]


# --- prediction log -----------------------------------------------------------------------------
def record(request_id: str, instance: int = 0) -> PredictionRecord:
    return PredictionRecord(
        timestamp="2026-11-25T10:00:00+00:00", request_id=request_id, instance=instance,
        doc_id="d", source_uri="request://x/0", model_name="m", model_version="v1",
        model_versions={"classify": "v1"}, protocol="v1", input="pages", doc_type="invoice",
        doc_type_confidence=0.9, probabilities={"invoice": 0.9, "letter": 0.1},
        entities=[{"type": "mrn", "text": "1", "page": 0, "box": [0, 0, 1, 1], "confidence": 0.8}],
        fields={"mrn": {"text": "1", "value": "1", "confidence": 0.6, "calibrated": False,
                        "page": 0, "box": [0, 0, 1, 1], "word_indices": [0]}},
        entity_count=1, mean_entity_confidence=0.8, pages=1, words=3, mean_confidence=None,
        ocr_pages=1, latency_ms=5.0,
    )  # fmt: skip


def test_the_jsonl_sink_appends_one_line_per_prediction(tmp_path: Path) -> None:
    writer = BackgroundWriter(JsonlSink(tmp_path / "log"))
    writer.submit([record("a", 0), record("a", 1)])
    writer.submit([record("b")])
    writer.close()
    (path,) = (tmp_path / "log").glob("predictions-2026-11-25-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["request_id"], x["instance"]) for x in lines] == [("a", 0), ("a", 1), ("b", 0)]
    assert lines[0]["entities"][0]["type"] == "mrn" and writer.written == 3
    assert lines[0]["fields"]["mrn"]["value"] == "1"


def test_the_parquet_sink_writes_files_with_a_fixed_schema(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "log", rows_per_file=2)
    sink.write([record("a"), record("b")])  # a full buffer: written as a file
    sink.write([record("c")])  # buffered until close
    sink.close()
    tables = [pq.read_table(p) for p in sorted((tmp_path / "log").glob("*.parquet"))]
    assert sorted(t.num_rows for t in tables) == [1, 2]
    rows = tables[0].to_pylist()
    assert json.loads(rows[0]["probabilities"]) == {"invoice": 0.9, "letter": 0.1}
    assert json.loads(rows[0]["fields"])["mrn"]["confidence"] == 0.6
    assert not list((tmp_path / "log").glob("*.tmp"))


class SlowSink(PredictionSink):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.records: list[PredictionRecord] = []

    def write(self, records: Any) -> None:
        self.release.wait(5)
        self.records.extend(records)


def test_a_slow_sink_never_blocks_submit_and_overflow_is_counted() -> None:
    sink = SlowSink()
    dropped: list[int] = []
    writer = BackgroundWriter(sink, max_queue=2, on_drop=dropped.append)
    started = time.perf_counter()
    for index in range(10):
        writer.submit([record(str(index))])
    assert time.perf_counter() - started < 0.5
    assert sum(dropped) >= 6 and writer.dropped == sum(dropped)
    sink.release.set()
    writer.close()
    assert len(sink.records) + writer.dropped == 10


def test_the_body_size_limit_rejects_large_declared_bodies() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "headers": [(b"content-length", b"2000")]}
    asyncio.run(BodySizeLimit(app, max_bytes=1000)(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"].startswith("payload: the request body is 2000")


# --- the model, in-process ----------------------------------------------------------------------
def test_model_folders_resolve_from_a_bundle_or_two_paths(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    both = resolve_model_folders([tiny_models.extractor, tiny_models.classifier])
    assert both == ModelFolders(tiny_models.classifier, tiny_models.extractor)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "classifier").symlink_to(tiny_models.classifier)
    assert resolve_model_folders([bundle]) == ModelFolders(bundle / "classifier", None)
    with pytest.raises(InvalidInput, match="two classify models"):
        resolve_model_folders([tiny_models.classifier, bundle])
    with pytest.raises(InvalidInput, match="is not a docloop model"):
        resolve_model_folders([tmp_path])
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "extractor").symlink_to(tiny_models.classifier)
    with pytest.raises(InvalidInput, match="holds a classify model, expected extract"):
        resolve_model_folders([tmp_path / "wrong"])


@pytest.fixture(scope="module")
def model(tiny_models: TinyModels) -> Any:
    served = DocloopModel(
        "docs",
        ModelFolders(tiny_models.classifier, tiny_models.extractor),
        model_version="v7",
    )
    served.load()
    yield served
    served.stop()


def test_the_model_answers_v1_and_v2_in_process(model: DocloopModel) -> None:
    assert model.ready and model.model_versions == {"classify": "v7", "extract": "v7"}
    headers: dict[str, str] = {}
    v1 = asyncio.run(
        model.predict({"instances": [{"pages": [page(["Invoice", "MRN", "123"])]}]}, {}, headers)
    )
    (answer,) = v1["predictions"]
    assert answer["model_version"] == "v7" and answer["request_id"] == headers["x-request-id"]
    assert "client_request_id" not in answer  # none sent: the server's id is echoed instead
    assert set(answer) >= {"doc_type", "entities", "pages", "words", "mean_confidence", "ocr_pages"}

    request = v2_request([json.dumps({"pages": [page(["Referral"])]})])
    v2 = asyncio.run(model.predict(request, {"x-request-id": "from-header"}, {}))
    assert isinstance(v2, InferResponse)
    assert v2.id == "from-header"  # no "id" in the payload: the header's, else the server's id
    (output,) = v2.outputs
    v2_answer = json.loads(output.data[0])
    assert v2_answer["client_request_id"] == "from-header"  # echoed, not the key:
    assert v2_answer["request_id"] != "from-header"  # the server's id names the prediction


def test_the_model_ocrs_an_image(model: DocloopModel) -> None:
    png = image_bytes(text_image(["Invoice 4821937"]), "PNG")
    payload = {"instances": [{"document": base64.b64encode(png).decode()}]}
    (answer,) = asyncio.run(model.predict(payload, {}, {}))["predictions"]
    assert answer["ocr_pages"] == 1 and answer["words"] >= 2
    assert answer["mean_confidence"] is not None and answer["quarantined_pages"] == []

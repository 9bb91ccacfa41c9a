"""``DocloopModel``: a KServe model serving a classifier, an extractor, or both behind one name.

One endpoint answers both questions about a document, so a caller (and the prediction log) gets
the type and the entities of a document from one request and one OCR pass. Which models are
served is decided when the server starts (``resolve_model_folders``):

- ``--model PATH`` where PATH is a model folder (it holds ``docloop-model.json``): its card's task
  (``classify`` or ``extract``) decides its role;
- ``--model PATH`` where PATH holds ``classifier/`` and/or ``extractor/`` model folders (a bundle;
  a release bundle's ``release.json`` names the folders it must hold, so a bundle downloaded in
  part fails at startup instead of serving one model);
- ``--model`` given twice (one classifier and one extractor, in any order).

At most one model per task; a second one is an error at startup, not a silent override.

Answers (one per instance, in order; ``docloop.feedback.contracts.PredictionAnswer``)::

    {"doc_id": "...", "doc_type": {"label", "confidence", "probabilities"},   # with a classifier
     "entities": [{"type", "text", "page", "box", "confidence", "word_indices"}, ...],  # extractor
     "model_name", "model_version", "model_versions": {"classify": ..., "extract": ...},
     "request_id", "instance", "client_request_id", "pages", "words", "mean_confidence",
     "ocr_pages", "text_source", "quarantined_pages": [...]}

V1 wraps them in ``{"predictions": [...]}``; v2 returns them as JSON strings in the BYTES output
``prediction_json``. A model's version is ``--model-version`` when given, else the MLflow run id
on its card, else the card's ``created_at``. An entity's ``word_indices`` are the positions of its
words in the document's words (pages concatenated in reading order): what a reviewer's correction
refers to (``docloop.feedback.contracts``).

Ids are the server's: every request gets a fresh ``request_id`` (``new_request_id``) and each
document its content's ``doc_id`` (``docloop.serve.documents``); ``(request_id, instance)`` keys
the prediction log and is what a reviewer names. The client's ``x-request-id`` header (or the v2
``id``) is checked (``client_request_id``), echoed in the answers as ``client_request_id``, in
the ``x-request-id`` response header and the v2 response ``id``, and logged, but never keys
anything; without one, the server's id is echoed in its place.

With a prediction log, every answered document is also handed to the log's writer thread, which
keeps the document itself (words, boxes, pages; ``write_served_document``) for feedback and
retraining, once per document id.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from docloop.config import PreprocessConfig, ServeConfig
from docloop.documents.examples import DocumentExample
from docloop.feedback.contracts import (
    FieldAnswer,
    PredictedEntity,
    PredictionAnswer,
    QuarantinedPage,
    TypeAnswer,
    client_request_id,
    new_request_id,
    text_source_of,
)
from docloop.models.artifact import (
    CARD_FILE,
    LoadedModel,
    ModelCard,
    card_version,
    load_model,
    read_card,
)
from docloop.models.inference import ExtractionResult, TypePrediction, classify, extract
from docloop.serve import metrics
from docloop.serve.batching import BatchingConfig, DirectRunner, Lanes, MicroBatcher, Runner
from docloop.serve.compat import InferOutput, InferRequest, InferResponse, InvalidInput, kserve
from docloop.serve.documents import document_pages, pages_doc_id
from docloop.serve.inputs import (
    V2_OUTPUT_NAME,
    DocumentInstance,
    Instance,
    PagesInstance,
    ServeLimits,
    ServePage,
    TooManyWords,
    parse_v1,
    parse_v2,
    to_example,
)
from docloop.serve.runtime import Inference, serving_model
from docloop.serve.sink import BackgroundWriter, PredictionRecord

logger = logging.getLogger(__name__)

CLASSIFIER_DIR = "classifier"
EXTRACTOR_DIR = "extractor"
RELEASE_FILE = "release.json"  # a release bundle's manifest (docloop.deploy.release_bundle)
REQUEST_ID_HEADER = "x-request-id"
SERVE_DEFAULTS = ServeConfig()

WireProtocol = Literal["v1", "v2"]
Output = tuple[TypePrediction | None, ExtractionResult | None]


@dataclass(frozen=True)
class ModelFolders:
    """The model folders to serve, by role."""

    classifier: Path | None = None
    extractor: Path | None = None


def _assign(folders: dict[str, Path], card: ModelCard, folder: Path) -> None:
    if card.task in folders:
        raise InvalidInput(
            f"two {card.task} models given ({folders[card.task]} and {folder}); serve at most "
            "one classifier and one extractor"
        )
    folders[card.task] = folder


def resolve_model_folders(paths: Sequence[Path]) -> ModelFolders:
    """Decide which given folder is the classifier and which the extractor.

    Args:
        paths: model folders, or bundle folders with ``classifier/`` and/or ``extractor/``.

    Returns:
        The folders by role (at least one is set).

    Raises:
        InvalidInput: a path is neither a model nor a bundle, a bundle's subfolder holds the
            wrong task, or two models have the same task.
    """
    if not paths:
        raise InvalidInput("no model given; pass --model PATH (a model folder or a bundle)")
    folders: dict[str, Path] = {}
    for path in paths:
        if (path / CARD_FILE).is_file():
            _assign(folders, read_card(path), path)
            continue
        parts = [
            (path / name, task)
            for name, task in ((CLASSIFIER_DIR, "classify"), (EXTRACTOR_DIR, "extract"))
        ]
        found = [(sub, task) for sub, task in parts if (sub / CARD_FILE).is_file()]
        if (path / RELEASE_FILE).is_file():
            named = json.loads((path / RELEASE_FILE).read_text(encoding="utf-8"))["models"]
            missing = sorted(
                task for task, entry in named.items()
                if not (path / str(entry["folder"]) / CARD_FILE).is_file()
            )  # fmt: skip
            if missing:
                raise InvalidInput(
                    f"the release bundle {path} names {', '.join(missing)} but holds no such "
                    "model; the download was incomplete or the bundle was changed by hand"
                )
        if not found:
            raise InvalidInput(
                f"{path} is not a docloop model ({CARD_FILE} is missing) nor a folder with "
                f"{CLASSIFIER_DIR}/ or {EXTRACTOR_DIR}/ models"
            )
        for sub, task in found:
            card = read_card(sub)
            if card.task != task:
                raise InvalidInput(f"{sub} holds a {card.task} model, expected {task}")
            _assign(folders, card, sub)
    return ModelFolders(folders.get("classify"), folders.get("extract"))


@dataclass
class _Prepared:
    """An instance turned into a model input, with what the answer reports about it."""

    index: int
    kind: Literal["pages", "document"]
    example: DocumentExample
    pages: list[ServePage]
    mean_confidence: float | None
    quarantined: list[QuarantinedPage] = field(default_factory=list)


def _mean_confidence(pages: Sequence[ServePage]) -> float | None:
    values = [c for page in pages for c in (page.confidences or [])]
    return round(sum(values) / len(values), 2) if values else None


class DocloopModel(kserve.Model):  # type: ignore[misc]
    """A classifier and/or an extractor served over KServe V1 and the Open Inference Protocol.

    Args:
        name: the model name in URLs (``/v1/models/<name>:predict``).
        folders: the model folders to serve.
        model_version: overrides the versions read from the cards.
        batching: dynamic batching settings.
        limits: request caps.
        preprocess: settings for files sent as ``document`` (dpi, OCR language, caps).
        prediction_log: where prediction records and served documents go (None: not logged).
        device: ``auto`` (a CUDA GPU when present, with bf16 autocast), ``cpu`` or ``cuda``.
        inference: how the networks run on the CPU (``docloop.serve.runtime``).
        bulk_words: documents with more words run in the bulk lane (``batching.Lanes``).
    """

    def __init__(
        self,
        name: str,
        folders: ModelFolders,
        *,
        model_version: str | None = None,
        batching: BatchingConfig | None = None,
        limits: ServeLimits | None = None,
        preprocess: PreprocessConfig | None = None,
        prediction_log: BackgroundWriter | None = None,
        device: str = "auto",
        inference: Inference = SERVE_DEFAULTS.inference,
        bulk_words: int = SERVE_DEFAULTS.bulk_words,
    ) -> None:
        super().__init__(name, return_response_headers=True)
        self.device = device
        self.inference: Inference = inference
        self.bulk_words = bulk_words
        if folders.classifier is None and folders.extractor is None:
            raise InvalidInput("no model to serve: give a classifier and/or an extractor")
        self.folders = folders
        self.version_override = model_version
        self.batching = batching or BatchingConfig()
        self.limits = limits or ServeLimits()
        base = preprocess or PreprocessConfig()
        self.preprocess_config = base.model_copy(
            update={"max_pages": min(base.max_pages, self.limits.max_pages)}
        )
        self.prediction_log = prediction_log
        self.classifier: LoadedModel | None = None
        self.extractor: LoadedModel | None = None
        self.model_versions: dict[str, str] = {}
        self.model_version = model_version or ""
        self._forward_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docloop-forward")
        self._bulk_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docloop-bulk")
        self._ocr_limit = max(1, len(os.sched_getaffinity(0)))
        self._ocr_slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.runner: Runner[DocumentExample, Output] = self._make_runner()

    def _make_runner(self) -> Runner[DocumentExample, Output]:
        def observe(size: int) -> None:
            metrics.BATCH_SIZE.labels(self.name).observe(size)

        def lane(pool: ThreadPoolExecutor, batch_size: int) -> Runner[DocumentExample, Output]:
            if not self.batching.enabled:
                return DirectRunner(self._forward, pool, on_batch=observe)
            return MicroBatcher(
                self._forward,
                pool,
                max_batch_size=batch_size,
                max_wait_s=self.batching.max_wait_s,
                on_batch=observe,
            )

        return Lanes(
            lane(self._forward_pool, self.batching.max_batch_size),
            lane(self._bulk_pool, 1),  # one huge document at a time
            lambda example: len(example.words) > self.bulk_words,
        )

    # --- lifecycle ---------------------------------------------------------------------------
    def load(self) -> bool:
        """Load the model folders (safetensors, no unpickling) and mark the model ready."""
        if self.folders.classifier is not None:
            self.classifier = serving_model(
                load_model(self.folders.classifier, self.device), self.inference
            )
            self.model_versions["classify"] = self.version_override or card_version(
                self.classifier.card
            )
        if self.folders.extractor is not None:
            self.extractor = serving_model(
                load_model(self.folders.extractor, self.device), self.inference
            )
            self.model_versions["extract"] = self.version_override or card_version(
                self.extractor.card
            )
        if not self.version_override:
            versions = list(self.model_versions.values())
            self.model_version = (
                versions[0]
                if len(versions) == 1
                else ",".join(f"{task}={v}" for task, v in self.model_versions.items())
            )
        for loaded in (self.classifier, self.extractor):
            if loaded is not None:
                logger.info(
                    "serving the %s model %s as %r (version %s)",
                    loaded.card.task,
                    loaded.path,
                    self.name,
                    self.model_versions[loaded.card.task],
                )
        self.ready = True
        return True

    def stop(self) -> None:
        """Flush the prediction log and stop the forward thread."""
        self.ready = False
        if self.prediction_log is not None:
            self.prediction_log.close()
        self._forward_pool.shutdown(wait=False, cancel_futures=True)
        self._bulk_pool.shutdown(wait=False, cancel_futures=True)

    def get_input_types(self) -> list[dict[str, Any]]:
        """The v2 input: JSON strings, one instance each."""
        return [{"name": "document_json", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        """The v2 output: JSON strings, one answer each."""
        return [{"name": V2_OUTPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    # --- inference -------------------------------------------------------------------------
    def _ocr_semaphore(self) -> asyncio.Semaphore:
        """At most one file per core is rendered/OCR'd at a time (per event loop)."""
        loop = asyncio.get_running_loop()
        if self._ocr_slots is None or self._ocr_slots[0] is not loop:
            self._ocr_slots = (loop, asyncio.Semaphore(self._ocr_limit))
        return self._ocr_slots[1]

    def _forward(self, examples: list[DocumentExample]) -> list[Output]:
        """One forward pass of each served model over a batch (runs in the forward thread)."""
        started = time.perf_counter()
        size = max(len(examples), 1)
        types: list[TypePrediction | None] = (
            list(classify(self.classifier, examples, batch_size=size))
            if self.classifier is not None
            else [None] * len(examples)
        )
        extractions: list[ExtractionResult | None] = (
            list(extract(self.extractor, examples, batch_size=max(size, 16)))
            if self.extractor is not None
            else [None] * len(examples)
        )
        metrics.FORWARD_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return list(zip(types, extractions, strict=True))

    def validate(self, payload: Any) -> Any:
        """Leave validation to ``predict`` (KServe's own check would bypass its metrics)."""
        return payload

    async def _prepare(self, instance: Instance, index: int, request_id: str) -> _Prepared:
        source_uri = f"request://{request_id}/{index}"
        if isinstance(instance, PagesInstance):
            doc_id = pages_doc_id(instance.pages)
            example = to_example(doc_id, source_uri, instance.pages, instance.page_count)
            return _Prepared(
                index, "pages", example, instance.pages, _mean_confidence(instance.pages)
            )
        assert isinstance(instance, DocumentInstance)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        async with self._ocr_semaphore():
            result = await loop.run_in_executor(
                None,
                functools.partial(
                    document_pages,
                    instance.data,
                    instance.field,
                    source_uri,
                    self.preprocess_config,
                ),
            )
        metrics.PREPROCESS_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        words = sum(len(page.words) for page in result.pages)
        if words > self.limits.max_words:
            raise TooManyWords(instance.field, words, self.limits.max_words)
        example = to_example(result.doc_id, source_uri, result.pages, result.page_count)
        quarantined = [
            QuarantinedPage(page=entry.page, code=entry.code, reason=entry.reason)
            for entry in result.quarantined
        ]
        return _Prepared(
            index, "document", example, result.pages, _mean_confidence(result.pages), quarantined
        )

    def _answer(
        self, prepared: _Prepared, output: Output, request_id: str, correlation: str | None
    ) -> PredictionAnswer:
        doc_type, extraction = output
        return PredictionAnswer(
            doc_id=prepared.example.doc_id,
            doc_type=None
            if doc_type is None
            else TypeAnswer(
                label=doc_type.label,
                confidence=doc_type.confidence,
                probabilities=doc_type.probabilities,
            ),
            entities=None
            if extraction is None
            else [
                PredictedEntity(
                    type=entity.type,
                    text=entity.text,
                    page=entity.page,
                    box=entity.box,
                    confidence=entity.confidence,
                    word_indices=list(entity.word_indices),
                )
                for entity in extraction.entities
            ],
            fields=None
            if extraction is None
            else {
                name: FieldAnswer(
                    text=answer.text,
                    value=answer.value,
                    confidence=answer.confidence,
                    calibrated=answer.calibrated,
                    known_value=answer.known_value,
                    page=answer.page,
                    box=answer.box,
                    word_indices=answer.word_indices,
                )
                for name, answer in extraction.fields.items()
            },
            model_name=self.name,
            model_version=self.model_version,
            model_versions=dict(self.model_versions),
            request_id=request_id,
            instance=prepared.index,
            client_request_id=correlation,
            pages=len(prepared.pages),
            words=len(prepared.example.words),
            mean_confidence=prepared.mean_confidence,
            ocr_pages=prepared.example.ocr_pages,
            text_source=text_source_of([page.source for page in prepared.pages]),
            quarantined_pages=prepared.quarantined,
        )

    def _record(
        self,
        prepared: _Prepared,
        answer: PredictionAnswer,
        protocol: WireProtocol,
        latency_ms: float,
    ) -> PredictionRecord:
        doc_type = answer.doc_type
        entities = answer.entities or []
        confidences = [entity.confidence for entity in entities if entity.confidence is not None]
        return PredictionRecord(
            timestamp=datetime.now(UTC).isoformat(),
            request_id=answer.request_id,
            instance=prepared.index,
            client_request_id=answer.client_request_id,
            doc_id=prepared.example.doc_id,
            source_uri=prepared.example.source_uri,
            model_name=self.name,
            model_version=self.model_version,
            model_versions=dict(self.model_versions),
            protocol=protocol,
            input=prepared.kind,
            doc_type=doc_type.label if doc_type else None,
            doc_type_confidence=doc_type.confidence if doc_type else None,
            probabilities=doc_type.probabilities if doc_type else {},
            entities=entities,
            entity_types=list(self.extractor.card.entity_types) if self.extractor else [],
            fields=answer.fields or {},
            entity_count=len(entities),
            mean_entity_confidence=round(sum(confidences) / len(confidences), 6)
            if confidences
            else None,
            pages=answer.pages,
            words=answer.words,
            mean_confidence=prepared.mean_confidence,
            ocr_pages=answer.ocr_pages,
            text_source=answer.text_source,
            quarantined_pages=len(prepared.quarantined),
            latency_ms=round(latency_ms, 3),
        )

    def _observe(self, answers: Sequence[PredictionAnswer], prepared: Sequence[_Prepared]) -> None:
        for answer, item in zip(answers, prepared, strict=True):
            metrics.DOCUMENTS.labels(self.name, item.kind).inc()
            if answer.doc_type is not None:
                metrics.DOC_TYPES.labels(self.name, answer.doc_type.label).inc()
                metrics.CONFIDENCE.labels(self.name, "doc_type").observe(answer.doc_type.confidence)
            for entity in answer.entities or []:
                if entity.confidence is not None:
                    metrics.CONFIDENCE.labels(self.name, "entity").observe(entity.confidence)

    async def predict_instances(
        self,
        instances: Sequence[Instance],
        request_id: str,
        protocol: WireProtocol,
        correlation: str | None = None,
    ) -> list[PredictionAnswer]:
        """Answer validated instances: preprocess files, batch the forward pass, log.

        Args:
            instances: one document each.
            request_id: the server's id of the request (in every answer and log record).
            protocol: ``v1`` or ``v2`` (recorded in the log).
            correlation: the client's id of the request, echoed and logged (None: none sent).

        Returns:
            One answer per instance, in order.

        Raises:
            InvalidInput: a file cannot be preprocessed (HTTP 400).
        """
        started = time.perf_counter()
        self.runner.arriving(1)
        try:
            prepared = list(
                await asyncio.gather(
                    *(
                        self._prepare(instance, i, request_id)
                        for i, instance in enumerate(instances)
                    )
                )
            )
        finally:
            self.runner.arriving(-1)
        outputs = await self.runner.run([item.example for item in prepared])
        answers = [
            self._answer(item, output, request_id, correlation)
            for item, output in zip(prepared, outputs, strict=True)
        ]
        self._observe(answers, prepared)
        if self.prediction_log is not None:
            latency_ms = (time.perf_counter() - started) * 1000
            self.prediction_log.submit(
                [
                    self._record(item, answer, protocol, latency_ms)
                    for item, answer in zip(prepared, answers, strict=True)
                ],
                [item.example for item in prepared],
            )
        return answers

    @staticmethod
    def _correlation(payload: dict[str, Any] | InferRequest, headers: dict[str, str]) -> str | None:
        """The client's id of the request (v2 ``id``, else ``x-request-id``), checked.

        Raises:
            InvalidInput: the id is empty, too long or has other characters than an id may.
        """
        if isinstance(payload, InferRequest) and payload.id:
            value, field = payload.id, "id"
        else:
            value, field = headers.get(REQUEST_ID_HEADER), f"{REQUEST_ID_HEADER} header"
        try:
            return client_request_id(value, field)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        """Answer a V1 (``{"instances": [...]}``) or an Open Inference Protocol request.

        Raises:
            InvalidInput: the payload is malformed (HTTP 400; the message names the field).
        """
        started = time.perf_counter()
        protocol: WireProtocol = "v2" if isinstance(payload, InferRequest) else "v1"
        request_id = new_request_id()
        outcome = "error"
        try:
            correlation = self._correlation(payload, headers or {})
            if isinstance(payload, InferRequest):
                instances = parse_v2(payload, self.limits)
            else:
                instances = parse_v1(payload, self.limits)
            if response_headers is not None:
                response_headers[REQUEST_ID_HEADER] = correlation or request_id
            answers = await self.predict_instances(instances, request_id, protocol, correlation)
            outcome = "ok"
        except InvalidInput:
            outcome = "invalid"
            raise
        finally:
            metrics.REQUESTS.labels(self.name, protocol, outcome).inc()
            metrics.REQUEST_SECONDS.labels(self.name, protocol).observe(
                time.perf_counter() - started
            )
        if isinstance(payload, InferRequest):
            return InferResponse(
                response_id=correlation or request_id,
                model_name=self.name,
                model_version=self.model_version,
                infer_outputs=[
                    InferOutput(
                        name=V2_OUTPUT_NAME,
                        shape=[len(answers)],
                        datatype="BYTES",
                        data=[json.dumps(answer.model_dump()) for answer in answers],
                    )
                ],
            )
        return {"predictions": [answer.model_dump() for answer in answers]}

"""Simulated production: traffic to the served model and a reviewer who answers from the truth.

Used by the demo and the loop's tests. Traffic is sent to the predictor's KServe V1 endpoint and
verdicts to the feedback API through any ``httpx``-compatible client (a real ``httpx.Client``
against servers on 127.0.0.1, or FastAPI's ``TestClient`` in-process), so the loop is exercised
through the same interfaces users call. The reviewer is
:func:`docloop.feedback.simulated_reviewer.review`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from docloop.documents.examples import DocumentExample
from docloop.feedback.contracts import FeedbackEvent
from docloop.feedback.simulated_reviewer import review

logger = logging.getLogger(__name__)


class HttpClient(Protocol):
    """The part of ``httpx.Client`` (and ``TestClient``) the simulation uses."""

    def post(self, url: str, *, json: Any = ..., timeout: Any = ...) -> Any:  # noqa: D102
        ...


def page_source(example: DocumentExample) -> str | None:
    """Where the example's pages got their words: ``ocr``, ``text_layer`` or None (mixed).

    A client that read the text layer or ran OCR knows it and says so, so that the drift check's
    OCR statistics compare like with like; an example records only how many of its pages were
    OCR'd, so a mixed document's pages are sent without a source (unknown provenance).
    """
    if example.ocr_pages <= 0:
        return "text_layer"
    if example.ocr_pages >= example.page_count:
        return "ocr"
    return None


def instance_of(example: DocumentExample) -> dict[str, Any]:
    """The example as a predictor instance: pages of words and boxes, with their source."""
    pages: dict[int, dict[str, list[Any]]] = {}
    for word, box, page in zip(example.words, example.boxes, example.pages, strict=True):
        entry = pages.setdefault(page, {"words": [], "boxes": []})
        entry["words"].append(word)
        entry["boxes"].append(list(box))
    source = page_source(example)
    extra = {} if source is None else {"source": source}
    return {"pages": [{"page": page, **pages[page], **extra} for page in sorted(pages)]}


def request_predictions(
    client: HttpClient, model_name: str, examples: Sequence[DocumentExample], batch_size: int = 8
) -> list[dict[str, Any]]:
    """Send the examples to ``/v1/models/<name>:predict``; one answer per example, in order.

    Each answer carries the server's ``request_id`` and its ``instance``: what a verdict names.

    Raises:
        RuntimeError: the predictor answered with an error status.
    """
    answers: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        response = client.post(
            f"/v1/models/{model_name}:predict",
            json={"instances": [instance_of(example) for example in chunk]},
            timeout=300,
        )
        if response.status_code != 200:
            raise RuntimeError(f"predictor answered {response.status_code}: {response.text}")
        answers.extend(response.json()["predictions"])  # each names itself: request_id, instance
    return answers


def send_feedback(
    client: HttpClient, events: Sequence[FeedbackEvent], batch_size: int = 100
) -> dict[str, int]:
    """Post verdicts to ``/v1/feedback:batch``; counts of stored and refused events.

    No per-request timeout is passed: Starlette's ``TestClient`` (the in-process API) deprecates
    it; a real ``httpx.Client`` takes its timeout where it is made.

    A batch the API refuses (HTTP 4xx: one bad verdict fails its batch, nothing stored) is
    re-sent one verdict at a time so that the good ones are kept and the bad ones are counted.
    """
    counts = {"stored": 0, "refused": 0}
    for start in range(0, len(events), batch_size):
        chunk = [event.model_dump(mode="json") for event in events[start : start + batch_size]]
        response = client.post("/v1/feedback:batch", json=chunk)
        if response.status_code < 300:
            counts["stored"] += len(chunk)
            continue
        for body in chunk:
            single = client.post("/v1/feedback", json=body)
            if single.status_code < 300:
                counts["stored"] += 1
            else:
                counts["refused"] += 1
                logger.warning("feedback refused (%d): %s", single.status_code, single.text)
    return counts


def deliver_feedback(
    client: HttpClient,
    events: Sequence[FeedbackEvent],
    *,
    timeout_s: float = 120.0,
    poll_s: float = 0.25,
    batch_size: int = 100,
) -> dict[str, int]:
    """Post verdicts as soon as their predictions are logged; counts of stored and refused events.

    The servers write their prediction log a moment after answering (after 1 s idle), so a batch
    the API answers ``404`` (every refused verdict names a prediction not logged yet) is sent again
    every ``poll_s`` — same idempotency keys, nothing stored twice — until it is stored or
    ``timeout_s`` has passed; any other refusal goes to :func:`send_feedback`. Every verdict is
    stored on a loaded machine too, where a fixed wait would lose the late ones.
    """
    counts = {"stored": 0, "refused": 0}
    deadline = time.monotonic() + timeout_s
    for start in range(0, len(events), batch_size):
        batch = events[start : start + batch_size]
        body = [event.model_dump(mode="json") for event in batch]
        while True:
            response = client.post("/v1/feedback:batch", json=body)
            if response.status_code < 300:
                counts["stored"] += len(batch)
                break
            if response.status_code != 404 or time.monotonic() >= deadline:
                for key, count in send_feedback(client, batch).items():
                    counts[key] += count
                break
            time.sleep(poll_s)
    return counts


class LiveTraffic:
    """Production while a pipeline runs: a thread sends documents and reviews every answer.

    Every ``interval_s`` it sends ``per_round`` random examples to the predictor (the local
    target's router), waits for the prediction log to flush, and posts the reviewer's verdicts;
    verdicts the API refuses because their prediction is not logged yet are sent again next round
    (same idempotency keys, so nothing is stored twice). With ``only_while``, it sends only while
    that answers true (the demo: while a canary is served, so that what a retrain trains on never
    depends on how fast the pipeline ran). Use as a context manager around the pipeline run; a
    canary analysis then judges both variants on real answers.
    """

    def __init__(
        self,
        predictor_url: str,
        model_name: str,
        examples: Sequence[DocumentExample],
        feedback_api: HttpClient,
        *,
        seed: int = 7,
        per_round: int = 4,
        interval_s: float = 1.5,
        wrong_rate: float = 0.0,
        only_while: Callable[[], bool] | None = None,
    ) -> None:
        """Configure the traffic (nothing is sent before ``__enter__``)."""
        import threading

        self.predictor_url = predictor_url
        self.model_name = model_name
        self.examples = list(examples)
        self.feedback_api = feedback_api
        self.rng = random.Random(seed)
        self.per_round = min(per_round, len(self.examples))
        self.interval_s = interval_s
        self.wrong_rate = wrong_rate
        self.only_while = only_while
        self.sent = 0
        self.stored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-traffic", daemon=True)

    def __enter__(self) -> LiveTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        import httpx

        pending: list[FeedbackEvent] = []
        with httpx.Client(base_url=self.predictor_url) as client:
            while not self._stop.is_set():
                if self.only_while is not None and not self.only_while():
                    self._stop.wait(0.5)
                    continue
                chunk = self.rng.sample(self.examples, self.per_round)
                try:
                    answers = request_predictions(client, self.model_name, chunk)
                except (httpx.HTTPError, RuntimeError) as exc:
                    logger.info("live traffic: %s; trying again", exc)
                    self._stop.wait(1.0)  # e.g. the router switching variants
                    continue
                self.sent += len(answers)
                pending += review(answers, chunk, rng=self.rng, wrong_rate=self.wrong_rate)
                self._stop.wait(self.interval_s)  # the prediction log flushes after 1 s idle
                counts = send_feedback(self.feedback_api, pending)
                self.stored += counts["stored"]
                if counts["refused"] == 0:
                    pending = []

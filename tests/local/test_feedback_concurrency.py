"""The feedback API under concurrent clients: every verdict stored exactly once.

A real API server (uvicorn, ``run_feedback_api``) runs as a subprocess on 127.0.0.1; 50 concurrent
clients send 200 verdicts each. Some verdicts are retried with the same idempotency key and body,
one after the other or two copies at the same moment, as a client does after a timeout. The
store must end up with exactly 10,000 rows (none lost, none doubled), every request must succeed
(no 5xx: SQLite's "database is locked" included), and exactly one answer per key must say
``201 Created``. Runs on both store backends (a SQLite file in WAL mode, and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from sqlalchemy import func, select, text

from docloop.serve.sink import PredictionRecord, SqlSink
from docloop.store import open_store
from docloop.store.tables import FeedbackEvent as FeedbackRow
from tests.serving import free_port

pytestmark = [pytest.mark.local, pytest.mark.slow]  # worker processes racing on one store

logger = logging.getLogger(__name__)

CLIENTS = 50
EVENTS_PER_CLIENT = 200
PREDICTIONS = 100
RETRY_SEQUENTIAL = 0.2  # share of verdicts sent again after their answer
RETRY_CONCURRENT = 0.1  # share of verdicts sent twice at the same moment
READY_TIMEOUT_S = 60.0
MODEL, VERSION = "docloop", "v1"
DOC_TYPES = ("invoice", "letter", "referral", "lab_report")


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def logged_prediction(number: int) -> PredictionRecord:
    doc_type = DOC_TYPES[number % len(DOC_TYPES)]
    return PredictionRecord(
        timestamp="2026-11-25T10:00:00+00:00", request_id=f"req-{number}", instance=0,
        doc_id=f"doc-{number}", source_uri=f"request://req-{number}/0", model_name=MODEL,
        model_version=VERSION, model_versions={"classify": VERSION}, protocol="v1",
        input="pages", doc_type=doc_type, doc_type_confidence=0.6,
        probabilities={t: 0.6 if t == doc_type else 0.4 / 3 for t in DOC_TYPES},
        entities=[], entity_types=["mrn"], pages=1, words=20, mean_confidence=90.0,
        ocr_pages=1, latency_ms=2.0,
    )  # fmt: skip


def seed_predictions(store_url: str) -> None:
    store = open_store(store_url)
    try:
        SqlSink(store).write([logged_prediction(i) for i in range(PREDICTIONS)])
    finally:
        store.close()


def start_api(store_url: str, workdir: Path) -> ApiServer:
    port = free_port()
    log = workdir / "feedback-api.log"
    code = (
        "from docloop.config import load_config\n"
        "from docloop.feedback.api import run_feedback_api\n"
        f"run_feedback_api(load_config(), '127.0.0.1', {port})\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DOCLOOP") or key == "DOCLOOP_REQUIRE_POSTGRES"
    }
    env.update(DOCLOOP_STORE_URL=store_url, DOCLOOP__DATA_ROOT=(workdir / "data").as_uri())
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=workdir, env=env, stdout=sink, stderr=sink
        )
    server = ApiServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the feedback API exited with {process.returncode}:\n{server.tail()}")
            try:
                if client.get(f"{server.url}/healthz").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    stop_api(server)
    pytest.fail(f"the feedback API was not ready after {READY_TIMEOUT_S:.0f}s:\n{server.tail()}")


def stop_api(server: ApiServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def api(store_url: str, tmp_path: Path) -> Iterator[tuple[ApiServer, str]]:
    seed_predictions(store_url)
    server = start_api(store_url, tmp_path)
    try:
        yield server, store_url
    finally:
        stop_api(server)


def verdict(rng: random.Random, client: int, number: int) -> dict[str, Any]:
    target = rng.randrange(PREDICTIONS)
    body: dict[str, Any] = {
        "idempotency_key": f"client-{client:02d}:event-{number:03d}",
        "model_name": MODEL,
        "model_version": VERSION,
        "request_id": f"req-{target}",
        "reviewer_id": f"reviewer-{client}",
        "kind": "confirmation",
    }
    if rng.random() < 0.5:
        predicted = DOC_TYPES[target % len(DOC_TYPES)]
        body["kind"] = "correction"
        body["correction"] = {"doc_type": rng.choice([t for t in DOC_TYPES if t != predicted])}
    return body


async def run_clients(url: str, seed: int = 7) -> tuple[dict[str, list[int]], int]:
    """50 clients x 200 verdicts (aiohttp: a fraction of httpx's CPU per request)."""
    statuses: dict[str, list[int]] = {}
    requests = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS * 2)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:

        async def send(body: dict[str, Any]) -> None:
            nonlocal requests
            requests += 1
            async with http.post("/v1/feedback", json=body) as response:
                text = await response.text()
            statuses.setdefault(body["idempotency_key"], []).append(response.status)
            if response.status >= 300:
                logger.error("HTTP %d: %s", response.status, text)

        async def client(number: int) -> None:
            rng = random.Random(seed * 1000 + number)
            for event_number in range(EVENTS_PER_CLIENT):
                body = verdict(rng, number, event_number)
                draw = rng.random()
                if draw < RETRY_CONCURRENT:
                    await asyncio.gather(send(body), send(dict(body)))
                else:
                    await send(body)
                    if draw < RETRY_CONCURRENT + RETRY_SEQUENTIAL:
                        await send(dict(body))

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return statuses, requests


def test_concurrent_retried_verdicts_are_stored_exactly_once(
    api: tuple[ApiServer, str],
) -> None:
    server, store_url = api
    started = time.perf_counter()
    statuses, requests = asyncio.run(run_clients(server.url))
    elapsed = time.perf_counter() - started
    backend = store_url.split(":", 1)[0]
    logger.warning(
        "%s: %d requests (%d verdicts) in %.1fs (%.0f req/s)",
        backend,
        requests,
        len(statuses),
        elapsed,
        requests / elapsed,
    )
    total = CLIENTS * EVENTS_PER_CLIENT
    answers = Counter(code for codes in statuses.values() for code in codes)
    assert set(answers) <= {200, 201}, f"{answers}\n{server.tail()}"
    assert len(statuses) == total and requests > total
    assert all(codes.count(201) == 1 for codes in statuses.values()), answers
    assert answers[201] == total and answers[200] == requests - total

    assert "database is locked" not in server.log.read_text(errors="replace")
    store = open_store(store_url)
    try:
        with store.read() as session:
            if store.dialect == "sqlite":
                assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            stored = session.scalar(select(func.count()).select_from(FeedbackRow))
            keys = session.scalar(select(func.count(func.distinct(FeedbackRow.idempotency_key))))
            kinds = dict(
                session.execute(
                    select(FeedbackRow.kind, func.count()).group_by(FeedbackRow.kind)
                ).all()
            )
    finally:
        store.close()
    assert stored == keys == total
    assert sum(kinds.values()) == total and kinds["correction"] > total // 3

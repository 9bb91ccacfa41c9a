"""The per-principal rate limit lives in the state store, so replicas share it (issue 19).

The feedback API runs as a Deployment of several replicas on one state store; a limit kept in
process memory let N replicas take N times the configured rate. Each test runs on SQLite and on
PostgreSQL (``store_url``); the race runs two replicas as two processes on the same database.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docloop.feedback.auth import RateLimiter, create_token
from docloop.serve.sink import PredictionRecord, SqlSink
from docloop.store import Store, open_store
from docloop.store.tables import FeedbackEvent as FeedbackRow
from docloop.store.tables import RateLimit
from tests.feedback_replicas import REPLICA_TIMEOUT_S, replica_worker

pytestmark = pytest.mark.unit

PER_MINUTE = 20
ATTEMPTS = 30


def prediction(request_id: str) -> PredictionRecord:
    return PredictionRecord(
        timestamp="2026-11-25T10:00:00+00:00", request_id=request_id, instance=0,
        doc_id=f"doc-{request_id}", source_uri="request://x/0", model_name="docloop",
        model_version="v1", model_versions={"classify": "v1"}, protocol="v1", input="pages",
        doc_type="invoice", doc_type_confidence=0.9,
        probabilities={"invoice": 0.9, "letter": 0.1}, entities=[], entity_types=[],
        entity_count=0, pages=1, words=4, mean_confidence=90.0, ocr_pages=1, latency_ms=3.0,
    )  # fmt: skip


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url, lock_timeout_s=10)
    yield opened
    opened.close()


def _rows(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(FeedbackRow)) or 0)


def test_two_replicas_share_one_principal_rate(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    """Two API processes on one store grant the principal its rate once, not twice."""
    SqlSink(store).write([prediction("req-a")])
    _, token = create_token(store, "bot", "reviewer")
    data_root = (tmp_path / "data").as_uri()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    results = context.Queue()
    workers = [
        context.Process(
            target=replica_worker,
            args=(i, store_url, data_root, token, PER_MINUTE, ATTEMPTS, barrier, results),
        )
        for i in range(2)
    ]
    for process in workers:
        process.start()
    try:
        barrier.wait(timeout=REPLICA_TIMEOUT_S)
        started = time.monotonic()
        reports = [results.get(timeout=REPLICA_TIMEOUT_S) for _ in workers]
        elapsed = time.monotonic() - started
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    errors = [error for _, _, error in reports if error]
    assert not errors, "\n".join(errors)
    answers = [answer for _, worker_answers, _ in reports for answer in worker_answers]
    assert len(answers) == 2 * ATTEMPTS
    granted = sum(1 for status, _ in answers if status == 201)
    refilled = math.floor(elapsed * PER_MINUTE / 60)  # the bucket refills while the race runs
    assert PER_MINUTE <= granted <= PER_MINUTE + refilled, (
        f"{granted} verdicts granted by two replicas in {elapsed:.1f} s; the rate is "
        f"{PER_MINUTE}/min per principal"
    )
    refused = [retry for status, retry in answers if status != 201]
    assert all(status in (201, 429) for status, _ in answers), answers
    assert all(retry is not None and int(retry) >= 1 for retry in refused), refused
    assert _rows(store) == granted


def test_limiters_on_two_engines_share_the_bucket(store: Store, store_url: str) -> None:
    other = open_store(store_url, migrate=False, lock_timeout_s=10)
    try:
        one, two = RateLimiter(store, 60), RateLimiter(other, 60)
        assert one.take("alice", 30) == 0
        assert two.take("alice", 30) == 0
        assert one.take("alice", 3) >= 1 and two.take("alice", 3) >= 1
        assert two.take("bob", 60) == 0  # per principal
    finally:
        other.close()


def test_a_refused_take_takes_nothing_and_says_how_long_to_wait(store: Store) -> None:
    """Waits are whole seconds rounded up, less what elapsed between the calls (well under 1 s)."""
    limiter = RateLimiter(store, 60)  # one verdict a second
    assert limiter.take("alice", 58) == 0
    assert 2 <= limiter.take("alice", 5) <= 3  # 2 left: 3 more seconds
    assert limiter.take("alice", 2) == 0  # the refused 5 took nothing
    assert 59 <= limiter.take("alice", 60) <= 60
    with pytest.raises(ValueError, match="between 1 and the rate 60"):
        limiter.take("alice", 61)  # could never be taken: the API answers 413 before


def test_the_bucket_refills_at_the_rate(store: Store) -> None:
    limiter = RateLimiter(store, 600)  # ten a second
    assert limiter.take("alice", 600) == 0
    assert limiter.take("alice", 5) >= 1  # half a second of refill
    time.sleep(0.35)
    assert limiter.take("alice", 2) == 0


def test_full_buckets_are_cleaned_up(store: Store) -> None:
    limiter = RateLimiter(store, 600)
    assert limiter.take("alice", 1) == 0  # full again within 0.1 s
    assert limiter.take("bob", 1) == 0
    time.sleep(0.2)
    fresh = RateLimiter(store, 600)  # cleans on its first take
    assert fresh.take("carol", 600) == 0
    with store.read() as session:
        assert session.scalars(select(RateLimit.principal)).all() == ["carol"]

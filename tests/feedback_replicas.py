"""The worker of the replica rate-limit race (``tests/unit/test_feedback_rate.py``).

Each worker process is one replica of the feedback API: its own app, its own connections, the
same state store. A module of its own, importing little, so that spawned workers start quickly.
"""

from __future__ import annotations

import traceback
from typing import Any

REPLICA_TIMEOUT_S = 180


def replica_worker(
    worker: int,
    store_url: str,
    data_root: str,
    token: str,
    per_minute: int,
    attempts: int,
    barrier: Any,
    results: Any,
) -> None:
    """Post ``attempts`` single verdicts as the token's principal, all replicas at once.

    Puts ``(worker, [(status, retry_after or None), ...], traceback or None)`` on ``results``.
    """
    from fastapi.testclient import TestClient

    from docloop.config import DocloopConfig, FeedbackAuthConfig, FeedbackConfig
    from docloop.feedback.api import create_app
    from docloop.store import open_store

    answers: list[tuple[int, str | None]] = []
    try:
        store = open_store(store_url, migrate=False, lock_timeout_s=30)
        config = DocloopConfig(
            data_root=data_root,
            feedback=FeedbackConfig(
                auth=FeedbackAuthConfig(
                    modes=["token"], events_per_minute=per_minute, principal_max_batch=per_minute
                )
            ),
        )
        headers = {"authorization": f"Bearer {token}"}
        with TestClient(create_app(config, store)) as client:
            assert client.get("/healthz").status_code == 200  # warm up before the race
            barrier.wait(timeout=REPLICA_TIMEOUT_S)
            for attempt in range(attempts):
                body = {
                    "idempotency_key": f"replica-{worker}-{attempt}",
                    "model_name": "docloop",
                    "model_version": "v1",
                    "request_id": "req-a",
                    "instance": 0,
                    "reviewer_id": "bot",
                    "kind": "confirmation",
                }
                response = client.post("/v1/feedback", json=body, headers=headers)
                answers.append((response.status_code, response.headers.get("retry-after")))
        store.close()
        results.put((worker, answers, None))
    except BaseException:  # report everything to the parent, which fails the test
        barrier.abort()
        results.put((worker, answers, traceback.format_exc()))
        raise

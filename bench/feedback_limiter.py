"""Benchmark what the store-backed rate limit costs: POST /v1/feedback with and without it.

Run with ``python -m bench.feedback_limiter [--requests N] [--rounds R] [--store-url URL]``. One
feedback API in-process (``fastapi.testclient``, no network) on a fresh SQLite state store (or
``--store-url``), API-token authentication, one principal whose rate is too high to be reached.
Each round posts ``N`` confirmations (each a new idempotency key, so each is stored) twice: with
the limiter (one write transaction on ``rate_limits`` per request) and with the limiter's
``take`` replaced by "always allowed"; the two are interleaved, round by round, so that both see
the same machine load. Before that, the limiter's ``take`` alone is timed (``N`` calls a round).
Prints requests/s per round and the medians, and writes
``bench/out/feedback_limiter.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from docloop.config import DocloopConfig, FeedbackAuthConfig, FeedbackConfig
from docloop.feedback.api import create_app
from docloop.feedback.auth import create_token
from docloop.serve.sink import PredictionRecord, SqlSink
from docloop.store import open_store

OUT = Path(__file__).resolve().parent / "out"


def _prediction() -> PredictionRecord:
    return PredictionRecord(
        timestamp="2026-11-25T10:00:00+00:00", request_id="req-a", instance=0, doc_id="doc-a",
        source_uri="request://x/0", model_name="docloop", model_version="v1",
        model_versions={"classify": "v1"}, protocol="v1", input="pages", doc_type="invoice",
        doc_type_confidence=0.9, probabilities={"invoice": 0.9, "letter": 0.1}, entities=[],
        entity_types=[], entity_count=0, pages=1, words=4, mean_confidence=90.0, ocr_pages=1,
        latency_ms=3.0,
    )  # fmt: skip


def _post_all(client: TestClient, headers: dict[str, str], prefix: str, requests: int) -> float:
    """Requests/s of ``requests`` single verdicts."""
    started = time.perf_counter()
    for i in range(requests):
        body = {
            "idempotency_key": f"{prefix}-{i}",
            "model_name": "docloop",
            "model_version": "v1",
            "request_id": "req-a",
            "instance": 0,
            "reviewer_id": "bench-bot",
            "kind": "confirmation",
        }
        response = client.post("/v1/feedback", json=body, headers=headers)
        if response.status_code != 201:
            raise RuntimeError(
                f"POST /v1/feedback answered {response.status_code}: {response.text}"
            )
    return requests / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; return (and write) its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        url = args.store_url or f"sqlite:///{Path(folder) / 'state.db'}"
        store = open_store(url)
        SqlSink(store).write([_prediction()])
        _, token = create_token(store, "bench-bot", "reviewer")
        config = DocloopConfig(
            data_root=Path(folder, "data").as_uri(),
            feedback=FeedbackConfig(
                auth=FeedbackAuthConfig(modes=["token"], events_per_minute=10**9)
            ),
        )
        app = create_app(config, store)
        service = app.state.docloop
        limited = service.rate.take
        headers = {"authorization": f"Bearer {token}"}
        figures: dict[str, list[float]] = {"with_limiter": [], "without_limiter": []}
        takes = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.requests):
                limited("bench-bot", 1)
            takes.append((time.perf_counter() - started) * 1000 / args.requests)
        print(f"take() alone: median {statistics.median(takes):.2f} ms ({args.rounds} rounds)")
        with TestClient(app) as client:
            _post_all(client, headers, "warm-up", 50)
            for round_ in range(args.rounds):
                for name in ("with_limiter", "without_limiter"):
                    service.rate.take = limited if name == "with_limiter" else _always
                    figures[name].append(
                        _post_all(client, headers, f"{name}-{round_}", args.requests)
                    )
                    print(f"round {round_}: {name:16s} {figures[name][-1]:7.1f} requests/s")
        store.close()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    result = {
        "store": "sqlite (fresh file)" if args.store_url is None else store.url,
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "requests_per_s": figures,
        "median_requests_per_s": medians,
        "cost_per_request_ms": 1000 / medians["with_limiter"] - 1000 / medians["without_limiter"],
        "take_alone_ms": takes,
        "median_take_alone_ms": statistics.median(takes),
        "cpus": os.cpu_count(),
    }
    print(
        f"median: with {medians['with_limiter']:.1f} requests/s, without "
        f"{medians['without_limiter']:.1f} requests/s; the limiter costs "
        f"{result['cost_per_request_ms']:.2f} ms a request"
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "feedback_limiter.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _always(principal: str, count: int) -> int:
    return 0


if __name__ == "__main__":
    main()

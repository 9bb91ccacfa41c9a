"""The feedback loop end to end through kfp.local: drift check -> retrain -> promote or reject.

Each scenario forks the bootstrapped world (tests/loop.py), serves its champions with a real
``docloop serve`` subprocess on 127.0.0.1 logging predictions into the state store, sends drifted
traffic (the synthetic ``new_template`` scenario), lets a simulated reviewer answer through the
feedback API (FastAPI in-process on the same store), and runs the drift-check pipeline, whose
nested retrain pipeline trains, gates, and promotes or rejects. Alerts go to a real HTTP webhook
on 127.0.0.1. Nothing is mocked; what cannot run here (Kubernetes) is not involved.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.loop import World, fork, in_world
from tests.serving import TinyModels, start_predictor, stop_predictor

pytestmark = pytest.mark.local

DRIFT_DOCS = 20


@dataclass
class Scenario:
    """A forked world after drifted traffic and reviews."""

    world: World
    verdicts: int
    corrections: int
    webhook: list[dict[str, object]]


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, object]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []
    handler = type("Hook", (_Webhook,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", received
    finally:
        server.shutdown()


def _champion_folders(world: World) -> TinyModels:
    from docloop.config import load_config
    from docloop.evaluate import resolve_model_uri

    config = load_config(environ=world.env)
    folders = [
        Path(resolve_model_uri(f"models:/{name}@champion", config.tracking).removeprefix("file://"))
        for name in (config.registry.classifier_name, config.registry.extractor_name)
    ]
    return TinyModels(folders[0], folders[1], "", "", [], [])


def _drifted_examples(root: Path) -> list[object]:
    from docloop.config import PreprocessConfig
    from docloop.datasets.build import labelled_entities, read_labels
    from docloop.datasets.examples import build_examples
    from docloop.documents.preprocess import preprocess, read_page_records
    from docloop.documents.synth import generate_corpus
    from docloop.storage import Storage

    generate_corpus(root / "drift", DRIFT_DOCS, 11, "new_template", scanned_fraction=0.0)
    preprocess(str(root / "drift"), str(root / "drift-pages"), PreprocessConfig(), Storage())
    labels = read_labels(Storage(), str(root / "drift" / "labels.jsonl"))
    return build_examples(
        read_page_records(Storage(), str(root / "drift-pages")),
        {label.doc_id: label.doc_type for label in labels},
        labelled_entities(labels),
    )


def run_scenario(
    bootstrapped: World, target: Path, extra_env: dict[str, str], wrong_rate: float = 0.0
) -> Scenario:
    """Fork, serve, send drifted traffic, review it, then run the drift-check pipeline."""
    import httpx
    from fastapi.testclient import TestClient

    from docloop.config import load_config
    from docloop.feedback.api import create_app
    from docloop.simulate import request_predictions, review, send_feedback
    from docloop.store import open_store
    from pipelines.drift_check import drift_check

    world = fork(bootstrapped, target)
    env = {**world.env, **extra_env}
    examples = _drifted_examples(target)
    with in_world(env, target / "pipeline-root"):
        predictor = start_predictor(
            _champion_folders(world), target / "serve", "--prediction-log", world.store_url
        )
        try:
            with httpx.Client(base_url=predictor.url) as client:
                answers = request_predictions(client, predictor.name, examples)  # type: ignore[arg-type]
        finally:
            stop_predictor(predictor)  # flushes the prediction log
        verdicts = review(answers, examples, rng=random.Random(3), wrong_rate=wrong_rate)  # type: ignore[arg-type]
        store = open_store(world.store_url)
        try:
            with TestClient(create_app(load_config(), store)) as api:
                counts = send_feedback(api, verdicts)
        finally:
            store.close()
        assert counts == {"stored": len(verdicts), "refused": 0}
        drift_check(max_steps=int(env.get("TEST_MAX_STEPS", "2")))
    return Scenario(
        world=World(target, env),
        verdicts=len(verdicts),
        corrections=sum(v.kind == "correction" for v in verdicts),
        webhook=[],
    )


def _attempts(world: World) -> list[object]:
    from sqlalchemy import select

    from docloop.store import open_store
    from docloop.store.tables import RetrainAttempt

    store = open_store(world.store_url)
    try:
        with store.read() as session:
            rows = session.scalars(select(RetrainAttempt).order_by(RetrainAttempt.id)).all()
            return [
                {"outcome": r.outcome, "reasons": r.reasons, "deltas": r.metric_deltas}
                for r in rows
            ]
    finally:
        store.close()


def test_drift_triggers_a_retrain_whose_candidates_are_promoted(
    bootstrapped: World, tmp_path: Path
) -> None:
    from docloop.store import open_store
    from docloop.store.registry import Registry

    scenario = run_scenario(
        bootstrapped,
        tmp_path,
        {"DOCLOOP__TRIGGER__MIN_NEW_SAMPLES": "5", "TEST_MAX_STEPS": "30"},
    )
    attempts = _attempts(scenario.world)
    assert attempts and attempts[-1]["outcome"] == "promoted", attempts  # type: ignore[index]
    registry = Registry(open_store(scenario.world.store_url), scenario.world.tracking_uri)
    try:
        for name in ("docloop-classifier", "docloop-extractor"):
            default = registry.default_version(name)
            assert default is not None and default.version == "2", registry.versions(name)
            assert [entry.action for entry in registry.audit_log(name)][-1] == "promote"
    finally:
        registry.close()


def test_the_policy_declines_without_enough_reviewed_samples(
    bootstrapped: World, tmp_path: Path
) -> None:
    from docloop.store import open_store
    from docloop.store.registry import Registry

    scenario = run_scenario(
        bootstrapped, tmp_path, {"DOCLOOP__TRIGGER__MIN_NEW_SAMPLES": str(DRIFT_DOCS + 1)}
    )
    assert all(a["outcome"] in ("declined",) for a in _attempts(scenario.world))  # type: ignore[index]
    registry = Registry(open_store(scenario.world.store_url), scenario.world.tracking_uri)
    try:
        assert len(registry.versions("docloop-classifier")) == 1  # nothing was retrained
    finally:
        registry.close()


def test_a_rejected_candidate_keeps_the_champion_and_alerts(
    bootstrapped: World, tmp_path: Path, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    from docloop.store import open_store
    from docloop.store.registry import Registry

    url, received = webhook
    scenario = run_scenario(
        bootstrapped,
        tmp_path,
        {
            "DOCLOOP__TRIGGER__MIN_NEW_SAMPLES": "5",
            "DOCLOOP__GATE__MIN_IMPROVEMENT": "0.99",  # no candidate can gain 99 points
            "DOCLOOP__ALERTS__WEBHOOK_URL": url,
            "TEST_MAX_STEPS": "1",
        },
    )
    attempts = _attempts(scenario.world)
    assert attempts[-1]["outcome"] == "rejected", attempts  # type: ignore[index]
    assert any("0.99" in reason or "+0.990" in reason for reason in attempts[-1]["reasons"])  # type: ignore[index]
    assert {alert["kind"] for alert in received} == {"candidate_rejected"}
    registry = Registry(open_store(scenario.world.store_url), scenario.world.tracking_uri)
    try:
        for name in ("docloop-classifier", "docloop-extractor"):
            default = registry.default_version(name)
            assert default is not None and default.version == "1"
    finally:
        registry.close()

"""The feedback loop end to end through kfp.local: drift check -> retrain -> canary -> promote.

Each scenario forks the bootstrapped world (tests/loop.py) and serves its champions on the local
deploy target — real ``docloop serve`` (KServe ModelServer) processes on 127.0.0.1 behind the
traffic-splitting router, logging predictions into the state store — then sends drifted traffic
(the synthetic ``new_template`` scenario), lets a simulated reviewer answer through the feedback
API (FastAPI in-process on the same store), and runs the drift-check pipeline, whose nested
retrain pipeline trains, gates, registers, canaries and promotes (or rejects). While the pipeline
runs, live traffic and reviews keep flowing through the router, so the canary analysis judges the
canary on real answers. Alerts go to a real HTTP webhook on 127.0.0.1. Nothing is mocked; what
cannot run here (Kubernetes) is not involved.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.loop import World, fork, in_world

pytestmark = [pytest.mark.local, pytest.mark.slow]  # whole pipelines on a bootstrapped world

DRIFT_DOCS = 20
# A quick canary: half the live traffic, a few answers and reviews per variant are enough, and
# tiny models' noisy live accuracy may not veto a promotion (the rules are tested on their own).
CANARY_ENV = {
    "DOCLOOP__DEPLOY__CANARY__TRAFFIC_PERCENT": "50",
    "DOCLOOP__DEPLOY__CANARY__MIN_REQUESTS": "6",
    "DOCLOOP__DEPLOY__CANARY__MIN_FEEDBACK": "3",
    "DOCLOOP__DEPLOY__CANARY__POLL_S": "2",
    "DOCLOOP__DEPLOY__CANARY__MAX_DURATION_S": "180",
    "DOCLOOP__DEPLOY__CANARY__MAX_ACCURACY_DROP": "0.5",
    "DOCLOOP__DEPLOY__CANARY__MAX_P95_LATENCY_RATIO": "5",
}


@dataclass
class Scenario:
    """A forked world after drifted traffic and reviews."""

    world: World
    verdicts: int
    corrections: int
    webhook: list[dict[str, object]]
    served: str | None


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


def _drifted_examples(root: Path) -> list[object]:
    from docloop.config import PreprocessConfig
    from docloop.documents.examples import build_examples
    from docloop.documents.labels import labelled_entities, read_labels
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
    bootstrapped: World,
    target: Path,
    extra_env: dict[str, str],
    wrong_rate: float = 0.0,
    *,
    live: bool = False,
) -> Scenario:
    """Fork, serve locally, send drifted traffic, review it, then run the drift-check pipeline.

    With ``live``, traffic and reviews keep flowing while the pipeline runs (a canary needs
    them); without, the drift check sees exactly the reviews sent before it.
    """
    import httpx
    from fastapi.testclient import TestClient

    from docloop.config import load_config
    from docloop.demo.simulate import LiveTraffic, request_predictions, send_feedback
    from docloop.deploy.local_target import LocalTarget
    from docloop.deploy.run import run_deploy
    from docloop.feedback.api import create_app
    from docloop.feedback.simulated_reviewer import review
    from docloop.store import open_store
    from docloop.store.registry import Registry
    from pipelines.drift_check import drift_check

    world = fork(bootstrapped, target)
    env = {**world.env, **CANARY_ENV, **extra_env}
    examples = _drifted_examples(target)
    with in_world(env, target / "pipeline-root"):
        config = load_config()
        local = LocalTarget(config, prediction_log=world.store_url)
        try:
            registry = Registry.from_config(config)
            try:
                _, first = run_deploy(config, registry, target=local, ensure_serving=True)
            finally:
                registry.close()
            assert first.status == "promoted"
            with httpx.Client(base_url=local.url) as client:
                answers = request_predictions(client, "docloop", examples)  # type: ignore[arg-type]
            verdicts = review(answers, examples, rng=random.Random(3), wrong_rate=wrong_rate)  # type: ignore[arg-type]
            time.sleep(1.5)  # the servers' prediction log flushes after 1 s idle
            store = open_store(world.store_url)
            try:
                with TestClient(create_app(load_config(), store)) as api:
                    counts = send_feedback(api, verdicts)
                    assert counts == {"stored": len(verdicts), "refused": 0}
                    steps = int(env.get("TEST_MAX_STEPS", "2"))
                    if live:
                        with LiveTraffic(local.url, "docloop", examples, api):  # type: ignore[arg-type]
                            drift_check(max_steps=steps)
                    else:
                        drift_check(max_steps=steps)
            finally:
                store.close()
            served = local.state()
        finally:
            local.stop_all()
    return Scenario(
        world=World(target, env),
        verdicts=len(verdicts),
        corrections=sum(v.kind == "correction" for v in verdicts),
        webhook=[],
        served=served.stable_label if served else None,
    )


def _deployments(world: World) -> list[dict[str, object]]:
    from sqlalchemy import select

    from docloop.store import open_store
    from docloop.store.tables import Deployment

    store = open_store(world.store_url)
    try:
        with store.read() as session:
            rows = session.scalars(select(Deployment).order_by(Deployment.id)).all()
            return [
                {
                    "label": ".".join(f"{t}-{v}" for t, v in sorted(r.versions.items())),
                    "status": r.status,
                    "analysis": r.analysis,
                }
                for r in rows
            ]
    finally:
        store.close()


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
        live=True,
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
    # served first as v1, then v2 as a canary that the live analysis promoted
    first, canary = _deployments(scenario.world)
    assert (first["label"], first["status"]) == ("classify-1.extract-1", "promoted")
    assert (canary["label"], canary["status"]) == ("classify-2.extract-2", "promoted"), canary
    verdict = canary["analysis"]["verdict"]
    assert verdict["decision"] == "promote" and verdict["canary"]["requests"] >= 6
    assert verdict["canary"]["reviewed"] >= 3 and verdict["champion"]["reviewed"] >= 3
    assert scenario.served == "classify-2.extract-2"


def test_the_policy_declines_without_enough_reviewed_samples(
    bootstrapped: World, tmp_path: Path
) -> None:
    from docloop.monitor.sources import recent_checks
    from docloop.store import open_store
    from docloop.store.registry import Registry

    scenario = run_scenario(
        bootstrapped, tmp_path, {"DOCLOOP__TRIGGER__MIN_NEW_SAMPLES": str(DRIFT_DOCS + 1)}
    )
    assert _attempts(scenario.world) == []  # a decline is no attempt ...
    store = open_store(scenario.world.store_url)
    try:
        (check,) = recent_checks(store)  # ... but it is recorded, with its reasons
    finally:
        store.close()
    assert not check.trigger and "min_new_samples" in check.blockers
    registry = Registry(open_store(scenario.world.store_url), scenario.world.tracking_uri)
    try:
        assert len(registry.versions("docloop-classifier")) == 1  # nothing was retrained
    finally:
        registry.close()
    assert [d["label"] for d in _deployments(scenario.world)] == ["classify-1.extract-1"]


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
    assert scenario.served == "classify-1.extract-1"
    assert [d["label"] for d in _deployments(scenario.world)] == ["classify-1.extract-1"]

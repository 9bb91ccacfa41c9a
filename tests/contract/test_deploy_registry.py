"""deploy-kserve and rollback with the real registry, the real state store and live numbers.

There is no Kubernetes cluster on these machines: the InferenceService lives in
``tests/fakes/kube_apiserver.py`` (real REST paths, KServe's traffic semantics) and is driven by the
real ``kubernetes`` client. Everything else is real: MLflow (SQLite) and the state store hold the
versions, aliases, audit log and retrain attempts; the canary analysis reads its numbers from
prediction-log and feedback rows that "arrive" between its looks (written by the test's sleep,
as traffic would be while the analysis waits). Model folders and release bundles live in a real
S3 API (moto's server, ``tests/object_stores.py``), where KServe's storage initializer would
download them from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import select

from docloop.config import (
    CanaryConfig,
    DeployConfig,
    DocloopConfig,
    StorageConfig,
    StoreConfig,
    TrackingConfig,
)
from docloop.deploy.inference_service import VERSION_LABEL
from docloop.deploy.kserve_target import KServeTarget
from docloop.deploy.release_bundle import plan_bundle, write_bundle
from docloop.deploy.run import plan_release, run_deploy, run_rollback, write_outputs
from docloop.errors import DeployFailed
from docloop.feedback.contracts import Correction
from docloop.feedback.contracts import FeedbackEvent as FeedbackBody
from docloop.storage import Storage
from docloop.store.db import open_store
from docloop.store.registry import TAG_PREFIX, Registry
from docloop.store.status import status_tables
from docloop.store.tables import FeedbackEvent, Prediction, RetrainAttempt, utcnow
from tests.fakes.kube_apiserver import FakeKubeApiServer, needs_upstream
from tests.object_stores import unique_bucket_name

pytestmark = [pytest.mark.contract, needs_upstream]

CLASSIFIER, EXTRACTOR = "docloop-classifier", "docloop-extractor"


@dataclass
class World:
    config: DocloopConfig
    registry: Registry
    runs: dict[str, str]
    server: FakeKubeApiServer
    models: str  # s3://bucket/models: where registered model folders live

    def target(self) -> KServeTarget:
        return KServeTarget(
            self.config.deploy, self.server.custom_objects_api(), sleep=lambda s: None
        )


@pytest.fixture
def world(tmp_path: Path, moto_server: str) -> Iterator[World]:
    import boto3

    bucket = unique_bucket_name()
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    storage_config = StorageConfig(s3_endpoint_url=moto_server, s3_region="us-east-1")
    models = f"s3://{bucket}/models"
    storage = Storage(storage_config)
    for key in ("classify-1", "extract-1", "classify-2"):
        storage.write_text(f"{models}/{key}/docloop-model.json", f'{{"model": "{key}"}}')
        storage.write_bytes(f"{models}/{key}/weights/model.safetensors", key.encode())
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = DocloopConfig(
        data_root=f"s3://{bucket}/data",
        storage=storage_config,
        tracking=TrackingConfig(mlflow_tracking_uri=tracking),
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'state.db'}"),
        deploy=DeployConfig(
            target="kserve",
            ready_timeout_s=5,
            canary=CanaryConfig(min_requests=10, min_feedback=5, max_duration_s=60, poll_s=1),
        ),
    )
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    experiment = client.create_experiment("docloop", artifact_location=(tmp_path / "a").as_uri())
    runs = {}
    for key in ("classify-1", "extract-1", "classify-2"):
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        runs[key] = run.info.run_id
    registry = Registry(open_store(config.store.url or ""), tracking)
    for name, key in ((CLASSIFIER, "classify-1"), (EXTRACTOR, "extract-1")):
        registered = registry.register(
            name, f"{models}/{key}", runs[key], "sha256:d", {"blessed": True}, "abc"
        )
        registry.promote(name, registered.version, reason="bootstrap")
    with FakeKubeApiServer() as server:
        yield World(config, registry, runs, server, models)
    registry.close()


def challenger(world: World, run: str = "retrain-2") -> str:
    registered = world.registry.register(
        CLASSIFIER, f"{world.models}/classify-2", world.runs["classify-2"], "sha256:e",
        {"blessed": True}, "abc", tags={f"{TAG_PREFIX}pipeline_run": run},
    )  # fmt: skip
    return registered.version


class Traffic:
    """A sleep that writes 20 predictions and 10 verdicts per variant, as live traffic would."""

    def __init__(self, world: World, canary_right: int) -> None:
        self.world = world
        self.canary_right = canary_right
        self.now = 0.0
        self.batches = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        store = self.world.registry.store
        extractor = self.world.runs["extract-1"]  # both releases serve extractor version 1
        served = {
            "champion": f"classify={self.world.runs['classify-1']},extract={extractor}",
            "canary": f"classify={self.world.runs['classify-2']},extract={extractor}",
        }
        with store.write() as session:
            for variant, version in served.items():
                for i in range(20):
                    request = f"{variant}-{self.batches}-{i}"
                    session.add(Prediction(
                        request_id=request, instance=0, model_name="docloop",
                        model_version=version, doc_id=f"doc-{request}",
                        outputs={"doc_type": "invoice", "probabilities": {"invoice": 0.9,
                                 "lab_report": 0.1}},
                        confidence=0.9, ocr={"latency_ms": 120.0 + i}, created_at=utcnow(),
                    ))  # fmt: skip
                    if i >= 10:
                        continue
                    right = i < (self.canary_right if variant == "canary" else 9)
                    body = FeedbackBody(
                        idempotency_key=f"verdict-{request}", model_name="docloop",
                        model_version=version, request_id=request, reviewer_id="alice",
                        kind="confirmation" if right else "correction",
                        correction=None if right else Correction(doc_type="lab_report"),
                    )  # fmt: skip
                    session.add(FeedbackEvent(
                        idempotency_key=body.idempotency_key, model_name="docloop",
                        model_version=version, request_id=request, doc_id=f"doc-{request}",
                        reviewer_id="alice", kind=body.kind, payload=body.model_dump(mode="json"),
                        received_at=utcnow() + timedelta(milliseconds=1), status="accepted",
                    ))  # fmt: skip
        self.batches += 1


def deploy(world: World, traffic: Traffic | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    traffic = traffic or Traffic(world, 9)
    return run_deploy(
        world.config, world.registry, target=world.target(), clock=traffic.clock,
        sleep=traffic.sleep, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def attempts(world: World) -> list[RetrainAttempt]:
    with world.registry.store.read() as session:
        return list(session.scalars(select(RetrainAttempt)))


def test_nothing_new_changes_nothing_unless_asked_to_serve(world: World) -> None:
    plan, result = deploy(world)
    assert (result.status, plan.changed) == ("unchanged", {}) and world.server.objects() == []
    plan, result = deploy(world, ensure_serving=True)
    assert result.status == "promoted" and plan.release.label == "classify-1.extract-1"
    assert world.server.traffic_by_storage_uri("docloop", "docloop") == {
        plan.release.bundle_uri: 100
    }
    # the bundle holds both models and names them; planning it again writes nothing new
    storage = Storage(world.config.storage)
    bundle = plan.release.bundle_uri
    assert bundle.startswith(f"{world.config.data_root}/releases/")
    assert sorted(o.uri[len(bundle) + 1 :] for o in storage.list(bundle)) == [
        "classifier/docloop-model.json", "classifier/weights/model.safetensors",
        "extractor/docloop-model.json", "extractor/weights/model.safetensors", "release.json",
    ]  # fmt: skip
    assert storage.read_bytes(f"{bundle}/classifier/weights/model.safetensors") == b"classify-1"
    manifest = json.loads(storage.read_text(f"{bundle}/release.json"))
    assert manifest["models"]["extract"] == {
        "version": "1", "uri": f"{world.models}/extract-1", "folder": "extractor",
    }  # fmt: skip
    assert plan_release(world.registry, world.config).release.bundle_uri == bundle
    assert write_bundle(storage, plan_bundle(world.config.data_root, plan.release.storage_uris,
                                             plan.release.versions)) is False  # fmt: skip
    # the first deployment has nothing before it to go back to
    with pytest.raises(DeployFailed, match="was the first"):
        run_rollback(world.config, world.registry, reason="oops", target=world.target())


def test_this_runs_challenger_is_canaried_and_promoted_in_the_registry(
    world: World, tmp_path: Path
) -> None:
    first, _ = deploy(world, ensure_serving=True)
    version = challenger(world)
    other_run = plan_release(world.registry, world.config, pipeline_run="another-run")
    assert other_run.changed == {}  # someone else's challenger is not this run's to deploy

    plan, result = deploy(world, pipeline_run="retrain-2")
    assert plan.changed == {"classify": version} and result.status == "promoted"
    assert result.verdict is not None and [c.passed for c in result.verdict.checks] == [
        None, True, True,  # error rate: not counted on this target
    ]  # fmt: skip
    assert world.registry.default_version(CLASSIFIER).version == version  # type: ignore[union-attr]
    assert world.registry.default_version(EXTRACTOR).version == "1"  # type: ignore[union-attr]
    (attempt,) = attempts(world)
    assert attempt.outcome == "promoted" and attempt.run_id == "retrain-2"
    spec = world.server.get("docloop", "docloop")["spec"]  # type: ignore[index]
    assert spec["predictor"]["labels"][VERSION_LABEL] == "classify-2.extract-1"

    status = write_outputs(Storage(), str(tmp_path / "out"), plan, result)
    assert status["promoted_versions"] == {"classify": version}
    assert (tmp_path / "out" / "analysis.md").read_text().startswith("# Canary analysis: **PROMOTE")
    tables = status_tables(world.registry.store, world.config)
    assert [t.title for t in tables][:3] == [
        "Model versions", "Promotion audit (newest first)", "Deployments (newest first)",
    ]  # fmt: skip
    assert tables[2].row_count == 2

    # a person rolls the promotion back: serving and registry return to version 1
    undone = run_rollback(world.config, world.registry, reason="pager", target=world.target())
    assert undone is not None and undone.versions["classify"] == version
    assert world.registry.default_version(CLASSIFIER).version == "1"  # type: ignore[union-attr]
    assert world.server.traffic_by_storage_uri("docloop", "docloop") == {
        first.release.bundle_uri: 100
    }
    assert [e.action for e in world.registry.audit_log(CLASSIFIER)][-1] == "rollback"
    # a retried rollback changes nothing (it never walks further back than one deployment)
    audit = len(world.registry.audit_log(CLASSIFIER))
    assert run_rollback(world.config, world.registry, reason="retry", target=world.target()) is None
    assert len(world.registry.audit_log(CLASSIFIER)) == audit


def test_a_canary_with_worse_live_accuracy_is_rolled_back_and_rejected(world: World) -> None:
    first, _ = deploy(world, ensure_serving=True)
    version = challenger(world)
    _plan, result = deploy(world, Traffic(world, canary_right=4), pipeline_run="retrain-2")
    assert result.status == "rolled_back"
    assert "live accuracy 0.400" in result.verdict.reasons[0]  # type: ignore[union-attr]
    record = world.registry.get_version(CLASSIFIER, version)
    assert record.status == "rejected" and "canary rolled back" in (record.status_reason or "")
    assert world.registry.default_version(CLASSIFIER).version == "1"  # type: ignore[union-attr]
    (attempt,) = attempts(world)
    assert attempt.outcome == "rolled_back"
    assert world.server.traffic_by_storage_uri("docloop", "docloop") == {
        first.release.bundle_uri: 100
    }
    # a retry of the same deploy is a no-op, and rollback has nothing left to undo
    assert deploy(world, pipeline_run="retrain-2")[1].status == "unchanged"
    # the newest deployment was rolled back by its canary analysis: nothing left to undo
    assert run_rollback(world.config, world.registry, reason="again", target=world.target()) is None


def test_a_release_without_a_classifier_serves_the_extractor_alone(tmp_path: Path) -> None:
    """One document type trains no classifier: the release is the extractor; nothing: refused."""
    from docloop.errors import InvalidInput

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = DocloopConfig(
        data_root=str(tmp_path / "data"),
        tracking=TrackingConfig(mlflow_tracking_uri=tracking),
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'state.db'}"),
    )
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    experiment = client.create_experiment("docloop", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment).info.run_id
    registry = Registry(open_store(config.store.url or ""), tracking)
    try:
        with pytest.raises(InvalidInput, match="no model version to deploy"):
            plan_release(registry, config)
        registered = registry.register(
            EXTRACTOR, "s3://models/extract-1", run, "sha256:d", {"blessed": True}, "abc"
        )
        first = plan_release(registry, config)
        assert dict(first.release.storage_uris) == {"extract": "s3://models/extract-1"}
        assert first.champion is None and first.changed == {"extract": registered.version}

        registry.promote(EXTRACTOR, registered.version, reason="bootstrap")
        served = plan_release(registry, config)
        assert served.champion is not None
        assert dict(served.champion.versions) == {"extract": registered.version}
        assert served.changed == {}  # the champion release: nothing new to canary
    finally:
        registry.close()


def test_deploy_consumes_registers_release_artifact_not_the_run_name(world: World) -> None:
    """Typed artifacts register → deploy: the release artifact names the version to canary, so a
    deploy under another run name (which finds no challenger of its own) still rolls it out."""
    from docloop.deploy.run import release_artifact, release_with
    from docloop.steps.deploy_kserve import chosen_versions

    first, _ = deploy(world, ensure_serving=True)
    version = challenger(world, run="retrain-7")
    release = release_with(world.registry, world.config, "classify", version)
    metadata = release_artifact(release, task="classify", version=version)
    assert metadata["versions"] == {"classify": version, "extract": "1"}
    assert metadata["bundle_uri"] != first.release.bundle_uri  # written by register, for deploy
    assert Storage(world.config.storage).exists(f"{metadata['bundle_uri']}/release.json")

    assert deploy(world, pipeline_run="another-run")[1].status == "unchanged"
    plan, result = deploy(world, pipeline_run="another-run", versions=chosen_versions([metadata]))
    assert plan.release.bundle_uri == metadata["bundle_uri"] and result.status == "promoted"
    assert world.registry.default_version(CLASSIFIER).version == version  # type: ignore[union-attr]


def test_release_artifacts_that_registered_nothing_deploy_nothing(world: World) -> None:
    """Given register's release artifacts, deploy reads no "this run's challengers" from the
    registry: a candidate the gate rejected (nothing registered) keeps its task's champion."""
    from docloop.steps.deploy_kserve import chosen_versions
    from docloop.steps.register import unregistered_release

    deploy(world, ensure_serving=True)
    challenger(world, run="retrain-2")  # what a lookup by the run id would find
    releases = [unregistered_release("classify", {"summary": "no gain"}, "retrain-2")]
    versions = chosen_versions(releases)
    assert versions == {}
    plan, result = deploy(world, pipeline_run="retrain-2", versions=versions,
                          find_challengers=False)  # fmt: skip
    assert (result.status, plan.changed) == ("unchanged", {})
    assert world.registry.default_version(CLASSIFIER).version == "1"  # type: ignore[union-attr]

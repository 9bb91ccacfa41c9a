"""deploy-kserve's canary on a real cluster (marker ``e2e``; skipped without one).

Modelled on KServe's own canary e2e tests (``kserve/kserve`` ``test/e2e/predictor/
test_canary.py`` for Knative, ``test_canary_raw_deployment.py`` for Standard): deploy v1, wait
for Ready, put v2 in as a canary, wait for the new generation, assert the split from the
InferenceService's status (Knative: the route's traffic targets; Standard: ``canaryStatuses`` and
the HTTPRoute's weighted ``backendRefs``), then promote and roll back, each waited on by
generation. Every object is the production one: a release bundle per release (one
``storageUri``), ``predictor.name`` per release, the ``docloop-predictor`` ServingRuntime.

Run with ``make e2e`` against a cluster with KServe ≥ 0.20 (Standard mode also needs Gateway
API: ``enableGatewayApi`` in ``kserve/inferenceservice-config``) and the docloop-serve image,
after ``kubectl apply -k manifests/overlays/knative`` (or ``standard``).

Needs: a kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``); ``DOCLOOP_E2E_DATA_ROOT`` (an
``s3://`` or ``gs://`` prefix this process can write and the cluster's storage initializer can
read: the bundles go there) and model folders ``DOCLOOP_E2E_CLASSIFIER_V1`` / ``_V2`` and
``DOCLOOP_E2E_EXTRACTOR``; ``DOCLOOP_E2E_MODE`` (``knative``, default, or ``standard``);
``DOCLOOP_E2E_NAMESPACE`` (default ``docloop``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from docloop.config import DeployConfig
from docloop.deploy.inference_service import PredictorRelease
from docloop.deploy.kserve_target import GROUP, PLURAL, VERSION, KServeTarget, default_api
from docloop.deploy.release_bundle import ensure_bundle
from docloop.storage import Storage

pytestmark = pytest.mark.e2e

_NEEDED = (
    "DOCLOOP_E2E_DATA_ROOT",
    "DOCLOOP_E2E_CLASSIFIER_V1",
    "DOCLOOP_E2E_CLASSIFIER_V2",
    "DOCLOOP_E2E_EXTRACTOR",
)
_KUBECONFIG = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
if not _KUBECONFIG.is_file() or not all(os.environ.get(name) for name in _NEEDED):
    pytest.skip(
        "no cluster: set KUBECONFIG and " + ", ".join(_NEEDED) + " to run the e2e canary test",
        allow_module_level=True,
    )


@pytest.fixture
def target() -> Iterator[KServeTarget]:
    config = DeployConfig(
        target="kserve",
        service_name=f"docloop-e2e-{uuid.uuid4().hex[:6]}",
        namespace=os.environ.get("DOCLOOP_E2E_NAMESPACE", "docloop"),
        mode=os.environ.get("DOCLOOP_E2E_MODE", "knative"),  # type: ignore[arg-type]
        ready_timeout_s=900,
    )
    api = default_api()
    yield KServeTarget(config, api)
    api.delete_namespaced_custom_object(
        GROUP, VERSION, config.namespace, PLURAL, config.service_name
    )


def _release(classifier: str, version: str) -> PredictorRelease:
    """A release as deploy plans it: both model folders copied into one bundle."""
    uris = {"classify": os.environ[classifier], "extract": os.environ["DOCLOOP_E2E_EXTRACTOR"]}
    versions = {"classify": version, "extract": "1"}
    bundle = ensure_bundle(Storage(), os.environ["DOCLOOP_E2E_DATA_ROOT"], uris, versions)
    return PredictorRelease(uris, versions, bundle.uri)


def _backend_weights(target: KServeTarget) -> dict[str, int]:
    """Standard mode: the HTTPRoute's weights per backend Service (as KServe's raw e2e reads)."""
    route = target.api.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", target.config.namespace, "httproutes",
        f"{target.config.service_name}-predictor",
    )  # fmt: skip
    (rule, *_) = route["spec"]["rules"]
    return {ref["name"]: int(ref.get("weight", 1)) for ref in rule["backendRefs"]}


def test_canary_promote_and_rollback_on_a_real_cluster(target: KServeTarget) -> None:
    v1 = _release("DOCLOOP_E2E_CLASSIFIER_V1", "1")
    v2 = _release("DOCLOOP_E2E_CLASSIFIER_V2", "2")
    first = target.first_deploy(v1)
    assert first.ready and first.stable_label == v1.label and first.url

    previous = target.start_canary(v2, 10)
    canary = target.wait_canary(previous)
    assert canary.canary_label == v2.label and canary.canary_percent == 10
    name = target.config.service_name
    if target.config.mode == "knative":
        split = {t.get("revisionName"): t.get("percent") for t in canary.traffic}
        assert sorted(split.values()) == [10, 90]
        assert split[previous["revision"]] == 90  # the recorded rolled-out revision keeps 90 %
    else:
        assert [(s["name"], s["trafficPercent"]) for s in canary.traffic] == [(v2.name, 10)]
        weights = _backend_weights(target)
        assert weights == {f"{name}-predictor": 90, f"{name}-{v2.name}-predictor": 10}

    promoted = target.promote()
    assert promoted.stable_label == v2.label and promoted.canary_label is None

    previous = target.start_canary(v1, 10)
    target.wait_canary(previous)
    restored = target.rollback(previous)
    assert restored.stable_label == v2.label and restored.canary_label is None

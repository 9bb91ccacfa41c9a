"""deploy-kserve's canary on a real cluster (marker ``e2e``; skipped without one).

Modelled on KServe's own canary e2e test: deploy v1, wait for Ready, patch in v2 as a canary,
wait for the new generation, assert the split from the InferenceService's status, then promote
and roll back, each waited on by generation. Run with ``make e2e`` against a cluster with KServe
(Knative mode by default; ``DOCLOOP_E2E_MODE=standard`` for Standard) and the docloop-serve image,
after ``kubectl apply -k manifests/overlays/knative``.

Needs: a kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``) and two model releases the cluster's
storage initializer can read: ``DOCLOOP_E2E_CLASSIFIER_V1`` / ``_V2`` and
``DOCLOOP_E2E_EXTRACTOR`` (``s3://``, ``gs://`` or ``pvc://`` model folders);
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

pytestmark = pytest.mark.e2e

_NEEDED = ("DOCLOOP_E2E_CLASSIFIER_V1", "DOCLOOP_E2E_CLASSIFIER_V2", "DOCLOOP_E2E_EXTRACTOR")
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


def _release(classifier: str, variant: str) -> PredictorRelease:
    return PredictorRelease(
        {"classify": os.environ[classifier], "extract": os.environ["DOCLOOP_E2E_EXTRACTOR"]},
        {"classify": variant, "extract": "1"},
        variant=variant,
    )


def test_canary_promote_and_rollback_on_a_real_cluster(target: KServeTarget) -> None:
    v1 = _release("DOCLOOP_E2E_CLASSIFIER_V1", "v1")
    v2 = _release("DOCLOOP_E2E_CLASSIFIER_V2", "v2")
    first = target.first_deploy(v1)
    assert first.ready and first.stable_label == v1.label and first.url

    previous = target.start_canary(v2, 10)
    canary = target.wait_canary(previous)
    assert canary.canary_label == v2.label and canary.canary_percent == 10
    if target.config.mode == "knative":
        split = {t.get("revisionName"): t.get("percent") for t in canary.traffic}
        assert sorted(split.values()) == [10, 90]
        assert split[previous["revision"]] == 90  # the recorded rolled-out revision keeps 90 %

    promoted = target.promote()
    assert promoted.stable_label == v2.label and promoted.canary_label is None

    previous = target.start_canary(v1, 10)
    target.wait_canary(previous)
    restored = target.rollback(previous)
    assert restored.stable_label == v2.label and restored.canary_label is None

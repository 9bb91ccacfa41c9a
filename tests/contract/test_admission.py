"""The upstream admission rules ported in ``docloop.deploy.admission``, rule by rule.

Each test names the upstream file and function it holds the port to:

* KServe ``kserve/kserve`` at ``aaac4e294dae2c7b1aa1886447793f3aa1c30912``:
  ``config/crd/full/serving.kserve.io_*.yaml`` (read from ``../shared/upstream/kserve``) and
  ``pkg/apis/serving/v1beta1/inference_service_validation.go``;
* Knative ``knative/serving`` at ``98e5ef90aa7033797aa0a61ef97f3ff7e49a3944``:
  ``pkg/apis/serving/fieldmask.go`` (``PodSecurityContextMask``).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from docloop.config import DeployConfig
from docloop.deploy.admission import (
    AdmissionDenied,
    admission_refusal,
    check_inference_service,
    knative_denial,
    schema_refusal,
    upstream_dir,
    webhook_denial,
)
from docloop.deploy.inference_service import PredictorRelease, build_inference_service, plain

pytestmark = [
    pytest.mark.contract,
    pytest.mark.skipif(
        upstream_dir() is None,
        reason="KServe's CRDs are not here: ../shared/upstream/kserve beside the repository (or "
        "DOCLOOP_UPSTREAM_DIR) is missing",
    ),
]

R1 = PredictorRelease({"extract": "s3://m/e/1"}, {"extract": "1"}, "s3://d/releases/a1")
R2 = PredictorRelease({"extract": "s3://m/e/2"}, {"extract": "2"}, "s3://d/releases/b2")


def isvc(mode: str = "standard", release: PredictorRelease = R1) -> dict[str, Any]:
    return plain(build_inference_service(release, DeployConfig(target="kserve", mode=mode)))


def with_canary(
    obj: dict[str, Any], predictor: dict[str, Any], percent: int = 10
) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["canary"] = [{"predictor": predictor, "trafficPercent": percent}]
    return out


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_what_docloop_sends_is_admitted(mode: str) -> None:
    assert admission_refusal(isvc(mode)) is None
    assert knative_denial(isvc(mode)) is None


def test_strict_decoding_refuses_unknown_fields() -> None:
    """CRD structural schema + fieldValidation=Strict: fields outside the schema are refused,
    in ``metadata`` too (the API server knows ObjectMeta); ``status`` preserves unknown fields."""
    obj = isvc()
    obj["spec"]["predictor"]["model"]["storageUris"] = ["s3://x"]
    obj["metadata"]["labelz"] = {}
    obj["status"] = {"anything": {"goes": 1}}
    refusal = schema_refusal(obj)
    assert refusal is not None and (refusal.code, refusal.reason) == (400, "BadRequest")
    assert 'unknown field "metadata.labelz"' in refusal.message
    assert 'unknown field "spec.predictor.model.storageUris"' in refusal.message


def test_schema_types_and_int_or_string() -> None:
    """x-kubernetes-int-or-string (resources: 2 or "2"), ranges and required fields: 422."""
    obj = isvc()
    obj["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = 2
    assert schema_refusal(obj) is None
    obj["spec"]["predictor"]["minReplicas"] = "one"
    del obj["spec"]["predictor"]["model"]["modelFormat"]["name"]
    refusal = schema_refusal(obj)
    assert refusal is not None and (refusal.code, refusal.reason) == (422, "Invalid")
    fields = {f for f, _, _ in refusal.causes}
    assert fields == {"spec.predictor.minReplicas", "spec.predictor.model.modelFormat.name"}
    over = with_canary(isvc(), plain(isvc(release=R2))["spec"]["predictor"], 101)
    refusal = schema_refusal(over)
    assert refusal is not None and refusal.causes[0][0] == "spec.canary[0].trafficPercent"


def test_validate_canary_specs() -> None:
    """inference_service_validation.go ``validateCanarySpecs``."""
    stable = isvc()
    canary = isvc(release=R2)["spec"]["predictor"]
    assert webhook_denial(with_canary(stable, canary)) is None
    assert webhook_denial(with_canary(isvc("knative"), canary)) == (
        "canary is only supported in Standard deployment mode"
    )
    multi = copy.deepcopy(stable)
    multi["spec"]["predictor"] = {
        "containers": [{"name": "kserve-container", "image": "x"}],
        "storageUris": [{"uri": "s3://a", "mountPath": "/mnt/models/a"},
                        {"uri": "s3://b", "mountPath": "/mnt/models/b"}],
    }  # fmt: skip
    assert webhook_denial(with_canary(multi, canary)) == (
        "canary requires a stable predictor with a model (multi-model serving is not supported "
        "with canary)"
    )
    unnamed = {k: v for k, v in canary.items() if k != "name"}
    assert webhook_denial(with_canary(stable, unnamed)) == "canary[0] predictor.name is required"
    same = {**canary, "name": stable["spec"]["predictor"]["name"]}
    assert "conflicts with stable predictor name" in str(webhook_denial(with_canary(stable, same)))
    scaled = {**canary, "maxReplicas": 3}
    assert "must not set maxReplicas" in str(webhook_denial(with_canary(stable, scaled)))
    bigger = {**canary, "minReplicas": 2}
    assert "must not exceed stable predictor minReplicas (1)" in str(
        webhook_denial(with_canary(stable, bigger))
    )
    twice = copy.deepcopy(with_canary(stable, canary, 60))
    twice["spec"]["canary"].append({"predictor": {**canary, "name": "other"}, "trafficPercent": 50})
    assert webhook_denial(twice) == "sum of canary trafficPercent values (110) must be <= 100"


def test_validate_predictor_name_change() -> None:
    """``validatePredictorNameChange`` (ValidateUpdate): a new name needs a new storage URI."""
    old = isvc("knative")
    renamed = copy.deepcopy(old)
    renamed["spec"]["predictor"]["name"] = "release-other"
    assert webhook_denial(renamed, old) == (
        "predictor.name change requires a model change (e.g. storageUri)"
    )
    assert webhook_denial(isvc("knative", R2), old) is None  # name and URI change together


def test_validate_multiple_storage_uris_and_one_implementation() -> None:
    """``validateMultipleStorageURIs`` / ``validateMultipleStorageURIsSpec`` and
    ``validateExactlyOneImplementation`` (with ``PredictorSpec.GetImplementations``)."""
    obj = isvc()
    both = copy.deepcopy(obj)
    both["spec"]["predictor"]["storageUris"] = [{"uri": "s3://a", "mountPath": "/mnt/models"}]
    assert webhook_denial(both) == "Setting both StorageURI and StorageURIs is not supported."
    apart = copy.deepcopy(obj)
    del apart["spec"]["predictor"]["model"]
    apart["spec"]["predictor"]["containers"] = [{"name": "kserve-container", "image": "x"}]
    apart["spec"]["predictor"]["storageUris"] = [
        {"uri": "s3://a", "mountPath": "/a"},
        {"uri": "s3://b", "mountPath": "/b"},
    ]
    assert str(webhook_denial(apart)).startswith("storage paths must have a common parent")
    relative = copy.deepcopy(apart)
    relative["spec"]["predictor"]["storageUris"] = [{"uri": "s3://a", "mountPath": "mnt"}]
    assert webhook_denial(relative) == "storage path must be absolute: mnt"
    two = copy.deepcopy(obj)
    two["spec"]["predictor"]["containers"] = [{"name": "kserve-container", "image": "x"}]
    assert str(webhook_denial(two)).startswith("exactly one of [")


def test_validate_predictor_and_name() -> None:
    """``validatePredictor`` (no ``model.name``) and ``validateInferenceServiceName``."""
    named = isvc()
    named["spec"]["predictor"]["model"]["name"] = "kserve-container"
    assert webhook_denial(named) == "the 'name' field is not allowed in standard predictor"
    bad = isvc()
    bad["metadata"]["name"] = "9docloop"
    assert "a InferenceService name must consist of lower case" in str(webhook_denial(bad))


def test_validate_deployment_mode() -> None:
    """``validateDeploymentMode``: the annotation may not leave the mode in the status."""
    old = {**isvc("knative"), "status": {"deploymentMode": "Serverless"}}
    moved = isvc("standard")
    moved["spec"]["predictor"]["name"] = old["spec"]["predictor"]["name"]
    assert webhook_denial(moved, old) == (
        "update rejected: deploymentMode cannot be changed from 'Knative' to 'Standard'"
    )


def test_pod_security_context_mask() -> None:
    """fieldmask.go ``PodSecurityContextMask``: pod-level fields only with the feature flag;
    container-level ones (``SecurityContextMask``) always pass."""
    obj = isvc("knative")
    assert obj["spec"]["predictor"]["model"]["securityContext"]["runAsNonRoot"] is True
    obj["spec"]["predictor"]["securityContext"] = {"runAsNonRoot": True, "fsGroup": 10001}
    assert knative_denial(obj) == (
        'admission webhook "validation.webhook.serving.knative.dev" denied the request: '
        "validation failed: must not set the field(s): spec.template.spec.securityContext."
        "fsGroup, spec.template.spec.securityContext.runAsNonRoot"
    )
    assert knative_denial(obj, podspec_securitycontext=True) is None
    with pytest.raises(AdmissionDenied, match="enable the Knative feature flag"):
        check_inference_service(obj)
    standard = isvc("standard")
    standard["spec"]["predictor"]["securityContext"] = {"runAsNonRoot": True}
    check_inference_service(standard)  # no Knative revision in Standard mode


def test_a_serving_runtime_is_checked_against_its_crd() -> None:
    """serving.kserve.io_servingruntimes.yaml: the runtime deploy-kserve's model selects."""
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "docloop-predictor", "namespace": "docloop"},
        "spec": {
            "supportedModelFormats": [{"name": "docloop-release", "autoSelect": True}],
            "containers": [{"name": "kserve-container", "image": "ghcr.io/docloop/serve:0.1.0"}],
        },
    }
    assert schema_refusal(runtime) is None
    runtime["spec"]["supportedModelFormats"][0]["auto"] = True
    refusal = schema_refusal(runtime)
    assert refusal is not None and refusal.message.startswith(
        'ServingRuntime in version "v1alpha1" cannot be handled as a ServingRuntime'
    )


def test_without_the_crds_deploy_still_applies_the_webhook_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipeline pod carries no upstream folder: the schema is left to the API server, the
    webhook's and Knative's rules (code) still run before anything is sent."""
    import docloop.deploy.admission as admission

    monkeypatch.setattr(admission, "upstream_dir", lambda: None)
    unknown = isvc()
    unknown["spec"]["predictor"]["replicas"] = 2  # the API server's strict decoding refuses it
    check_inference_service(unknown)
    canary = isvc(release=R2)["spec"]["predictor"]
    unnamed = with_canary(isvc(), {k: v for k, v in canary.items() if k != "name"})
    with pytest.raises(AdmissionDenied, match=r"canary\[0\] predictor.name is required"):
        check_inference_service(unnamed)

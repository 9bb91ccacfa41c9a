"""Contract tests of the fake Kubernetes API server in ``tests/fakes/kube_apiserver.py``.

There is no Kubernetes cluster on these machines. The fake serves the real REST paths of
``serving.kserve.io/v1beta1`` ``inferenceservices`` on 127.0.0.1 and applies KServe's documented
traffic semantics (Knative canary rollout: ``canaryTrafficPercent``, promotion, rollback; Standard
mode ``spec.canary`` with ``canaryStatuses``). Every test here goes through the real client code,
``kserve.KServeClient`` and ``kubernetes.client.CustomObjectsApi``, with objects built from the
KServe SDK models and serialised by the kubernetes client itself, so the requests are exactly what
our deploy code will send to a cluster.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from kserve import (
    V1beta1CanarySpec,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
)
from kubernetes.client import ApiClient, ApiException, CustomObjectsApi, V1ObjectMeta

from docloop.deploy.admission import upstream_dir

if TYPE_CHECKING:  # imported for real by pytest_plugins (so that its asserts are rewritten)
    from kserve import KServeClient

    from tests.fakes.kube_apiserver import FakeKubeApiServer

pytest_plugins = ["tests.fakes.kube_apiserver"]
pytestmark = [
    pytest.mark.contract,
    pytest.mark.skipif(
        upstream_dir() is None,
        reason="the fake applies KServe's CRDs, which are not here: ../shared/upstream/kserve "
        "beside the repository (or DOCLOOP_UPSTREAM_DIR) is missing",
    ),
]

NS = "docloop"
NAME = "classifier"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
V1, V2, V3 = "s3://models/classifier/1", "s3://models/classifier/2", "s3://models/classifier/3"
REV1, REV2, REV3 = (f"{NAME}-predictor-{n:05d}" for n in (1, 2, 3))


def isvc(
    storage_uri: str,
    canary_traffic_percent: int | None = None,
    *,
    name: str = NAME,
    annotations: dict[str, str] | None = None,
    canary: list[V1beta1CanarySpec] | None = None,
    predictor_name: str | None = None,
) -> V1beta1InferenceService:
    """An InferenceService built from the KServe SDK models, as deploy code builds one."""
    return V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}",
        kind="InferenceService",
        metadata=V1ObjectMeta(name=name, namespace=NS, annotations=annotations),
        spec=V1beta1InferenceServiceSpec(
            predictor=predictor(storage_uri, canary_traffic_percent, name=predictor_name),
            canary=canary,
        ),
    )


def predictor(
    storage_uri: str, canary_traffic_percent: int | None = None, *, name: str | None = None
) -> V1beta1PredictorSpec:
    return V1beta1PredictorSpec(
        name=name,
        canary_traffic_percent=canary_traffic_percent,
        model=V1beta1ModelSpec(
            model_format=V1beta1ModelFormat(name="docloop"), storage_uri=storage_uri
        ),
    )


def component(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["status"]["components"]["predictor"]


def condition(obj: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def api_status(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


@pytest.fixture
def api(kube_apiserver: FakeKubeApiServer) -> CustomObjectsApi:
    return kube_apiserver.custom_objects_api()


@pytest.fixture
def rolled_out_v1(kserve_client: KServeClient) -> dict[str, Any]:
    """v1 created and rolled out (Knative mode, the fake's default)."""
    return kserve_client.create(isvc(V1))


def test_create_then_get_round_trips_the_sdk_object(
    kube_apiserver: FakeKubeApiServer, kserve_client: KServeClient
) -> None:
    created = kserve_client.create(isvc(V1))
    got = kserve_client.get(NAME, namespace=NS)

    assert got == created
    meta = got["metadata"]
    assert (meta["name"], meta["namespace"], meta["generation"]) == (NAME, NS, 1)
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert isinstance(meta["resourceVersion"], str)
    # V1beta1ModelSpec's ``name`` (the container name) defaults to "", which the client sends.
    assert got["spec"]["predictor"]["model"] == {
        "modelFormat": {"name": "docloop"},
        "name": "",
        "storageUri": V1,
    }
    assert got["status"]["observedGeneration"] == 1
    assert condition(got)["status"] == "True"
    assert condition(got, "PredictorReady")["status"] == "True"
    assert condition(got, "IngressReady")["status"] == "True"
    assert got["status"]["url"] == f"http://{NAME}.{NS}.example.com"
    assert got["status"]["address"]["url"] == f"http://{NAME}.{NS}.svc.cluster.local"
    assert kserve_client.is_isvc_ready(NAME, namespace=NS, expected_generation=1)

    # What the kubernetes client really sent: camelCase JSON, None attributes left out.
    post = next(r for r in kube_apiserver.requests if r.method == "POST")
    assert post.path == f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
    assert post.content_type == "application/json"
    assert post.status == 201
    assert post.body["spec"]["predictor"] == {
        "model": {"modelFormat": {"name": "docloop"}, "name": "", "storageUri": V1}
    }
    assert kube_apiserver.get(NS, NAME) == got


def test_list_create_conflict_and_delete(
    kube_apiserver: FakeKubeApiServer, kserve_client: KServeClient, api: CustomObjectsApi
) -> None:
    kserve_client.create(isvc(V1))
    with pytest.raises(ApiException) as exists:
        api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, isvc(V1))
    assert exists.value.status == 409
    assert api_status(exists.value)["reason"] == "AlreadyExists"

    listed = kserve_client.get(namespace=NS)
    assert listed["kind"] == "InferenceServiceList"
    assert listed["apiVersion"] == f"{GROUP}/{VERSION}"
    assert [o["metadata"]["name"] for o in listed["items"]] == [NAME]
    assert (
        listed["metadata"]["resourceVersion"] == listed["items"][0]["metadata"]["resourceVersion"]
    )

    deleted = kserve_client.delete(NAME, namespace=NS)
    assert (deleted["kind"], deleted["status"]) == ("Status", "Success")
    assert kube_apiserver.objects() == []
    assert kserve_client.get(namespace=NS)["items"] == []


def test_not_found_is_a_kubernetes_status(
    api: CustomObjectsApi, kserve_client: KServeClient
) -> None:
    with pytest.raises(ApiException) as missing:
        api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "nope")
    assert missing.value.status == 404
    assert api_status(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'inferenceservices.serving.kserve.io "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": GROUP, "kind": PLURAL},
        "code": 404,
    }
    # KServeClient wraps every ApiException in a RuntimeError; the original is its __context__.
    with pytest.raises(RuntimeError, match=r"\(404\)") as wrapped:
        kserve_client.get("nope", namespace=NS)
    assert isinstance(wrapped.value.__context__, ApiException)
    assert wrapped.value.__context__.status == 404


def test_generation_bumps_on_spec_changes_only(
    rolled_out_v1: dict[str, Any], kserve_client: KServeClient, api: CustomObjectsApi
) -> None:
    rv1 = rolled_out_v1["metadata"]["resourceVersion"]

    labelled = api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, NAME, {"metadata": {"labels": {"team": "docs"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(rv1)

    same = api.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME, labelled)
    assert same["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]  # no-op

    changed = kserve_client.replace(NAME, isvc(V2), namespace=NS)
    assert changed["metadata"]["generation"] == 2
    assert changed["status"]["observedGeneration"] == 2
    assert "labels" not in changed["metadata"]  # a replace replaces metadata.labels too


def test_stale_replace_conflicts_and_succeeds_after_a_fresh_read(
    kube_apiserver: FakeKubeApiServer,
    rolled_out_v1: dict[str, Any],
    kserve_client: KServeClient,
    api: CustomObjectsApi,
) -> None:
    stale = api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME)
    api.patch_namespaced_custom_object(  # another writer
        GROUP, VERSION, NS, PLURAL, NAME, {"metadata": {"annotations": {"by": "someone"}}}
    )
    stale["spec"]["predictor"]["model"]["storageUri"] = V2
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME, stale)
    assert conflict.value.status == 409
    body = api_status(conflict.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "classifier": the '
        "object has been modified; please apply your changes to the latest version and try again"
    )

    fresh = api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME)
    fresh["spec"]["predictor"]["model"]["storageUri"] = V2
    replaced = api.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME, fresh)
    assert replaced["metadata"]["generation"] == 2

    # A replace without resourceVersion: custom resources have no unconditional update.
    del fresh["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as unconditional:
        api.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NAME, fresh)
    assert unconditional.value.status == 422

    # The hook: the next write loses a race; the rv really moved, so a re-read and retry works.
    kube_apiserver.conflict_next_write(1)
    with pytest.raises(RuntimeError, match=r"\(409\)"):
        kserve_client.replace(NAME, isvc(V3), namespace=NS)  # reads the rv, then PUTs: 409
    retried = kserve_client.replace(NAME, isvc(V3), namespace=NS)
    assert retried["spec"]["predictor"]["model"]["storageUri"] == V3
    assert retried["metadata"]["generation"] == 3


def test_patch_content_types_and_unsetting_a_field(
    kube_apiserver: FakeKubeApiServer, kserve_client: KServeClient, api: CustomObjectsApi
) -> None:
    kserve_client.create(isvc(V1))
    kserve_client.patch(NAME, isvc(V2, 10), namespace=NS)
    patch = kube_apiserver.requests[-1]
    assert (patch.method, patch.content_type) == ("PATCH", "application/merge-patch+json")

    # KServeClient.patch with an SDK object cannot unset: the client drops None attributes.
    kept = kserve_client.patch(NAME, isvc(V2, None), namespace=NS)
    assert "canaryTrafficPercent" not in kube_apiserver.requests[-1].body["spec"]["predictor"]
    assert kept["spec"]["predictor"]["canaryTrafficPercent"] == 10

    # A plain dict keeps None, which a merge patch turns into a removal.
    removed = api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, NAME, {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    )
    assert kube_apiserver.requests[-1].body == {
        "spec": {"predictor": {"canaryTrafficPercent": None}}
    }
    assert "canaryTrafficPercent" not in removed["spec"]["predictor"]

    # Replace with the SDK object is the KServeClient way to unset a field.
    kserve_client.patch(NAME, isvc(V2, 20), namespace=NS)
    replaced = kserve_client.replace(NAME, isvc(V2), namespace=NS)
    assert "canaryTrafficPercent" not in replaced["spec"]["predictor"]

    # RFC 6902 needs the header set by hand (CustomObjectsApi always sends merge-patch+json).
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{NAME}"
    operations = [
        {"op": "test", "path": "/spec/predictor/model/storageUri", "value": V2},
        {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 30},
    ]
    patched = api.api_client.call_api(
        path,
        "PATCH",
        header_params={"Content-Type": "application/json-patch+json", "Accept": "application/json"},
        body=operations,
        response_type="object",
        _return_http_data_only=True,
    )
    assert kube_apiserver.requests[-1].content_type == "application/json-patch+json"
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 30

    with pytest.raises(ApiException) as smp:
        api.api_client.call_api(
            path,
            "PATCH",
            header_params={"Content-Type": "application/strategic-merge-patch+json"},
            body={"spec": {}},
            response_type="object",
        )
    assert smp.value.status == 415


def test_knative_canary_splits_traffic_by_revision(
    kube_apiserver: FakeKubeApiServer, rolled_out_v1: dict[str, Any], kserve_client: KServeClient
) -> None:
    assert component(rolled_out_v1)["latestRolledoutRevision"] == REV1
    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV1: 100}

    canary = kserve_client.replace(NAME, isvc(V2, 10), namespace=NS)

    predictor_status = component(canary)
    assert predictor_status["latestCreatedRevision"] == REV2
    assert predictor_status["latestReadyRevision"] == REV2
    assert predictor_status["latestRolledoutRevision"] == REV1
    assert "previousRolledoutRevision" not in predictor_status
    assert {
        (t["revisionName"], t["percent"], t["latestRevision"]) for t in predictor_status["traffic"]
    } == {
        (REV2, 10, True),
        (REV1, 90, False),
    }
    assert (
        next(t for t in predictor_status["traffic"] if t["revisionName"] == REV1)["tag"] == "prev"
    )
    assert kube_apiserver.traffic_by_storage_uri(NS, NAME) == {V1: 90, V2: 10}
    assert kube_apiserver.revisions(NS, NAME) == [REV1, REV2]
    assert canary["status"]["observedGeneration"] == 2
    assert condition(canary)["status"] == "True"


def test_promotion_moves_all_traffic_and_records_the_previous_revision(
    kube_apiserver: FakeKubeApiServer, rolled_out_v1: dict[str, Any], kserve_client: KServeClient
) -> None:
    kserve_client.replace(NAME, isvc(V2, 10), namespace=NS)
    promoted = kserve_client.replace(NAME, isvc(V2), namespace=NS)  # field removed

    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV2: 100}
    assert component(promoted)["latestRolledoutRevision"] == REV2
    assert component(promoted)["previousRolledoutRevision"] == REV1
    assert kube_apiserver.revisions(NS, NAME) == [REV1, REV2]  # traffic only: no new revision
    assert promoted["metadata"]["generation"] == 3
    assert promoted["status"]["observedGeneration"] == 3


def test_rollback_with_zero_percent_serves_the_previous_model(
    kube_apiserver: FakeKubeApiServer, rolled_out_v1: dict[str, Any], kserve_client: KServeClient
) -> None:
    kserve_client.replace(NAME, isvc(V2, 10), namespace=NS)
    rolled_back = kserve_client.replace(NAME, isvc(V2, 0), namespace=NS)

    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV1: 100}
    assert kube_apiserver.revision_spec(NS, NAME, REV1)["model"]["storageUri"] == V1
    assert kube_apiserver.traffic_by_storage_uri(NS, NAME) == {V1: 100}
    assert component(rolled_back)["latestRolledoutRevision"] == REV1

    # After a promotion too: 0 % pins the traffic to the previously rolled-out revision again.
    kserve_client.replace(NAME, isvc(V2), namespace=NS)
    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV2: 100}
    again = kserve_client.replace(NAME, isvc(V2, 0), namespace=NS)
    assert kube_apiserver.traffic_by_storage_uri(NS, NAME) == {V1: 100}
    assert component(again)["latestRolledoutRevision"] == REV1


def test_a_revision_that_never_becomes_ready_gets_no_traffic(
    kube_apiserver: FakeKubeApiServer, rolled_out_v1: dict[str, Any], kserve_client: KServeClient
) -> None:
    kube_apiserver.fail_readiness(NS, NAME)  # the next generation (2)
    broken = kserve_client.replace(NAME, isvc(V2, 10), namespace=NS)

    assert broken["metadata"]["generation"] == 2
    assert broken["status"]["observedGeneration"] == 1
    ready = condition(broken)
    assert (ready["status"], ready["reason"]) == ("False", "RevisionFailed")
    assert component(broken)["latestCreatedRevision"] == REV2
    assert component(broken)["latestReadyRevision"] == REV1
    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV1: 100}
    assert not kserve_client.is_isvc_ready(NAME, namespace=NS, expected_generation=2)
    with pytest.raises(RuntimeError, match="expected generation 2"):
        kserve_client.wait_isvc_ready(
            NAME, namespace=NS, timeout_seconds=0.3, polling_interval=0.1, expected_generation=2
        )

    fixed = kserve_client.replace(NAME, isvc(V3, 10), namespace=NS)  # a new, healthy revision
    assert fixed["status"]["observedGeneration"] == 3
    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV1: 90, REV3: 10}


def test_ready_delay_makes_clients_wait_on_the_observed_generation(
    kube_apiserver: FakeKubeApiServer, rolled_out_v1: dict[str, Any], kserve_client: KServeClient
) -> None:
    delay = 0.5
    kube_apiserver.set_ready_delay(delay)
    started = time.monotonic()
    written = kserve_client.replace(NAME, isvc(V2, 10), namespace=NS)

    assert written["status"]["observedGeneration"] == 1
    waiting = condition(written)
    assert (waiting["status"], waiting["reason"]) == ("False", "RevisionMissing")
    assert component(written)["latestCreatedRevision"] == REV2
    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV1: 100}
    assert not kserve_client.is_isvc_ready(NAME, namespace=NS, expected_generation=2)

    kserve_client.wait_isvc_ready(
        NAME, namespace=NS, timeout_seconds=5, polling_interval=0.05, expected_generation=2
    )
    assert time.monotonic() - started >= delay
    ready = kserve_client.get(NAME, namespace=NS)
    assert ready["status"]["observedGeneration"] == 2
    assert int(ready["metadata"]["resourceVersion"]) > int(written["metadata"]["resourceVersion"])
    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV1: 90, REV2: 10}

    # The watch path (kubernetes.watch over the list endpoint) sees it too.
    started = time.monotonic()
    promoted = kserve_client.replace(NAME, isvc(V2), namespace=NS)
    kserve_client.wait_isvc_ready(
        NAME,
        namespace=NS,
        watch=True,
        timeout_seconds=5,
        expected_generation=promoted["metadata"]["generation"],
    )
    assert time.monotonic() - started >= delay
    assert kube_apiserver.traffic_by_revision(NS, NAME) == {REV2: 100}
    watches = [r for r in kube_apiserver.requests if r.query.get("watch") == ["True"]]
    assert [r.path for r in watches] == [f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"]


def test_a_canary_under_the_legacy_mode_name_is_refused(api: CustomObjectsApi) -> None:
    """validateCanarySpecs compares the annotation with "Standard" literally: RawDeployment, which
    KServe otherwise accepts as Standard's old name, cannot carry spec.canary."""
    annotations = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    canaries = [V1beta1CanarySpec(predictor=predictor(V2, name="v2"), traffic_percent=20)]
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, isvc(V1, annotations=annotations, canary=canaries)
        )
    assert refused.value.status == 403
    assert api_status(refused.value)["message"].endswith(
        "denied the request: canary is only supported in Standard deployment mode"
    )


@pytest.mark.parametrize("gateway_api", [True, False])
def test_standard_mode_canary_list_status(
    kube_apiserver: FakeKubeApiServer, kserve_client: KServeClient, gateway_api: bool
) -> None:
    """Canary weights apply through Gateway API only; without it the stable predictor serves."""
    kube_apiserver.gateway_api = gateway_api
    annotations = {"serving.kserve.io/deploymentMode": "Standard"}
    canaries = [V1beta1CanarySpec(predictor=predictor(V2, name="v2"), traffic_percent=20)]
    created = kserve_client.create(isvc(V1, annotations=annotations, canary=canaries))

    assert kube_apiserver.requests[-1].body["spec"]["canary"] == [
        {
            "predictor": {
                "name": "v2",
                "model": {"modelFormat": {"name": "docloop"}, "name": "", "storageUri": V2},
            },
            "trafficPercent": 20,
        }
    ]
    status = created["status"]
    assert status["deploymentMode"] == "Standard"
    assert status["canaryStatuses"] == [{"name": "v2", "ready": True, "trafficPercent": 20}]
    assert "latestCreatedRevision" not in component(created)
    assert "traffic" not in component(created)
    assert condition(created)["status"] == "True"
    expected = {V1: 80, V2: 20} if gateway_api else {V1: 100}
    assert kube_apiserver.traffic_by_storage_uri(NS, NAME) == expected

    dark = [V1beta1CanarySpec(predictor=predictor(V2, name="v2"), traffic_percent=0)]
    updated = kserve_client.replace(
        NAME, isvc(V1, annotations=annotations, canary=dark), namespace=NS
    )
    assert updated["status"]["canaryStatuses"] == [
        {"name": "v2", "ready": True, "trafficPercent": 0}
    ]
    assert kube_apiserver.traffic_by_storage_uri(NS, NAME) == {V1: 100}


def test_invalid_objects_are_rejected(
    kube_apiserver: FakeKubeApiServer, api: CustomObjectsApi
) -> None:
    annotations = {"serving.kserve.io/deploymentMode": "Standard"}
    too_much = [
        V1beta1CanarySpec(predictor=predictor(V2, name="v2"), traffic_percent=60),
        V1beta1CanarySpec(predictor=predictor(V3, name="v3"), traffic_percent=50),
    ]
    with pytest.raises(ApiException) as over:
        api.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, isvc(V1, annotations=annotations, canary=too_much)
        )
    # the sum is KServe's webhook rule (validateCanarySpecs), answered as admission.Denied: 403
    assert over.value.status == 403
    body = api_status(over.value)
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "Forbidden",
        403,
    )
    assert body["message"] == (
        'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the '
        "request: sum of canary trafficPercent values (110) must be <= 100"
    )

    over_one = [V1beta1CanarySpec(predictor=predictor(V2, name="v2"), traffic_percent=101)]
    with pytest.raises(ApiException) as schema:  # the CRD's maximum: 100, a 422 Invalid
        api.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, isvc(V1, annotations=annotations, canary=over_one)
        )
    assert schema.value.status == 422
    causes = api_status(schema.value)["details"]["causes"]
    assert causes[0]["field"] == "spec.canary[0].trafficPercent"

    unknown = ApiClient().sanitize_for_serialization(isvc(V1, annotations=annotations))
    unknown["spec"]["predictor"]["canaryWeight"] = 10
    with pytest.raises(ApiException) as strict:  # fieldValidation=Strict: 400 BadRequest
        api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, unknown)
    assert strict.value.status == 400
    assert 'unknown field "spec.predictor.canaryWeight"' in api_status(strict.value)["message"]

    no_predictor = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {},
    }
    with pytest.raises(ApiException) as missing:
        api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, no_predictor)
    assert missing.value.status == 422
    assert api_status(missing.value)["details"]["causes"][0]["field"] == "spec.predictor"

    wrong_kind = {**no_predictor, "kind": "Service", "spec": {"predictor": {}}}
    with pytest.raises(ApiException) as kind:
        api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, wrong_kind)
    assert kind.value.status == 400
    assert kube_apiserver.objects() == []


def test_kserve_client_borrows_the_default_configuration_only_while_running() -> None:
    from kubernetes.client import Configuration

    from tests.fakes.kube_apiserver import FakeKubeApiServer

    before = Configuration.get_default_copy().host
    with FakeKubeApiServer() as server:
        client = server.kserve_client()
        assert Configuration.get_default_copy().host == server.url  # for the watch=True paths
        assert client.api_instance.api_client.configuration.host == server.url
        client.create(isvc(V1))
    assert Configuration.get_default_copy().host == before

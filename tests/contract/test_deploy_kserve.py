"""deploy-kserve's cluster path against a fake Kubernetes API server.

There is no Kubernetes cluster or Docker engine on these machines. The rollout code runs for real
— the real ``kubernetes.client.CustomObjectsApi`` over HTTP, objects built with the KServe
SDK's own models — against ``tests/fakes/kube_apiserver.py``, an API server on 127.0.0.1 with the
real REST paths for ``serving.kserve.io/v1beta1`` InferenceServices, ``resourceVersion``
conflicts and generations, that applies KServe's documented traffic semantics (latest / previous
rolled-out revisions, the canary split, rollback by 0 %, Standard mode's ``spec.canary[]``). The
live numbers the canary analysis reads are given per variant (the store-backed source is tested
with the loop); everything else is the code a pipeline runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from docloop.config import CanaryConfig, DeployConfig
from docloop.deploy.analysis import VariantStats
from docloop.deploy.inference_service import (
    DEPLOYMENT_MODE,
    VERSION_LABEL,
    PredictorRelease,
    build_inference_service,
    predictor_spec,
    serialize,
)
from docloop.deploy.kserve_target import KServeTarget
from docloop.deploy.release_bundle import plan_bundle
from docloop.deploy.rollout import RolloutResult, StatsSource, run_rollout
from docloop.errors import DeployFailed, InvalidInput, RolloutNotReady
from docloop.store.db import Store, open_store
from docloop.store.tables import Deployment
from tests.fakes.kube_apiserver import FakeKubeApiServer, needs_upstream

pytestmark = [pytest.mark.contract, needs_upstream]

NS, NAME = "docloop", "docloop"
DATA_ROOT = "s3://data"


def production_release(classify: str, extract: str) -> PredictorRelease:
    """A release as ``plan_release`` builds it (its bundle under the data root)."""
    uris = {
        "classify": f"s3://models/classify/{classify}",
        "extract": f"s3://models/extract/{extract}",
    }
    versions = {"classify": classify, "extract": extract}
    return PredictorRelease(uris, versions, plan_bundle(DATA_ROOT, uris, versions).uri)


V1 = production_release("1", "1")
V2 = production_release("2", "1")


def settings(mode: str = "knative", **canary: object) -> DeployConfig:
    policy = CanaryConfig(min_requests=10, min_feedback=5, max_duration_s=60, poll_s=1, **canary)
    return DeployConfig(
        target="kserve",
        mode=mode,
        ready_timeout_s=5,
        canary=policy,  # type: ignore[arg-type]
    )


@pytest.fixture
def server() -> Iterator[FakeKubeApiServer]:
    """A KServe install with Gateway API on (Standard-mode canaries need it)."""
    with FakeKubeApiServer(gateway_api=True) as fake:
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


class Clock:
    """Virtual seconds: the analysis loop's sleeps advance it instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def live(canary_accuracy: float, *, looks: list[dict[str, int]] | None = None,
         server: FakeKubeApiServer | None = None) -> StatsSource:  # fmt: skip
    """Both variants answered 40 requests; the canary's reviewed accuracy is given."""

    def collect(since: datetime, release: PredictorRelease, variant: str) -> VariantStats:
        if looks is not None and server is not None and variant == release.label:
            looks.append(server.traffic_by_storage_uri(NS, NAME))
        accuracy = canary_accuracy if variant == release.label else 0.9
        return VariantStats(
            variant=variant,
            requests=40,
            latencies_ms=[100.0 + i for i in range(40)],
            reviewed=20,
            correct=round(20 * accuracy),
        )

    return collect


class Outcomes:
    def __init__(self) -> None:
        self.promoted = 0
        self.rolled_back: list[list[str]] = []

    def promote(self) -> None:
        self.promoted += 1

    def rollback(self, reasons: object) -> None:
        self.rolled_back.append(list(reasons))  # type: ignore[call-overload]


def rollout(
    server: FakeKubeApiServer,
    store: Store,
    config: DeployConfig,
    release: PredictorRelease,
    stats: StatsSource,
    outcomes: Outcomes,
) -> RolloutResult:
    clock = Clock()
    target = KServeTarget(config, server.custom_objects_api(), sleep=lambda s: None)
    return run_rollout(
        target, store, config, release, V1.label, stats,
        on_promote=outcomes.promote, on_rollback=outcomes.rollback,
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip


def serving_v1(server: FakeKubeApiServer, store: Store, config: DeployConfig) -> Outcomes:
    """V1 deployed first (no canary): the starting point of every later rollout."""
    outcomes = Outcomes()
    rollout(server, store, config, V1, live(0.9), outcomes)
    return outcomes


def rows(store: Store) -> list[tuple[str, str]]:
    with store.read() as session:
        return [(r.versions["classify"], r.status) for r in session.query(Deployment).order_by(
            Deployment.id)]  # fmt: skip


def test_the_inference_service_is_built_from_the_sdk_models() -> None:
    """One model per release (the bundle) on the docloop ServingRuntime, named by its release."""
    config = settings("standard")
    body = serialize(build_inference_service(V1, config))
    assert body["apiVersion"] == "serving.kserve.io/v1beta1" and body["kind"] == "InferenceService"
    assert body["metadata"]["annotations"] == {DEPLOYMENT_MODE: "Standard"}
    predictor = body["spec"]["predictor"]
    assert "containers" not in predictor and "storageUris" not in predictor
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "docloop-release"}
    assert model["runtime"] == "docloop-predictor"
    assert model["storageUri"] == V1.bundle_uri and V1.bundle_uri.startswith("s3://data/releases/")
    assert predictor["name"] == f"release-{V1.bundle_uri.rsplit('/', 1)[1]}"
    assert model["image"] == config.image and model["args"][0] == "--model=/mnt/models"
    assert model["resources"]["requests"] == model["resources"]["limits"]
    assert "securityContext" not in predictor  # Knative refuses pod-level fields by default
    assert predictor["serviceAccountName"] == "docloop-predictor"
    assert predictor["labels"] == {VERSION_LABEL: "classify-1.extract-1"}
    with pytest.raises(InvalidInput, match="storage initializer"):
        build_inference_service(
            PredictorRelease({"classify": "file:///m"}, {"classify": "1"}, "file:///data/r"),
            config,
        )
    with pytest.raises(InvalidInput, match="no bundle URI"):
        build_inference_service(PredictorRelease({"classify": "s3://m"}, {"classify": "1"}), config)


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_first_deploy_then_canary_then_promote(
    server: FakeKubeApiServer,
    store: Store,
    mode: str,
) -> None:
    config = settings(mode)
    outcomes = Outcomes()
    first = rollout(server, store, config, V1, live(0.9), outcomes)
    assert (first.status, first.changed, outcomes.promoted) == ("promoted", True, 1)
    assert server.traffic_by_storage_uri(NS, NAME) == {V1.bundle_uri: 100}

    looks: list[dict[str, int]] = []
    result = rollout(server, store, config, V2, live(0.9, looks=looks,
                     server=server), outcomes)  # fmt: skip
    assert result.status == "promoted" and outcomes.promoted == 2 and not outcomes.rolled_back
    assert result.verdict is not None and result.verdict.decision == "promote"
    # during the analysis the split was 90/10; after the promotion v2 has everything
    assert looks[0] == {V1.bundle_uri: 90, V2.bundle_uri: 10}
    assert server.traffic_by_storage_uri(NS, NAME) == {V2.bundle_uri: 100}
    spec = server.get(NS, NAME)["spec"]  # type: ignore[index]
    assert "canaryTrafficPercent" not in spec["predictor"] and "canary" not in spec
    assert spec["predictor"]["labels"][VERSION_LABEL] == V2.label
    assert rows(store) == [("1", "promoted"), ("2", "promoted")]


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_a_worse_canary_is_rolled_back_to_the_recorded_predictor(
    server: FakeKubeApiServer,
    store: Store,
    mode: str,
) -> None:
    config = settings(mode)
    outcomes = serving_v1(server, store, config)
    before = server.get(NS, NAME)["spec"]["predictor"]  # type: ignore[index]

    result = rollout(server, store, config, V2, live(0.5), outcomes)
    assert result.status == "rolled_back" and outcomes.promoted == 1
    assert "live accuracy 0.500" in outcomes.rolled_back[0][0]
    assert server.traffic_by_storage_uri(NS, NAME) == {V1.bundle_uri: 100}
    spec = server.get(NS, NAME)["spec"]  # type: ignore[index]
    assert spec["predictor"] == before and "canary" not in spec
    if mode == "knative":  # 0 % first, then the previous spec back as the stable one
        percents = [
            r.body["spec"]["predictor"].get("canaryTrafficPercent")
            for r in server.requests
            if r.method == "PUT" and isinstance(r.body, dict)
        ]
        assert percents[-3:] == [10, 0, None]
    assert rows(store)[-1] == ("2", "rolled_back")


def test_a_canary_that_is_never_ready_is_rolled_back(
    server: FakeKubeApiServer,
    store: Store,
) -> None:
    config = settings()
    outcomes = serving_v1(server, store, config)
    server.fail_readiness(NS, NAME)  # the canary's generation
    server.set_ready_delay(0)
    config = config.model_copy(update={"ready_timeout_s": 1.0})
    with pytest.raises(RolloutNotReady, match="was not ready within 1 s"):
        rollout(server, store, config, V2, live(0.9), outcomes)
    assert server.traffic_by_storage_uri(NS, NAME) == {V1.bundle_uri: 100}
    assert "canary not ready" in outcomes.rolled_back[0][0]
    assert rows(store)[-1] == ("2", "failed")


def test_a_stale_resource_version_is_retried_on_a_fresh_read(
    server: FakeKubeApiServer,
    store: Store,
) -> None:
    config = settings()
    outcomes = serving_v1(server, store, config)
    server.conflict_next_write(2)
    result = rollout(server, store, config, V2, live(0.9), outcomes)
    assert result.status == "promoted"
    statuses = [r.status for r in server.requests if r.method == "PUT"]
    assert statuses[:3] == [409, 409, 200]


def test_conflicts_that_never_stop_fail_with_a_reason(
    server: FakeKubeApiServer,
    store: Store,
) -> None:
    config = settings()
    outcomes = serving_v1(server, store, config)
    server.conflict_next_write(50)
    with pytest.raises(DeployFailed, match="another deploy running"):
        rollout(server, store, config, V2, live(0.9), outcomes)


def test_a_rerun_with_the_same_versions_changes_nothing(
    server: FakeKubeApiServer,
    store: Store,
) -> None:
    config = settings()
    outcomes = serving_v1(server, store, config)
    rollout(server, store, config, V2, live(0.9), outcomes)
    server.clear_requests()
    again = rollout(server, store, config, V2, live(0.9), outcomes)
    assert (again.status, again.changed) == ("promoted", False)
    assert [r.method for r in server.requests if r.method != "GET"] == []
    assert rows(store) == [("1", "promoted"), ("2", "promoted")]


def test_the_predictor_model_matches_the_serving_runtime_of_the_manifests() -> None:
    """deploy-kserve's model and manifests/base's ServingRuntime are one shape.

    KServe picks the runtime by ``runtime`` and ``modelFormat`` (``supportedModelFormats``) and
    merges the model's container fields into the runtime's ``kserve-container``.
    """
    import yaml

    runtime = yaml.safe_load(
        (Path(__file__).parents[2] / "manifests/base/servingruntime.yaml").read_text()
    )
    body = serialize(build_inference_service(V1, settings()))
    model = body["spec"]["predictor"]["model"]
    assert runtime["metadata"]["name"] == model["runtime"]
    assert model["modelFormat"]["name"] in [
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    ]
    (expected,) = runtime["spec"]["containers"]
    for key in ("image", "env", "envFrom", "resources", "securityContext", "volumeMounts"):
        assert model[key] == expected[key], key
    assert [a for a in model["args"] if not a.startswith("--name=")] == [
        a for a in expected["args"] if not a.startswith("--name=")
    ]
    assert body["spec"]["predictor"]["volumes"] == runtime["spec"]["volumes"]


# --- issue 18, item 1: what KServe's own rules refuse -------------------------------------------
# The fake applies the upstream CRD schema and KServe's validating webhook
# (inference_service_validation.go: validateCanarySpecs, validatePredictorNameChange,
# validateMultipleStorageURIs) through docloop.deploy.admission; these releases are built as
# production builds them (plan_release), never with a hand-set predictor name.


def test_a_standard_canary_is_not_refused_as_multi_model(server: FakeKubeApiServer) -> None:
    """validateCanarySpecs: the stable predictor must serve one model (predictor.model)."""
    target = KServeTarget(settings("standard"), server.custom_objects_api(), sleep=lambda s: None)
    target.first_deploy(production_release("1", "1"))
    previous = target.start_canary(production_release("2", "1"), 10)
    state = target.wait_canary(previous)
    assert state.canary_percent == 10


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_every_predictor_names_its_release(mode: str) -> None:
    """validateCanarySpecs: each canary needs predictor.name; it must differ from the stable's."""
    config = settings(mode)
    first = serialize(predictor_spec(production_release("1", "1"), config))
    second = serialize(predictor_spec(production_release("2", "1"), config))
    assert first.get("name") and second.get("name"), (first.get("name"), second.get("name"))
    assert first["name"] != second["name"]


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_promotion_changes_the_predictors_storage_uri(server: FakeKubeApiServer, mode: str) -> None:
    """validatePredictorNameChange: a predictor.name change needs a storageUri change."""
    target = KServeTarget(settings(mode), server.custom_objects_api(), sleep=lambda s: None)
    target.first_deploy(production_release("1", "1"))
    before = server.get(NS, NAME)["spec"]["predictor"]  # type: ignore[index]
    target.wait_canary(target.start_canary(production_release("2", "1"), 10))
    target.promote()
    after = server.get(NS, NAME)["spec"]["predictor"]  # type: ignore[index]
    uri_before = (before.get("model") or {}).get("storageUri")
    uri_after = (after.get("model") or {}).get("storageUri")
    assert uri_before and uri_after and uri_before != uri_after, (uri_before, uri_after)


def test_a_standard_canary_without_gateway_api_is_refused(server: FakeKubeApiServer) -> None:
    """KServe applies Standard-mode canary weights through Gateway API only (enableGatewayApi)."""
    server.set_configmap(
        "kserve", "inferenceservice-config", {"ingress": '{"enableGatewayApi": false}'}
    )
    server.gateway_api = False
    target = KServeTarget(settings("standard"), server.custom_objects_api(), sleep=lambda s: None)
    target.first_deploy(production_release("1", "1"))
    with pytest.raises(DeployFailed, match=r"deploy\.kserve\.gateway_api"):
        target.start_canary(production_release("2", "1"), 10)
    assert "canary" not in server.get(NS, NAME)["spec"]  # type: ignore[index]


@pytest.mark.parametrize(("switch", "starts"), [(True, True), (False, False)])
def test_the_gateway_switch_answers_where_the_configmap_cannot_be_read(
    server: FakeKubeApiServer, switch: bool, starts: bool
) -> None:
    """deploy.kserve.gateway_api: true/false asserts what a forbidden ConfigMap would say."""
    server.forbid_configmaps()
    auto = settings("standard")
    target = KServeTarget(auto, server.custom_objects_api(), sleep=lambda s: None)
    target.first_deploy(V1)
    with pytest.raises(DeployFailed, match=r"HTTP 403.*deploy\.kserve\.gateway_api: true"):
        target.start_canary(V2, 10)
    config = auto.model_copy(
        update={"kserve": auto.kserve.model_copy(update={"gateway_api": switch})}
    )
    target = KServeTarget(config, server.custom_objects_api(), sleep=lambda s: None)
    if starts:
        assert target.wait_canary(target.start_canary(V2, 10)).canary_percent == 10
    else:
        with pytest.raises(DeployFailed, match="would receive no traffic"):
            target.start_canary(V2, 10)


def test_a_knative_canary_does_not_need_gateway_api(server: FakeKubeApiServer) -> None:
    server.forbid_configmaps()
    target = KServeTarget(settings("knative"), server.custom_objects_api(), sleep=lambda s: None)
    target.first_deploy(V1)
    assert target.wait_canary(target.start_canary(V2, 10)).canary_percent == 10
    assert server.traffic_by_storage_uri(NS, NAME) == {V1.bundle_uri: 90, V2.bundle_uri: 10}


def test_a_pod_level_security_context_is_refused_before_knative_would(
    server: FakeKubeApiServer,
) -> None:
    """knative/serving fieldmask.go PodSecurityContextMask: off by default; deploy pre-flights it
    and the fake's Knative never makes such a revision ready."""
    body = serialize(build_inference_service(V1, settings("knative")))
    body["spec"]["predictor"]["securityContext"] = {"runAsNonRoot": True}
    target = KServeTarget(settings("knative"), server.custom_objects_api(), sleep=lambda s: None)
    with pytest.raises(DeployFailed, match=r"must not set the field\(s\): spec\.template\.spec\."
                       r"securityContext\.runAsNonRoot"):  # fmt: skip
        target._create(body)
    created = server.custom_objects_api().create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NS, "inferenceservices", body
    )
    assert created["metadata"]["generation"] == 1
    ready = {c["type"]: c for c in server.get(NS, NAME)["status"]["conditions"]}["Ready"]  # type: ignore[index]
    assert ready["status"] == "False" and "must not set the field(s)" in ready["message"]


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_every_object_sent_passes_the_upstream_rules(
    server: FakeKubeApiServer, store: Store, mode: str
) -> None:
    """First deploy, canary, promote, canary, rollback: each write passes the CRD schema (strict),
    KServe's webhook (against the stored object) and Knative's mask, checked again here."""
    from docloop.deploy.admission import admission_refusal, knative_denial

    config = settings(mode)
    outcomes = serving_v1(server, store, config)
    rollout(server, store, config, V2, live(0.9), outcomes)
    rollout(server, store, config, production_release("3", "1"), live(0.5), outcomes)
    writes = [r for r in server.requests if r.method in ("POST", "PUT")]
    assert [r.status for r in writes] == [201] + [200] * (len(writes) - 1)
    assert len(writes) >= (5 if mode == "standard" else 6)
    previous = None
    for request in writes:
        assert admission_refusal(request.body, previous) is None
        assert knative_denial(request.body) is None
        previous = request.body  # what the server stored (spec) before the next write
    assert rows(store) == [("1", "promoted"), ("2", "promoted"), ("3", "rolled_back")]

"""The cluster target: canary rollouts of the docloop InferenceService on KServe.

Calls go through ``kubernetes.client.CustomObjectsApi`` — the same calls ``kserve.KServeClient``
makes — because ``KServeClient`` turns every ``ApiException`` into a ``RuntimeError`` and so hides
the status code that tells a stale ``resourceVersion`` (409, retried on a fresh read) from a
missing object (404) or a refused spec (422).

Both KServe deployment modes, as KServe documents them:

* **Knative** — a new predictor spec with ``canaryTrafficPercent: p`` creates a revision that gets
  ``p`` % while ``latestRolledoutRevision`` keeps the rest. Promote: the field is removed (with
  ``replace``: a merge patch cannot unset a field), the latest revision takes 100 %. Rollback:
  ``canaryTrafficPercent: 0`` (all traffic back on the previous rolled-out revision), then the
  recorded previous predictor spec is put back as the stable one.
* **Standard** (KServe ≥ 0.20) — ``spec.canary[]`` holds ``{predictor, trafficPercent}``; promote
  moves the canary's predictor to ``spec.predictor`` and deletes the entry; rollback deletes it.
  KServe applies the weights through Gateway API only: before a canary starts, ``enableGatewayApi``
  is read from the ``ingress`` entry of ``inferenceservice-config`` in KServe's namespace
  (``deploy.kserve.gateway_api: auto``), or taken from the switch where that ConfigMap cannot be
  read; a canary that would get no traffic is refused.

Every object is checked before it is sent
(:func:`~docloop.deploy.admission.check_inference_service`: the upstream CRD schema, KServe's
webhook with the stored object as ``old``, Knative's mask), so a spec a cluster refuses fails
here with upstream's message and nothing half-written.

Every write waits for the readiness of the generation it produced (``metadata.generation`` →
``status.observedGeneration`` + ``Ready``), never on sleeps alone; a rollout not ready before
``deploy.ready_timeout_s`` raises :class:`~docloop.errors.RolloutNotReady`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from docloop.config import DeployConfig
from docloop.deploy.admission import check_inference_service
from docloop.deploy.inference_service import (
    API_VERSION,
    VERSION_LABEL,
    PredictorRelease,
    build_inference_service,
    plain,
    predictor_spec,
)
from docloop.errors import DeployFailed, RolloutNotReady

logger = logging.getLogger(__name__)

GROUP, VERSION = API_VERSION.split("/")
PLURAL: Final = "inferenceservices"
CONFLICT_RETRIES: Final = 5
POLL_S: Final = 0.5
KSERVE_CONFIGMAP: Final = "inferenceservice-config"
GATEWAY_SWITCH: Final = "deploy.kserve.gateway_api"


@dataclass(frozen=True)
class ServiceState:
    """What the InferenceService's status says about a rollout.

    Attributes:
        name: The InferenceService.
        namespace: Its namespace.
        generation: ``metadata.generation``.
        observed_generation: ``status.observedGeneration`` (None before the controller saw it).
        ready: The ``Ready`` condition is True for the observed generation.
        url: ``status.url``.
        stable_label: The versions the stable predictor serves (label ``docloop.io/versions``).
        canary_label: The versions the canary serves, if a canary is in place.
        canary_percent: The canary's share of traffic (0 without a canary).
        latest_rolledout_revision: Knative: the revision with the stable traffic.
        previous_rolledout_revision: Knative: the one before it.
        traffic: The traffic split as KServe reports it (Knative targets or Standard canaries).
    """

    name: str
    namespace: str
    generation: int
    observed_generation: int | None
    ready: bool
    url: str | None
    stable_label: str | None
    canary_label: str | None
    canary_percent: int
    latest_rolledout_revision: str | None = None
    previous_rolledout_revision: str | None = None
    traffic: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The state as JSON (the deploy record and the component's status output)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "generation": self.generation,
            "observed_generation": self.observed_generation,
            "ready": self.ready,
            "url": self.url,
            "stable": self.stable_label,
            "canary": self.canary_label,
            "canary_percent": self.canary_percent,
            "latest_rolledout_revision": self.latest_rolledout_revision,
            "previous_rolledout_revision": self.previous_rolledout_revision,
            "traffic": self.traffic,
        }


def _label(predictor: dict[str, Any] | None) -> str | None:
    if not predictor:
        return None
    labels = predictor.get("labels") or {}
    value = labels.get(VERSION_LABEL)
    return str(value) if value is not None else None


def read_state(obj: dict[str, Any], mode: str) -> ServiceState:
    """The rollout state of an InferenceService JSON object."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    predictor = spec.get("predictor") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    observed = status.get("observedGeneration")
    generation = int(metadata.get("generation") or 0)
    ready = (
        observed is not None
        and int(observed) >= generation
        and (conditions.get("Ready") or {}).get("status") == "True"
    )
    components = (status.get("components") or {}).get("predictor") or {}
    if mode == "standard":
        canaries = spec.get("canary") or []
        canary = canaries[0] if canaries else None
        canary_label = _label(canary.get("predictor")) if canary else None
        canary_percent = int(canary.get("trafficPercent") or 0) if canary else 0
        traffic = list(status.get("canaryStatuses") or [])
    else:
        percent = predictor.get("canaryTrafficPercent")
        canary_percent = int(percent) if percent is not None and int(percent) < 100 else 0
        canary_label = _label(predictor) if percent is not None else None
        traffic = list(components.get("traffic") or [])
    stable_label = _label(predictor)
    if mode != "standard" and canary_label is not None:
        stable_label = None  # the stable traffic runs the previous revision, not this spec
    url = status.get("url")
    return ServiceState(
        name=str(metadata.get("name")),
        namespace=str(metadata.get("namespace")),
        generation=generation,
        observed_generation=int(observed) if observed is not None else None,
        ready=ready,
        url=str(url) if url else None,
        stable_label=stable_label,
        canary_label=canary_label,
        canary_percent=canary_percent,
        latest_rolledout_revision=components.get("latestRolledoutRevision"),
        previous_rolledout_revision=components.get("previousRolledoutRevision"),
        traffic=traffic,
    )


def plain_data(configmap: Any) -> dict[str, str] | None:
    """A ConfigMap's ``data``, whether the client gave a model or a dict."""
    data = configmap.get("data") if isinstance(configmap, dict) else configmap.data
    return None if data is None else {str(k): str(v) for k, v in data.items()}


def default_api(config_file: str | None = None, context: str | None = None) -> Any:
    """``CustomObjectsApi`` from the pod's service account, else the kubeconfig."""
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        try:
            kube_config.load_kube_config(config_file=config_file, context=context)
        except (kube_config.ConfigException, OSError) as exc:
            raise DeployFailed(
                "no Kubernetes credentials: not in a pod with a service account, and no usable "
                f"kubeconfig ({exc}); set KUBECONFIG or run inside the cluster, or use "
                "deploy.target: local"
            ) from exc
    return client.CustomObjectsApi()


class KServeTarget:
    """Applies, promotes and rolls back canaries of one InferenceService."""

    def __init__(
        self,
        config: DeployConfig,
        api: Any | None = None,
        *,
        core_api: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Bind the target to a deploy configuration and a ``CustomObjectsApi``.

        Args:
            config: ``deploy`` settings (service, namespace, mode, image, resources, timeout).
            api: A ``kubernetes.client.CustomObjectsApi``; None: :func:`default_api`.
            core_api: A ``kubernetes.client.CoreV1Api`` (KServe's ConfigMap); None: one on
                ``api``'s client.
            clock: Monotonic seconds (tests pass their own).
            sleep: How to wait between polls.
        """
        self.config = config
        self.api = api if api is not None else default_api()
        if core_api is None:
            from kubernetes import client

            core_api = client.CoreV1Api(getattr(self.api, "api_client", None))
        self.core_api = core_api
        self._clock = clock
        self._sleep = sleep

    # --- reads -----------------------------------------------------------------------------
    def get(self) -> dict[str, Any] | None:
        """The InferenceService as JSON, or None when it does not exist.

        Raises:
            DeployFailed: The API server refused the read.
        """
        from kubernetes.client.rest import ApiException

        try:
            obj = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.config.namespace, PLURAL, self.config.service_name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._failed("read", exc) from exc
        return plain(obj)

    def state(self) -> ServiceState | None:
        """The rollout state, or None when the InferenceService does not exist."""
        obj = self.get()
        return None if obj is None else read_state(obj, self.config.mode)

    # --- writes ----------------------------------------------------------------------------
    def _failed(self, what: str, exc: Any) -> DeployFailed:
        where = f"{self.config.namespace}/{self.config.service_name}"
        if "admission webhook" in str(exc.body):
            return DeployFailed(
                f"{what} of InferenceService {where} was refused by an admission webhook: "
                f"{str(exc.body)[:400]}"
            )
        hint = {
            401: "the credentials were refused",
            403: "the service account may not do this: apply manifests/base (its Role allows "
            "get/list/watch/create/update/patch on inferenceservices in its namespace)",
            422: "the API server refused the spec",
        }.get(int(exc.status or 0), "")
        return DeployFailed(
            f"{what} of InferenceService {where} failed: HTTP {exc.status} {exc.reason}"
            + (f" ({hint})" if hint else "")
            + f": {str(exc.body)[:300]}"
        )

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        check_inference_service(body)
        try:
            return plain(
                self.api.create_namespaced_custom_object(
                    GROUP, VERSION, self.config.namespace, PLURAL, body
                )
            )
        except ApiException as exc:
            raise self._failed("create", exc) from exc

    def mutate(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """Read, change and ``replace`` the object; a 409 (stale ``resourceVersion``) re-reads.

        Args:
            change: Gets a fresh copy of the object; returns the new object, or None when
                nothing needs to change.

        Returns:
            The object as stored after the write (or as read, when nothing changed).

        Raises:
            DeployFailed: The object is gone, the write was refused, or conflicts persisted.
        """
        from kubernetes.client.rest import ApiException

        for attempt in range(1, CONFLICT_RETRIES + 1):
            current = self.get()
            if current is None:
                raise DeployFailed(
                    f"InferenceService {self.config.namespace}/{self.config.service_name} "
                    "disappeared during the rollout; deploy again"
                )
            desired = change(copy.deepcopy(current))
            if desired is None:
                return current
            check_inference_service(desired, current)
            try:
                return plain(
                    self.api.replace_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        self.config.namespace,
                        PLURAL,
                        self.config.service_name,
                        desired,
                    )
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise self._failed("replace", exc) from exc
                logger.info("resourceVersion conflict (attempt %d); re-reading", attempt)
        raise DeployFailed(
            f"InferenceService {self.config.service_name} kept changing under this rollout "
            f"({CONFLICT_RETRIES} conflicts in a row); is another deploy running?"
        )

    def wait_ready(self, generation: int, timeout_s: float | None = None) -> ServiceState:
        """Wait until ``generation`` is observed and Ready.

        Raises:
            RolloutNotReady: It was not ready before the timeout (the last state is named).
        """
        deadline = self._clock() + (self.config.ready_timeout_s if timeout_s is None else timeout_s)
        state = self.state()
        while True:
            if state is not None and state.generation >= generation and state.ready:
                return state
            if self._clock() >= deadline:
                seen = (
                    "gone"
                    if state is None
                    else (f"observedGeneration {state.observed_generation}, ready={state.ready}")
                )
                raise RolloutNotReady(
                    f"generation {generation} of {self.config.service_name} was not ready within "
                    f"{self.config.ready_timeout_s if timeout_s is None else timeout_s:g} s "
                    f"({seen}); check `kubectl describe isvc {self.config.service_name} -n "
                    f"{self.config.namespace}` and the predictor pod's logs"
                )
            self._sleep(POLL_S)
            state = self.state()

    def gateway_api(self) -> bool:
        """Whether KServe routes through Gateway API (Standard-mode canary weights need it).

        ``deploy.kserve.gateway_api``: true / false asserts it; ``auto`` reads ``enableGatewayApi``
        from the ``ingress`` entry of KServe's ``inferenceservice-config`` ConfigMap.

        Raises:
            DeployFailed: ``auto`` and the ConfigMap cannot be read or parsed.
        """
        import json

        from kubernetes.client.rest import ApiException

        switch = self.config.kserve.gateway_api
        if isinstance(switch, bool):
            return switch
        where = f"{self.config.kserve.config_namespace}/{KSERVE_CONFIGMAP}"
        try:
            configmap = self.core_api.read_namespaced_config_map(
                KSERVE_CONFIGMAP, self.config.kserve.config_namespace
            )
        except ApiException as exc:
            raise DeployFailed(
                f"cannot read KServe's ConfigMap {where} (HTTP {exc.status} {exc.reason}) to learn "
                f"whether Gateway API is on; grant get on it, or set {GATEWAY_SWITCH}: true (or "
                "false) to say what the cluster runs"
            ) from exc
        data = (plain_data(configmap) or {}).get("ingress") or "{}"
        try:
            ingress = json.loads(data)
        except ValueError as exc:
            raise DeployFailed(
                f"the ingress entry of {where} is not JSON ({exc}); set {GATEWAY_SWITCH}"
            ) from exc
        return bool(ingress.get("enableGatewayApi", False))

    def require_traffic(self) -> None:
        """Refuse a canary that KServe would give no traffic (Standard without Gateway API).

        Raises:
            DeployFailed: Standard mode and Gateway API is off.
        """
        if self.config.mode != "standard" or self.gateway_api():
            return
        raise DeployFailed(
            "a Standard-mode canary would receive no traffic: KServe applies canary weights "
            "through Gateway API only, and enableGatewayApi is off in "
            f"{self.config.kserve.config_namespace}/{KSERVE_CONFIGMAP}; enable it (KServe's "
            f"ingress config, with a Gateway API implementation) and set {GATEWAY_SWITCH} to auto "
            "or true, or use deploy.mode: knative"
        )

    # --- the rollout -----------------------------------------------------------------------
    def first_deploy(self, release: PredictorRelease) -> ServiceState:
        """Create the InferenceService with ``release`` taking all traffic, and wait for it."""
        created = self._create(plain(build_inference_service(release, self.config)))
        return self.wait_ready(int(created["metadata"].get("generation") or 1))

    def start_canary(self, release: PredictorRelease, percent: int) -> dict[str, Any]:
        """Put ``release`` in as the canary with ``percent`` % of traffic.

        Returns:
            What rollback needs: the stable predictor spec (and, Knative, the rolled-out
            revision) as they were before this change, and the generation written (wait for it
            with :meth:`wait_canary`; the caller records the rest first).
        """
        self.require_traffic()
        previous: dict[str, Any] = {}
        new_predictor = plain(predictor_spec(release, self.config))

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            spec = obj["spec"]
            components = (obj.get("status") or {}).get("components") or {}
            previous.clear()
            previous["predictor"] = copy.deepcopy(spec["predictor"])
            previous["label"] = _label(spec["predictor"])
            previous["revision"] = (components.get("predictor") or {}).get(
                "latestRolledoutRevision"
            )
            if self.config.mode == "standard":
                spec["canary"] = [{"predictor": new_predictor, "trafficPercent": percent}]
            else:
                spec["predictor"] = {**new_predictor, "canaryTrafficPercent": percent}
            return obj

        written = self.mutate(change)
        return {**previous, "generation": int(written["metadata"]["generation"])}

    def wait_canary(self, previous: dict[str, Any]) -> ServiceState:
        """Wait for the generation :meth:`start_canary` wrote to be ready."""
        return self.wait_ready(int(previous["generation"]))

    def promote(self) -> ServiceState:
        """Give the canary all traffic: Knative drops the field; Standard moves the predictor."""

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            spec = obj["spec"]
            if self.config.mode == "standard":
                canaries = spec.get("canary") or []
                if not canaries:
                    return None
                spec["predictor"] = canaries[0]["predictor"]
                del spec["canary"]
            else:
                if "canaryTrafficPercent" not in spec["predictor"]:
                    return None
                del spec["predictor"]["canaryTrafficPercent"]
            return obj

        written = self.mutate(change)
        return self.wait_ready(int(written["metadata"]["generation"]))

    def rollback(self, previous: dict[str, Any]) -> ServiceState:
        """Send all traffic back to what served before the canary and make it the stable spec.

        Knative first sets ``canaryTrafficPercent: 0`` (traffic returns to the previous rolled-out
        revision at once), then puts the recorded predictor back and waits for that generation;
        Standard deletes the canary.
        Safe to repeat: a service already serving ``previous`` is left as it is.
        """
        recorded = previous.get("predictor")
        if not recorded:
            raise DeployFailed(
                "this deployment recorded no previous predictor (it was the first one); there is "
                "nothing to roll back to — delete the InferenceService or deploy another version"
            )
        if self.config.mode != "standard":

            def to_zero(obj: dict[str, Any]) -> dict[str, Any] | None:
                predictor = obj["spec"]["predictor"]
                if (
                    "canaryTrafficPercent" not in predictor
                    or predictor["canaryTrafficPercent"] == 0
                ):
                    return None
                predictor["canaryTrafficPercent"] = 0
                return obj

            # not waited on: the route moves at once, and a canary revision that never became
            # ready would keep this generation from ever being Ready; the restore below is
            self.mutate(to_zero)

        def restore(obj: dict[str, Any]) -> dict[str, Any] | None:
            spec = obj["spec"]
            if spec.get("canary") is None and spec["predictor"] == recorded:
                return None
            spec.pop("canary", None)
            spec["predictor"] = copy.deepcopy(recorded)
            return obj

        written = self.mutate(restore)
        return self.wait_ready(int(written["metadata"]["generation"]))

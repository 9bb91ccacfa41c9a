"""The deploy and rollback steps as a pipeline (or a person) runs them: registry → rollout.

:func:`plan_release` decides what to serve: per task the version named explicitly, else (when
no release artifact named them) the ``challenger`` this pipeline run registered, else the
champion (the store's ``default``); the champion release is what serves now. On
``deploy.target: kserve`` the release is written as one bundle under ``data_root``
(:mod:`docloop.deploy.release_bundle`; idempotent), the storage URI the InferenceService
serves. :func:`run_deploy` rolls it out on the configured target with
:func:`~docloop.deploy.rollout.run_rollout` and, through its callbacks, promotes the new
versions in the registry (alias ``champion``, default row, audit) or rejects them and alerts.
:func:`run_rollback` undoes the newest deployment of the service.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select

from docloop.config import DocloopConfig, store_url
from docloop.deploy.analysis import VariantStats, render_markdown
from docloop.deploy.inference_service import PredictorRelease
from docloop.deploy.release_bundle import ensure_bundle
from docloop.deploy.rollout import (
    RolloutResult,
    StatsSource,
    Target,
    previous_deployment,
    run_rollout,
    store_stats,
)
from docloop.errors import DeployFailed, InvalidInput
from docloop.monitor.outcomes import record_outcome, send_alert
from docloop.storage import Storage, join
from docloop.store.db import Store
from docloop.store.registry import TAG_PREFIX, Registry, model_name_for
from docloop.store.tables import Deployment, utcnow

logger = logging.getLogger(__name__)

TASKS: Final = ("classify", "extract")
STATUS_FILE: Final = "deployment.json"
ANALYSIS_FILE: Final = "analysis.md"
RELEASE_FILE: Final = "release.json"  # the release artifact register and promote write


@dataclass(frozen=True)
class ReleasePlan:
    """What a deploy serves, what serves now, and which versions it changes.

    Attributes:
        release: The versions to serve.
        champion: What serves now (the defaults); None before any model is the default.
        changed: task → version that differs from the champion.
        served: variant label → the version per task its predictions report (card run ids).
    """

    release: PredictorRelease
    champion: PredictorRelease | None
    changed: dict[str, str]
    served: dict[str, dict[str, str]]


def _challenger(registry: Registry, model_name: str, pipeline_run: str) -> str | None:
    """This run's ``challenger`` of ``model_name`` if it is still a candidate."""
    from mlflow.exceptions import MlflowException

    try:
        version = registry.client.get_model_version_by_alias(model_name, "challenger")
    except MlflowException:
        return None
    if pipeline_run and (version.tags or {}).get(f"{TAG_PREFIX}pipeline_run") != pipeline_run:
        return None
    record = registry.get_version(model_name, str(version.version))
    return record.version if record.status == "candidate" else None


def plan_release(
    registry: Registry,
    config: DocloopConfig,
    versions: Mapping[str, str] | None = None,
    pipeline_run: str = "",
    *,
    find_challengers: bool = True,
) -> ReleasePlan:
    """Choose per task: the version given, else this run's challenger, else the champion.

    A task with none of them is left out (one document type trains no classifier: the release
    serves the extractor alone). Without ``find_challengers`` the versions given are the whole
    answer (register's release artifacts said what this run registered): no registry lookup.

    Raises:
        InvalidInput: No task has a version to deploy or a champion.
        RegistryError: A named version is unknown.
    """
    versions = versions or {}
    storage: dict[str, str] = {}
    chosen: dict[str, str] = {}
    champion_storage: dict[str, str] = {}
    champion_versions: dict[str, str] = {}
    run_ids: dict[str, str | None] = {}
    for task in TASKS:
        name = model_name_for(task, config)
        default = registry.default_version(name)
        if default is not None:
            champion_storage[task] = default.model_uri
            champion_versions[task] = default.version
            run_ids[f"champion:{task}"] = default.run_id
        version = versions.get(task)
        if not version and find_challengers:
            version = _challenger(registry, name, pipeline_run)
        if version is None and default is None:
            logger.info("no %s version and no champion: the release serves without it", name)
            continue
        record = registry.get_version(name, version) if version else default
        assert record is not None
        storage[task] = record.model_uri
        chosen[task] = record.version
        run_ids[task] = record.run_id
    if not chosen:
        raise InvalidInput(
            "no model version to deploy: none was given, this run registered none and there is "
            "no champion; run the bootstrap pipeline first"
        )
    bundle_uri = ""
    if config.deploy.target == "kserve":
        bundle_uri = ensure_bundle(
            Storage(config.storage),
            config.data_root,
            storage,
            chosen,
            config.deploy.kserve.release_prefix,
        ).uri
    release = PredictorRelease(storage, chosen, bundle_uri)
    champion = (
        PredictorRelease(champion_storage, champion_versions)
        if champion_versions and set(champion_versions) == set(chosen)
        else None
    )
    changed = {t: v for t, v in chosen.items() if champion_versions.get(t) != v}
    # a version without a run id cannot be found in the log: the other task tells variants apart
    served = {release.label: {t: str(run_ids[t]) for t in chosen if run_ids.get(t)}}
    if champion is not None:
        served[champion.label] = {
            t: str(run_ids[f"champion:{t}"])
            for t in champion_versions
            if run_ids.get(f"champion:{t}")
        }
    return ReleasePlan(release, champion, changed, served)


def champion_versions(registry: Registry, config: DocloopConfig) -> dict[str, str]:
    """The default version per task (tasks without one left out)."""
    versions: dict[str, str] = {}
    for task in TASKS:
        default = registry.default_version(model_name_for(task, config))
        if default is not None:
            versions[task] = default.version
    return versions


def release_with(
    registry: Registry, config: DocloopConfig, task: str, version: str
) -> PredictorRelease:
    """The release that serves ``version`` for ``task`` beside the other tasks' champions.

    On ``deploy.target: kserve`` its bundle is written (idempotent): what register and promote
    leave behind for deploy and for a person with kubectl.
    """
    versions = {**champion_versions(registry, config), task: version}
    return plan_release(registry, config, versions).release


def release_artifact(release: PredictorRelease, **extra: Any) -> dict[str, Any]:
    """The typed release artifact's metadata (and ``release.json``): bundle, versions, models."""
    return {
        "bundle_uri": release.bundle_uri,
        "predictor_name": release.name,
        "versions": dict(release.versions),
        "storage_uris": dict(release.storage_uris),
        "label": release.label,
        **extra,
    }


def write_release(storage: Storage, output_uri: str, metadata: Mapping[str, Any]) -> None:
    """``release.json`` into a release artifact's folder."""
    storage.write_bytes(
        join(output_uri, RELEASE_FILE),
        json.dumps(dict(metadata), indent=2, sort_keys=True).encode(),
        content_type="application/json",
    )


def make_target(config: DocloopConfig) -> Target:
    """The configured target: the cluster's InferenceService or local ModelServer processes."""
    if config.deploy.target == "kserve":
        from docloop.deploy.kserve_target import KServeTarget

        return KServeTarget(config.deploy)
    from docloop.deploy.local_target import LocalTarget

    return LocalTarget(config, prediction_log=store_url(config.store))


def _stats(store: Store, plan: ReleasePlan, target: Target) -> StatsSource:
    """Store-backed numbers, with failed requests where the target counts them (local router)."""
    base = store_stats(store, plan.served)
    errors_of = getattr(target, "variant_errors", None)
    if errors_of is None:
        return base

    def collect(since: datetime, release: PredictorRelease, variant: str) -> VariantStats:
        stats = base(since, release, variant)
        requests, errors = errors_of(variant)
        return stats.model_copy(
            update={"requests": max(requests, stats.requests), "errors": errors}
        )

    return collect


def run_deploy(
    config: DocloopConfig,
    registry: Registry,
    *,
    versions: Mapping[str, str] | None = None,
    pipeline_run: str = "",
    target: Target | None = None,
    ensure_serving: bool = False,
    find_challengers: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ReleasePlan, RolloutResult]:
    """Roll out what :func:`plan_release` chooses; promote or reject it in the registry.

    With nothing new to serve (no challenger, no version given) nothing happens — status
    ``unchanged`` — unless ``ensure_serving``, which deploys the champion where nothing serves
    yet (the bootstrap's first deployment).

    Raises:
        DeployFailed: The target refused or never became ready (the canary was rolled back).
        InvalidInput: Nothing to deploy.
    """
    plan = plan_release(registry, config, versions, pipeline_run, find_challengers=find_challengers)
    if not plan.changed and not ensure_serving:
        logger.info("nothing new to deploy: the champions %s stay as they are", plan.release.label)
        return plan, RolloutResult(None, "unchanged", False, None)
    target = target or make_target(config)
    heal = getattr(target, "heal", None)  # local target: restart servers that died (a reboot)
    if heal is not None:
        heal()
    store = registry.store
    logger.info(
        "deploying %s (changes %s) to %s/%s on %s",
        plan.release.label,
        plan.changed or "nothing",
        config.deploy.namespace,
        config.deploy.service_name,
        config.deploy.target,
    )

    def on_promote() -> None:
        for task, version in plan.changed.items():
            reason = f"canary analysis passed on {config.deploy.target} ({plan.release.label})"
            registry.promote(
                model_name_for(task, config), version, reason=reason, run_id=pipeline_run or None
            )
            if pipeline_run:
                record_outcome(store, pipeline_run, task, "promoted", [reason])

    def on_rollback(reasons: Sequence[str]) -> None:
        for task, version in plan.changed.items():
            registry.reject(
                model_name_for(task, config),
                version,
                [f"canary rolled back: {r}" for r in reasons[:1]],
                run_id=pipeline_run or None,
            )
            if pipeline_run:
                record_outcome(store, pipeline_run, task, "rolled_back", list(reasons))
        send_alert(
            config.alerts,
            "canary_rolled_back",
            f"canary {plan.release.label} rolled back, champion kept: {reasons[0]}",
            {"versions": dict(plan.release.versions), "run_id": pipeline_run, "reasons": reasons},
        )

    result = run_rollout(
        target,
        store,
        config.deploy,
        plan.release,
        plan.champion.label if plan.champion else None,
        _stats(store, plan, target),
        on_promote=on_promote,
        on_rollback=on_rollback,
        pipeline_run=pipeline_run,
        clock=clock,
        sleep=sleep,
    )
    return plan, result


def run_rollback(
    config: DocloopConfig,
    registry: Registry,
    *,
    reason: str,
    pipeline_run: str = "",
    target: Target | None = None,
) -> Deployment | None:
    """Undo the newest deployment: the recorded predictor back, the previous champions.

    Idempotent: when the newest deployment is already rolled back (by this call before, or by
    its canary analysis), nothing changes and None is returned — a retried task never walks
    further back. To go back further, deploy the versions you want.

    Raises:
        DeployFailed: The newest deployment recorded nothing to go back to (it was the first).
    """
    store = registry.store
    with store.read() as session:
        last = session.scalar(
            select(Deployment)
            .where(Deployment.service == config.deploy.service_name)
            .where(Deployment.namespace == config.deploy.namespace)
            .where(Deployment.status.in_(("promoted", "rolled_back")))
            .order_by(Deployment.id.desc())
            .limit(1)
        )
        if last is not None:
            session.expunge(last)
    if last is None or last.status == "rolled_back":
        logger.info(
            "the newest deployment of %s is %s: nothing to roll back",
            config.deploy.service_name,
            "missing" if last is None else "already rolled back",
        )
        return None
    if not last.previous:
        raise DeployFailed(
            f"deployment {last.id} of {config.deploy.service_name} was the first; there is no "
            "earlier predictor to roll back to"
        )
    target = target or make_target(config)
    target.rollback(last.previous)
    before = previous_deployment(store, config.deploy.service_name, int(last.id))
    for task, version in (before.versions if before else {}).items():
        name = model_name_for(task, config)
        current = registry.default_version(name)
        if current is not None and current.version != version:
            registry.rollback_to(name, version, reason=reason, run_id=pipeline_run or None)
    with store.write() as session:
        row = session.get(Deployment, last.id)
        assert row is not None
        row.status = "rolled_back"
        row.reason = f"rolled back: {reason}"
        row.updated_at = utcnow()
    send_alert(
        config.alerts,
        "rolled_back",
        f"{config.deploy.service_name} rolled back from {last.versions}: {reason}",
        {"deployment": int(last.id), "run_id": pipeline_run},
    )
    return last


def write_outputs(
    storage: Storage, output_uri: str, plan: ReleasePlan, result: RolloutResult
) -> dict[str, Any]:
    """``deployment.json`` (the typed artifact's metadata) and ``analysis.md``."""
    status = {
        "deployment_id": result.deployment_id,
        "status": result.status,
        "changed": result.changed,
        "versions": dict(plan.release.versions),
        "label": plan.release.label,
        "champion": plan.champion.label if plan.champion else None,
        "promoted_versions": plan.changed if result.status == "promoted" else {},
        "service": result.state,
    }
    storage.write_bytes(
        join(output_uri, STATUS_FILE),
        json.dumps(status, indent=2).encode(),
        content_type="application/json",
    )
    why = "first deployment or already serving" if result.changed else "re-run: already done"
    markdown = (
        render_markdown(result.verdict, result.steps)
        if result.verdict is not None
        else f"# Deploy: **{result.status.upper()}**\n\n{plan.release.label}: no canary "
        f"analysis ({'no new version to deploy' if result.status == 'unchanged' else why}).\n"
    )
    storage.write_bytes(
        join(output_uri, ANALYSIS_FILE), markdown.encode(), content_type="text/markdown"
    )
    return status

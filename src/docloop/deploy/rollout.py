"""A rollout end to end: canary → analysis → promote or roll back, recorded and idempotent.

The same code drives every target (:class:`Target`: the cluster's
:class:`~docloop.deploy.kserve_target.KServeTarget`, or the local ModelServer processes); only
where traffic goes differs. What happened is a ``deployments`` row keyed by (service, namespace,
versions): a re-run with the same versions finds it and does nothing (``promoted`` /
``rolled_back``), or picks up a canary left running by a crash. The row records the pre-deploy
state before the canary starts, so rollback is deterministic.

Promotion is two moves in one order: the serving side first (all traffic to the canary), then
the registry (alias ``champion``, the one ``default`` row, an audit entry per model). A crash
between them leaves a row in ``canary`` whose re-run promotes the registry (the serving side is
already done: promote is a no-op there).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select

from docloop.config import CanaryConfig, DeployConfig
from docloop.deploy.analysis import CanaryVerdict, VariantStats, analyse_canary
from docloop.deploy.inference_service import PredictorRelease
from docloop.errors import DeployFailed, RolloutNotReady
from docloop.feedback.contracts import FeedbackRecord
from docloop.feedback.records import accepted_feedback, iter_predictions
from docloop.feedback.verdicts import (
    confirms_entities,
    corrects_doc_type,
    newest_verdicts,
    predicted_spans,
    verdict_of,
)
from docloop.monitor.sources import served_task_version
from docloop.store.db import Store
from docloop.store.tables import Deployment, utcnow

logger = logging.getLogger(__name__)


class TargetState(Protocol):
    """What a target reports about its service (``ServiceState`` or the local equivalent)."""

    @property
    def stable_label(self) -> str | None:
        """The versions serving the stable traffic."""
        ...

    @property
    def canary_label(self) -> str | None:
        """The versions of the canary, if one is in place."""
        ...

    @property
    def canary_percent(self) -> int:
        """The canary's share of traffic."""
        ...

    def as_json(self) -> dict[str, Any]:
        """The state as JSON."""
        ...


class Target(Protocol):
    """A place the docloop predictor runs with a stable and a canary variant."""

    def state(self) -> TargetState | None:
        """The current state (None: nothing deployed yet)."""
        ...

    def first_deploy(self, release: PredictorRelease) -> TargetState:
        """Serve ``release`` with all traffic (nothing was served before)."""
        ...

    def start_canary(self, release: PredictorRelease, percent: int) -> dict[str, Any]:
        """Apply ``release`` as a canary (without waiting); return what rollback needs."""
        ...

    def wait_canary(self, previous: dict[str, Any]) -> TargetState:
        """Wait until the canary :meth:`start_canary` applied is ready."""
        ...

    def promote(self) -> TargetState:
        """Give the canary all traffic."""
        ...

    def rollback(self, previous: dict[str, Any]) -> TargetState:
        """Restore what served before the canary."""
        ...


StatsSource = Callable[[datetime, PredictorRelease, str], VariantStats]
"""``(since, release, variant) -> VariantStats``: one variant's live numbers since ``since``."""


@dataclass(frozen=True)
class RolloutResult:
    """How a rollout ended.

    Attributes:
        deployment_id: The ``deployments`` row (None: nothing was deployed).
        status: ``promoted``, ``rolled_back`` or ``unchanged`` (``failed`` raises instead).
        changed: False when a re-run found the rollout already done.
        verdict: The last canary analysis (None: first deploy or a re-run).
        steps: Every look the analysis took.
        state: The target's state at the end.
    """

    deployment_id: int | None
    status: str
    changed: bool
    verdict: CanaryVerdict | None
    steps: list[CanaryVerdict] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


def deployment_key(config: DeployConfig, release: PredictorRelease) -> str:
    """The idempotency key of a rollout: target, service, namespace and the versions served."""
    body = json.dumps(
        [
            config.target,
            config.service_name,
            config.namespace,
            dict(sorted(release.versions.items())),
        ]
    )
    return f"{config.service_name}:{hashlib.sha256(body.encode()).hexdigest()[:24]}"


def _serves(versions: Mapping[str, str], named: Mapping[str, str], model_version: str) -> bool:
    """Whether a prediction (or a verdict on one) was served by the release ``versions``."""
    return all(
        (named.get(task) or served_task_version(model_version, task)) == version
        for task, version in versions.items()
    )


def _entity_counts(record: FeedbackRecord) -> tuple[int, int, int] | None:
    """(true positives, predicted, gold) spans of one verdict; None when they cannot be scored."""
    if confirms_entities(record):
        count = len(record.predicted_entities)  # every predicted entity is right, none missing
        return count, count, count
    predicted = predicted_spans(record.predicted_entities)
    gold = verdict_of(record).entities
    if predicted is None or gold is None:
        return None  # a corrected list for a prediction without word positions
    return len(predicted & gold), len(predicted), len(gold)


def store_stats(store: Store, served: Mapping[str, Mapping[str, str]]) -> StatsSource:
    """Stats from the prediction log and the feedback: requests, latency, live quality.

    ``served`` maps a variant label to the versions its predictions report per task
    (``classify``, ``extract``: each card's MLflow run id); a prediction belongs to the variant
    whose whole release made it, so two releases that share the classifier are still told apart.
    Live quality is read from the newest verdict per prediction (:mod:`docloop.feedback.verdicts`):
    document-type accuracy and entity counts for a micro F1. Failed requests are not in the log, so
    ``errors`` stays unknown here (the local target's router counts them).
    """

    def collect(since: datetime, release: PredictorRelease, variant: str) -> VariantStats:
        versions = dict(served[variant])
        latencies: list[float] = []
        requests = 0
        for prediction in iter_predictions(store, since, None):
            if not _serves(versions, prediction.model_versions, prediction.model_version):
                continue
            requests += 1
            latency = prediction.ocr.get("latency_ms")
            if isinstance(latency, int | float) and not isinstance(latency, bool):
                latencies.append(float(latency))
        reviewed = correct = scored = true_positives = predicted = gold = 0
        verdicts = newest_verdicts(
            record
            for record in accepted_feedback(store, since)
            if _serves(versions, {}, record.model_version)
        )
        for record in verdicts:
            reviewed += 1
            correct += int(not corrects_doc_type(record))
            counts = _entity_counts(record)
            if counts is not None:
                scored += 1
                true_positives, predicted, gold = (
                    a + b for a, b in zip((true_positives, predicted, gold), counts, strict=True)
                )
        return VariantStats(
            variant=variant,
            requests=requests,
            latencies_ms=latencies,
            versions=versions,
            reviewed=reviewed,
            correct=correct,
            entity_reviewed=scored,
            entity_true_positives=true_positives,
            entity_predicted=predicted,
            entity_gold=gold,
        )

    return collect


def _row(store: Store, key: str) -> Deployment | None:
    with store.read() as session:
        row = session.scalar(select(Deployment).where(Deployment.key == key))
        if row is not None:
            session.expunge(row)
        return row


def _update(store: Store, deployment_id: int, **values: Any) -> None:
    with store.write() as session:
        row = session.get(Deployment, deployment_id)
        if row is None:  # pragma: no cover - rows are never deleted
            raise DeployFailed(f"deployment {deployment_id} vanished from the store")
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = utcnow()


def _insert(
    store: Store, key: str, config: DeployConfig, release: PredictorRelease, pipeline_run: str
) -> int:
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
    now = utcnow()
    with store.write() as session:
        session.execute(
            insert(Deployment)
            .values(
                key=key,
                service=config.service_name,
                namespace=config.namespace,
                target=config.target,
                mode=config.mode,
                versions=dict(release.versions),
                storage_uris=dict(release.storage_uris),
                canary_percent=config.canary.traffic_percent,
                status="pending",
                pipeline_run=pipeline_run or None,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[Deployment.key])
        )
        row_id = session.scalar(select(Deployment.id).where(Deployment.key == key))
    assert row_id is not None
    return int(row_id)


def previous_deployment(store: Store, service: str, before_id: int) -> Deployment | None:
    """The last promoted deployment of ``service`` before row ``before_id`` (rollback's target)."""
    with store.read() as session:
        row = session.scalar(
            select(Deployment)
            .where(Deployment.service == service, Deployment.id < before_id)
            .where(Deployment.status == "promoted")
            .order_by(Deployment.id.desc())
            .limit(1)
        )
        if row is not None:
            session.expunge(row)
        return row


def run_rollout(
    target: Target,
    store: Store,
    config: DeployConfig,
    release: PredictorRelease,
    champion_label: str | None,
    stats: StatsSource,
    *,
    on_promote: Callable[[], None],
    on_rollback: Callable[[Sequence[str]], None],
    pipeline_run: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutResult:
    """Roll ``release`` out: first deploy, or canary → analysis → promote / roll back.

    Args:
        target: Where it runs.
        store: The state store (``deployments``; predictions and feedback for the analysis).
        config: ``deploy`` settings, ``deploy.canary`` the analysis policy.
        release: What to serve.
        champion_label: The label of what serves now (the analysis's other variant).
        stats: Live numbers per variant.
        on_promote: Called after the serving side promoted (the registry's promotion).
        on_rollback: Called with the reasons after a rollback (marks the versions, alerts).
        pipeline_run: The KFP run, recorded with the row.
        clock: Monotonic seconds.
        sleep: How to wait between looks.

    Returns:
        How it ended.

    Raises:
        DeployFailed: The target refused a change or could not be rolled back; a canary that
            was not ready in time is rolled back first and then raised as
            :class:`~docloop.errors.RolloutNotReady`.
    """
    key = deployment_key(config, release)
    existing = _row(store, key)
    if existing is not None and existing.status in ("promoted", "rolled_back"):
        logger.info("deployment %s of %s is already %s", key, release.label, existing.status)
        if existing.status == "promoted":
            on_promote()  # idempotent: re-points the registry should a crash have left it behind
        return RolloutResult(int(existing.id), existing.status, False, None)
    deployment_id = _insert(store, key, config, release, pipeline_run)
    current = target.state()

    if current is None:
        try:
            state = target.first_deploy(release)
        except RolloutNotReady as exc:
            _update(store, deployment_id, status="failed", reason=f"first deployment: {exc}")
            raise
        on_promote()
        _update(store, deployment_id, status="promoted", reason="first deployment: no champion "
                "was serving", service_status=state.as_json())  # fmt: skip
        return RolloutResult(deployment_id, "promoted", True, None, state=state.as_json())
    if current.stable_label == release.label and current.canary_label is None:
        return _already_serving(store, deployment_id, current, on_promote)

    row = _row(store, key)
    previous: dict[str, Any] | None = row.previous if row is not None else None
    if current.canary_label == release.label and previous:
        logger.info("canary %s is already running; resuming its analysis", release.label)
    else:
        previous = target.start_canary(release, config.canary.traffic_percent)
        _update(store, deployment_id, status="canary", previous=previous)
    try:
        target.wait_canary(previous)
    except RolloutNotReady as exc:
        reason = f"canary not ready: {exc}"
        try:
            target.rollback(previous)
        except DeployFailed as undo:
            reason += f"; the rollback failed too: {undo} — restore it by hand (deployments row "
            reason += f"{deployment_id} holds the previous predictor)"
        _update(store, deployment_id, status="failed", reason=reason)
        on_rollback([reason])
        raise

    started = utcnow() if row is None or row.status == "pending" else row.updated_at
    champion = champion_label or str(previous.get("label") or "champion")
    verdict, steps = _analyse(stats, started, release, champion, config.canary, clock, sleep)
    analysis = {
        "verdict": verdict.model_dump(mode="json"),
        "steps": [s.model_dump(mode="json", exclude={"checks"}) for s in steps],
    }
    if verdict.decision == "promote":
        state = target.promote()
        on_promote()
        status = "promoted"
    else:
        state = target.rollback(previous)
        on_rollback(verdict.reasons)
        status = "rolled_back"
    _update(store, deployment_id, status=status, reason=verdict.reasons[0], analysis=analysis,
            service_status=state.as_json())  # fmt: skip
    return RolloutResult(deployment_id, status, True, verdict, steps, state.as_json())


def _already_serving(
    store: Store, deployment_id: int, current: TargetState, on_promote: Callable[[], None]
) -> RolloutResult:
    on_promote()
    _update(store, deployment_id, status="promoted", reason="already serving all traffic",
            service_status=current.as_json())  # fmt: skip
    return RolloutResult(deployment_id, "promoted", False, None, state=current.as_json())


def _analyse(
    stats: StatsSource,
    started: datetime,
    release: PredictorRelease,
    champion: str,
    policy: CanaryConfig,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> tuple[CanaryVerdict, list[CanaryVerdict]]:
    """Look at both variants every ``poll_s`` until the analysis decides."""
    began = clock()
    steps: list[CanaryVerdict] = []
    while True:
        verdict = analyse_canary(
            stats(started, release, champion),
            stats(started, release, release.label),
            policy,
            clock() - began,
        )
        steps.append(verdict)
        logger.info("canary analysis after %.0f s: %s", verdict.elapsed_s, verdict.reasons[0])
        if verdict.decision != "wait":
            return verdict, steps
        sleep(policy.poll_s)

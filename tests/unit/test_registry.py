"""The registry against real MLflow (SQLite tracking store) and the state store on both backends.

Includes the promotion race: two real processes promoting different versions at the same moment,
many rounds, on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from docloop.errors import InvalidInput, PromotionConflict, RegistryError
from docloop.store import Registry, default_idempotency_key, open_store
from docloop.store import versions as vs
from docloop.store.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, TAG_IDEMPOTENCY_KEY
from tests.registry_race import RACE_TIMEOUT_S, race_worker

pytestmark = pytest.mark.unit

MODEL = "docloop-classifier"
RACE_ROUNDS = 10


@dataclass(frozen=True)
class MlflowTemplate:
    """A migrated MLflow SQLite database with two finished runs, copied into each test."""

    path: Path
    run_ids: tuple[str, str]


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> MlflowTemplate:
    root = tmp_path_factory.mktemp("mlflow-template")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment(
        "docloop-classify", artifact_location=(root / "artifacts").as_uri()
    )
    runs = []
    for _ in range(2):
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)
    return MlflowTemplate(root / "mlflow.db", (runs[0], runs[1]))


@dataclass
class Setup:
    registry: Registry
    client: MlflowClient
    mlflow_uri: str
    store_url: str
    runs: tuple[str, str]
    models: Path

    def model_uri(self, name: str) -> str:
        folder = self.models / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "docloop-model.json").write_text("{}")
        return folder.as_uri()

    def register(self, name: str, run: int = 0, **kwargs: Any) -> str:
        registration = self.registry.register(
            MODEL,
            self.model_uri(name),
            self.runs[run],
            "sha256:dataset",
            {"blessed": True, "delta": 0.02},
            "abc123",
            **kwargs,
        )
        return registration.version

    def aliases(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.client.get_registered_model(MODEL).aliases.items()}

    def tag(self, version: str, key: str) -> str | None:
        tags: dict[str, str] = self.client.get_model_version(MODEL, version).tags
        return tags.get(key)


def _mlflow_copy(template: MlflowTemplate, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template.path, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def setup(store_url: str, mlflow_template: MlflowTemplate, tmp_path: Path) -> Iterator[Setup]:
    mlflow_uri = _mlflow_copy(mlflow_template, tmp_path / "mlflow")
    registry = Registry(open_store(store_url, lock_timeout_s=5), mlflow_uri)
    try:
        yield Setup(
            registry=registry,
            client=MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri),
            mlflow_uri=mlflow_uri,
            store_url=store_url,
            runs=mlflow_template.run_ids,
            models=tmp_path / "models",
        )
    finally:
        registry.close()


def _audit(setup: Setup) -> list[tuple[str, str | None, str]]:
    return [(a.action, a.from_version, a.to_version) for a in setup.registry.audit_log(MODEL)]


def _statuses(setup: Setup) -> dict[str, str]:
    return {record.version: record.status for record in setup.registry.versions(MODEL)}


# -- register ------------------------------------------------------------------------------------


def test_register_is_idempotent(setup: Setup) -> None:
    uri = setup.model_uri("a")
    first = setup.registry.register(
        MODEL, uri, setup.runs[0], "sha256:dataset", {"blessed": True}, "abc123"
    )
    again = setup.registry.register(
        MODEL, uri + "/", setup.runs[0], "sha256:dataset", {"blessed": True}, "abc123"
    )
    assert first.created
    assert not again.created
    assert again.version == first.version == "1"
    assert first.idempotency_key == default_idempotency_key(uri, setup.runs[0])
    found = setup.client.search_model_versions(f"name = '{MODEL}'")
    assert [str(mv.version) for mv in found] == ["1"]
    assert [r.version for r in setup.registry.versions(MODEL)] == ["1"]
    assert _audit(setup) == [("register", None, "1")]

    version = setup.client.get_model_version(MODEL, "1")
    assert version.source == uri
    assert version.run_id == setup.runs[0]
    assert version.tags[TAG_IDEMPOTENCY_KEY] == first.idempotency_key
    assert version.tags["docloop.dataset_digest"] == "sha256:dataset"
    assert version.tags["docloop.code_version"] == "abc123"
    assert version.tags["docloop.gate.blessed"] == "true"
    assert setup.aliases() == {CHALLENGER: "1"}
    record = setup.registry.get_version(MODEL, "1")
    assert (record.status, record.run_id, record.model_uri) == ("candidate", setup.runs[0], uri)
    assert record.gate == {"blessed": True}


def test_new_inputs_make_a_new_version_and_move_the_challenger(setup: Setup) -> None:
    assert setup.register("a") == "1"
    assert setup.register("a", run=1) == "2"  # same folder, another run
    assert setup.register("b", idempotency_key="retrain-2026-11-25") == "3"
    assert setup.register("c", idempotency_key="retrain-2026-11-25") == "3"  # the key decides
    assert setup.aliases() == {CHALLENGER: "3"}
    assert setup.register("a") == "1"  # a retry of an old task does not move the challenger back
    assert setup.aliases() == {CHALLENGER: "3"}


def test_register_recovers_when_the_store_missed_a_version(setup: Setup, tmp_path: Path) -> None:
    """MLflow has the version (the task died before the store committed): a retry adopts it."""
    setup.register("a")
    fresh_store = open_store(f"sqlite:///{tmp_path / 'other-state.db'}")
    other = Registry(fresh_store, setup.mlflow_uri)
    try:
        again = other.register(
            MODEL, setup.model_uri("a"), setup.runs[0], "sha256:dataset", None, None
        )
        assert (again.version, again.created) == ("1", False)
        assert [r.status for r in other.versions(MODEL)] == ["candidate"]
        assert len(setup.client.search_model_versions(f"name = '{MODEL}'")) == 1
    finally:
        other.close()


def test_register_refuses_bad_input(setup: Setup) -> None:
    with pytest.raises(InvalidInput, match="file://, s3:// or gs://"):
        setup.registry.register(MODEL, "http://example.com/model", None, None, None, None)
    with pytest.raises(InvalidInput, match="model name"):
        setup.registry.register("bad name'", setup.model_uri("a"), None, None, None, None)
    with pytest.raises(InvalidInput, match="idempotency key"):
        setup.registry.register(
            MODEL, setup.model_uri("a"), None, None, None, None, idempotency_key="a' or '1'='1"
        )
    with pytest.raises(InvalidInput, match="JSON"):
        setup.registry.register(MODEL, setup.model_uri("a"), None, None, {"x": object()}, None)
    assert setup.registry.versions(MODEL) == []


def test_store_and_mlflow_must_not_share_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    store = open_store(url)
    try:
        with pytest.raises(InvalidInput, match="separate databases"):
            Registry(store, url, client=object())
    finally:
        store.close()


# -- promote / reject / rollback ----------------------------------------------------------------


def test_promote_moves_champion_and_keeps_the_previous_one(setup: Setup) -> None:
    one, two = setup.register("a"), setup.register("b")
    first = setup.registry.promote(MODEL, one, reason="first model", run_id="kfp-1", actor="ci")
    assert (first.from_version, first.to_version, first.changed) == (None, "1", True)
    assert setup.aliases() == {CHAMPION: "1", CHALLENGER: "2"}

    second = setup.registry.promote(MODEL, two, reason="gate passed", run_id="kfp-2", actor="ci")
    assert (second.from_version, second.to_version) == ("1", "2")
    assert setup.aliases() == {CHAMPION: "2", PREVIOUS_CHAMPION: "1"}  # challenger promoted
    assert _statuses(setup) == {"1": "retired", "2": "default"}
    assert (setup.tag("1", "docloop.status"), setup.tag("2", "docloop.status")) == (
        "retired",
        "default",
    )
    default = setup.registry.default_version(MODEL)
    assert default is not None
    assert default.version == "2"
    last = setup.registry.audit_log(MODEL)[-1]
    assert (last.action, last.from_version, last.to_version) == ("promote", "1", "2")
    assert (last.reason, last.run_id, last.actor) == ("gate passed", "kfp-2", "ci")


def test_promoting_the_default_again_changes_nothing_but_heals_the_alias(setup: Setup) -> None:
    one, two = setup.register("a"), setup.register("b")
    setup.registry.promote(MODEL, one, reason="first")
    audit = _audit(setup)
    setup.client.set_registered_model_alias(MODEL, CHAMPION, two)  # drifted by hand
    again = setup.registry.promote(MODEL, one, reason="retry of the same task")
    assert not again.changed
    assert _audit(setup) == audit
    assert setup.aliases()[CHAMPION] == "1"


def test_reject_and_mark_status(setup: Setup) -> None:
    one, two = setup.register("a"), setup.register("b")
    canary = setup.registry.mark_status(MODEL, two, "canary", reason="10% of traffic")
    assert canary.status == "canary"
    assert setup.aliases() == {CHALLENGER: "2"}
    rejected = setup.registry.reject(MODEL, two, ["f1 0.61 < floor 0.7", "invoice f1 -0.09"])
    assert rejected.status == "rejected"
    assert rejected.status_reason == "f1 0.61 < floor 0.7; invoice f1 -0.09"
    assert setup.tag(two, "docloop.status") == "rejected"
    assert CHALLENGER not in setup.aliases()
    assert _audit(setup)[-1] == ("reject", None, "2")
    with pytest.raises(RegistryError, match="status is rejected"):
        setup.registry.promote(MODEL, two, reason="try anyway")
    setup.registry.promote(MODEL, one, reason="ok")
    with pytest.raises(RegistryError, match="is the default"):
        setup.registry.reject(MODEL, one, "no")
    with pytest.raises(RegistryError, match="not in the state store"):
        setup.registry.promote(MODEL, "99", reason="typo")


def test_rollback_puts_the_previous_champion_back(setup: Setup) -> None:
    one, two = setup.register("a"), setup.register("b")
    setup.registry.promote(MODEL, one, reason="first")
    setup.registry.promote(MODEL, two, reason="second")
    rollback = setup.registry.rollback_to(MODEL, reason="error rate doubled", run_id="alert-7")
    assert (rollback.action, rollback.from_version, rollback.to_version) == ("rollback", "2", "1")
    assert _statuses(setup) == {"1": "default", "2": "rejected"}
    assert setup.aliases() == {CHAMPION: "1", PREVIOUS_CHAMPION: "2"}
    assert _audit(setup)[-1] == ("rollback", "2", "1")
    with pytest.raises(RegistryError, match="rejected"):
        setup.registry.rollback_to(MODEL, reason="again")
    three = setup.register("c")
    setup.registry.promote(MODEL, three, reason="third")
    assert setup.registry.rollback_to(MODEL, one, reason="explicit").to_version == "1"


def test_an_mlflow_failure_leaves_the_store_unchanged(setup: Setup) -> None:
    one = setup.register("a")

    class FailingClient:
        def __getattr__(self, name: str) -> Any:
            return getattr(setup.client, name)

        def set_registered_model_alias(self, *args: Any) -> None:
            raise MlflowException("registry is read-only today")

    broken = Registry(setup.registry.store, setup.mlflow_uri, client=FailingClient())
    audit = _audit(setup)
    with pytest.raises(RegistryError, match=r"read-only today.*store was not changed"):
        broken.promote(MODEL, one, reason="x")
    assert setup.registry.default_version(MODEL) is None
    assert _audit(setup) == audit
    assert setup.registry.promote(MODEL, one, reason="x").changed


def test_a_promotion_that_cannot_get_the_lock_is_a_conflict(setup: Setup) -> None:
    one = setup.register("a")
    impatient = Registry(open_store(setup.store_url, lock_timeout_s=0.3), setup.mlflow_uri)
    try:
        with setup.registry.store.write() as session:
            vs.lock_model(session, MODEL)  # another promotion is in progress
            with pytest.raises(PromotionConflict, match=r"held the model's lock.*retry"):
                impatient.promote(MODEL, one, reason="x")
        assert impatient.promote(MODEL, one, reason="x").changed
    finally:
        impatient.close()


# -- the race: two processes promoting different versions at once -------------------------------


def test_concurrent_promotions_from_two_processes_leave_one_default(setup: Setup) -> None:
    versions = [setup.register("a"), setup.register("b"), setup.register("c")]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(
            target=race_worker,
            args=(
                i,
                MODEL,
                setup.store_url,
                setup.mlflow_uri,
                versions,
                RACE_ROUNDS,
                barrier,
                results,
            ),
        )
        for i in range(2)
    ]
    for process in workers:
        process.start()
    try:
        reports = [results.get(timeout=RACE_TIMEOUT_S) for _ in workers]
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    errors = [error for _, _, error in reports if error]
    assert not errors, "\n".join(errors)
    outcomes = [outcome for _, worker_outcomes, _ in reports for outcome in worker_outcomes]
    assert len(outcomes) == 2 * RACE_ROUNDS
    changed = [o for o in outcomes if o[0] == "promoted" and o[2]]

    statuses = _statuses(setup)
    defaults = [v for v, status in statuses.items() if status == "default"]
    assert len(defaults) == 1, statuses
    assert set(statuses.values()) == {"default", "retired"}
    promotions = [a for a in setup.registry.audit_log(MODEL) if a.action == "promote"]
    assert len(promotions) == len(changed)  # every effective promotion audited exactly once
    assert promotions[-1].to_version == defaults[0]
    previous = None
    for entry in promotions:  # a chain: each promotion starts from the default the last one left
        assert entry.from_version == previous, [(a.from_version, a.to_version) for a in promotions]
        previous = entry.to_version
    assert setup.aliases()[CHAMPION] == defaults[0]  # MLflow applied them in the same order

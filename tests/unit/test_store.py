"""The SQL state store on SQLite and on a real PostgreSQL: migrations, constraints, transitions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from docloop.errors import InvalidInput, RegistryError, StoreBusy, StoreError
from docloop.store import versions as vs
from docloop.store.db import (
    Store,
    alembic_config,
    create_store_engine,
    current_revision,
    head_revision,
    normalize_url,
    open_store,
    upgrade,
)
from docloop.store.tables import Base, FeedbackEvent, ModelVersion, RetrainAttempt
from tests.object_stores import free_port

pytestmark = pytest.mark.unit

MODEL = "docloop-classifier"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url, lock_timeout_s=5)
    try:
        yield opened
    finally:
        opened.close()


def _register(store: Store, *versions: str, model: str = MODEL) -> None:
    with store.write() as session:
        for version in versions:
            vs.record_version(
                session,
                model,
                version,
                model_uri=f"file:///models/{model}/{version}",
                run_id=f"run-{version}",
                dataset_digest="sha256:data",
                gate={"passed": True},
                code_version="abc123",
                actor="test",
            )


def _promote(
    store: Store, version: str | None, action: vs.SwitchAction = "promote"
) -> vs.Promotion:
    with store.write() as session:
        return vs.switch_default(
            session,
            MODEL,
            version,
            action=action,
            reason=f"{action} {version}",
            run_id="r",
            actor="t",
        )


def _statuses(store: Store, model: str = MODEL) -> dict[str, str]:
    with store.read() as session:
        return {record.version: record.status for record in vs.list_versions(session, model)}


def _audit(store: Store) -> list[tuple[str, str | None, str]]:
    with store.read() as session:
        return [(a.action, a.from_version, a.to_version) for a in vs.audit_log(session, MODEL)]


# -- migrations ---------------------------------------------------------------------------------


def test_migrations_reach_head_and_match_the_models(store: Store) -> None:
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"migrations and docloop.store.tables disagree: {diff}"


def test_the_metadata_comparison_would_see_a_difference(store: Store) -> None:
    """Guards the test above against comparing nothing: a model change must show up."""
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    sa.Table("watermarks", changed, sa.Column("note", sa.Text()), extend_existing=True)
    changed.remove(changed.tables["retrain_attempts"])
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), changed)
    kinds = {entry[0] for entry in diff if isinstance(entry, tuple)}
    assert {"add_column", "remove_table"} <= kinds


def test_upgrade_is_idempotent_and_downgrade_reverses_it(store_url: str) -> None:
    upgrade(store_url)
    upgrade(store_url)  # nothing to do the second time
    engine = create_store_engine(store_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert "promotion_audit" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_open_without_migrating_refuses_an_old_schema(store_url: str) -> None:
    with pytest.raises(StoreError, match=rf"needs {head_revision()}; run docloop\.store\.upgrade"):
        open_store(store_url, migrate=False)
    open_store(store_url).close()
    open_store(store_url, migrate=False).close()


def test_revision_0002_moves_prefixed_superseded_rows_to_their_own_status(store_url: str) -> None:
    """Revision 0001 stored ``superseded`` as ``quarantined`` + ``superseded:`` prefix."""
    engine = create_store_engine(store_url)
    events = FeedbackEvent.__table__
    row = {
        "model_name": "docloop",
        "model_version": "1",
        "request_id": "req-1",
        "doc_id": "doc-1",
        "reviewer_id": "alice",
        "kind": "confirmation",
        "payload": {},
        "received_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    try:
        upgrade(engine, "0001")
        with engine.begin() as connection:
            connection.execute(
                events.insert(),
                [
                    {
                        **row,
                        "idempotency_key": "old-superseded",
                        "status": "quarantined",
                        "quarantine_reason": "superseded: conflict_lost: outvoted",
                    },
                    {
                        **row,
                        "idempotency_key": "old-quarantined",
                        "status": "quarantined",
                        "quarantine_reason": "low_trust: below 0.6",
                    },
                ],
            )
        upgrade(engine)
        with engine.begin() as connection:
            stored = dict(
                connection.execute(
                    sa.select(events.c.idempotency_key, events.c.status).order_by(events.c.id)
                ).all()
            )
            reasons = connection.scalars(
                sa.select(events.c.quarantine_reason).order_by(events.c.id)
            ).all()
            assert stored == {"old-superseded": "superseded", "old-quarantined": "quarantined"}
            assert reasons == ["conflict_lost: outvoted", "low_trust: below 0.6"]
            # a superseded verdict needs its reason
            with pytest.raises(IntegrityError), connection.begin_nested():
                connection.execute(
                    events.insert(),
                    {**row, "idempotency_key": "no-reason", "status": "superseded"},
                )
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        with engine.begin() as connection:
            assert connection.execute(
                sa.select(events.c.status, events.c.quarantine_reason).order_by(events.c.id)
            ).all() == [
                ("quarantined", "superseded: conflict_lost: outvoted"),
                ("quarantined", "low_trust: below 0.6"),
            ]
    finally:
        engine.dispose()


# -- constraints enforced by the database -------------------------------------------------------


def test_database_allows_only_one_default_per_model(store: Store) -> None:
    _register(store, "1", "2")
    _register(store, "1", model="docloop-extractor")
    _promote(store, "1")
    with store.write() as session:  # another model may have its own default
        vs.switch_default(
            session, "docloop-extractor", "1", action="promote", reason="x", run_id=None, actor="t"
        )
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            sa.update(ModelVersion)
            .where(ModelVersion.model_name == MODEL, ModelVersion.version == "2")
            .values(status="default")
        )
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            sa.insert(ModelVersion).values(
                model_name=MODEL,
                version="3",
                status="default",
                model_uri="file:///m/3",
                created_at=datetime.now(UTC),
                updated_at=datetime.now(UTC),
            )
        )
    assert _statuses(store) == {"1": "default", "2": "candidate"}


def test_database_refuses_unknown_statuses(store: Store) -> None:
    _register(store, "1")
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(sa.update(ModelVersion).values(status="champion"))
    with pytest.raises(IntegrityError), store.write() as session:
        session.add(
            FeedbackEvent(
                idempotency_key="k",
                model_name=MODEL,
                model_version="1",
                request_id="r",
                doc_id="d",
                reviewer_id="u",
                kind="correction",
                payload={},
                status="quarantined",  # a quarantined event needs its reason
            )
        )


def test_audit_log_is_append_only(store: Store) -> None:
    _register(store, "1", "2")
    _promote(store, "1")
    before = _audit(store)
    assert before == [("register", None, "1"), ("register", None, "2"), ("promote", None, "1")]
    statements = [
        sa.text("UPDATE promotion_audit SET reason = 'rewritten'"),
        sa.text("DELETE FROM promotion_audit"),
        sa.text("UPDATE promotion_audit SET to_version = '2' WHERE action = 'promote'"),
    ]
    if store.dialect == "postgresql":
        statements.append(sa.text("TRUNCATE promotion_audit"))
    for statement in statements:
        with pytest.raises(IntegrityError, match="append-only"), store.engine.begin() as conn:
            conn.execute(statement)
    assert _audit(store) == before


def test_audit_rows_must_name_registered_versions(store: Store) -> None:
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO promotion_audit (model_name, to_version, action, reason, actor, at) "
                "VALUES ('ghost', '9', 'promote', 'x', 'y', :at)"
            ),
            {"at": datetime.now(UTC).replace(tzinfo=None)},
        )


# -- transitions ----------------------------------------------------------------------------------


def test_promote_retires_the_old_default_and_audits_once(store: Store) -> None:
    _register(store, "1", "2", "3")
    first = _promote(store, "1")
    assert (first.from_version, first.to_version, first.changed) == (None, "1", True)
    second = _promote(store, "3")  # a higher id than the old default's, then a lower one
    third = _promote(store, "2")
    assert (second.from_version, third.from_version) == ("1", "3")
    assert _statuses(store) == {"1": "retired", "2": "default", "3": "retired"}
    again = _promote(store, "2")
    assert not again.changed
    assert [row for row in _audit(store) if row[0] == "promote"] == [
        ("promote", None, "1"),
        ("promote", "1", "3"),
        ("promote", "3", "2"),
    ]
    with store.read() as session:
        current = vs.default_version(session, MODEL)
        assert current is not None
        assert current.version == "2"
        assert current.status_reason == "promote 2"
        assert current.gate == {"passed": True}
        assert current.updated_at.tzinfo is not None


def test_rollback_restores_the_previous_default_and_rejects_the_bad_one(store: Store) -> None:
    _register(store, "1", "2")
    with pytest.raises(RegistryError, match="no previous default"):
        _promote(store, None, "rollback")
    _promote(store, "1")
    _promote(store, "2")
    rollback = _promote(store, None, "rollback")
    assert (rollback.from_version, rollback.to_version, rollback.action) == ("2", "1", "rollback")
    assert _statuses(store) == {"1": "default", "2": "rejected"}
    assert _audit(store)[-1] == ("rollback", "2", "1")
    with pytest.raises(RegistryError, match=r"status is rejected .* register a new version"):
        _promote(store, None, "rollback")  # the previous default was the bad one
    with pytest.raises(RegistryError, match="status is rejected"):
        _promote(store, "2")
    _register(store, "3")
    with pytest.raises(RegistryError, match="use promote"):
        _promote(store, "3", "rollback")  # never was a default


def test_set_status_audits_and_guards_the_default(store: Store) -> None:
    _register(store, "1", "2")
    _promote(store, "1")
    with store.write() as session:
        record, changed = vs.set_status(
            session, MODEL, "2", "canary", reason="10% traffic", run_id=None, actor="t"
        )
        assert changed
        assert record.status == "canary"
        assert not vs.set_status(session, MODEL, "2", "canary", reason="", run_id=None, actor="t")[
            1
        ]
        vs.set_status(session, MODEL, "2", "rejected", reason="gate failed", run_id=None, actor="t")
    assert _audit(store)[-2:] == [("mark", None, "2"), ("reject", None, "2")]
    with store.write() as session:
        with pytest.raises(RegistryError, match="is the default"):
            vs.set_status(session, MODEL, "1", "retired", reason="", run_id=None, actor="t")
        with pytest.raises(RegistryError, match="only through promote"):
            vs.set_status(session, MODEL, "2", "default", reason="", run_id=None, actor="t")
        with pytest.raises(InvalidInput, match="unknown model status"):
            vs.set_status(session, MODEL, "2", "champion", reason="", run_id=None, actor="t")
        with pytest.raises(RegistryError, match="not in the state store"):
            vs.set_status(session, MODEL, "7", "canary", reason="", run_id=None, actor="t")


def test_record_version_is_an_upsert(store: Store) -> None:
    _register(store, "1")
    with store.write() as session:
        record, created = vs.record_version(
            session,
            MODEL,
            "1",
            model_uri=f"file:///models/{MODEL}/1",
            run_id="run-1",
            dataset_digest=None,
            gate={"passed": False},
            code_version=None,
            actor="t",
        )
    assert not created
    assert (record.gate, record.dataset_digest, record.status) == (
        {"passed": False},
        "sha256:data",
        "candidate",
    )
    assert _audit(store) == [("register", None, "1")]
    with pytest.raises(RegistryError, match="disagree"), store.write() as session:
        vs.record_version(
            session,
            MODEL,
            "1",
            model_uri="s3://elsewhere/model",
            run_id="run-9",
            dataset_digest=None,
            gate=None,
            code_version=None,
            actor="t",
        )


def test_bad_model_names_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="model name"), store.write() as session:
        vs.lock_model(session, "x'; DROP TABLE model_versions; --")


# -- locks ---------------------------------------------------------------------------------------


def test_a_writer_waiting_too_long_gets_store_busy(store_url: str) -> None:
    holder = open_store(store_url)
    waiter = open_store(store_url, lock_timeout_s=0.3)
    _register(holder, "1")
    try:
        with holder.write() as session:
            vs.lock_model(session, MODEL)
            with pytest.raises(StoreBusy, match="stayed locked"):
                _promote(waiter, "1")
        assert _statuses(holder) == {"1": "candidate"}
        _promote(waiter, "1")  # free again
    finally:
        holder.close()
        waiter.close()


# -- other tables --------------------------------------------------------------------------------


def test_watermarks_and_json_and_utc_round_trip(store: Store) -> None:
    assert store.get_watermark("drift.feedback") is None
    store.set_watermark("drift.feedback", "41")
    store.set_watermark("drift.feedback", "42")
    assert store.get_watermark("drift.feedback") == "42"
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    with store.write() as session:
        session.add(
            RetrainAttempt(
                trigger={"drift": {"psi": 0.31}},
                started_at=started,
                reasons=None,
                metric_deltas={"f1": -0.02},
            )
        )
    with store.read() as session:
        attempt = session.scalars(sa.select(RetrainAttempt)).one()
        assert attempt.started_at == started
        assert attempt.started_at.tzinfo == UTC
        assert attempt.trigger == {"drift": {"psi": 0.31}}
        assert attempt.reasons is None
        assert attempt.outcome == "pending"
        assert (
            session.scalar(sa.select(sa.func.count()).where(RetrainAttempt.reasons.is_(None))) == 1
        )  # Python None is SQL NULL, not JSON null
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), store.write() as session:
        session.add(RetrainAttempt(trigger={}, started_at=datetime(2026, 1, 1)))


# -- URLs and connection errors -------------------------------------------------------------------


def test_urls_are_normalised_and_checked() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(StoreError, match="psycopg 3"):
        normalize_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(StoreError, match="supports sqlite"):
        normalize_url("mysql://u:secret@h/db")
    with pytest.raises(StoreError, match="not a SQLAlchemy URL"):
        normalize_url("not a url")


def test_unreachable_postgres_is_a_clear_error() -> None:
    url = f"postgresql+psycopg://nobody:secret@127.0.0.1:{free_port()}/docloop"
    with pytest.raises(
        StoreError, match=r"failed while reading its schema revision.*PGPASSWORD"
    ) as caught:
        open_store(url)
    assert "secret" not in str(caught.value)


def test_sqlite_store_creates_its_folder_and_uses_wal(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    store = open_store(f"sqlite:///{folder / 'state.db'}")
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()

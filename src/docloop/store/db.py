"""Open, migrate and use the SQL state store (SQLite by default, PostgreSQL in production).

``open_store(url)`` is the entry point: it builds the engine, migrates the schema to the newest
revision (Alembic, run programmatically from the migrations shipped inside this package) and
returns a :class:`Store`, which hands out ORM sessions:

* ``store.read()``: a plain transaction;
* ``store.write()``: a transaction meant to change things. On SQLite it starts with
  ``BEGIN IMMEDIATE``, which takes the database's write lock at once (waiting up to the lock
  timeout), so two writers never both read and then fight over the upgrade to a write lock. On
  PostgreSQL it sets ``lock_timeout``, so a ``SELECT ... FOR UPDATE`` waits at most that long.
  A lock wait that runs out raises :class:`~docloop.errors.StoreBusy`.

URLs: ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db``, and
``postgresql+psycopg://user@host:5432/db`` (``postgresql://`` is accepted and means psycopg 3).
Passwords belong in ``$PGPASSWORD`` (libpq reads it), not in the URL.

SQLite connections get ``foreign_keys=ON``, WAL journaling and a busy timeout equal to the lock
timeout. Do not point the store and MLflow at the same SQLite file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session

from docloop.errors import StoreBusy, StoreError
from docloop.store.tables import Watermark, utcnow

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
DEFAULT_LOCK_TIMEOUT_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 10

_SQLITE_BEGIN: Final = "docloop_sqlite_begin"
# Key of the PostgreSQL advisory lock that serialises concurrent migrations ("docloop" in ASCII).
_MIGRATION_LOCK_KEY: Final = int.from_bytes(b"docloop", "big")
# PostgreSQL SQLSTATEs meaning "gave up waiting for a lock": lock_not_available, deadlock_detected,
# serialization_failure.
_PG_LOCK_STATES: Final = frozenset({"55P03", "40P01", "40001"})


def normalize_url(url: str | URL) -> URL:
    """Parse a store URL and pick the driver docloop uses (pysqlite, psycopg 3).

    Args:
        url: a SQLAlchemy URL string or object.

    Returns:
        The URL with ``postgresql``/``postgres`` mapped to ``postgresql+psycopg``.

    Raises:
        StoreError: the URL cannot be parsed or names a database/driver docloop does not support.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"store URL {url!r} is not a SQLAlchemy URL ({exc}); use e.g. "
            "sqlite:///.docloop/state.db or postgresql+psycopg://user@host:5432/docloop"
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise StoreError(
                f"store URL driver {parsed.drivername!r} is not installed with docloop; write "
                "postgresql+psycopg://... (psycopg 3)"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed.set(drivername="sqlite")
    raise StoreError(
        f"store URL {parsed.render_as_string(hide_password=True)!r} uses {parsed.drivername!r}; "
        "docloop's state store supports sqlite:///... and postgresql+psycopg://... only"
    )


def _masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _install_sqlite_hooks(engine: Engine, busy_timeout_s: float) -> None:
    """Foreign keys, WAL and a busy timeout per connection; docloop emits BEGIN itself."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling (no BEGIN before SELECT or DDL) is switched off so
        # that the "begin" hook below decides what BEGIN means.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_store_engine(
    url: str | URL, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Engine:
    """A SQLAlchemy engine for the state store, configured for SQLite or PostgreSQL.

    Args:
        url: the store URL (see :func:`normalize_url`).
        lock_timeout_s: SQLite's busy timeout (PostgreSQL's lock timeout is set per transaction by
            :meth:`Store.write`).

    Returns:
        The engine. The parent folder of a SQLite file is created if needed.

    Raises:
        StoreError: the URL is not supported, or the SQLite folder cannot be created.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder {folder} for the SQLite state store ({exc}); "
                    "choose a writable path in store.url or $DOCLOOP_STORE_URL"
                ) from exc
        engine = create_engine(parsed, connect_args={"timeout": lock_timeout_s})
        _install_sqlite_hooks(engine, lock_timeout_s)
        return engine
    return create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "docloop"},
    )


def is_lock_timeout(exc: DBAPIError) -> bool:
    """Whether a database error means "waited too long for a lock" (so a retry may succeed)."""
    state = getattr(exc.orig, "sqlstate", None)
    if state in _PG_LOCK_STATES:
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message


def _store_error(exc: DBAPIError, url: URL, action: str) -> StoreError:
    detail = " ".join(str(exc.orig).split())  # one line: libpq messages hold newlines and tabs
    if is_lock_timeout(exc):
        return StoreBusy(
            f"the state store {_masked(url)} stayed locked by another writer while {action} "
            f"({detail}); another promotion or migration is probably running: retry, or raise "
            "the lock timeout"
        )
    return StoreError(
        f"the state store {_masked(url)} failed while {action} ({detail}); check store.url / "
        "$DOCLOOP_STORE_URL, that the database server is up and reachable, and $PGPASSWORD"
    )


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic configuration pointing at docloop's migrations.

    Args:
        url: the store URL, needed only for offline (``--sql``) runs; online runs get a
            connection through ``config.attributes["connection"]``.

    Returns:
        The configuration (no ``alembic.ini`` is read).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


@functools.cache
def head_revision() -> str:
    """The newest migration revision shipped with this docloop."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}; reinstall docloop")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database).

    Raises:
        StoreError: the database cannot be reached.
    """
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        raise _store_error(exc, engine.url, "reading its schema revision") from exc


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the store's schema to ``revision`` (the newest by default).

    Safe to call from many processes at once: PostgreSQL migrations hold an advisory lock, SQLite
    ones the database's write lock, so one process migrates and the others find nothing to do.

    Args:
        url: the store URL, or an engine from :func:`create_store_engine`.
        revision: the Alembic revision to reach.

    Raises:
        StoreError: the database cannot be reached, or is at a revision this docloop does not
            know (a newer docloop migrated it).
    """
    engine = url if isinstance(url, Engine) else create_store_engine(url)
    try:
        writer = engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
        with writer.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except CommandError as exc:
        raise StoreError(
            f"cannot migrate the state store {_masked(engine.url)} to {revision}: {exc}. If the "
            "database was migrated by a newer docloop, upgrade docloop"
        ) from exc
    except DBAPIError as exc:
        raise _store_error(exc, engine.url, "migrating its schema") from exc
    finally:
        if not isinstance(url, Engine):
            engine.dispose()


class Store:
    """The state store: an engine plus transaction helpers.

    Args:
        engine: from :func:`create_store_engine`.
        lock_timeout_s: how long a write waits for a lock before raising ``StoreBusy``.
    """

    def __init__(self, engine: Engine, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.engine = engine
        self.lock_timeout_s = lock_timeout_s
        self._writer = engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})

    def __repr__(self) -> str:
        return f"Store({_masked(self.engine.url)!r})"

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The store URL with any password masked."""
        return _masked(self.engine.url)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in one read transaction (rolled back at the end).

        Raises:
            StoreError: the database failed.
        """
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session  # closing the session rolls the read transaction back
        except DBAPIError as exc:
            raise _store_error(exc, self.engine.url, "reading") from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction, committed when the block ends without error.

        Raises:
            StoreBusy: a lock could not be taken within the lock timeout.
            StoreError: the database failed (the transaction is rolled back).
        """
        try:
            with Session(self._writer, expire_on_commit=False) as session, session.begin():
                if self.dialect == "postgresql":
                    timeout_ms = max(1, int(self.lock_timeout_s * 1000))
                    session.execute(text(f"SET LOCAL lock_timeout = {timeout_ms}"))
                yield session
        except OperationalError as exc:
            raise _store_error(exc, self.engine.url, "writing") from exc

    def get_watermark(self, name: str) -> str | None:
        """The value of watermark ``name``, or ``None`` if it was never set."""
        with self.read() as session:
            return session.scalar(select(Watermark.value).where(Watermark.name == name))

    def set_watermark(self, name: str, value: str) -> None:
        """Set watermark ``name`` to ``value`` (insert or update, safe under concurrency)."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        now = utcnow()
        statement = insert(Watermark).values(name=name, value=value, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[Watermark.name], set_={"value": value, "updated_at": now}
        )
        with self.write() as session:
            session.execute(statement)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_store(
    url: str | URL,
    *,
    migrate: bool = True,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> Store:
    """Open the state store at ``url``, migrating it to the newest schema first.

    Args:
        url: a SQLAlchemy URL (``docloop.config.store_url(config.store)`` gives the one in force).
        migrate: run the migrations; when ``False`` the schema must already be current.
        lock_timeout_s: how long writes wait for locks (SQLite busy timeout, PostgreSQL
            ``lock_timeout``).

    Returns:
        The store.

    Raises:
        StoreError: the database cannot be reached or migrated, or (``migrate=False``) its schema
            is not the one this docloop expects.
    """
    engine = create_store_engine(url, lock_timeout_s=lock_timeout_s)
    try:
        current, head = current_revision(engine), head_revision()
        if current != head:
            if not migrate:
                raise StoreError(
                    f"the state store {_masked(engine.url)} is at schema revision {current} but "
                    f"this docloop needs {head}; run docloop.store.upgrade(url) (or "
                    "open_store(url, migrate=True)) once"
                )
            logger.info("migrating state store %s: %s -> %s", _masked(engine.url), current, head)
            upgrade(engine)
    except StoreError:
        engine.dispose()
        raise
    logger.debug("opened state store %s", _masked(engine.url))
    return Store(engine, lock_timeout_s=lock_timeout_s)

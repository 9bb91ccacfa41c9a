"""Alembic environment of the docloop state store.

Run migrations through :func:`docloop.store.db.upgrade` (or :func:`docloop.store.db.open_store`),
which hands this script an open connection inside a transaction; the ``alembic`` command line is
not needed. To write a new revision, use :func:`docloop.store.db.alembic_config` with
``alembic.command.revision(config, message, autogenerate=True)`` against an up-to-date database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from docloop.store.tables import Base


def _run() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=Base.metadata,
            literal_binds=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "the docloop migrations need an open connection in config.attributes['connection']; "
            "run them with docloop.store.db.upgrade(url) instead of the alembic command line"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


_run()

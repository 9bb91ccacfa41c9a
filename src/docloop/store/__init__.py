"""The SQL state store (SQLAlchemy + Alembic) and the model registry built on it and MLflow.

* :func:`open_store` / :class:`Store` / :func:`upgrade`: engine, migrations, transactions
  (``docloop.store.db``).
* the tables: ``docloop.store.tables``.
* model status transitions inside a transaction: ``docloop.store.versions``.
* :class:`Registry`: register / promote / reject / roll back, MLflow aliases included
  (``docloop.store.registry``; importing it does not import MLflow until a registry is built).
"""

from __future__ import annotations

from docloop.store.db import Store, head_revision, open_store, upgrade
from docloop.store.registry import Registration, Registry, default_idempotency_key
from docloop.store.versions import AuditRecord, Promotion, VersionRecord

__all__ = [
    "AuditRecord",
    "Promotion",
    "Registration",
    "Registry",
    "Store",
    "VersionRecord",
    "default_idempotency_key",
    "head_revision",
    "open_store",
    "upgrade",
]

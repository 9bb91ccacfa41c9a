"""The exception hierarchy: every message says what was wrong and how to fix it."""

from __future__ import annotations


class DocloopError(Exception):
    """Base class of every error docloop raises on purpose."""


class ConfigError(DocloopError):
    """The configuration file or an environment override is invalid."""


class InvalidInput(DocloopError):
    """A caller passed something docloop cannot accept (maps to HTTP 400 in servers)."""


class StorageError(DocloopError):
    """An object store could not be read or written."""


class UnsupportedURI(StorageError):
    """A URI has a scheme docloop has no backend for."""


class QuarantinedDocument(DocloopError):
    """A document (or one page of it) cannot be processed; it goes to quarantine with `reason`.

    Attributes:
        reason: a sentence a person can act on.
        code: a stable machine-readable slug (e.g. ``encrypted_pdf``).
        page: the 0-based page index when only one page is affected.
    """

    def __init__(self, code: str, reason: str, page: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.page = page


class NothingToProcess(DocloopError):
    """A run found no document it could read at all."""


class StoreError(DocloopError):
    """The SQL state store cannot be reached, migrated, read or written."""


class StoreBusy(StoreError):
    """Another writer held the lock this operation needs for longer than the lock timeout."""


class RegistryError(DocloopError):
    """A model-registry operation is not allowed (unknown version, wrong status, MLflow failed)."""


class PromotionConflict(RegistryError):
    """A promotion or rollback could not get the model's lock in time; retrying is safe."""


class DeployFailed(DocloopError):
    """A rollout could not be applied, did not become ready, or could not be undone."""


class RolloutNotReady(DeployFailed):
    """The new generation of a served model was not ready before the timeout."""

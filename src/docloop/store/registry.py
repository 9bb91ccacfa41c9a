"""The model registry: MLflow model versions and aliases, with their status in the state store.

Two systems, one source of truth each (``shared/DESIGN.md``, "State"):

* MLflow holds *what* a version is: a registered model version whose ``source`` is the docloop
  model folder (safetensors + ``docloop-model.json``; not an MLflow flavour), lineage tags
  (``docloop.run_id``, ``docloop.dataset_digest``, ``docloop.gate``, ``docloop.code_version``,
  ``docloop.idempotency_key``) and the aliases people and servers look up: ``challenger`` (newest
  registration), ``champion`` (the default) and ``previous-champion`` (the default before it).
* The state store holds *which status* each version has (exactly one ``default`` per model, by
  database constraint) and the append-only audit log.

Each operation runs in one store transaction that holds the model's lock; MLflow is updated
inside that transaction, before the commit. Concurrent promotions therefore apply in one order,
and MLflow's aliases follow the same order as the store. If MLflow fails, the store transaction
rolls back and nothing changed in the store (aliases may have moved part-way: the next promotion,
or :meth:`Registry.sync_aliases`, puts them back in line with the store).

Registration is idempotent: a version carries a ``docloop.idempotency_key`` tag (by default a
digest of the model URI and run id, which a retried pipeline task repeats), and registering again
with the same key returns the existing version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from docloop.config import TrackingConfig, tracking_uri
from docloop.errors import (
    InvalidInput,
    PromotionConflict,
    RegistryError,
    StoreBusy,
    StoreError,
)
from docloop.store import versions as vs
from docloop.store.db import Store, normalize_url, open_store
from docloop.store.versions import AuditRecord, Promotion, VersionRecord, check_model_name

if TYPE_CHECKING:
    from docloop.config import DocloopConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

CHAMPION: Final = "champion"
PREVIOUS_CHAMPION: Final = "previous-champion"
CHALLENGER: Final = "challenger"
TAG_PREFIX: Final = "docloop."
TAG_IDEMPOTENCY_KEY: Final = "docloop.idempotency_key"
TAG_STATUS: Final = "docloop.status"
MODEL_URI_SCHEMES: Final = ("file", "s3", "gs")
MAX_GATE_TAG_CHARS: Final = 5000
DEFAULT_ACTOR: Final = "docloop"
_KEY_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")


@dataclass(frozen=True)
class Registration:
    """The outcome of :meth:`Registry.register`.

    Attributes:
        record: the version as the store knows it.
        created: ``False`` when the idempotency key matched an existing version.
        idempotency_key: the key the version carries.
    """

    record: VersionRecord
    created: bool
    idempotency_key: str

    @property
    def version(self) -> str:
        """The MLflow version number, as a string."""
        return self.record.version


def default_idempotency_key(model_uri: str, run_id: str | None) -> str:
    """The key of a registration: a digest of the model folder URI and the training run id."""
    digest = hashlib.sha256(f"{model_uri}\n{run_id or ''}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"


def normalize_model_uri(model_uri: str) -> str:
    """A model folder URI as the registry stores it.

    ``file://``, ``s3://`` and ``gs://`` URIs are kept as given (without a trailing ``/``); a bare
    local path becomes an absolute ``file://`` URI.

    Raises:
        InvalidInput: the URI has another scheme.
    """
    if "://" not in model_uri:
        return Path(model_uri).expanduser().resolve().as_uri()
    scheme, rest = model_uri.split("://", 1)
    rest = rest.rstrip("/")
    if scheme.lower() not in MODEL_URI_SCHEMES or not rest:
        raise InvalidInput(
            f"model URI {model_uri!r} is not a model folder URI; register the trained model "
            "folder by a file://, s3:// or gs:// URI (or a local path)"
        )
    return f"{scheme.lower()}://{rest}"


def _gate_tag(gate: Mapping[str, Any]) -> str:
    text = json.dumps(gate, sort_keys=True, separators=(",", ":"))
    if len(text) <= MAX_GATE_TAG_CHARS:
        return text
    summary = {k: v for k, v in gate.items() if isinstance(v, bool | int | float | str | None)}
    summary["truncated"] = "full gate result in the state store (model_versions.gate_json)"
    return json.dumps(summary, sort_keys=True)[:MAX_GATE_TAG_CHARS]


def _same_sqlite_file(store: Store, tracking_uri: str) -> bool:
    if store.dialect != "sqlite" or not tracking_uri.startswith("sqlite:"):
        return False
    ours = store.engine.url.database
    try:
        theirs = normalize_url(tracking_uri).database
    except StoreError:
        return False
    if not ours or not theirs or ":memory:" in (ours, theirs):
        return False
    return Path(ours).resolve() == Path(theirs).resolve()


class Registry:
    """Register, promote, reject and roll back model versions (MLflow + the state store).

    Args:
        store: the state store (``docloop.store.open_store(url)``).
        tracking_uri: the MLflow tracking URI (``docloop.config.tracking_uri(config.tracking)``).
        registry_uri: the MLflow registry URI; defaults to ``tracking_uri``.
        client: an ``mlflow.MlflowClient`` to use instead of building one (tests).

    Raises:
        InvalidInput: the store and MLflow point at the same SQLite file (they would lock each
            other out).
    """

    def __init__(
        self,
        store: Store,
        tracking_uri: str,
        *,
        registry_uri: str | None = None,
        client: Any = None,
    ) -> None:
        if _same_sqlite_file(store, tracking_uri):
            raise InvalidInput(
                f"the state store and MLflow both use {store.url}; give them separate databases "
                "(e.g. sqlite:///.docloop/state.db and sqlite:///.docloop/mlflow.db)"
            )
        self.store = store
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        if client is None:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=self.registry_uri)
        self.client = client

    @classmethod
    def from_config(cls, config: DocloopConfig) -> Registry:
        """The registry a configuration describes (store URL and tracking URI in force)."""
        from docloop.config import store_url, tracking_uri

        return cls(open_store(store_url(config.store)), tracking_uri(config.tracking))

    # -- MLflow helpers --------------------------------------------------------------------------

    def _mlflow(self, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return call(*args, **kwargs)
        except MlflowException as exc:
            raise RegistryError(
                f"MLflow ({self.registry_uri}) could not {what}: {exc.message}. Check the "
                "tracking URI and that the server is reachable; the state store was not changed"
            ) from exc

    def _ensure_registered_model(self, model_name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(model_name)
            return
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(
                    f"MLflow ({self.registry_uri}) could not read registered model "
                    f"{model_name}: {exc.message}"
                ) from exc
        try:
            self.client.create_registered_model(
                model_name, tags={"docloop.managed": "true"}, description="Managed by docloop."
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise RegistryError(
                    f"MLflow ({self.registry_uri}) could not create registered model "
                    f"{model_name}: {exc.message}"
                ) from exc

    def _find_by_key(self, model_name: str, key: str) -> Any | None:
        found = self._mlflow(
            f"search versions of {model_name}",
            self.client.search_model_versions,
            f"name = '{model_name}' and tags.`{TAG_IDEMPOTENCY_KEY}` = '{key}'",
        )
        if not found:
            return None
        found = sorted(found, key=lambda mv: int(mv.version))
        if len(found) > 1:
            logger.warning(
                "%d MLflow versions of %s carry idempotency key %s (%s); using the first",
                len(found),
                model_name,
                key,
                ", ".join(str(mv.version) for mv in found),
            )
        return found[0]

    def _aliases(self, model_name: str) -> dict[str, str]:
        model = self._mlflow(
            f"read registered model {model_name}", self.client.get_registered_model, model_name
        )
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def _set_alias(self, model_name: str, alias: str, version: str) -> None:
        self._mlflow(
            f"point alias {alias} of {model_name} at version {version}",
            self.client.set_registered_model_alias,
            model_name,
            alias,
            version,
        )

    def _tag_status(self, model_name: str, version: str, status: str) -> None:
        self._mlflow(
            f"tag version {version} of {model_name}",
            self.client.set_model_version_tag,
            model_name,
            version,
            TAG_STATUS,
            status,
        )

    def _mirror_promotion(self, promotion: Promotion, demoted_status: str) -> None:
        """Point MLflow's aliases (and status tags) at what the store now says."""
        name, to_version = promotion.model_name, promotion.to_version
        aliases = self._aliases(name)
        if aliases.get(CHAMPION) != to_version:
            self._set_alias(name, CHAMPION, to_version)
        if promotion.changed:
            if promotion.from_version is not None:
                self._set_alias(name, PREVIOUS_CHAMPION, promotion.from_version)
                self._tag_status(name, promotion.from_version, demoted_status)
            self._tag_status(name, to_version, "default")
            if aliases.get(CHALLENGER) == to_version:
                self._mlflow(
                    f"remove alias {CHALLENGER} of {name}",
                    self.client.delete_registered_model_alias,
                    name,
                    CHALLENGER,
                )

    # -- operations ------------------------------------------------------------------------------

    def register(
        self,
        model_name: str,
        model_uri: str,
        run_id: str | None,
        dataset_digest: str | None,
        gate: Mapping[str, Any] | None,
        code_version: str | None,
        *,
        idempotency_key: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str = DEFAULT_ACTOR,
    ) -> Registration:
        """Register a trained model folder as a new ``candidate`` version (idempotent).

        Creates the MLflow registered model if needed and a model version whose source is the
        folder, tagged with its lineage, moves the ``challenger`` alias to it, and adds a
        ``candidate`` row (and a ``register`` audit entry) to the store. Calling again with the
        same idempotency key returns the existing version and creates nothing.

        Args:
            model_name: the registered model name (e.g. ``docloop-classifier``).
            model_uri: the model folder: ``file://``, ``s3://`` or ``gs://`` URI (a bare path is
                turned into a ``file://`` URI).
            run_id: the MLflow run that trained it (linked to the version).
            dataset_digest: digest of the training dataset.
            gate: the gate's result (JSON-serialisable).
            code_version: the code that trained it (git commit, image tag).
            idempotency_key: defaults to :func:`default_idempotency_key` of URI and run id.
            description: MLflow version description.
            tags: extra MLflow version tags.
            actor: who registers it (audit log).

        Returns:
            The registration.

        Raises:
            InvalidInput: bad model name, URI, key, or a gate that is not JSON-serialisable.
            RegistryError: MLflow failed, or MLflow and the store disagree about the version.
            StoreError: the store failed.
        """
        check_model_name(model_name)
        model_uri = normalize_model_uri(model_uri)
        key = idempotency_key or default_idempotency_key(model_uri, run_id)
        if not key or len(key) > 200 or not set(key) <= _KEY_CHARS:
            raise InvalidInput(
                f"idempotency key {key!r} is not allowed: use 1-200 letters, digits, '.', '_', "
                "':' or '-'"
            )
        gate_dict = dict(gate) if gate is not None else None
        try:
            gate_text = _gate_tag(gate_dict) if gate_dict is not None else None
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the gate result is not JSON-serialisable: {exc}") from exc
        version_tags: dict[str, str] = {
            TAG_IDEMPOTENCY_KEY: key,
            "docloop.model_uri": model_uri,
            TAG_STATUS: "candidate",
        }
        optional = {
            "docloop.run_id": run_id,
            "docloop.dataset_digest": dataset_digest,
            "docloop.code_version": code_version,
            "docloop.gate": gate_text,
        }
        version_tags.update({k: v for k, v in optional.items() if v})
        if gate_dict is not None and isinstance(gate_dict.get("blessed"), bool):
            version_tags["docloop.gate.blessed"] = str(gate_dict["blessed"]).lower()
        version_tags.update(dict(tags or {}))

        with self.store.write() as session:
            vs.lock_model(session, model_name)
            existing = self._find_by_key(model_name, key)
            if existing is None:
                self._ensure_registered_model(model_name)
                mlflow_version = self._mlflow(
                    f"create a version of {model_name} from {model_uri}",
                    self.client.create_model_version,
                    model_name,
                    source=model_uri,
                    run_id=run_id,
                    tags=version_tags,
                    description=description,
                )
                logger.info(
                    "registered %s version %s from %s (run %s)",
                    model_name,
                    mlflow_version.version,
                    model_uri,
                    run_id,
                )
            else:
                mlflow_version = existing
                logger.info(
                    "%s version %s already registered with key %s; reusing it",
                    model_name,
                    existing.version,
                    key,
                )
            version = str(mlflow_version.version)
            source = str(mlflow_version.source)
            record, created = vs.record_version(
                session,
                model_name,
                version,
                model_uri=source,
                run_id=mlflow_version.run_id or run_id,
                dataset_digest=dataset_digest,
                gate=gate_dict,
                code_version=code_version,
                actor=actor,
            )
            if existing is None or created:
                self._set_alias(model_name, CHALLENGER, version)
        return Registration(record=record, created=existing is None, idempotency_key=key)

    def promote(
        self,
        model_name: str,
        version: str,
        reason: str,
        run_id: str | None = None,
        actor: str = DEFAULT_ACTOR,
    ) -> Promotion:
        """Make ``version`` the default, in one transaction; move alias ``champion`` to it.

        The old default becomes ``retired`` (alias ``previous-champion``). Promoting the version
        that already is the default changes nothing (no audit row) but re-points ``champion`` if
        it had drifted.

        Raises:
            PromotionConflict: another change to this model held its lock past the lock timeout.
            RegistryError: unknown version, a status that cannot be promoted (rejected, default of
                another model...), or MLflow failed (the store is unchanged).
        """
        version = str(version)
        return self._switch(model_name, version, "promote", reason, run_id, actor)

    def rollback_to(
        self,
        model_name: str,
        version: str | None = None,
        *,
        reason: str,
        run_id: str | None = None,
        actor: str = DEFAULT_ACTOR,
    ) -> Promotion:
        """Put a previous default back; the current default becomes ``rejected``.

        Args:
            model_name: the model.
            version: a ``retired`` version (a former default); ``None`` means the one that was
                default before the current one.
            reason: why (audit log).
            run_id: the run that decided it.
            actor: who decided it.

        Returns:
            What happened (``action="rollback"``).

        Raises:
            PromotionConflict: another change held the model's lock past the lock timeout.
            RegistryError: no previous default, or the target is not ``retired``.
        """
        return self._switch(
            model_name,
            str(version) if version is not None else None,
            "rollback",
            reason,
            run_id,
            actor,
        )

    def _switch(
        self,
        model_name: str,
        version: str | None,
        action: vs.SwitchAction,
        reason: str,
        run_id: str | None,
        actor: str,
    ) -> Promotion:
        demoted = "retired" if action == "promote" else "rejected"
        try:
            with self.store.write() as session:
                promotion = vs.switch_default(
                    session,
                    model_name,
                    version,
                    action=action,
                    reason=reason,
                    run_id=run_id,
                    actor=actor,
                )
                self._mirror_promotion(promotion, demoted)
        except StoreBusy as exc:
            raise PromotionConflict(
                f"could not {action} {model_name}: another promotion, rollback or registration of "
                f"it held the model's lock for more than {self.store.lock_timeout_s:g}s; nothing "
                "changed, retry"
            ) from exc
        return promotion

    def mark_status(
        self,
        model_name: str,
        version: str,
        status: str,
        *,
        reason: str,
        run_id: str | None = None,
        actor: str = DEFAULT_ACTOR,
    ) -> VersionRecord:
        """Set a version's status to ``candidate``, ``canary``, ``retired`` or ``rejected``.

        Raises:
            InvalidInput: unknown status.
            RegistryError: ``default`` (use :meth:`promote`), the version is the current default
                (promote another or roll back first), unknown version, or MLflow failed.
        """
        version = str(version)
        with self.store.write() as session:
            record, changed = vs.set_status(
                session, model_name, version, status, reason=reason, run_id=run_id, actor=actor
            )
            if changed:
                self._tag_status(model_name, version, status)
                if status not in ("candidate", "canary"):
                    aliases = self._aliases(model_name)
                    if aliases.get(CHALLENGER) == version:
                        self._mlflow(
                            f"remove alias {CHALLENGER} of {model_name}",
                            self.client.delete_registered_model_alias,
                            model_name,
                            CHALLENGER,
                        )
        return record

    def reject(
        self,
        model_name: str,
        version: str,
        reasons: Sequence[str] | str,
        *,
        run_id: str | None = None,
        actor: str = DEFAULT_ACTOR,
    ) -> VersionRecord:
        """Mark a version ``rejected`` (e.g. it failed the gate); it can never be promoted.

        Raises:
            RegistryError: the version is the current default (roll back instead) or unknown.
        """
        reason = reasons if isinstance(reasons, str) else "; ".join(reasons)
        return self.mark_status(
            model_name, version, "rejected", reason=reason or "rejected", run_id=run_id, actor=actor
        )

    def sync_aliases(self, model_name: str) -> None:
        """Point ``champion`` at the store's default (repairs aliases after an MLflow failure)."""
        current = self.default_version(model_name)
        if current is not None and self._aliases(model_name).get(CHAMPION) != current.version:
            self._set_alias(model_name, CHAMPION, current.version)

    # -- reads -----------------------------------------------------------------------------------

    def default_version(self, model_name: str) -> VersionRecord | None:
        """The version serving as default, or ``None`` if none was promoted yet."""
        with self.store.read() as session:
            return vs.default_version(session, model_name)

    def get_version(self, model_name: str, version: str) -> VersionRecord:
        """One version's record.

        Raises:
            RegistryError: it is not in the store.
        """
        with self.store.read() as session:
            return vs.get_version(session, model_name, str(version))

    def versions(self, model_name: str) -> list[VersionRecord]:
        """Every version of the model, oldest first."""
        with self.store.read() as session:
            return vs.list_versions(session, model_name)

    def audit_log(self, model_name: str) -> list[AuditRecord]:
        """The model's promotion audit log, oldest first."""
        with self.store.read() as session:
            return vs.audit_log(session, model_name)

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()


def model_name_for(task: str, config: DocloopConfig) -> str:
    """The registered model name of a task (``registry`` section of the config).

    Raises:
        InvalidInput: ``task`` is not ``classify`` or ``extract``.
    """
    if task == "classify":
        return config.registry.classifier_name
    if task == "extract":
        return config.registry.extractor_name
    raise InvalidInput(f"task must be 'classify' or 'extract', not {task!r}")


_REGISTRY_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))")


REGISTRY_PREFIX = "models:/"


def resolve_model_uri(uri: str, tracking: TrackingConfig | None = None, client: Any = None) -> str:
    """The model folder URI behind ``uri``: itself, or a registry URI's version source.

    Args:
        uri: A model folder URI, or ``models:/<name>@<alias>`` / ``models:/<name>/<version>``.
        tracking: Where the MLflow registry is (defaults to `TrackingConfig()`).
        client: An ``mlflow.MlflowClient`` to use instead of one built from `tracking`.

    Returns:
        A URI `docloop.models.artifact.fetch_model_folder` can read.

    Raises:
        InvalidInput: A malformed registry URI, or the alias / version does not exist.
    """
    if not uri.startswith(REGISTRY_PREFIX):
        return uri
    match = _REGISTRY_URI.fullmatch(uri)
    if match is None:
        raise InvalidInput(
            f"{uri!r} is not a model registry URI docloop reads; use models:/<name>@<alias> "
            "(e.g. models:/docloop-classifier@champion) or models:/<name>/<version>."
        )
    if client is None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri(tracking or TrackingConfig()))
    name, alias, version = match["name"], match["alias"], match["version"]
    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias is not None
            else client.get_model_version(name, version)
        )
    except _mlflow_error() as exc:
        raise InvalidInput(
            f"{uri} does not resolve in the MLflow registry ({exc}); check the model "
            "name and alias/version, and that tracking.mlflow_tracking_uri points at the "
            "registry the model was registered in."
        ) from exc
    source = str(found.source)
    logger.info("%s is version %s at %s", uri, found.version, source)
    return source


def _mlflow_error() -> type[Exception]:
    """MLflow's exception class, imported only once an error is being handled."""
    from mlflow.exceptions import MlflowException

    exception: type[Exception] = MlflowException
    return exception

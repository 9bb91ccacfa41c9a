"""What the loop needs to know about a champion: where its model and training data are, its score.

A champion is named by a registry URI (``models:/docloop-classifier@champion``) or a model folder.
Its model card records the dataset it was trained on (``dataset_uri``: replay and the frozen
holdout of the next retrain, the reference of the drift check); the state store keeps the gate
result it was registered with, whose floor check on the frozen holdout is its holdout score.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from docloop.config import DocloopConfig, store_url, tracking_uri
from docloop.errors import InvalidInput
from docloop.models.artifact import ModelCard, fetch_model_folder, read_card
from docloop.storage import Storage
from docloop.store.registry import resolve_model_uri

logger = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)")


@dataclass(frozen=True)
class Champion:
    """A resolved champion."""

    uri: str
    model_uri: str
    card: ModelCard
    holdout_score: float | None

    @property
    def dataset_uri(self) -> str:
        """The dataset it was trained on.

        Raises:
            InvalidInput: the card predates ``dataset_uri`` (retrain it once with this version).
        """
        if not self.card.dataset_uri:
            raise InvalidInput(
                f"the model card of {self.uri} does not say which dataset it was trained on; "
                "pass the dataset folder explicitly or retrain the champion with docloop >= 0.1"
            )
        return self.card.dataset_uri


def _registered_gate_score(config: DocloopConfig, uri: str) -> float | None:
    match = _ALIAS_URI.fullmatch(uri)
    if match is None:
        return None
    from mlflow import MlflowClient

    from docloop.store.db import open_store
    from docloop.store.registry import Registry

    tracking = tracking_uri(config.tracking)
    version = MlflowClient(tracking_uri=tracking, registry_uri=tracking).get_model_version_by_alias(
        match["name"], match["alias"]
    )
    registry = Registry(open_store(store_url(config.store)), tracking)
    try:
        gate = registry.get_version(match["name"], str(version.version)).gate or {}
    finally:
        registry.close()
    for check in gate.get("checks", []):
        if check.get("name") == "floor" and check.get("holdout") == "frozen":
            return float(check["candidate"])
    return None


def resolve_champion(config: DocloopConfig, uri: str, storage: Storage | None = None) -> Champion:
    """Resolve a champion URI to its folder, card and holdout score (None when unknown)."""
    storage = storage or Storage(config.storage)
    model_uri = resolve_model_uri(uri, config.tracking)
    card = read_card(fetch_model_folder(storage, model_uri))
    score = _registered_gate_score(config, uri)
    if score is None:
        logger.info("no registered holdout score for %s; performance-drop rule unchecked", uri)
    return Champion(uri=uri, model_uri=model_uri, card=card, holdout_score=score)


def holdout_score_or_none(config: DocloopConfig, uri: str) -> float | None:
    """The registered holdout score of ``uri``'s version; None when there is no such version."""
    from mlflow.exceptions import MlflowException

    from docloop.errors import DocloopError

    try:
        return _registered_gate_score(config, uri)
    except (MlflowException, DocloopError) as exc:
        logger.info("no holdout score for %s (%s); its drop rule is unchecked", uri, exc)
        return None


def version_or_none(config: DocloopConfig, uri: str, storage: Storage | None = None) -> str | None:
    """The version ``uri``'s model reports in the prediction log (its card's run id), or None."""
    from mlflow.exceptions import MlflowException

    from docloop.errors import DocloopError
    from docloop.models.artifact import card_version

    if not uri:
        return None
    try:
        model_uri = resolve_model_uri(uri, config.tracking)
        return card_version(
            read_card(fetch_model_folder(storage or Storage(config.storage), model_uri))
        )
    except (MlflowException, DocloopError, OSError) as exc:
        logger.info("no version for %s (%s); its predictions cannot be told apart", uri, exc)
        return None

"""The snapshot-inputs component's step: digests of the bootstrap's documents and labels."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from docloop.config import load_config
from docloop.documents.preprocess import settings_digest
from docloop.documents.snapshot import snapshot
from docloop.storage import Storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputDigests:
    """Digests that change whenever what preprocess or build-dataset would read changes.

    Attributes:
        documents: The listing under the input prefix and the preprocess settings digest.
        labels: The labels file's listing and the label schema build-dataset checks against.
    """

    documents: str
    labels: str


def run(input_uri: str, labels_uri: str) -> InputDigests:
    """List ``input_uri`` and ``labels_uri`` and digest them with the settings that apply."""
    settings = load_config()
    storage = Storage(settings.storage)
    digests = InputDigests(
        documents=snapshot(input_uri, storage, settings_digest(settings.preprocess)),
        labels=snapshot(labels_uri, storage, settings.label_schema.model_dump_json()),
    )
    logger.info(
        "documents %s: %s; labels %s: %s", input_uri, digests.documents, labels_uri, digests.labels
    )
    return digests

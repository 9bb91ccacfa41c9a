"""Initial datasets: labelled page records -> train / val / holdout, split by document id.

Labels are a labels file of the label contract (:mod:`docloop.documents.labels`). A document
lands in one split only, decided by a hash of its id and the seed, so adding documents never moves
existing ones between splits.
"""

from __future__ import annotations

import logging

from docloop.documents.examples import (
    DatasetManifest,
    build_examples,
    stratified_splits,
    write_dataset,
)
from docloop.documents.labels import labelled_entities, read_labels
from docloop.documents.preprocess import read_page_records
from docloop.errors import InvalidInput
from docloop.storage import Storage

logger = logging.getLogger(__name__)


def build_initial_dataset(
    pages_uri: str,
    labels_uri: str,
    output_uri: str,
    storage: Storage | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    holdout_fraction: float = 0.2,
) -> DatasetManifest:
    """Join page records and labels, split by document id stratified by type, write the folder.

    The holdout written here is the frozen one: later candidates are scored on exactly these
    documents (its digest in the manifest versions it).
    """
    storage = storage or Storage()
    if not 0 <= val_fraction < 1 or not 0 <= holdout_fraction < 1:
        raise InvalidInput("val_fraction and holdout_fraction must be in [0, 1)")
    labels = read_labels(storage, labels_uri)
    records = read_page_records(storage, pages_uri)
    examples = build_examples(
        records, {label.doc_id: label.doc_type for label in labels}, labelled_entities(labels)
    )
    unlabelled = [e.doc_id for e in examples if e.doc_type is None]
    if unlabelled:
        logger.warning("%d processed documents have no label and are left out", len(unlabelled))
    labelled = [e for e in examples if e.doc_type is not None]
    if not labelled:
        raise InvalidInput(
            f"none of the documents under {pages_uri} has a label in {labels_uri}; check that the "
            "labels' doc_id values are the preprocess document ids (sha256 of the file bytes)"
        )
    splits = stratified_splits(labelled, seed, val_fraction, holdout_fraction)
    return write_dataset(storage, output_uri, splits, seed)

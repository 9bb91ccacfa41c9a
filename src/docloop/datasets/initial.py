"""Initial datasets: labelled page records -> train / val / holdout, split by document id.

Labels are a labels file of the label contract (:mod:`docloop.documents.labels`), resolved against
the page records and the user's schema by :mod:`docloop.documents.alignment`; the schema and the
label report go into the manifest. A document lands in one split only, decided by a hash of its id
and the seed, so adding documents never moves existing ones between splits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from docloop.config import SchemaConfig
from docloop.documents.alignment import ResolvedLabels, resolve_labels
from docloop.documents.examples import (
    DatasetManifest,
    build_examples,
    stratified_splits,
    write_dataset,
)
from docloop.documents.label_schema import schema_from_config
from docloop.documents.labels import read_labels
from docloop.documents.preprocess import read_page_records
from docloop.documents.schema import PageRecord, QuarantineEntry
from docloop.errors import InvalidInput
from docloop.storage import Storage, join

logger = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.jsonl"


def read_quarantine(storage: Storage, pages_uri: str) -> list[QuarantineEntry]:
    """Preprocess's quarantine entries under ``pages_uri`` (none when it wrote no such file)."""
    uri = join(pages_uri, QUARANTINE_FILE)
    if not storage.exists(uri):
        return []
    return [
        QuarantineEntry.model_validate_json(line)
        for line in storage.read_text(uri).splitlines()
        if line.strip()
    ]


def check_labels(
    pages_uri: str,
    labels_uri: str,
    storage: Storage | None = None,
    schema: SchemaConfig | None = None,
    records: Sequence[PageRecord] | None = None,
) -> ResolvedLabels:
    """Resolve a labels file against preprocess output: schema, alignment, location, report.

    ``records`` are the page records under ``pages_uri`` when the caller has read them already.

    Raises:
        InvalidInput: a labels line is malformed (with its line number), or the labels name a type
            or field that cannot be a name.
    """
    storage = storage or Storage()
    config = schema or SchemaConfig()
    labels = read_labels(storage, labels_uri)
    if records is None:
        records = read_page_records(storage, pages_uri)
    resolved = resolve_labels(
        labels,
        records,
        schema_from_config(config),
        read_quarantine(storage, pages_uri),
        max_char_error_rate=config.max_char_error_rate,
    )
    for issue in resolved.report.issues:
        logger.debug("label of %s: %s: %s", issue.document, issue.code, issue.message)
    return resolved


def build_initial_dataset(
    pages_uri: str,
    labels_uri: str,
    output_uri: str,
    storage: Storage | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    holdout_fraction: float = 0.2,
    schema: SchemaConfig | None = None,
) -> DatasetManifest:
    """Join page records and labels, split by document id stratified by type, write the folder.

    The holdout written here is the frozen one: later candidates are scored on exactly these
    documents (its digest in the manifest versions it). ``schema`` is the config's ``schema``
    section (empty: taken from the labels).
    """
    storage = storage or Storage()
    if not 0 <= val_fraction < 1 or not 0 <= holdout_fraction < 1:
        raise InvalidInput("val_fraction and holdout_fraction must be in [0, 1)")
    records = read_page_records(storage, pages_uri)
    resolved = check_labels(pages_uri, labels_uri, storage, schema, records)
    examples = build_examples(records, resolved.doc_types, resolved.entities, resolved.values)
    unlabelled = [e.doc_id for e in examples if e.doc_type is None]
    if unlabelled:
        logger.warning("%d processed documents have no label and are left out", len(unlabelled))
    report = resolved.report
    if report.issues:
        logger.warning(
            "%d labels were not taken exactly as given (see the manifest's labels.issues)",
            len(report.issues),
        )
    labelled = [e for e in examples if e.doc_type is not None]
    if not labelled:
        raise InvalidInput(
            f"none of the documents under {pages_uri} has a usable label in {labels_uri}; check "
            "that the labels name documents by doc_id (sha256 of the file bytes) or by source "
            "(the path below the preprocess input)"
            + (f"; first problem: {report.issues[0].message}" if report.issues else "")
        )
    splits = stratified_splits(labelled, seed, val_fraction, holdout_fraction)
    return write_dataset(
        storage, output_uri, splits, seed, label_schema=resolved.schema, labels=report
    )

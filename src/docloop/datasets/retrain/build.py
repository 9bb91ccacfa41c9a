"""Build a retrain dataset: reviewed feedback + the previous dataset -> a new dataset folder.

Inputs: quality-accepted feedback (``docloop.feedback.quality``), the served documents it judges,
and the previous dataset folder. Output: a dataset folder like the initial one (``train``,
``val``, ``holdout`` Parquet + ``manifest.json``) plus ``feedback_holdout.parquet``. The phases:
labels (:mod:`~docloop.datasets.retrain.labels`), the join
(:mod:`~docloop.datasets.retrain.join`), the plan (:mod:`~docloop.datasets.retrain.sampling`,
which states the rules), the files (:mod:`~docloop.datasets.retrain.write`).
:func:`run_component` is the component's body: store -> quality -> dataset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Final

import pyarrow as pa
from sqlalchemy import func, select

from docloop.config import FieldKind, RetrainConfig, load_config, store_url
from docloop.datasets.retrain.join import (
    feedback_columns,
    join_labels,
    read_previous,
    replay_pool,
    vocabularies,
)
from docloop.datasets.retrain.labels import (
    FEEDBACK_LABEL_SCHEMA,
    entity_f1_from_feedback,
    feedback_labels,
)
from docloop.datasets.retrain.sampling import plan_retrain
from docloop.datasets.retrain.write import (
    FEEDBACK_HOLDOUT,
    SplitWriter,
    retrain_manifest,
    write_splits,
)
from docloop.documents.examples import (
    EXAMPLE_ARROW_SCHEMA,
    DatasetManifest,
    DocumentExample,
    RetrainSampling,
    examples_table,
)
from docloop.errors import DocloopError, InvalidInput
from docloop.feedback.contracts import FeedbackRecord, read_served_document
from docloop.feedback.quality import assess_feedback, audited_labels, persist_statuses
from docloop.feedback.records import accepted_feedback
from docloop.storage import Storage, join
from docloop.store.db import Store, open_store
from docloop.store.tables import RetrainAttempt

logger = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION: Final = 0.15
LOAD_THREADS: Final = 8

DocumentSource = Mapping[str, DocumentExample] | Callable[[str], DocumentExample]


@contextmanager
def _phase(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[name]`` (when timings are kept)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def build_retrain_dataset_from_tables(
    labels: pa.Table,
    documents: pa.Table,
    previous_dataset_uri: str,
    output_uri: str,
    config: RetrainConfig,
    champion_entity_f1: Mapping[str, float] | None,
    seed: int,
    storage: Storage,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    skipped: Mapping[str, int] | None = None,
    timings: dict[str, float] | None = None,
    declared_kinds: Mapping[str, FieldKind] | None = None,
) -> DatasetManifest:
    """Build the retrain dataset from columns (see the module docstring).

    Args:
        labels: reviewed documents, :data:`FEEDBACK_LABEL_SCHEMA` (one row per document).
        documents: the served documents, :data:`~docloop.documents.examples.EXAMPLE_ARROW_SCHEMA`
            (any order, extra documents ignored; their type and tags are replaced by the labels).
        previous_dataset_uri: the dataset folder to replay from and copy the frozen holdout of.
        output_uri: the new dataset folder.
        config: the sampling knobs.
        champion_entity_f1: the champion's F1 per entity type (weak types are oversampled);
            None: no type is weak.
        seed: fixes every draw.
        storage: the object store.
        val_fraction: share of validation.
        skipped: reviewed documents already left out upstream, per reason (reported).
        timings: if given, seconds per phase are added to it (for benchmarks).
        declared_kinds: the config's ``schema.fields``: the kind of a field feedback adds.

    Returns:
        The manifest written to ``<output_uri>/manifest.json``.

    Raises:
        InvalidInput: no reviewed document is usable, or ``val_fraction`` is out of range.
        StorageError: the previous dataset cannot be read or the output written.
    """
    if not 0 <= val_fraction < 1:
        raise InvalidInput(f"val_fraction must be in [0, 1), got {val_fraction}")
    with _phase(timings, "read previous dataset"):
        previous = read_previous(storage, previous_dataset_uri, seed)
    with _phase(timings, "join labels and documents"):
        labels = labels.select(FEEDBACK_LABEL_SCHEMA.names).cast(FEEDBACK_LABEL_SCHEMA)
        documents = documents.select(EXAMPLE_ARROW_SCHEMA.names).cast(EXAMPLE_ARROW_SCHEMA)
        joined = join_labels(labels, documents, previous, skipped or {}, seed)
        doc_types, entity_types = vocabularies(joined, previous)
    f1 = {kind: float(value) for kind, value in (champion_entity_f1 or {}).items()}
    sampling = RetrainSampling(
        previous_digest=previous.manifest.digest,
        settings={**config.model_dump(), "val_fraction": val_fraction},
        weak_entities=sorted(kind for kind, value in f1.items() if value < config.weak_entity_f1),
        champion_entity_f1=dict(sorted(f1.items())),
    )
    if champion_entity_f1 is None:
        sampling.notes.append("no champion per-entity F1 given: no entity type counts as weak")
    with _phase(timings, "sampling columns"):
        columns = feedback_columns(joined, doc_types, entity_types, sampling.weak_entities)
        replay, replay_columns = replay_pool(previous, joined, doc_types, entity_types)
    with _phase(timings, "plan (targeted sampling)"):
        plan = plan_retrain(
            columns,
            replay_columns,
            config,
            entity_types=entity_types,
            val_fraction=val_fraction,
            sampling=sampling,
        )
    sampling.skipped = dict(sorted(joined.skipped.items()))
    writer = SplitWriter(
        joined,
        columns.corrected,
        replay,
        replay_columns,
        doc_types,
        entity_types,
        storage,
        output_uri,
    )
    with _phase(timings, "tags, split tables, parquet (2 threads)"):
        splits = write_splits(writer, plan, previous)
    manifest = retrain_manifest(
        previous, splits, doc_types, entity_types, seed, sampling, declared_kinds
    )
    storage.write_text(join(output_uri, "manifest.json"), manifest.model_dump_json(indent=2))
    logger.info(
        "retrain dataset %s: train %d %s, val %d, feedback holdout %d, frozen holdout %d",
        output_uri,
        manifest.counts["train"],
        manifest.source_counts["train"],
        manifest.counts["val"],
        manifest.counts[FEEDBACK_HOLDOUT],
        manifest.counts["holdout"],
    )
    return manifest


def _load_documents(
    doc_ids: Sequence[str], served_documents: DocumentSource
) -> tuple[list[DocumentExample], int]:
    """The served documents of ``doc_ids`` that can be found, and how many could not."""
    if isinstance(served_documents, Mapping):
        found = [served_documents[i] for i in doc_ids if i in served_documents]
        return found, len(doc_ids) - len(found)
    loader = served_documents

    def load(doc_id: str) -> DocumentExample | None:
        try:
            return loader(doc_id)
        except (KeyError, DocloopError) as exc:
            logger.warning("served document %s cannot be read (%s); it is left out", doc_id, exc)
            return None

    with ThreadPoolExecutor(max_workers=LOAD_THREADS) as pool:
        loaded = list(pool.map(load, doc_ids))
    found = [example for example in loaded if example is not None]
    return found, len(doc_ids) - len(found)


def build_retrain_dataset(
    feedback: Sequence[FeedbackRecord],
    served_documents: DocumentSource,
    previous_dataset_uri: str,
    output_uri: str,
    config: RetrainConfig,
    champion_entity_f1: Mapping[str, float] | None,
    seed: int,
    storage: Storage,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    declared_kinds: Mapping[str, FieldKind] | None = None,
) -> DatasetManifest:
    """Build the retrain dataset from quality-accepted feedback (see the module docstring).

    Args:
        feedback: quality-accepted feedback records
            (``docloop.feedback.quality.QualityReport.accepted``).
        served_documents: the served documents by doc id, or a loader of one (e.g.
            ``functools.partial(read_served_document, storage, config)``); documents it cannot
            find are left out and counted.
        previous_dataset_uri: the dataset folder to replay from and copy the frozen holdout of.
        output_uri: the new dataset folder.
        config: the sampling knobs (``retrain`` section).
        champion_entity_f1: the champion's F1 per entity type; None: no type is weak.
        seed: fixes every draw.
        storage: the object store.
        val_fraction: share of validation.
        declared_kinds: the config's ``schema.fields``: the kind of a field feedback adds.

    Returns:
        The manifest written to ``<output_uri>/manifest.json``.

    Raises:
        InvalidInput: no reviewed document is usable.
        StorageError: the previous dataset cannot be read or the output written.
    """
    labels = feedback_labels(feedback)
    ids = labels.table.column("doc_id").to_pylist()
    documents, missing = _load_documents(ids, served_documents)
    skipped = dict(labels.skipped)
    if missing:
        logger.warning("%d of %d reviewed documents have no served document", missing, len(ids))
    return build_retrain_dataset_from_tables(
        labels.table,
        examples_table(documents),
        previous_dataset_uri,
        output_uri,
        config,
        champion_entity_f1,
        seed,
        storage,
        val_fraction=val_fraction,
        skipped=skipped,
        declared_kinds=declared_kinds,
    )


def last_successful_retrain(store: Store) -> datetime | None:
    """When the last promoted retrain attempt started (None if there was none).

    Feedback received after that start was not in the promoted model's data.
    """
    with store.read() as session:
        started: datetime | None = session.scalar(
            select(func.max(RetrainAttempt.started_at)).where(RetrainAttempt.outcome == "promoted")
        )
    return started


@dataclass(frozen=True)
class RetrainDatasetResult:
    """What the build-dataset component returns in retrain mode.

    Attributes:
        manifest: the dataset's manifest.
        quality: the feedback quality summary (counts per status and reason, reviewer trust).
        since: the start of the feedback window (None: all feedback).
    """

    manifest: DatasetManifest
    quality: dict[str, object]
    since: datetime | None


def run_component(
    previous_dataset_uri: str,
    output_uri: str,
    *,
    config_path: str | None = None,
    champion_entity_f1: Mapping[str, float] | None = None,
    seed: int = 0,
    since: datetime | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> RetrainDatasetResult:
    """The build-dataset component in retrain mode: store -> quality -> targeted dataset.

    Reads the configuration (:func:`~docloop.config.load_config`), opens the state store, reads
    the accepted feedback since ``since`` (default: the start of the last promoted retrain, else
    all), assesses its quality and writes every event's status back, loads the served documents
    of the accepted verdicts and builds the dataset.

    Args:
        previous_dataset_uri: the dataset folder of the champion (replay + frozen holdout).
        output_uri: the new dataset folder.
        config_path: a ``docloop.yaml``; None: the usual lookup.
        champion_entity_f1: the champion's F1 per entity type; None: measured on the accepted
            feedback itself (:func:`entity_f1_from_feedback`).
        seed: fixes every draw.
        since: start of the feedback window.
        val_fraction: share of validation.

    Returns:
        The manifest, the quality summary and the window start.

    Raises:
        InvalidInput: there is no accepted feedback, or none of it is usable.
        StoreError: the state store cannot be read or written.
        StorageError: a dataset or a served document cannot be read, or the output written.
    """
    config = load_config(config_path)
    storage = Storage(config.storage)
    store = open_store(store_url(config.store))
    try:
        window = since if since is not None else last_successful_retrain(store)
        records = accepted_feedback(store, window)
        if not records:
            raise InvalidInput(
                "no accepted feedback "
                + (f"since {window.isoformat()}" if window else "in the store")
                + "; collect reviewer verdicts through the feedback API before retraining"
            )
        audits = audited_labels(records, config.feedback.auditors)
        report = assess_feedback(records, config.feedback, audits)
        persist_statuses(store, report)
    finally:
        store.close()
    accepted = report.accepted(records)
    if not accepted:
        raise InvalidInput(
            f"none of the {len(records)} feedback events passed the quality rules "
            f"({report.reasons}); their statuses and reasons are in feedback_events: audit them, "
            "or relax feedback.min_trust / feedback.label_issue_threshold"
        )
    f1 = champion_entity_f1
    if f1 is None:
        f1 = entity_f1_from_feedback(accepted)
    manifest = build_retrain_dataset(
        accepted,
        partial(read_served_document, storage, config),
        previous_dataset_uri,
        output_uri,
        config.retrain,
        f1,
        seed,
        storage,
        val_fraction=val_fraction,
        declared_kinds=config.label_schema.fields,
    )
    return RetrainDatasetResult(manifest, report.summary(), window)

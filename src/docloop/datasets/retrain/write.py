"""Writing a retrain dataset: the split files, the frozen holdout's copy, and the manifest.

Each split file holds its reviewed documents first (in label-table order: doc-id order when the
labels come from :func:`~docloop.datasets.retrain.labels.feedback_labels`), then its replay
documents (in the previous file's order), so the same inputs and seed write the same bytes; the
manifest's digests are the SHA-256 of those files (``digest_method="file"``), except the frozen
holdout's, which is carried over: ``holdout.parquet`` is copied byte for byte. An earlier
``feedback_holdout.parquet`` is not carried over: each retrain holds out its own reviews.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa

from docloop.config import FieldKind
from docloop.datasets.retrain.columns import BoolArray, IntArray, iob2_tags, value_counts
from docloop.datasets.retrain.join import JoinedLabels, PreviousDataset
from docloop.datasets.retrain.sampling import ReplayColumns, RetrainPlan
from docloop.documents.examples import (
    EXAMPLE_ARROW_SCHEMA,
    DatasetManifest,
    RetrainSampling,
    write_table,
)
from docloop.documents.label_schema import schema_from_names
from docloop.storage import Storage, join

FEEDBACK_HOLDOUT: Final = "feedback_holdout"
RETRAIN_SPLITS: Final = ("train", "val", "holdout", FEEDBACK_HOLDOUT)
WRITE_THREADS: Final = 2


@dataclass(frozen=True)
class SplitSummary:
    """What the manifest records of one written split."""

    rows: int
    classes: dict[str, int]
    sources: dict[str, int]
    entities: dict[str, int]
    digest: str


@dataclass(frozen=True)
class SplitWriter:
    """Builds split tables (labelled reviewed documents, then replay) and writes them."""

    joined: JoinedLabels
    corrected: BoolArray
    replay: pa.Table
    replay_columns: ReplayColumns
    doc_types: Sequence[str]
    entity_types: Sequence[str]
    storage: Storage
    output_uri: str

    def table(self, feedback_rows: IntArray, replay_rows: IntArray) -> tuple[pa.Table, IntArray]:
        """The split's examples and its entity count per type."""
        schema = EXAMPLE_ARROW_SCHEMA
        labels = self.joined.labels.take(pa.array(feedback_rows))
        word_counts = self.joined.word_counts[feedback_rows]
        tags, tag_counts = iob2_tags(labels, word_counts, self.entity_types)
        unlabelled = self.joined.documents.drop_columns(["doc_type", "tags"])
        words = unlabelled.take(pa.array(self.joined.doc_row[feedback_rows]))
        columns = {"doc_type": labels.column("doc_type"), "tags": tags}
        feedback = pa.Table.from_arrays(
            [columns[name] if name in columns else words.column(name) for name in schema.names],
            schema=schema,
        )
        table = pa.concat_tables([feedback, self.replay.take(pa.array(replay_rows))])
        entities = tag_counts.sum(axis=0) + self.replay_columns.entities[replay_rows].sum(axis=0)
        return table, entities

    def write(
        self,
        name: str,
        parts: Sequence[Future[tuple[pa.Table, IntArray]]],
        feedback_rows: IntArray,
        replay_rows: IntArray,
    ) -> SplitSummary:
        """Write ``<output_uri>/<name>.parquet`` from its built parts, in order, and count."""
        built = [part.result() for part in parts]
        table = pa.concat_tables([item[0] for item in built])
        entities = np.sum([item[1] for item in built], axis=0)
        digest = write_table(
            self.storage, join(self.output_uri, f"{name}.parquet"), table, statistics=False
        )
        n_corrected = int(self.corrected[feedback_rows].sum())
        return SplitSummary(
            rows=table.num_rows,
            classes=value_counts(table.column("doc_type"), self.doc_types),
            sources={
                "corrected": n_corrected,
                "confirmed": len(feedback_rows) - n_corrected,
                "replay": len(replay_rows),
            },
            entities={kind: int(entities[i]) for i, kind in enumerate(self.entity_types)},
            digest=digest,
        )


def write_splits(
    writer: SplitWriter, plan: RetrainPlan, previous: PreviousDataset
) -> dict[str, SplitSummary]:
    """Build and write the three new splits and copy the frozen holdout.

    Two threads (Arrow's take and the Parquet writer release the GIL). Writing one Parquet file
    is serial, so the training split, the largest, is built in two halves and written first,
    while the other thread builds and writes the two holdout-sized splits.
    """
    none = np.zeros(0, dtype=np.int64)
    half = len(plan.feedback_train) // 2
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        # every write waits only on builds queued before it, so two workers cannot deadlock
        train = [
            pool.submit(writer.table, plan.feedback_train[:half], none),
            pool.submit(writer.table, plan.feedback_train[half:], plan.replay_train),
        ]
        feedback = pool.submit(writer.table, plan.feedback_holdout, none)
        writes = {
            "train": pool.submit(
                writer.write, "train", train, plan.feedback_train, plan.replay_train
            )
        }
        val = pool.submit(writer.table, plan.feedback_val, plan.replay_val)
        writes[FEEDBACK_HOLDOUT] = pool.submit(
            writer.write, FEEDBACK_HOLDOUT, [feedback], plan.feedback_holdout, none
        )
        writes["val"] = pool.submit(writer.write, "val", [val], plan.feedback_val, plan.replay_val)
        holdout = writer.storage.read_bytes(join(previous.uri, "holdout.parquet"))
        writer.storage.write_bytes(join(writer.output_uri, "holdout.parquet"), holdout)
        return {name: writes[name].result() for name in ("train", "val", FEEDBACK_HOLDOUT)}


def retrain_manifest(
    previous: PreviousDataset,
    splits: Mapping[str, SplitSummary],
    doc_types: Sequence[str],
    entity_types: Sequence[str],
    seed: int,
    sampling: RetrainSampling,
    declared_kinds: Mapping[str, FieldKind] | None = None,
) -> DatasetManifest:
    """The manifest: the new splits' counts and digests, the frozen holdout's carried over.

    The schema grows by the types and fields the feedback brought, a new field taking its kind
    from ``declared_kinds`` (the config's ``schema.fields``) or ``text``; a previous dataset
    without a schema gets one read off the names.
    """
    old = previous.manifest
    if old.label_schema is not None:
        schema = old.label_schema.grown(doc_types, entity_types, declared_kinds)
    else:
        schema = schema_from_names(doc_types, entity_types, declared_kinds)
    return DatasetManifest(
        doc_types=list(doc_types),
        entity_types=list(entity_types),
        counts={
            **{name: part.rows for name, part in splits.items()},
            "holdout": old.counts.get("holdout", 0),
        },
        class_counts={
            **{name: part.classes for name, part in splits.items()},
            "holdout": {t: old.class_counts.get("holdout", {}).get(t, 0) for t in doc_types},
        },
        entity_counts={
            **{name: part.entities for name, part in splits.items()},
            "holdout": {t: old.entity_counts.get("holdout", {}).get(t, 0) for t in entity_types},
        },
        digests={
            **{name: part.digest for name, part in splits.items()},
            "holdout": old.digests["holdout"],
        },
        seed=seed,
        mode="retrain",
        source_counts={name: part.sources for name, part in splits.items()},
        digest_method="file",
        sampling=sampling,
        label_schema=schema,
    )

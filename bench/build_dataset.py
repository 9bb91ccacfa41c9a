"""Benchmark build-dataset in retrain mode: targeted sampling + writing for 1,000,000 feedback rows.

Run with ``python -m bench.build_dataset [--quick]`` (``--quick``: 100,000 rows). Everything is
synthetic and generated here, outside the timed part:

- a previous dataset (train / val / frozen holdout Parquet + manifest): ``--previous`` documents
  (default a quarter of the feedback rows), five document types, entity tags;
- the served documents: one per feedback row, as an Arrow table in memory
  (``EXAMPLE_ARROW_SCHEMA``: ~``--words`` words with boxes per document);
- the feedback labels, one row per reviewed document (``FEEDBACK_LABEL_SCHEMA``): 20 % corrected
  (a third of them change entities), 2-4 entities per document over six entity types.

Timed (target <= 10 s for 1,000,000 rows): ``build_retrain_dataset_from_tables``, i.e. reading the
previous dataset, joining labels with documents, targeted sampling, IOB2 tags, the split tables,
writing Parquet and the content digests; its phases are reported one by one.

Also measured, for scale, and not part of the target: turning ``FeedbackRecord`` pydantic objects
into the label columns (``feedback_labels``) on a sample, per row — why the sampling core takes
columns: at a million rows the pydantic path alone costs more than the whole columnar build.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from docloop.config import FeedbackConfig, RetrainConfig
from docloop.datasets.retrain.build import build_retrain_dataset_from_tables
from docloop.datasets.retrain.labels import FEEDBACK_LABEL_SCHEMA, feedback_labels
from docloop.documents.examples import (
    EXAMPLE_ARROW_SCHEMA,
    DatasetManifest,
    write_table,
)
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackRecord
from docloop.feedback.quality import assess_feedback
from docloop.storage import Storage

OUT = Path(__file__).resolve().parent / "out"
TARGET_S = 10.0
TYPES = ["invoice", "lab_report", "referral_letter", "discharge_summary", "prescription"]
ENTITIES = ["patient_name", "mrn", "dob", "provider", "date", "amount"]
VOCAB = [f"w{i}" for i in range(5000)]
CHAMPION_F1 = {"patient_name": 0.93, "mrn": 0.71, "dob": 0.88, "provider": 0.64, "date": 0.9}
PYDANTIC_SAMPLE = 20_000


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def documents_table(
    rng: np.random.Generator, ids: list[str], words: int, types: np.ndarray | None
) -> pa.Table:
    """Documents with random words/boxes; with ``types``, typed and tagged (2-4 entities)."""
    n = len(ids)
    lengths = rng.integers(words // 2, words * 3 // 2 + 1, size=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    flat_words = pa.array(VOCAB).take(pa.array(rng.integers(0, len(VOCAB), size=total)))
    boxes = rng.integers(0, 1000, size=total * 4).astype(np.int16)
    box_lists = pa.FixedSizeListArray.from_arrays(pa.array(boxes), 4)
    codes = np.zeros(total, dtype=np.int32)
    if types is not None:
        for slot in range(3):  # an entity of 1-2 words at word 2 + 5 * slot
            kind = rng.integers(0, len(ENTITIES), size=n)
            codes[offsets[:-1] + 2 + 5 * slot] = 1 + 2 * kind
            two = rng.random(n) < 0.5
            codes[(offsets[:-1] + 3 + 5 * slot)[two]] = (2 + 2 * kind)[two]
    tags = ["O", *(f"{p}-{e}" for e in ENTITIES for p in ("B", "I"))]
    columns = {
        "doc_id": pa.array(ids),
        "source_uri": pa.array(["request://bench/0"] * n),
        "doc_type": pa.array(
            [TYPES[t] for t in types] if types is not None else [None] * n, pa.string()
        ),
        "words": pa.ListArray.from_arrays(pa.array(offsets), flat_words),
        "boxes": pa.ListArray.from_arrays(pa.array(offsets), box_lists),
        "pages": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.zeros(total, np.int16))),
        "tags": pa.ListArray.from_arrays(pa.array(offsets), pa.array(tags).take(pa.array(codes))),
        "page_count": pa.array(np.ones(n, np.int32)),
        "ocr_pages": pa.array(np.ones(n, np.int32)),
        "mean_confidence": pa.array(np.full(n, 91.5)),
    }
    return pa.Table.from_pydict(columns, schema=EXAMPLE_ARROW_SCHEMA)


def write_previous(folder: Path, rng: np.random.Generator, n: int, words: int) -> None:
    ids = [f"{i:064x}" for i in range(10**12, 10**12 + n)]
    types = rng.integers(0, len(TYPES), size=n)
    table = documents_table(rng, ids, words, types)
    cut_train, cut_val = int(n * 0.7), int(n * 0.8)
    splits = {
        "train": table.slice(0, cut_train),
        "val": table.slice(cut_train, cut_val - cut_train),
        "holdout": table.slice(cut_val),
    }
    storage = Storage()
    digests = {
        name: write_table(storage, str(folder / f"{name}.parquet"), part)
        for name, part in splits.items()
    }
    manifest = DatasetManifest(
        doc_types=sorted(TYPES),
        entity_types=sorted(ENTITIES),
        counts={name: part.num_rows for name, part in splits.items()},
        class_counts={},
        entity_counts={},
        digests=digests,
        seed=0,
        digest_method="file",
    )
    (folder / "manifest.json").write_text(manifest.model_dump_json(indent=2))


def feedback_columns(rng: np.random.Generator, n: int, words: int) -> tuple[pa.Table, pa.Table]:
    """The label table (one row per reviewed document) and the served documents."""
    ids = [f"{i:064x}" for i in range(n)]
    documents = documents_table(rng, ids, words, None)
    types = rng.integers(0, len(TYPES), size=n)
    corrected = rng.random(n) < 0.2
    n_entities = rng.integers(2, 5, size=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(n_entities, out=offsets[1:])
    total = int(offsets[-1])
    slot = np.arange(total) - np.repeat(offsets[:-1], n_entities)
    starts = (2 + 4 * slot).astype(np.int32)  # within words // 2 (the shortest document)
    spans = rng.integers(1, 3, size=total).astype(np.int32)
    word_offsets = np.zeros(total + 1, dtype=np.int32)
    np.cumsum(spans, out=word_offsets[1:])
    positions = np.repeat(starts, spans) + (
        np.arange(int(word_offsets[-1])) - np.repeat(word_offsets[:-1], spans)
    ).astype(np.int32)
    kinds = pa.array(ENTITIES).take(pa.array(rng.integers(0, len(ENTITIES), size=total)))
    entity_struct = pa.StructArray.from_arrays(
        [kinds, pa.ListArray.from_arrays(pa.array(word_offsets), pa.array(positions))],
        fields=list(FEEDBACK_LABEL_SCHEMA.field("entities").type.value_type),
    )
    touched = corrected & (rng.random(n) < 1 / 3)
    touched_kind = rng.integers(0, len(ENTITIES), size=n)
    touched_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(touched.astype(np.int32), out=touched_offsets[1:])
    labels = pa.Table.from_pydict(
        {
            "doc_id": pa.array(ids),
            "source": pa.array(np.where(corrected, "corrected", "confirmed")),
            "doc_type": pa.array(TYPES).take(pa.array(types)),
            "entities": pa.ListArray.from_arrays(pa.array(offsets), entity_struct),
            "touched_types": pa.ListArray.from_arrays(
                pa.array(touched_offsets), pa.array(ENTITIES).take(pa.array(touched_kind[touched]))
            ),
            "feedback_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        },
        schema=FEEDBACK_LABEL_SCHEMA,
    )
    return labels, documents


def pydantic_records(n: int) -> list[FeedbackRecord]:
    rnd = random.Random(0)
    records = []
    for i in range(n):
        predicted = [
            {"type": ENTITIES[k], "word_indices": [2 + 4 * k], "confidence": 0.9} for k in range(3)
        ]
        correction = None
        if rnd.random() < 0.2:
            correction = Correction(
                doc_type=rnd.choice(TYPES),
                entities=[CorrectedEntity(type="mrn", word_indices=[2, 3])]
                if rnd.random() < 0.3
                else None,
            )
        records.append(
            FeedbackRecord(
                id=i + 1, idempotency_key=f"key-{i:08d}", model_name="docloop",
                model_version="1", request_id=f"req-{i}", doc_id=f"{i:064x}",
                reviewer_id=f"rev-{i % 50}",
                kind="correction" if correction is not None else "confirmation",
                correction=correction, received_at="2025-01-01T00:00:00+00:00",
                status="accepted", predicted_doc_type=rnd.choice(TYPES),
                predicted_probabilities={t: 0.2 for t in TYPES}, predicted_entities=predicted,
            )
        )  # fmt: skip
    return records


def run(rows: int, previous_docs: int, words: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="docloop-bench-build-"))
    try:
        started = time.perf_counter()
        previous = work / "previous"
        previous.mkdir()
        write_previous(previous, rng, previous_docs, words)
        labels, documents = feedback_columns(rng, rows, words)
        generate_s = time.perf_counter() - started
        config = RetrainConfig()
        timings: dict[str, float] = {}
        load = os.getloadavg()[0]
        cpu_started = time.process_time()
        started = time.perf_counter()
        manifest = build_retrain_dataset_from_tables(
            labels,
            documents,
            str(previous),
            str(work / "out"),
            config,
            CHAMPION_F1,
            seed,
            Storage(),
            timings=timings,
        )
        build_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        written = sum(f.stat().st_size for f in (work / "out").iterdir())
        records = pydantic_records(min(PYDANTIC_SAMPLE, rows))
        started = time.perf_counter()
        feedback_labels(records)
        per_row = (time.perf_counter() - started) / len(records)
        assess_feedback(records[:200], FeedbackConfig())  # imports cleanlab (seconds) once
        started = time.perf_counter()
        assess_feedback(records, FeedbackConfig())
        quality_per_row = (time.perf_counter() - started) / len(records)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert manifest.sampling is not None
    return {
        "machine": machine(),
        "feedback_rows": rows,
        "previous_documents": previous_docs,
        "mean_words_per_document": words,
        "generate_input_s": round(generate_s, 3),
        "build_s": round(build_s, 3),
        "build_cpu_s": round(cpu_s, 3),
        "load_average_at_start": round(load, 2),
        "target_s": TARGET_S,
        "phases_s": {name: round(value, 3) for name, value in timings.items()},
        "rows_per_s": round(rows / build_s),
        "written_mb": round(written / 2**20, 1),
        "counts": manifest.counts,
        "source_counts": manifest.source_counts,
        "oversampled": manifest.sampling.oversampled,
        "weak_entities": manifest.sampling.weak_entities,
        "pydantic_feedback_labels_us_per_row": round(per_row * 1e6, 2),
        "pydantic_feedback_labels_s_per_1m_rows": round(per_row * 1_000_000, 1),
        "pydantic_sample_rows": len(records),
        "assess_feedback_us_per_row": round(quality_per_row * 1e6, 2),
    }


def report(figures: dict[str, Any], console: Console) -> None:
    table = Table(title=f"build-dataset retrain mode ({figures['machine']})")
    for column in ("figure", "value", "target", "met"):
        table.add_column(column)
    build_s = float(figures["build_s"])
    table.add_row("feedback rows (reviewed documents)", f"{figures['feedback_rows']:,}", "", "")
    table.add_row("previous dataset documents", f"{figures['previous_documents']:,}", "", "")
    table.add_row("input generation (not timed)", f"{figures['generate_input_s']:.2f} s", "", "")
    met = "[green]yes[/green]" if build_s <= TARGET_S else "[red]no[/red]"
    table.add_row("sampling + writing", f"{build_s:.2f} s", f"<= {TARGET_S:.0f} s", met)
    table.add_row("  CPU time (all threads)", f"{figures['build_cpu_s']:.2f} s", "", "")
    table.add_row("  load average at start", f"{figures['load_average_at_start']}", "", "")
    for name, seconds in figures["phases_s"].items():
        table.add_row(f"  {name}", f"{seconds:.2f} s", "", "")
    table.add_row("throughput", f"{figures['rows_per_s']:,} rows/s", "", "")
    table.add_row("written", f"{figures['written_mb']} MiB", "", "")
    for name, count in figures["counts"].items():
        sources = figures["source_counts"].get(name, {})
        detail = ", ".join(f"{k} {v:,}" for k, v in sources.items())
        table.add_row(f"  {name}", f"{count:,}", detail, "")
    table.add_row(
        "FeedbackRecord -> label columns (pydantic)",
        f"{figures['pydantic_feedback_labels_us_per_row']} us/row",
        f"= {figures['pydantic_feedback_labels_s_per_1m_rows']} s per 1M rows (not in target)",
        "",
    )
    table.add_row(
        "assess_feedback (quality rules, pydantic)",
        f"{figures['assess_feedback_us_per_row']} us/row",
        f"on {figures['pydantic_sample_rows']:,} rows (not in target)",
        "",
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--rows", type=int, default=None, help="feedback rows")
    parser.add_argument("--previous", type=int, default=None, help="previous dataset documents")
    parser.add_argument("--words", type=int, default=32, help="mean words per document")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    previous = args.previous or rows // 4
    console = Console()
    figures = run(rows, previous, args.words, args.seed)
    report(figures, console)
    OUT.mkdir(exist_ok=True)
    (OUT / "build_dataset.json").write_text(json.dumps(figures, indent=2))
    console.print(f"figures written to {OUT / 'build_dataset.json'}")


if __name__ == "__main__":
    main()

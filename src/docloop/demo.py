"""The main job on the embedded defaults (``make demo``).

Today it runs the first stage of the loop end to end on one machine: a synthetic labelled corpus
(``base`` scenario, born-digital and scanned PDFs) -> preprocess (text layer or OCR, quarantine) ->
a check of how many labelled entities survive OCR. Later stages (train, gate, register, serve,
feedback, drift, retrain, canary) join as they land; see docs/architecture.md.

Idempotent: the corpus is deterministic for (docs, seed) and is reused when already there; the
second preprocess run skips every unchanged document.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from docloop.config import load_config
from docloop.datasets.build import labelled_entities, read_labels
from docloop.documents.labels import entity_recovery
from docloop.documents.preprocess import preprocess, read_page_records
from docloop.documents.synth import SynthDocument, generate_corpus
from docloop.storage import Storage

logger = logging.getLogger(__name__)

DEMO_DOCS = 16
DEMO_SEED = 0


@dataclass
class DemoSummary:
    """What the demo did and measured."""

    documents: int
    scanned: int
    pages_ocr: int
    pages_text_layer: int
    skipped: int
    quarantined: int
    entities: int
    entity_recovery: float
    entity_recovery_scanned: float
    seconds: float


def load_labels(corpus: Path) -> list[SynthDocument]:
    """Read the corpus's labels.jsonl."""
    lines = (corpus / "labels.jsonl").read_text(encoding="utf-8").splitlines()
    return [SynthDocument.model_validate_json(line) for line in lines if line.strip()]


def ensure_corpus(
    corpus: Path, docs: int, seed: int, progress: Progress | None = None
) -> list[SynthDocument]:
    """Generate the corpus unless the same one (same docs and seed) is already there."""
    if (corpus / "labels.jsonl").is_file():
        labels = load_labels(corpus)
        if len(labels) == docs and all(doc.seed == seed for doc in labels):
            logger.info("reusing the synthetic corpus in %s", corpus)
            return labels
    logger.info("generating %d synthetic documents (seed %d) in %s", docs, seed, corpus)
    if progress is None:
        return generate_corpus(corpus, docs, seed, "base")
    task = progress.add_task("synthesise documents", total=docs)
    return generate_corpus(corpus, docs, seed, "base", on_document=lambda _: progress.advance(task))


def run_demo(
    workdir: Path, docs: int = DEMO_DOCS, seed: int = DEMO_SEED, progress: Progress | None = None
) -> DemoSummary:
    """Run the demo in ``workdir`` and return its figures (``progress`` shows the long steps)."""
    started = time.perf_counter()
    config = load_config()
    corpus = workdir / "corpus"
    labels = ensure_corpus(corpus, docs, seed, progress)
    storage = Storage(config.storage)
    pages_uri = str(workdir / "pages")
    on_page = None
    if progress is not None:
        task = progress.add_task("preprocess pages", total=None)

        def on_page(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

    result = preprocess(str(corpus), pages_uri, config.preprocess, storage, progress=on_page)
    records = read_page_records(storage, pages_uri)
    gold = read_labels(storage, str(corpus / "labels.jsonl"))
    recovery = entity_recovery(records, labelled_entities(gold))
    summary = DemoSummary(
        documents=len(labels),
        scanned=sum(1 for doc in labels if doc.scanned),
        pages_ocr=sum(1 for r in records if r.source == "ocr"),
        pages_text_layer=sum(1 for r in records if r.source == "text_layer"),
        skipped=result.skipped,
        quarantined=result.quarantined,
        entities=recovery.total,
        entity_recovery=round(recovery.rate, 4),
        entity_recovery_scanned=round(recovery.rate_of("ocr"), 4),
        seconds=round(time.perf_counter() - started, 1),
    )
    (workdir / "demo-summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def print_summary(summary: DemoSummary, console: Console) -> None:
    """The demo's closing table."""
    table = Table(title="docloop demo: documents in, page records out")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("documents (scanned)", f"{summary.documents} ({summary.scanned})")
    table.add_row("pages via OCR / text layer", f"{summary.pages_ocr} / {summary.pages_text_layer}")
    table.add_row("skipped as unchanged", str(summary.skipped))
    table.add_row("quarantined", str(summary.quarantined))
    table.add_row("labelled entities", str(summary.entities))
    colour = "green" if summary.entity_recovery_scanned >= 0.9 else "red"
    table.add_row("entities read back exactly (all)", f"{summary.entity_recovery:.1%}")
    table.add_row(
        "entities read back exactly (OCR'd pages)",
        f"[{colour}]{summary.entity_recovery_scanned:.1%}[/{colour}]",
    )
    table.add_row("wall time", f"{summary.seconds:.1f} s")
    console.print(table)

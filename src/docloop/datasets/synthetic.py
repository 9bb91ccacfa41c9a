"""Labelled examples from a synthetic corpus, generated and preprocessed once per workdir.

The corpus (:mod:`docloop.documents.synth`) is written under ``<workdir>/corpus/<name>`` with a
``.complete`` marker naming its size, seed and scanned share, so a second call with the same
arguments reuses it; its pages go through the real preprocessing (OCR for scanned pages, skipped
when already processed) into ``<workdir>/pages/<name>``, and its ``labels.jsonl`` is aligned
with the words exactly as an initial dataset's labels are
(:func:`docloop.datasets.initial.check_labels`), under the demo's declared schema
(:data:`docloop.documents.synth.SYNTHETIC_SCHEMA`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from docloop.config import DocloopConfig
from docloop.datasets.initial import check_labels
from docloop.documents.examples import DocumentExample, build_examples
from docloop.documents.preprocess import preprocess, read_page_records
from docloop.documents.synth import SYNTHETIC_SCHEMA, generate_corpus
from docloop.storage import Storage


def labelled_examples(
    workdir: Path,
    name: str,
    scenario: str,
    docs: int,
    seed: int,
    config: DocloopConfig,
    scanned_fraction: float,
) -> list[DocumentExample]:
    """A labelled corpus of ``scenario`` as examples (generated and preprocessed once)."""
    storage = Storage(config.storage)
    corpus = workdir / "corpus" / name
    marker = corpus / ".complete"
    if not marker.is_file() or marker.read_text() != f"{docs}:{seed}:{scanned_fraction}":
        shutil.rmtree(corpus, ignore_errors=True)
        generate_corpus(corpus, docs, seed, scenario, scanned_fraction=scanned_fraction)
        marker.write_text(f"{docs}:{seed}:{scanned_fraction}")
    pages = workdir / "pages" / name
    preprocess(str(corpus), str(pages), config.preprocess, storage)
    records = read_page_records(storage, str(pages))
    resolved = check_labels(
        str(pages), str(corpus / "labels.jsonl"), storage, SYNTHETIC_SCHEMA, records
    )
    return build_examples(records, resolved.doc_types, resolved.entities)

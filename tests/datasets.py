"""Small hand-made training datasets (no OCR needed): two document types, two entity types."""

from __future__ import annotations

import random
from pathlib import Path

from docloop.documents.examples import DocumentExample, write_dataset
from docloop.documents.label_schema import schema_from_names
from docloop.storage import Storage

FILLER = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "for",
    "on",
    "with",
    "at",
    "by",
    "from",
    "as",
    "this",
    "that",
    "page",
    "report",
]


def make_example(index: int, rng: random.Random) -> DocumentExample:
    """An invoice or a referral with a patient name and an MRN, boxes laid out in lines."""
    doc_type = "invoice" if index % 2 == 0 else "referral_letter"
    title = ["Invoice", "Statement"] if doc_type == "invoice" else ["Referral", "Letter"]
    name = [rng.choice(["Jane", "John", "Ada", "Alan"]), rng.choice(["Doe", "Smith", "Turing"])]
    mrn = [str(rng.randint(1_000_000, 9_999_999))]
    words: list[str] = []
    tags: list[str] = []
    for chunk, tag in (
        (title, None),
        (["Patient:"], None),
        (name, "patient_name"),
        (["MRN"], None),
        (mrn, "mrn"),
        ([rng.choice(FILLER) for _ in range(rng.randint(4, 30))], None),
    ):
        for position, word in enumerate(chunk):
            words.append(word)
            tags.append("O" if tag is None else f"{'B' if position == 0 else 'I'}-{tag}")
    boxes = []
    for i in range(len(words)):
        x0, y0 = 80 + (i % 8) * 100, 60 + (i // 8) * 30
        boxes.append([x0, y0, x0 + 80, y0 + 12])
    return DocumentExample(
        doc_id=f"doc{index:04d}",
        source_uri=f"file:///docs/doc{index:04d}.pdf",
        doc_type=doc_type,
        words=words,
        boxes=boxes,
        pages=[0] * len(words),
        tags=tags,
        page_count=1,
        ocr_pages=1,
        mean_confidence=95.0,
    )


def write_tiny_dataset(folder: Path, train: int = 24, val: int = 8, seed: int = 0) -> Path:
    """Write a dataset folder with ``train`` and ``val`` examples (and a small holdout)."""
    rng = random.Random(seed)
    examples = [make_example(i, rng) for i in range(train + val + 4)]
    splits = {
        "train": examples[:train],
        "val": examples[train : train + val],
        "holdout": examples[train + val :],
    }
    schema = schema_from_names(
        {e.doc_type for e in examples}, ["mrn", "patient_name"], {"mrn": "id"}
    )
    write_dataset(Storage(), str(folder), splits, seed, label_schema=schema)
    return folder


def tiny_encoder(folder: Path) -> Path:
    """A one-layer, 32-wide BERT with the packaged tokenizer: real artifacts, trained in ~1 s."""
    from transformers import BertConfig, BertModel

    from docloop.models.encoder import load_tokenizer, resolve_encoder

    tokenizer = load_tokenizer(resolve_encoder(None))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def receipt(
    words: list[str], tags: list[str], field_values: dict[str, str] | None = None
) -> DocumentExample:
    """A one-page receipt with one box per word (for decoding and field-answer tests)."""
    return DocumentExample(
        doc_id="d",
        source_uri="s",
        words=words,
        boxes=[[i, i, i + 1, i + 1] for i in range(len(words))],
        pages=[0] * len(words),
        tags=tags,
        doc_type="receipt",
        page_count=1,
        ocr_pages=1,
        mean_confidence=90.0,
        field_values=field_values or {},
    )

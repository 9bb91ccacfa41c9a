"""Benchmark docloop on real scanned receipts (the public SROIE key-information set).

Run with ``python -m bench.real_documents --sroie DIR [--limit N] [--variant NAME ...]`` where
``DIR`` is the ``data/`` folder of ``zzzDavid/ICDAR-2019-SROIE`` (``img/``, ``box/``, ``key/``;
never committed). ``--variant`` scores OCR settings only; without it the whole path runs on
docloop's defaults (``--pipeline``): OCR -> labels by value -> build-dataset -> train -> score.

OCR stage. Each variant runs docloop's own preprocess (``docloop.documents.preprocess``) over the
same receipts and is scored against the reference transcription:

- token recall: share of the reference tokens (``box/*.csv`` text split at whitespace) that the OCR
  words hold, counted as multisets (a token found twice in the reference needs two OCR words).
  Normalisation: Unicode casefold, then punctuation stripped from both ends of each token; tokens
  left empty are dropped.
- character recall: share of the reference's characters (casefolded, whitespace removed) present in
  the OCR text, again as multisets (order-free, so reading order does not matter).
- field-value ceiling: share of the ``key/*.json`` values (company, date, address, total) found as a
  contiguous run of normalised tokens in the page's OCR word stream (all words in record order, so
  an address spanning lines counts when its lines are read in order). That is the ceiling of
  extraction by exact match, whatever the model.
- seconds per receipt per core: the preprocess run's wall time (load, prepare, OCR, page JPG and
  records) with one worker process, divided by the receipts; and its CPU time (this process and
  its reaped children: the worker and its tesseract processes), which a busy machine inflates less.

Receipts: ``--limit N`` takes N spread evenly over the sorted file names (deterministic).

The pipeline (after the OCR stage on the defaults):

- labels by value: one line per receipt, ``{"source": "NAME.jpg", "doc_type": "receipt",
  "fields": key/NAME.json}``, resolved by build-dataset's own code against the schema
  ``company: text, date: date, address: text, total: amount``; coverage per field (values given,
  located exactly, fuzzily, not located);
- the split, fixed and documented: a receipt is in the holdout when the first 8 hex digits of
  ``sha256(file name)`` are below 20 % of their range, else in training, where those of
  ``sha256("val:" + file name)`` put 10 % into validation (early stopping);
- training: ``docloop.models.training.train`` on the extractor task with the configured defaults
  (``--max-steps`` caps it for quick runs), MLflow off;
- ``--known-values``: company and address are read as the training labels' values they are
  close to (``training.known_value_fields``); ``fields.known`` counts, per field, the answers
  read so, how many were right, and how many were right as printed already;
- scoring on the holdout: entity F1 (seqeval, strict IOB2) against the located labels, and the
  SROIE field protocol (``docloop.evaluation.fields``: the most confident span per field, exact
  match after case and whitespace normalisation) against the key values themselves, so labels
  the OCR could not hold count as misses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import string
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from docloop.config import PreprocessConfig, SchemaConfig, TrackingConfig, TrainingConfig
from docloop.datasets.initial import check_labels
from docloop.documents.examples import (
    DocumentExample,
    build_examples,
    read_examples,
    write_dataset,
)
from docloop.documents.intake import document_id
from docloop.documents.preprocess import preprocess, read_page_records
from docloop.evaluation.fields import field_protocol
from docloop.storage import Storage

OUT = Path(__file__).resolve().parent / "out"
FIELDS = ("company", "date", "address", "total")
RECEIPT_SCHEMA = SchemaConfig(
    doc_types=["receipt"],
    fields={"company": "text", "date": "date", "address": "text", "total": "amount"},
)
KNOWN_VALUE_FIELDS = ("company", "address")
"""With ``--known-values``: the fields that repeat per vendor (none holds personal data)."""
HOLDOUT_SHARE = 0.2
VAL_SHARE = 0.1
EDGE_PUNCTUATION = string.punctuation + "\u2018\u2019\u201c\u201d\u00b7\u2022\u2013\u2014"

VARIANTS: dict[str, dict[str, Any]] = {
    # the issue's starting point: tesseract fast model, psm 3, nothing prepared
    "tess-fast-psm3": {
        "ocr_engine": "tesseract",
        "tesseract_model": "fast",
        "tesseract_psm": 3,
        "tesseract_dictionaries": True,
        "ocr_text_height": 0,
        "ocr_binarise": False,
        "ocr_deskew": False,
        "ocr_border": 0,
    },
}


def _variant(base: str, **changes: Any) -> dict[str, Any]:
    return {**VARIANTS[base], **changes}


VARIANTS["tess-fast-psm6"] = _variant("tess-fast-psm3", tesseract_psm=6)
VARIANTS["tess-fast-psm4"] = _variant("tess-fast-psm3", tesseract_psm=4)
VARIANTS["tess-fast-psm11"] = _variant("tess-fast-psm3", tesseract_psm=11)
VARIANTS["tess-best-psm6"] = _variant("tess-fast-psm6", tesseract_model="best")
VARIANTS["tess-best-psm6-nodict"] = _variant("tess-best-psm6", tesseract_dictionaries=False)
VARIANTS["tess-best-psm6-height"] = _variant("tess-best-psm6", ocr_text_height=30)
VARIANTS["tess-best-psm6-border"] = _variant("tess-best-psm6", ocr_border=10)
VARIANTS["tess-best-psm6-binarise"] = _variant("tess-best-psm6", ocr_binarise=True)
VARIANTS["tess-best-psm6-deskew"] = _variant("tess-best-psm6", ocr_deskew=True)
VARIANTS["tess-best-psm6-all"] = _variant(
    "tess-best-psm6", ocr_text_height=30, ocr_border=10, ocr_binarise=True, ocr_deskew=True
)
VARIANTS["rapidocr"] = _variant("tess-fast-psm3", ocr_engine="rapidocr")
VARIANTS["rapidocr-height"] = _variant("rapidocr", ocr_text_height=30)
VARIANTS["tess-fast-psm6-height"] = _variant("tess-fast-psm6", ocr_text_height=30)
VARIANTS["tess-fast-psm6-nodict"] = _variant("tess-fast-psm6", tesseract_dictionaries=False)
VARIANTS["tess-fast-psm6-border"] = _variant("tess-fast-psm6", ocr_border=10)
VARIANTS["default"] = {}


def normalise_tokens(text: str) -> list[str]:
    """Casefold, split at whitespace, strip punctuation from both ends; drop empty tokens."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    tokens = (token.strip(EDGE_PUNCTUATION) for token in folded.split())
    return [token for token in tokens if token]


def reference_lines(csv_path: Path) -> list[str]:
    """The text lines of a ``box/*.csv`` file (``x1,y1,...,x4,y4,text``; the text may hold
    commas)."""
    lines = []
    for row in csv_path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = row.split(",", 8)
        if len(parts) == 9 and parts[8].strip():
            lines.append(parts[8].strip())
    return lines


def multiset_recall(reference: Iterable[str], found: Iterable[str]) -> tuple[int, int]:
    """(items of ``reference`` matched by ``found``, items of ``reference``), as multisets."""
    wanted, have = Counter(reference), Counter(found)
    return sum((wanted & have).values()), sum(wanted.values())


def contains_run(stream: Sequence[str], run: Sequence[str]) -> bool:
    """Whether ``run`` occurs as a contiguous run of ``stream``."""
    if not run:
        return False
    width = len(run)
    first = run[0]
    return any(
        stream[i] == first and list(stream[i : i + width]) == list(run)
        for i in range(len(stream) - width + 1)
    )


@dataclass
class OcrScore:
    """Summed counts over receipts for one variant."""

    tokens_found: int = 0
    tokens: int = 0
    chars_found: int = 0
    chars: int = 0
    values_found: Counter[str] | None = None
    values: Counter[str] | None = None
    receipts: int = 0
    empty_receipts: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.values_found = Counter()
        self.values = Counter()

    def add(self, reference: list[str], words: list[str], keys: dict[str, str]) -> None:
        """Score one receipt's OCR words against its reference lines and key values."""
        assert self.values_found is not None and self.values is not None
        ocr_tokens = normalise_tokens(" ".join(words))
        ref_tokens = normalise_tokens(" ".join(reference))
        found, total = multiset_recall(ref_tokens, ocr_tokens)
        self.tokens_found += found
        self.tokens += total
        ref_chars = [c for c in "".join(reference).casefold() if not c.isspace()]
        ocr_chars = [c for c in "".join(words).casefold() if not c.isspace()]
        found, total = multiset_recall(ref_chars, ocr_chars)
        self.chars_found += found
        self.chars += total
        for name in FIELDS:
            value = keys.get(name)
            if not value:
                continue
            self.values[name] += 1
            if contains_run(ocr_tokens, normalise_tokens(value)):
                self.values_found[name] += 1
        self.receipts += 1
        if not words:
            self.empty_receipts += 1

    def figures(self) -> dict[str, Any]:
        """Recalls, ceilings per field and overall, and seconds per receipt."""
        assert self.values_found is not None and self.values is not None
        per_field = {
            name: round(self.values_found[name] / self.values[name], 4)
            for name in FIELDS
            if self.values[name]
        }
        all_values = sum(self.values.values())
        return {
            "receipts": self.receipts,
            "token_recall": round(self.tokens_found / max(self.tokens, 1), 4),
            "char_recall": round(self.chars_found / max(self.chars, 1), 4),
            "value_ceiling": round(sum(self.values_found.values()) / max(all_values, 1), 4),
            "value_ceiling_per_field": per_field,
            "receipts_without_words": self.empty_receipts,
            "s_per_receipt_per_core": round(self.seconds / max(self.receipts, 1), 3),
            "cpu_s_per_receipt": round(self.cpu_seconds / max(self.receipts, 1), 3),
        }


def receipt_names(sroie: Path, limit: int | None) -> list[str]:
    """Receipt names (file stems) that have an image, a reference and keys; ``limit`` of them
    spread evenly over the sorted names."""
    names = sorted(
        path.stem
        for path in (sroie / "img").glob("*.jpg")
        if (sroie / "box" / f"{path.stem}.csv").is_file()
        and (sroie / "key" / f"{path.stem}.json").is_file()
    )
    if limit is None or limit >= len(names):
        return names
    step = len(names) / limit
    return [names[int(i * step)] for i in range(limit)]


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the worker pool and its tesseracts)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stage(source: Path, target: Path) -> None:
    """Put a receipt into the input folder: a hard link where the file system allows, else a copy.

    Not a symbolic link: preprocess refuses links that point outside its input folder (issue 19),
    as it would for a user's folder.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def ocr_stage(
    sroie: Path, names: list[str], config: PreprocessConfig, workdir: Path, workers: int = 1
) -> OcrScore:
    """Preprocess the receipts with ``config`` and score the page records (pages in workdir)."""
    inputs = workdir / "img"
    inputs.mkdir(parents=True, exist_ok=True)
    for name in names:
        staged = inputs / f"{name}.jpg"
        if not staged.exists():
            _stage(sroie / "img" / f"{name}.jpg", staged)
    output = workdir / "pages"
    before = _cpu_seconds()
    result = preprocess(str(inputs), str(output), config, Storage(), workers=workers)
    cpu = _cpu_seconds() - before
    # by document id: byte-identical receipts (the set has 5 pairs) share one document
    words_by_doc: dict[str, list[str]] = {}
    for record in sorted(read_page_records(Storage(), str(output)), key=lambda r: r.page):
        words_by_doc.setdefault(record.doc_id, []).extend(record.words)
    words_by_name = {
        name: words_by_doc.get(document_id((inputs / f"{name}.jpg").read_bytes()), [])
        for name in names
    }
    score = OcrScore()
    score.seconds = result.seconds * workers
    score.cpu_seconds = cpu
    for name in names:
        keys = json.loads((sroie / "key" / f"{name}.json").read_text(encoding="utf-8"))
        reference = reference_lines(sroie / "box" / f"{name}.csv")
        score.add(reference, words_by_name.get(name, []), keys)
    return score


def in_holdout(name: str) -> bool:
    """The fixed split: a hash of the file name puts ~20 % of receipts in the holdout."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) < HOLDOUT_SHARE * 16**8


def in_val(name: str) -> bool:
    """Within training, ~10 % of receipts validate (early stopping)."""
    return int(hashlib.sha256(f"val:{name}".encode()).hexdigest()[:8], 16) < VAL_SHARE * 16**8


def write_labels(sroie: Path, names: Sequence[str], path: Path) -> None:
    """Labels by value from the key files: one line per receipt, named by its source."""
    with path.open("w", encoding="utf-8") as out:
        for name in names:
            keys = json.loads((sroie / "key" / f"{name}.json").read_text(encoding="utf-8"))
            fields = {k: v for k, v in keys.items() if k in FIELDS}
            line = {"source": f"{name}.jpg", "doc_type": "receipt", "fields": fields}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def dataset_stage(sroie: Path, names: Sequence[str], workdir: Path) -> dict[str, Any]:
    """Labels by value -> the fixed split -> a dataset folder; coverage per field."""
    labels = workdir / "labels.jsonl"
    write_labels(sroie, names, labels)
    storage = Storage()
    pages = str(workdir / "pages")
    records = read_page_records(storage, pages)
    resolved = check_labels(pages, str(labels), storage, RECEIPT_SCHEMA, records)
    examples = [
        e
        for e in build_examples(records, resolved.doc_types, resolved.entities, resolved.values)
        if e.doc_type is not None
    ]
    splits: dict[str, list[DocumentExample]] = {"train": [], "val": [], "holdout": []}
    for example in examples:
        name = Path(example.source_uri).name
        split = "holdout" if in_holdout(name) else "val" if in_val(name) else "train"
        splits[split].append(example)
    write_dataset(
        storage,
        str(workdir / "dataset"),
        splits,
        0,
        label_schema=resolved.schema,
        labels=resolved.report,
    )
    report = resolved.report
    coverage = {
        name: {
            "given": row.given,
            "exact": row.exact,
            "fuzzy": row.fuzzy,
            "not_located": row.not_located,
            "located": round(row.located / row.given, 4) if row.given else 0.0,
        }
        for name, row in [*report.coverage.items(), ("all", report.total)]
    }
    return {
        "documents": {split: len(rows) for split, rows in splits.items()},
        "coverage": coverage,
        "issues": dict(Counter(issue.code for issue in report.issues)),
    }


def train_stage(
    workdir: Path, max_steps: int | None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train the extractor on the dataset; score it on the holdout (entity F1, field answers)."""
    from docloop.models.artifact import load_model
    from docloop.models.inference import extract
    from docloop.models.metrics import entity_metrics
    from docloop.models.training import train

    config = TrainingConfig().model_copy(update=overrides or {})
    if max_steps:
        config = config.model_copy(update={"max_steps": max_steps})
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    result = train(
        "extract",
        str(workdir / "dataset"),
        str(workdir / "model"),
        config,
        TrackingConfig(enabled=False),
    )
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_started
    holdout = read_examples(Storage(), str(workdir / "dataset" / "holdout.parquet"))
    model = load_model(workdir / "model")
    started = time.perf_counter()
    predictions = extract(model, holdout)
    infer_seconds = time.perf_counter() - started
    entity = entity_metrics([e.tags for e in holdout], [p.tags for p in predictions])
    return {
        "steps": result.card.steps,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "holdout_seconds_per_receipt": round(infer_seconds / max(1, len(holdout)), 3),
        "config": {
            k: config.model_dump()[k]
            for k in (
                "window_tokens",
                "window_overlap",
                "use_layout",
                "epochs",
                "max_steps",
                "known_value_fields",
            )
        },
        "holdout_receipts": len(holdout),
        "entity_f1": round(entity.f1, 4),
        "entity_f1_per_field": {k: round(v.f1, 4) for k, v in sorted(entity.per_entity.items())},
        "calibration": {
            name: {"samples": c.samples, "val_ece_raw": c.ece_raw, "val_ece": c.ece}
            for name, c in model.card.calibration.items()
        },
        "answers": {
            Path(e.source_uri).stem: {
                name: {
                    "text": a.text,
                    "value": a.value,
                    "confidence": a.confidence,
                    "known": a.known_value,
                }
                for name, a in p.fields.items()
            }
            for e, p in zip(holdout, predictions, strict=True)
        },
    }


def score_fields(sroie: Path, answers: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The field protocol on the holdout receipts against their key values.

    ``printed``: the answer's words against the key's string (SROIE's own protocol: case and
    whitespace runs aside, every character counts);
    ``value``: both sides as the field's kind reads them: a date as ISO, an amount as digits.cc
    (``RM 9.00`` answers a total of ``9.00``), a text without case, spacing and punctuation (the
    rule labels are located by: ``NO.5,JALAN`` is ``NO. 5, JALAN``), so a letter the OCR misread
    is still wrong. Expected calibration error per field of the served (calibrated) confidence
    against whether the value is right.
    """
    from docloop.evaluation.fields import normalise_field
    from docloop.models.calibration import expected_calibration_error

    kinds = RECEIPT_SCHEMA.fields
    gold: dict[str, dict[str, str]] = {}
    for name in answers:
        keys = json.loads((sroie / "key" / f"{name}.json").read_text(encoding="utf-8"))
        gold[name] = {k: v for k, v in keys.items() if k in FIELDS}
    printed = field_protocol(
        gold, {n: {f: a["text"] for f, a in fields.items()} for n, fields in answers.items()}
    )
    value = field_protocol(
        gold,
        {n: {f: a["value"] for f, a in fields.items()} for n, fields in answers.items()},
        kinds,
    )
    ece: dict[str, float] = {}
    for name in FIELDS:
        confidences, right = [], []
        for doc, fields in answers.items():
            if name in fields and name in gold[doc]:
                confidences.append(fields[name]["confidence"])
                truth = normalise_field(gold[doc][name], kinds[name])
                right.append(normalise_field(fields[name]["value"], kinds[name]) == truth)
        ece[name] = round(expected_calibration_error(confidences, right), 4)
    known: dict[str, dict[str, int]] = {}
    for doc, fields in answers.items():
        for name, answer in fields.items():
            if answer.get("known") and name in gold[doc]:
                truth = normalise_field(gold[doc][name], kinds[name])
                row = known.setdefault(name, {"answers": 0, "right": 0, "right_as_printed": 0})
                row["answers"] += 1
                row["right"] += normalise_field(answer["value"], kinds[name]) == truth
                row["right_as_printed"] += normalise_field(answer["text"], kinds[name]) == truth
    return {**printed.as_dict(), "value": value.as_dict(), "holdout_ece": ece, "known": known}


def _header(names: Sequence[str]) -> dict[str, Any]:
    """The machine and the receipts a run's figures are about."""
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "receipts": len(names),
        "variants": {},
    }


def run_pipeline(
    sroie: Path,
    limit: int | None,
    workers: int,
    max_steps: int | None,
    keep: Path | None,
    overrides: dict[str, Any] | None = None,
    reuse: bool = False,
) -> dict[str, Any]:
    """OCR -> labels by value -> dataset -> extractor -> scores, on docloop's defaults.

    ``reuse`` (with ``keep``): the OCR already in the kept folder is used as it is (the dataset,
    seconds, is built again from it), so training settings can be compared on the same data.
    """
    names = receipt_names(sroie, limit)
    figures = _header(names)
    with tempfile.TemporaryDirectory(prefix="docloop-sroie-") as tmp:
        workdir = keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        log = logging.getLogger(__name__)
        if not (reuse and (workdir / "pages").is_dir()):
            log.warning("OCR of %d receipts (%d workers)", len(names), workers)
            score = ocr_stage(sroie, names, PreprocessConfig(), workdir, workers)
            figures["variants"]["default"] = score.figures()
        else:
            log.warning("reusing the OCR in %s", workdir)
        log.warning("labels by value and the dataset")
        shutil.rmtree(workdir / "dataset", ignore_errors=True)
        figures["dataset"] = dataset_stage(sroie, names, workdir)
        log.warning("training the extractor")
        shutil.rmtree(workdir / "model", ignore_errors=True)
        trained = train_stage(workdir, max_steps, overrides)
        answers = trained.pop("answers")
        figures["training"] = trained
        figures["fields"] = score_fields(sroie, answers)
    return figures


def run(sroie: Path, limit: int | None, variants: list[str]) -> dict[str, Any]:
    """Score each variant on the same receipts."""
    names = receipt_names(sroie, limit)
    figures = _header(names)
    for variant in variants:
        config = PreprocessConfig().model_copy(update=VARIANTS[variant])
        with tempfile.TemporaryDirectory(prefix="docloop-sroie-") as tmp:
            score = ocr_stage(sroie, names, config, Path(tmp))
        figures["variants"][variant] = score.figures()
        logging.getLogger(__name__).warning("%s: %s", variant, figures["variants"][variant])
    return figures


def report(figures: dict[str, Any], console: Console) -> None:
    """Print the OCR stage's table."""
    table = Table(title=f"OCR on {figures['receipts']} SROIE receipts ({figures['machine']})")
    for column in (
        "variant",
        "token recall",
        "char recall",
        "value ceiling",
        "company",
        "date",
        "address",
        "total",
        "no words",
        "s/receipt/core",
        "CPU s/receipt",
    ):
        table.add_column(column)
    for name, row in figures["variants"].items():
        per_field = row["value_ceiling_per_field"]
        table.add_row(
            name,
            f"{row['token_recall']:.3f}",
            f"{row['char_recall']:.3f}",
            f"{row['value_ceiling']:.3f}",
            *(f"{per_field.get(field, 0):.2f}" for field in FIELDS),
            str(row["receipts_without_words"]),
            f"{row['s_per_receipt_per_core']:.2f}",
            f"{row['cpu_s_per_receipt']:.2f}",
        )
    console.print(table)
    console.print(
        "targets: token recall >= 0.90, value ceiling >= 0.85, <= 1.0 s per receipt per core"
    )


def report_pipeline(figures: dict[str, Any], console: Console) -> None:
    """Print the label coverage, training and the extractor's scores."""
    dataset = figures.get("dataset")
    if dataset is not None:
        table = Table(title=f"labels by value ({dataset['documents']} documents per split)")
        for column in ("field", "given", "exact", "fuzzy", "not located", "located"):
            table.add_column(column)
        for name, row in dataset["coverage"].items():
            table.add_row(
                name,
                *(str(row[k]) for k in ("given", "exact", "fuzzy", "not_located")),
                f"{row['located']:.3f}",
            )
        console.print(table)
    training, fields = figures["training"], figures["fields"]
    table = Table(
        title=f"extractor {training['config']}: {training['steps']} steps in "
        f"{training['train_seconds']:.0f} s ({training['train_cpu_seconds']:.0f} CPU s); "
        f"{training['holdout_receipts']} holdout receipts"
    )
    for column in (
        "field",
        "entity F1",
        "field F1 (printed)",
        "field F1 (value)",
        "P",
        "R",
        "ECE",
    ):
        table.add_column(column)
    for name in [*FIELDS, "all"]:
        printed = fields["overall"] if name == "all" else fields["per_field"].get(name, {})
        value = (
            fields["value"]["overall"]
            if name == "all"
            else fields["value"]["per_field"].get(name, {})
        )
        entity = (
            training["entity_f1"] if name == "all" else training["entity_f1_per_field"].get(name)
        )
        ece = fields["holdout_ece"].get(name)
        table.add_row(
            name,
            f"{entity:.3f}" if entity is not None else "-",
            f"{printed.get('f1', 0):.3f}",
            f"{value.get('f1', 0):.3f}",
            f"{value.get('precision', 0):.3f}",
            f"{value.get('recall', 0):.3f}",
            f"{ece:.3f}" if ece is not None else "-",
        )
    console.print(table)
    for name, row in sorted(fields.get("known", {}).items()):
        console.print(
            f"{name}: {row['answers']} answers read as known values, {row['right']} right "
            f"({row['right_as_printed']} were right as printed)"
        )
    console.print(
        "targets: field F1 (value) >= 0.90 overall, every field >= 0.85, training <= 20 min"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sroie", type=Path, required=True, help="the SROIE data/ folder")
    parser.add_argument("--limit", type=int, default=None, help="receipts (default: all)")
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS),
        help="OCR settings to score, OCR stage only (repeatable)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the size make bench runs: 120 receipts, 200 training steps",
    )
    parser.add_argument("--workers", type=int, default=1, help="OCR worker processes")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on training steps")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: train on the OCR already kept there",
    )
    parser.add_argument(
        "--layout", action="store_true", help="the extractor with word boxes (ablation)"
    )
    parser.add_argument("--window-tokens", type=int, default=None, help="extractor window")
    parser.add_argument("--window-overlap", type=int, default=None, help="window overlap")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument(
        "--known-values",
        action="store_true",
        help="read company and address answers as known values (training.known_value_fields)",
    )
    parser.add_argument("--tag", default="", help="suffix of the JSON file's name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("docloop").setLevel(logging.ERROR)
    console = Console(width=120)
    if not (args.sroie / "img").is_dir():
        parser.error(f"--sroie {args.sroie}: no img/ folder; point it at the SROIE data/ folder")
    if args.variant:
        figures = run(args.sroie, args.limit, args.variant)
        report(figures, console)
    else:
        limit, steps = (120, 200) if args.quick else (args.limit, args.max_steps)
        overrides: dict[str, Any] = {
            key: value
            for key, value in (
                ("window_tokens", args.window_tokens),
                ("window_overlap", args.window_overlap),
                ("epochs", args.epochs),
            )
            if value is not None
        }
        if args.layout:
            overrides["use_layout"] = True
        if args.known_values:
            overrides["known_value_fields"] = list(KNOWN_VALUE_FIELDS)
        figures = run_pipeline(
            args.sroie, limit, args.workers, steps, args.keep, overrides, args.reuse
        )
        report(figures, console)
        report_pipeline(figures, console)
    args.out.mkdir(parents=True, exist_ok=True)
    name = ("real_documents-quick" if args.quick else "real_documents") + args.tag + ".json"
    (args.out / name).write_text(json.dumps(figures, indent=2))
    console.print(f"figures written to {args.out / name}")


if __name__ == "__main__":
    main()

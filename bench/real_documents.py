"""Benchmark docloop on real scanned receipts (the public SROIE key-information set).

Run with ``python -m bench.real_documents --sroie DIR [--limit N] [--variant NAME ...]`` where
``DIR`` is the ``data/`` folder of ``zzzDavid/ICDAR-2019-SROIE`` (``img/``, ``box/``, ``key/``;
never committed). Stage implemented here: OCR. Each variant runs docloop's own preprocess
(``docloop.documents.preprocess``, one worker) over the same receipts and is scored against the
reference transcription:

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
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import string
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from docloop.config import PreprocessConfig
from docloop.documents.preprocess import preprocess, read_page_records
from docloop.storage import Storage

OUT = Path(__file__).resolve().parent / "out"
FIELDS = ("company", "date", "address", "total")
EDGE_PUNCTUATION = string.punctuation + "\u2018\u2019\u201c\u201d\u00b7\u2022\u2013\u2014"

VARIANTS: dict[str, dict[str, Any]] = {
    # the starting point: tesseract fast model, psm 3, nothing prepared
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


def ocr_stage(sroie: Path, names: list[str], config: PreprocessConfig, workdir: Path) -> OcrScore:
    """Preprocess the receipts with ``config`` (one worker) and score the page records."""
    inputs = workdir / "img"
    inputs.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = inputs / f"{name}.jpg"
        if not link.exists():
            link.symlink_to((sroie / "img" / f"{name}.jpg").resolve())
    output = workdir / "pages"
    before = _cpu_seconds()
    result = preprocess(str(inputs), str(output), config, Storage(), workers=1)
    cpu = _cpu_seconds() - before
    words_by_name: dict[str, list[str]] = {}
    for record in read_page_records(Storage(), str(output)):
        stem = Path(record.source_uri).stem
        words_by_name.setdefault(stem, []).extend(record.words)
    score = OcrScore()
    score.seconds = result.seconds
    score.cpu_seconds = cpu
    for name in names:
        keys = json.loads((sroie / "key" / f"{name}.json").read_text(encoding="utf-8"))
        reference = reference_lines(sroie / "box" / f"{name}.csv")
        score.add(reference, words_by_name.get(name, []), keys)
    return score


def run(sroie: Path, limit: int | None, variants: list[str]) -> dict[str, Any]:
    """Score each variant on the same receipts."""
    names = receipt_names(sroie, limit)
    figures: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "receipts": len(names),
        "variants": {},
    }
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sroie", type=Path, required=True, help="the SROIE data/ folder")
    parser.add_argument("--limit", type=int, default=None, help="receipts (default: all)")
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS),
        help="OCR settings to score (repeatable; default: docloop's defaults)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("docloop").setLevel(logging.ERROR)
    console = Console()
    figures = run(args.sroie, args.limit, args.variant or ["default"])
    report(figures, console)
    OUT.mkdir(exist_ok=True)
    (OUT / "real_documents.json").write_text(json.dumps(figures, indent=2))
    console.print(f"figures written to {OUT / 'real_documents.json'}")


if __name__ == "__main__":
    main()

"""Benchmark preprocess: pages/s for 1 and 2 workers, fast-path speed-up, re-run cost, OCR recovery.

Run with ``make bench`` or ``python -m bench.preprocess [--docs N]``. Every ratio compares two runs
made here, on the same synthetic batch, in the same command:

- scaling: pages/s with 2 workers / pages/s with 1 worker, on scanned (OCR) documents;
- fast path: seconds per page with OCR forced / with the PDF text layer, on the same born-digital
  documents, end to end (render, page JPG, words, records) and for the words and boxes alone;
- re-run: wall time of a second run on unchanged input / the first run's;
- entity recovery: labelled entities whose words OCR reads back exactly, on scanned ``base`` pages;
- word-box error: for every labelled word, the OCR word of the same text (casefolded, edge
  punctuation stripped) on the same page whose box overlaps it most; reported as the share found,
  the median IoU and the median / 90th-percentile largest edge offset (0-1000 page units).
  ``--engine rapidocr`` scores RapidOCR's split word boxes on the same scanned pages too.

Targets (reported, never asserted): scaling >= 0.85 x workers, re-run <= 2 %, fast path >= 50x,
recovery >= 90 %.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import string
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from docloop.config import PreprocessConfig
from docloop.documents.labels import (
    DocumentLabel,
    entity_recovery,
    labelled_entities,
    read_labels,
)
from docloop.documents.ocr import text_layer_words
from docloop.documents.preprocess import PreprocessResult, preprocess, read_page_records
from docloop.documents.schema import PageRecord
from docloop.documents.synth import generate_corpus
from docloop.storage import Storage

OUT = Path(__file__).resolve().parent / "out"


def timed(
    input_dir: Path, output_dir: Path, config: PreprocessConfig, workers: int
) -> tuple[PreprocessResult, float]:
    started = time.perf_counter()
    result = preprocess(str(input_dir), str(output_dir), config, Storage(), workers=workers)
    return result, time.perf_counter() - started


def _norm(text: str) -> str:
    return text.casefold().strip(string.punctuation)


def _iou(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def word_box_error(records: list[PageRecord], labels: list[DocumentLabel]) -> dict[str, float]:
    """How well OCR word boxes match the labelled (true) word boxes; see the module docstring."""
    pages = {(r.doc_id, r.page): r for r in records}
    ious: list[float] = []
    offsets: list[int] = []
    total = 0
    for label in labels:
        for entity in label.entities:
            record = pages.get((label.doc_id, entity.page))
            if record is None:
                continue
            for word in entity.words:
                total += 1
                same = [
                    box
                    for text, box in zip(record.words, record.boxes, strict=True)
                    if _norm(text) == _norm(word.text)
                ]
                best = max(same, key=lambda box: _iou(box, word.box), default=None)
                if best is None or _iou(best, word.box) == 0:
                    continue
                ious.append(_iou(best, word.box))
                offsets.append(max(abs(p - q) for p, q in zip(best, word.box, strict=True)))
    if not ious:
        return {"words": total, "found": 0.0}
    offsets.sort()
    return {
        "words": total,
        "found": round(len(ious) / total, 4),
        "median_iou": round(statistics.median(ious), 3),
        "median_edge_offset": float(statistics.median(offsets)),
        "p90_edge_offset": float(offsets[int(0.9 * (len(offsets) - 1))]),
    }


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def run(docs: int, seed: int, engine: str | None = None) -> dict[str, float | int | str]:
    config = PreprocessConfig()
    with tempfile.TemporaryDirectory(prefix="docloop-bench-") as tmp:
        root = Path(tmp)
        generate_corpus(root / "scanned", docs, seed, "base", scanned_fraction=1.0)
        generate_corpus(root / "digital", docs, seed + 1, "base", scanned_fraction=0.0)

        one, t_one = timed(root / "scanned", root / "out-1", config, 1)
        two, t_two = timed(root / "scanned", root / "out-2", config, 2)
        again, t_again = timed(root / "scanned", root / "out-2", config, 2)

        fast, t_fast = timed(root / "digital", root / "out-fast", config, 1)
        started = time.perf_counter()
        layer_pages = sum(len(text_layer_words(pdf)) for pdf in (root / "digital").glob("*.pdf"))
        t_layer = time.perf_counter() - started
        forced = config.model_copy(update={"force_ocr": True})
        slow, t_slow = timed(root / "digital", root / "out-slow", forced, 1)

        records = read_page_records(Storage(), str(root / "out-2"))
        gold = read_labels(Storage(), str(root / "scanned" / "labels.jsonl"))
        recovery = entity_recovery(records, labelled_entities(gold))
        boxes = word_box_error(records, gold)
        compared: dict[str, float | int | str] = {}
        if engine is not None:
            other = config.model_copy(update={"ocr_engine": engine})
            timed(root / "scanned", root / f"out-{engine}", other, 1)
            other_records = read_page_records(Storage(), str(root / f"out-{engine}"))
            other_recovery = entity_recovery(other_records, labelled_entities(gold))
            compared[f"entity_recovery_{engine}"] = round(other_recovery.rate_of("ocr"), 4)
            for key, value in word_box_error(other_records, gold).items():
                compared[f"word_boxes_{engine}_{key}"] = value
        shutil.rmtree(root, ignore_errors=True)

    pps_one, pps_two = one.pages / t_one, two.pages / t_two
    fast_spp, slow_spp = t_fast / fast.pages, t_slow / slow.pages
    return {
        "machine": machine(),
        "documents": docs,
        "scanned_pages": one.pages,
        "pages_per_s_1_worker": round(pps_one, 3),
        "pages_per_s_2_workers": round(pps_two, 3),
        "scaling_2_workers": round(pps_two / pps_one, 3),
        "rerun_seconds": round(t_again, 3),
        "rerun_fraction": round(t_again / t_two, 4),
        "rerun_pages_processed": again.pages,
        "digital_pages": fast.pages,
        "text_layer_s_per_page": round(fast_spp, 4),
        "ocr_s_per_page": round(slow_spp, 4),
        "fast_path_speedup": round(slow_spp / fast_spp, 1),
        "text_layer_words_s_per_page": round(t_layer / layer_pages, 4),
        "words_only_speedup": round(slow_spp / (t_layer / layer_pages), 1),
        "entities": recovery.total,
        "entity_recovery_ocr": round(recovery.rate_of("ocr"), 4),
        "ocr_engine": config.ocr_engine,
        **{f"word_boxes_{key}": value for key, value in boxes.items()},
        **compared,
    }


def report(figures: dict[str, float | int | str], console: Console) -> None:
    table = Table(title=f"preprocess benchmark ({figures['machine']})")
    for column in ("figure", "value", "target", "met"):
        table.add_column(column)

    def row(name: str, value: str, target: str = "", met: bool | None = None) -> None:
        mark = "" if met is None else ("[green]yes[/green]" if met else "[red]no[/red]")
        table.add_row(name, value, target, mark)

    scaling = float(figures["scaling_2_workers"])
    rerun = float(figures["rerun_fraction"])
    speedup = float(figures["fast_path_speedup"])
    recovery = float(figures["entity_recovery_ocr"])
    row("scanned pages/s, 1 worker", f"{figures['pages_per_s_1_worker']}")
    row("scanned pages/s, 2 workers", f"{figures['pages_per_s_2_workers']}")
    row("scaling (2 / 1 worker)", f"{scaling:.2f}x", ">= 1.70x", scaling >= 1.7)
    row("re-run on unchanged input", f"{rerun:.2%} of first run", "<= 2 %", rerun <= 0.02)
    row("text layer s/page", f"{figures['text_layer_s_per_page']}")
    row("OCR s/page (same pages)", f"{figures['ocr_s_per_page']}")
    row("fast path speed-up, end to end", f"{speedup:.0f}x", ">= 50x", speedup >= 50)
    words_only = float(figures["words_only_speedup"])
    row("  words+boxes alone (s/page)", f"{figures['text_layer_words_s_per_page']}")
    row("  speed-up, words+boxes alone", f"{words_only:.0f}x", ">= 50x", words_only >= 50)
    row(
        "entities read back by OCR",
        f"{recovery:.1%} of {figures['entities']}",
        ">= 90 %",
        recovery >= 0.9,
    )
    for key, value in figures.items():
        if key.startswith(("word_boxes_", "entity_recovery_")) and key != "entity_recovery_ocr":
            row(key.replace("_", " "), str(value))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=12, help="documents per batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--engine",
        choices=["tesseract", "rapidocr"],
        default=None,
        help="also score this OCR engine's read-back and word boxes on the scanned pages",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    console = Console()
    figures = run(args.docs, args.seed, args.engine)
    report(figures, console)
    OUT.mkdir(exist_ok=True)
    (OUT / "preprocess.json").write_text(json.dumps(figures, indent=2))
    console.print(f"figures written to {OUT / 'preprocess.json'}")


if __name__ == "__main__":
    main()

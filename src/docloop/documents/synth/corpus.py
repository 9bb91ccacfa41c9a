"""Generate a labelled corpus: PDFs plus ``labels.jsonl``, deterministic for a seed.

Document ``i`` draws everything from generators seeded by ``(seed, scenario, i)``, so it is the
same whatever the corpus size, and the same arguments give byte-identical PDFs and labels.
The content generator and the scan generator are separate streams: changing
``scanned_fraction`` changes which documents are scanned, never what they say.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from docloop.documents.examples import OUTSIDE, DocumentExample
from docloop.documents.labels import EntityLabel, LabelWord
from docloop.documents.synth.doctypes import build_content
from docloop.documents.synth.layout import Layout, PlacedWord, render_pdf
from docloop.documents.synth.scan import HARSH, MILD, PageScan, ScanProfile, rotate_box, scan_pdf
from docloop.documents.synth.schema import DOC_TYPES, SCENARIOS, SynthDocument
from docloop.documents.synth.templates import BASE_TEMPLATES, NEW_TEMPLATE, lay_out
from docloop.documents.synth.vocab import Values, base_formats, new_vendor_formats
from docloop.errors import InvalidInput

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.jsonl"
"""Name of the ground-truth file written next to the PDFs."""

PDF_TITLE = "Document"
"""/Title of every generated PDF (neutral: metadata must not leak the class)."""

_STREAM_TYPES, _STREAM_CONTENT, _STREAM_SCAN, _STREAM_TEMPLATES = 0, 1, 2, 3


@dataclass(frozen=True)
class Scenario:
    """The drift knobs of one scenario.

    Attributes:
        name: the scenario name.
        type_weights: class frequencies, or None for balanced classes.
        new_template_types: types that use the unseen template ``D``.
        new_template_share: share of those types' documents that use ``D``.
        scanned_fraction: default share of scanned (image-only) documents.
        scan: scanner degradation profile.
        vendor_formats: entity values in the new vendor's formats.
    """

    name: str
    type_weights: dict[str, float] | None = None
    new_template_types: frozenset[str] = field(default_factory=frozenset)
    new_template_share: float = 0.0
    scanned_fraction: float = 0.6
    scan: ScanProfile = MILD
    vendor_formats: bool = False


_MINOR = (1.0 - 0.40 - 0.25) / 4
SCENARIO_SPECS: dict[str, Scenario] = {
    "base": Scenario("base"),
    "new_template": Scenario(
        "new_template",
        new_template_types=frozenset({"invoice", "lab_report"}),
        new_template_share=0.8,
    ),
    "class_mix": Scenario(
        "class_mix",
        type_weights={
            "referral_letter": _MINOR,
            "lab_report": 0.25,
            "prescription": _MINOR,
            "insurance_claim": _MINOR,
            "invoice": 0.40,
            "discharge_summary": _MINOR,
        },
    ),
    "scan_quality": Scenario("scan_quality", scanned_fraction=0.9, scan=HARSH),
    "new_vendor": Scenario("new_vendor", vendor_formats=True),
}


def _rng(seed: int, scenario: str, *key: int) -> np.random.Generator:
    entropy = [seed, SCENARIOS.index(scenario), *key]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def _assign(index: int, seed: int, spec: Scenario) -> tuple[str, str]:
    """Document type and template of document ``index``.

    Balanced scenarios deal the types in blocks of ``len(DOC_TYPES)`` (each block a random
    permutation) and rotate each type through templates A-C from block to block, so every
    type and template shows up early and in equal numbers. ``class_mix`` draws types by weight.
    """
    block, slot = divmod(index, len(DOC_TYPES))
    pick = _rng(seed, spec.name, _STREAM_TYPES, index)
    if spec.type_weights is None:
        order = _rng(seed, spec.name, _STREAM_TYPES, block, 1).permutation(len(DOC_TYPES))
        doc_type = DOC_TYPES[int(order[slot])]
    else:
        weights = np.array([spec.type_weights[t] for t in DOC_TYPES])
        doc_type = DOC_TYPES[int(pick.choice(len(DOC_TYPES), p=weights / weights.sum()))]
    offsets = _rng(seed, spec.name, _STREAM_TEMPLATES).integers(0, 3, size=len(DOC_TYPES))
    rotation = block if spec.type_weights is None else int(pick.integers(3))
    template = BASE_TEMPLATES[(rotation + int(offsets[DOC_TYPES.index(doc_type)])) % 3]
    if doc_type in spec.new_template_types and pick.random() < spec.new_template_share:
        template = NEW_TEMPLATE
    return doc_type, template


def _entities(lay: Layout, scans: list[PageScan] | None) -> list[EntityLabel]:
    """Entity labels from the tagged words of a layout (boxes through the scan, if any)."""
    groups: dict[str, list[PlacedWord]] = {}
    for word in lay.words:
        if word.tag is not None:
            groups.setdefault(word.tag, []).append(word)
    labels: list[tuple[tuple[int, float, float], EntityLabel]] = []
    for tag, words in groups.items():
        pages = {w.page for w in words}
        if len(pages) != 1:
            msg = f"entity {tag} spans pages {sorted(pages)}; a template drew it twice"
            raise RuntimeError(msg)
        page = words[0].page
        label_words = []
        for w in words:
            box = _normalise(w, lay)
            if scans is not None:
                box = rotate_box(box, scans[page])
            label_words.append(LabelWord(text=w.text, box=box))
        value = " ".join(w.text for w in words)
        key = (page, round(words[0].y0 / 4), words[0].x0)
        labels.append((key, EntityLabel(type=tag, value=value, page=page, words=label_words)))
    return [label for _, label in sorted(labels, key=lambda item: item[0])]


def _normalise(word: PlacedWord, lay: Layout) -> list[int]:
    def scale(value: float, extent: float) -> int:
        return max(0, min(1000, round(1000 * value / extent)))

    return [
        scale(word.x0, lay.width),
        scale(word.y0, lay.height),
        scale(word.x1, lay.width),
        scale(word.y1, lay.height),
    ]


def generate_document(
    index: int, seed: int, scenario: str, scanned_fraction: float
) -> tuple[SynthDocument, bytes]:
    """Generate document ``index`` of a corpus (independent of the corpus size).

    Args:
        index: 0-based position in the corpus.
        seed: the corpus seed.
        scenario: one of :data:`SCENARIOS`.
        scanned_fraction: probability that the document is scanned.

    Returns:
        The label record and the PDF bytes.
    """
    spec = SCENARIO_SPECS[scenario]
    doc_type, template = _assign(index, seed, spec)
    rng = _rng(seed, scenario, _STREAM_CONTENT, index)
    scan_rng = _rng(seed, scenario, _STREAM_SCAN, index)
    formats = new_vendor_formats(rng) if spec.vendor_formats else base_formats(rng)
    content, long = build_content(doc_type, rng, Values(rng, formats))
    lay = lay_out(template, content, rng, pages=2 if long else 1)
    pdf = render_pdf(lay, PDF_TITLE)
    scanned = bool(scan_rng.random() < scanned_fraction)
    scans: list[PageScan] | None = None
    if scanned:
        pdf, scans = scan_pdf(pdf, spec.scan, scan_rng, PDF_TITLE)
    document = SynthDocument(
        doc_id=hashlib.sha256(pdf).hexdigest(),
        file_name=f"{scenario}-{index:05d}-{doc_type}.pdf",
        doc_type=doc_type,
        template=f"{doc_type}/{template}",
        scenario=scenario,
        seed=seed,
        scanned=scanned,
        page_count=len(lay.pages),
        entities=_entities(lay, scans),
    )
    return document, pdf


def text_layer_example(index: int, seed: int, scenario: str) -> DocumentExample:
    """Document ``index`` of a corpus as the words its text layer holds, without a PDF.

    The same words, boxes and entities as :func:`generate_document` lays out (never scanned),
    in reading order, for measurements that need many documents fast (the drift benchmarks and
    tests); the document id is derived from the arguments, not from PDF bytes.
    """
    spec = SCENARIO_SPECS[scenario]
    doc_type, template = _assign(index, seed, spec)
    rng = _rng(seed, scenario, _STREAM_CONTENT, index)
    formats = new_vendor_formats(rng) if spec.vendor_formats else base_formats(rng)
    content, long = build_content(doc_type, rng, Values(rng, formats))
    lay = lay_out(template, content, rng, pages=2 if long else 1)
    placed = sorted(lay.words, key=lambda w: (w.page, round(w.y0), w.x0))
    tags: list[str] = []
    seen: set[str] = set()
    for word in placed:
        if word.tag is None:
            tags.append(OUTSIDE)
        else:
            tags.append(f"{'I' if word.tag in seen else 'B'}-{word.tag}")
            seen.add(word.tag)
    return DocumentExample(
        doc_id=f"{scenario}-{seed}-{index:05d}",
        source_uri=f"synthetic://{scenario}/{seed}/{index}",
        doc_type=doc_type,
        words=[word.text for word in placed],
        boxes=[_normalise(word, lay) for word in placed],
        pages=[word.page for word in placed],
        tags=tags,
        page_count=len(lay.pages),
        ocr_pages=0,
        mean_confidence=100.0,
    )


def generate_corpus(
    out_dir: Path,
    docs: int,
    seed: int,
    scenario: str = "base",
    *,
    scanned_fraction: float | None = None,
    on_document: Callable[[int], None] | None = None,
) -> list[SynthDocument]:
    """Write a synthetic labelled corpus: ``<file_name>.pdf`` files and ``labels.jsonl``.

    Args:
        out_dir: folder to write into (created if missing; files of the same name are replaced).
        docs: number of documents (>= 1).
        seed: corpus seed (>= 0); same arguments give byte-identical output.
        scenario: one of :data:`SCENARIOS` (see the package docstring for what each changes).
        scanned_fraction: share of scanned documents; default the scenario's (0.6, or 0.9 for
            ``scan_quality``).
        on_document: called with the index of each document once it is written.

    Returns:
        The label records, in generation order (also the lines of ``labels.jsonl``).

    Raises:
        InvalidInput: unknown scenario, ``docs < 1``, negative seed or a fraction outside [0, 1].
    """
    if scenario not in SCENARIO_SPECS:
        msg = f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}"
        raise InvalidInput(msg)
    if docs < 1:
        msg = f"docs must be at least 1 (got {docs}); ask for one or more documents"
        raise InvalidInput(msg)
    if seed < 0:
        msg = f"seed must be a non-negative integer (got {seed})"
        raise InvalidInput(msg)
    fraction = (
        SCENARIO_SPECS[scenario].scanned_fraction if scanned_fraction is None else scanned_fraction
    )
    if not 0.0 <= fraction <= 1.0:
        msg = f"scanned_fraction must be between 0 and 1 (got {fraction})"
        raise InvalidInput(msg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    documents: list[SynthDocument] = []
    for index in range(docs):
        document, pdf = generate_document(index, seed, scenario, fraction)
        (out_dir / document.file_name).write_bytes(pdf)
        documents.append(document)
        logger.debug(
            "wrote %s (%s, scanned=%s)", document.file_name, document.template, document.scanned
        )
        if on_document is not None:
            on_document(index)
    labels = out_dir / LABELS_FILE
    partial = out_dir / f".{LABELS_FILE}.tmp"
    partial.write_text("".join(d.model_dump_json() + "\n" for d in documents), encoding="utf-8")
    partial.replace(labels)
    logger.info(
        "generated %d %s documents (seed %d) in %s in %.1f s",
        docs,
        scenario,
        seed,
        out_dir,
        time.perf_counter() - started,
    )
    return documents

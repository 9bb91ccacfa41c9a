"""Synthetic healthcare documents with exact ground truth, for training and drift experiments.

:func:`generate_corpus` writes PDFs and a ``labels.jsonl`` (one :class:`SynthDocument` per
line): document type, template, whether the PDF is scanned, and every entity's value with the
boxes of its words (0-1000, top-left origin, in the coordinates of the page as stored, i.e.
after any scan rotation), in the label contract of :mod:`docloop.documents.labels`, under the
demo's schema (:data:`SYNTHETIC_SCHEMA`, declared like any user's). Six document types
(:data:`DOC_TYPES`) carry their own vocabulary; ten fields (:data:`ENTITY_TYPES`) appear in
realistic subsets per type.
Born-digital PDFs have a text layer whose word boxes match the labels exactly; scanned PDFs are
image-only (200 dpi JPEG pages, rotated, blurred, noisy), so OCR makes real errors.

Scenarios (:data:`SCENARIOS`) are drift knobs against ``base``:

- ``base``: templates A-C (key/value block, labelled grid, letter with values in prose),
  balanced document types, US formats (``03/12/2024``, ``$1,234.56``, ``Jane Doe``), 60 %
  scanned with mild degradation (rotation within +-1 degree, light blur and noise, JPEG 55-80).
- ``new_template``: an unseen layout ``D`` (right sidebar, value printed before its label,
  reversed table columns) for 80 % of invoices and lab reports; other types as base.
- ``class_mix``: class frequencies shift to 40 % invoice, 25 % lab report, the rest split
  evenly; same templates and formats.
- ``scan_quality``: 90 % scanned with harsh degradation: rotation within +-3 degrees, stronger
  blur and noise, darker paper, lower effective resolution (downscale + upscale), JPEG 25-45.
- ``new_vendor``: a new source system's formats: dates ``12 Mar 2024`` or ``2024-03-12``,
  amounts ``USD 1.234,56`` or ``1234.56 USD``, names ``DOE, Jane``, MRNs ``MRN-AB-123456``,
  member IDs ``MBR-0012-3456`` and payers not seen in base.
"""

from docloop.documents.synth.corpus import (
    LABELS_FILE,
    SCENARIO_SPECS,
    Scenario,
    generate_corpus,
    generate_document,
)
from docloop.documents.synth.schema import (
    DOC_TYPES,
    ENTITY_TYPES,
    SCENARIOS,
    SYNTHETIC_SCHEMA,
    SynthDocument,
)

__all__ = [
    "DOC_TYPES",
    "ENTITY_TYPES",
    "LABELS_FILE",
    "SCENARIOS",
    "SCENARIO_SPECS",
    "SYNTHETIC_SCHEMA",
    "Scenario",
    "SynthDocument",
    "generate_corpus",
    "generate_document",
]

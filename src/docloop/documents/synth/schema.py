"""Names and ground-truth schema of the synthetic corpus (one `labels.jsonl` line per document).

Each line also reads as a :class:`~docloop.documents.labels.DocumentLabel` (the generator's
metadata is ignored there): the corpus uses the label contract of :mod:`docloop.documents.labels`
(entity labels, their words and boxes, the type sets) and adds only what is synthetic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from docloop.documents.labels import DOC_TYPES, EntityLabel

SCENARIOS: tuple[str, ...] = ("base", "new_template", "class_mix", "scan_quality", "new_vendor")
"""Drift scenarios a corpus can be generated under (see :mod:`docloop.documents.synth`)."""


class SynthDocument(BaseModel):
    """Ground truth of one generated PDF (also the schema of each ``labels.jsonl`` line).

    Attributes:
        doc_id: sha256 (hex) of the written PDF bytes.
        file_name: the PDF's name inside the corpus folder, e.g. ``base-00007-invoice.pdf``.
        doc_type: one of :data:`DOC_TYPES`.
        template: layout used, ``<doc_type>/<letter>``, e.g. ``invoice/B``.
        scenario: one of :data:`SCENARIOS`.
        seed: the corpus seed.
        scanned: True for an image-only (scanned) PDF, False for born-digital with a text layer.
        page_count: pages in the PDF.
        entities: labelled entities, in reading order of first appearance.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    doc_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    file_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.pdf$")
    doc_type: str
    template: str
    scenario: str
    seed: int
    scanned: bool
    page_count: int = Field(ge=1)
    entities: list[EntityLabel]

    @field_validator("doc_type")
    @classmethod
    def _known_doc_type(cls, value: str) -> str:
        if value not in DOC_TYPES:
            msg = f"unknown doc_type {value!r}; expected one of {', '.join(DOC_TYPES)}"
            raise ValueError(msg)
        return value

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str) -> str:
        if value not in SCENARIOS:
            msg = f"unknown scenario {value!r}; expected one of {', '.join(SCENARIOS)}"
            raise ValueError(msg)
        return value

"""Names and label schema of the synthetic corpus (one `labels.jsonl` line per document)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCENARIOS: tuple[str, ...] = ("base", "new_template", "class_mix", "scan_quality", "new_vendor")
"""Drift scenarios a corpus can be generated under (see :mod:`docloop.documents.synth`)."""

DOC_TYPES: tuple[str, ...] = (
    "referral_letter",
    "lab_report",
    "prescription",
    "insurance_claim",
    "invoice",
    "discharge_summary",
)
"""Document classes, the targets of the classifier."""

ENTITY_TYPES: tuple[str, ...] = (
    "patient_name",
    "date_of_birth",
    "mrn",
    "provider_name",
    "npi",
    "date_of_service",
    "total_amount",
    "payer",
    "member_id",
    "diagnosis_code",
)
"""Entity types, the targets of the extractor."""

Box = Annotated[list[int], Field(min_length=4, max_length=4)]


class LabelWord(BaseModel):
    """One word of an entity value and where it is on its page.

    Attributes:
        text: the word as printed (whitespace-delimited token).
        box: ``[x0, y0, x1, y1]``, top-left origin, normalised to 0-1000 of the page width and
            height of the page as stored in the PDF (after any scan rotation).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)
    box: Box

    @field_validator("box")
    @classmethod
    def _box_is_ordered(cls, box: list[int]) -> list[int]:
        x0, y0, x1, y1 = box
        if not (0 <= x0 <= x1 <= 1000 and 0 <= y0 <= y1 <= 1000):
            msg = f"box {box} must satisfy 0 <= x0 <= x1 <= 1000 and 0 <= y0 <= y1 <= 1000"
            raise ValueError(msg)
        return box


class EntityLabel(BaseModel):
    """One labelled entity: its type, the exact printed value and the words it occupies.

    Attributes:
        type: one of :data:`ENTITY_TYPES`.
        value: the exact string printed (its words joined by single spaces).
        page: 0-based page index.
        words: the value's words in reading order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    value: str = Field(min_length=1)
    page: int = Field(ge=0)
    words: list[LabelWord] = Field(min_length=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in ENTITY_TYPES:
            msg = f"unknown entity type {value!r}; expected one of {', '.join(ENTITY_TYPES)}"
            raise ValueError(msg)
        return value


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

"""Names and ground-truth schema of the synthetic corpus (one `labels.jsonl` line per document).

Each line also reads as a :class:`~docloop.documents.labels.DocumentLabel` (the generator's
metadata is ignored there): the corpus uses the label contract of :mod:`docloop.documents.labels`
(entity labels, their words and boxes, the type sets) and adds only what is synthetic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from docloop.config import SchemaConfig
from docloop.documents.labels import EntityLabel

DOC_TYPES: tuple[str, ...] = (
    "referral_letter",
    "lab_report",
    "prescription",
    "insurance_claim",
    "invoice",
    "discharge_summary",
)
"""The demo's document types, the targets of its classifier."""

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
"""The demo's fields, the targets of its extractor."""

SYNTHETIC_SCHEMA = SchemaConfig(
    doc_types=list(DOC_TYPES),
    fields={
        "patient_name": "text",
        "date_of_birth": "date",
        "mrn": "id",
        "provider_name": "text",
        "npi": "id",
        "date_of_service": "date",
        "total_amount": "amount",
        "payer": "text",
        "member_id": "id",
        "diagnosis_code": "id",
    },
)
"""The demo's schema, declared as a user declares theirs (the config's ``schema`` section)."""

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

    @field_validator("entities")
    @classmethod
    def _known_entity_types(cls, entities: list[EntityLabel]) -> list[EntityLabel]:
        unknown = sorted({e.type for e in entities} - set(ENTITY_TYPES))
        if unknown:
            msg = f"unknown entity type(s) {', '.join(unknown)}; expected one of " + ", ".join(
                ENTITY_TYPES
            )
            raise ValueError(msg)
        return entities

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str) -> str:
        if value not in SCENARIOS:
            msg = f"unknown scenario {value!r}; expected one of {', '.join(SCENARIOS)}"
            raise ValueError(msg)
        return value

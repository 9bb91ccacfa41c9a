"""What each document type says: title, labelled fields, distractor fields and body blocks.

A builder returns a layout-independent :class:`Content`; the templates in
:mod:`docloop.documents.synth.templates` decide where it goes on the page. Each type has its own
vocabulary (titles, section headings, tables, medication lines, CPT line items, diagnoses,
referral prose) so that the type is learnable from text, and a realistic subset of entities.
Distractor fields (invoice numbers, phone numbers, report dates, ...) look like entities but are
never labelled, so extraction has to use context.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from docloop.documents.synth import vocab
from docloop.documents.synth.vocab import Values, pick, sample


@dataclass(frozen=True)
class Field:
    """A printed ``label value`` pair; ``entity`` names the entity type of a labelled value.

    Attributes:
        label: the label as printed in key/value layouts, e.g. ``Patient Name:``.
        value: the value as printed.
        entity: entity type, or None for a distractor that is never labelled.
        prose: ``(before, after)`` words that embed the value in a sentence (letter layouts).
    """

    label: str
    value: str
    entity: str | None = None
    prose: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class Heading:
    """A section heading."""

    text: str


@dataclass(frozen=True)
class Para:
    """A paragraph of running text."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table; ``numeric`` marks right-aligned columns."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]


@dataclass(frozen=True)
class Items:
    """A list of short lines (medications, instructions), each drawn with ``bullet``."""

    items: tuple[str, ...]
    bullet: str = "-"


@dataclass(frozen=True)
class PageBreak:
    """Continue on a new page (used by two-page documents)."""


Block = Heading | Para | Table | Items | PageBreak


@dataclass(frozen=True)
class Letter:
    """The parts only letter layouts print."""

    recipient: tuple[str, ...] = ()
    salutation: str = "To whom it may concern:"
    opening: str = ""
    closing: str = "Sincerely,"
    signer_role: str = ""


@dataclass(frozen=True)
class Content:
    """Everything one document prints, independent of the layout.

    Attributes:
        doc_type: the document class.
        title: the title, or None for an untitled document.
        org: issuing organisation.
        address: its one-line address.
        phone: its phone number.
        header: fields printed near the top (entities and distractors).
        body: body blocks in order (a :class:`PageBreak` forces a second page).
        footer: fields printed after the body (totals, signatures).
        letter: salutation and closing for letter layouts.
        issued: a document date (distractor), already formatted.
    """

    doc_type: str
    title: str | None
    org: str
    address: str
    phone: str
    header: tuple[Field, ...]
    body: tuple[Block, ...]
    footer: tuple[Field, ...] = ()
    letter: Letter = field(default_factory=Letter)
    issued: str = ""


GENERIC_LABELS: dict[str, tuple[str, ...]] = {
    "patient_name": ("Patient:", "Patient Name:", "Name of patient:", "Patient name:", "Name:"),
    "date_of_birth": ("DOB:", "Date of Birth:", "Birth date:", "D.O.B.:"),
    "mrn": ("MRN:", "Medical Record #:", "Record No.:", "Chart #:", "MR Number:"),
    "npi": ("NPI:", "NPI #:", "Provider NPI:", "National Provider ID:"),
    "payer": ("Insurance:", "Payer:", "Primary insurance:", "Insurance plan:", "Carrier:"),
    "member_id": ("Member ID:", "Subscriber ID:", "Policy #:", "Insured ID:"),
    "diagnosis_code": ("Dx:", "Diagnosis code:", "ICD-10:", "Principal diagnosis:"),
}
TYPE_LABELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("referral_letter", "provider_name"): (
        "Referring physician:",
        "Referring provider:",
        "From:",
    ),
    ("lab_report", "provider_name"): ("Ordering physician:", "Ordered by:", "Ordering provider:"),
    ("prescription", "provider_name"): ("Prescriber:", "Prescribing provider:", "Physician:"),
    ("insurance_claim", "provider_name"): (
        "Rendering provider:",
        "Billing provider:",
        "Physician:",
    ),
    ("invoice", "provider_name"): ("Provider:", "Rendering provider:", "Physician:"),
    ("discharge_summary", "provider_name"): (
        "Attending physician:",
        "Attending:",
        "Discharging physician:",
    ),
    ("referral_letter", "date_of_service"): ("Visit date:", "Date of visit:", "Seen on:"),
    ("lab_report", "date_of_service"): ("Collected:", "Collection date:", "Date collected:"),
    ("prescription", "date_of_service"): ("Date:", "Date written:", "Rx date:"),
    ("insurance_claim", "date_of_service"): ("Date of service:", "DOS:", "Service date:"),
    ("invoice", "date_of_service"): ("Date of service:", "Service date:", "DOS:"),
    ("discharge_summary", "date_of_service"): (
        "Admission date:",
        "Date of admission:",
        "Admitted:",
    ),
    ("invoice", "total_amount"): ("Amount due:", "Total due:", "Balance due:", "Total:"),
    ("insurance_claim", "total_amount"): ("Total charges:", "Total charge:", "Total billed:"),
}
SIGNATURE_LABELS: tuple[str, ...] = ("Electronically signed by:", "Signed:", "Signature:")

PROSE: dict[str, tuple[tuple[str, str], ...]] = {
    "patient_name": (
        ("We are writing regarding", "who is under our care."),
        ("This document concerns our patient", "as detailed below."),
        ("Patient", "was evaluated by our team."),
    ),
    "date_of_birth": (
        ("The patient was born on", "according to our records."),
        ("Date of birth on file is", "for identification."),
    ),
    "mrn": (
        ("The medical record number is", "in our system."),
        ("Please quote record number", "in all correspondence."),
    ),
    "provider_name": (
        ("Care was provided by", "at our facility."),
        ("The responsible clinician is", "for this episode of care."),
    ),
    "npi": (
        ("The provider NPI is", "for billing purposes."),
        ("National Provider Identifier", "applies to these services."),
    ),
    "payer": (
        ("Coverage is provided by", "under the primary plan."),
        ("Claims are submitted to", "as the primary payer."),
    ),
    "member_id": (
        ("The member ID is", "as shown on the insurance card."),
        ("Subscriber identification", "is on file."),
    ),
    "diagnosis_code": (
        ("The principal diagnosis is coded", "per ICD-10-CM."),
        ("Primary diagnosis code", "was assigned at this encounter."),
    ),
    "total_amount": (
        ("The total amount of", "is now due."),
        ("A balance of", "remains outstanding on this account."),
    ),
}
PROSE_BY_TYPE: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("referral_letter", "date_of_service"): (
        ("The patient was last seen in our office on", "for this problem."),
        ("At the visit on", "we discussed the need for specialist input."),
    ),
    ("lab_report", "date_of_service"): (
        ("The specimen was collected on", "and processed the same day."),
        ("Samples drawn on", "were analysed in our laboratory."),
    ),
    ("prescription", "date_of_service"): (
        ("This prescription was written on", "during a scheduled visit."),
        ("Issued on", "for the medications listed below."),
    ),
    ("insurance_claim", "date_of_service"): (
        ("Services were rendered on", "at the office listed above."),
        ("The date of service was", "for all lines on this claim."),
    ),
    ("invoice", "date_of_service"): (
        ("Services were rendered on", "at our clinic."),
        ("This statement covers the visit on", "and related services."),
    ),
    ("discharge_summary", "date_of_service"): (
        ("The patient was admitted on", "through the emergency department."),
        ("Following admission on", "the patient was managed on the medical ward."),
    ),
    ("insurance_claim", "total_amount"): (
        ("Total charges of", "are submitted for reimbursement."),
        ("This claim requests payment of", "for the services listed."),
    ),
}


class Builder:
    """Per-document helper that draws values and labels for one document type.

    Args:
        doc_type: the document class.
        rng: the document's generator.
        values: value drawer in the document's formats.
    """

    def __init__(self, doc_type: str, rng: np.random.Generator, values: Values) -> None:
        self.doc_type = doc_type
        self.rng = rng
        self.values = values
        self.dob = values.birth_date()
        self.dos = values.service_date()
        self.diagnosis = values.diagnosis()

    def label(self, entity: str) -> str:
        """A label wording for an entity in this document type."""
        options = TYPE_LABELS.get((self.doc_type, entity)) or GENERIC_LABELS[entity]
        return pick(self.rng, options)

    def entity(self, entity: str, value: str, label: str | None = None) -> Field:
        """A labelled field with a label wording and a prose embedding."""
        prose = PROSE_BY_TYPE.get((self.doc_type, entity)) or PROSE[entity]
        return Field(label or self.label(entity), value, entity, pick(self.rng, prose))

    def value_of(self, entity: str) -> str:
        """Draw the value of an entity type (dates are this document's DOB/DOS)."""
        draws: dict[str, Callable[[], str]] = {
            "patient_name": self.values.person_name,
            "date_of_birth": lambda: self.values.fmt_date(self.dob),
            "mrn": self.values.mrn,
            "provider_name": self.values.provider_name,
            "npi": self.values.npi,
            "date_of_service": lambda: self.values.fmt_date(self.dos),
            "payer": self.values.payer,
            "member_id": self.values.member_id,
            "diagnosis_code": lambda: self.diagnosis[0],
        }
        return draws[entity]()

    def fields(self, required: tuple[str, ...], optional: dict[str, float]) -> list[Field]:
        """Labelled fields for the required entities plus each optional one with its chance."""
        chosen = list(required) + [e for e, p in optional.items() if self.rng.random() < p]
        return [self.entity(e, self.value_of(e)) for e in chosen]

    def date_after(self, start: dt.date, max_days: int) -> str:
        """A formatted date 0..max_days after ``start``."""
        return self.values.fmt_date(start + dt.timedelta(days=int(self.rng.integers(max_days + 1))))

    def maybe_title(self, titles: tuple[str, ...], absent: float = 0.12) -> str | None:
        """A title, or None with probability ``absent``."""
        return None if self.rng.random() < absent else pick(self.rng, titles)

    def split_provider(self, fields: list[Field], chance: float) -> tuple[list[Field], list[Field]]:
        """Move the provider field to the footer as a signature with probability ``chance``."""
        for index, item in enumerate(fields):
            if item.entity == "provider_name" and self.rng.random() < chance:
                signature = Field(
                    pick(self.rng, SIGNATURE_LABELS), item.value, item.entity, item.prose
                )
                return fields[:index] + fields[index + 1 :], [signature]
        return fields, []


def _shuffle_tail(rng: np.random.Generator, fields: list[Field], keep: int) -> list[Field]:
    """Keep the first ``keep`` fields in place and shuffle the rest (label order varies)."""
    head, tail = fields[:keep], fields[keep:]
    order = rng.permutation(len(tail))
    return head + [tail[int(i)] for i in order]


def build_referral(b: Builder, long: bool) -> Content:
    """A referral letter to a specialist."""
    rng, v = b.rng, b.values
    specialty = pick(rng, vocab.SPECIALTIES)
    fields = b.fields(
        ("patient_name", "date_of_birth", "provider_name", "npi", "date_of_service"),
        {"mrn": 0.7, "diagnosis_code": 0.7, "payer": 0.5},
    )
    fields, footer = b.split_provider(fields, 0.4)
    distractors = [
        Field(pick(rng, ("Referred to:", "Specialty:", "Refer to:")), specialty),
        Field("Urgency:", pick(rng, ("Routine", "Urgent", "Soon"))),
    ]
    if rng.random() < 0.5:
        distractors.append(Field("Fax:", v.phone()))
    history = sample(rng, vocab.HISTORY_SENTENCES, 3 + int(rng.integers(3)))
    meds = sample(rng, vocab.MEDICATIONS, 2 + int(rng.integers(3)))
    body: list[Block] = [
        Heading(pick(rng, ("Reason for Referral", "Reason for referral", "Referral Reason"))),
        Para(f"Thank you for seeing this patient for {pick(rng, vocab.REFERRAL_REASONS)}."),
        Heading(pick(rng, ("History", "Clinical History", "History of Present Illness"))),
        Para(" ".join(history)),
        Heading(pick(rng, ("Current Medications", "Medications"))),
        Items(tuple(f"{name} {form}" for name, form in meds)),
        Heading(pick(rng, ("Assessment", "Working Diagnosis"))),
        Para(f"{b.diagnosis[1]}. We would appreciate your opinion on further management."),
    ]
    return Content(
        doc_type=b.doc_type,
        title=b.maybe_title(
            (
                "Referral Letter",
                "Specialist Referral",
                "Request for Consultation",
                "Referral for Specialist Evaluation",
            ),
        ),
        org=v.organisation("clinic"),
        address=v.address(),
        phone=v.phone(),
        header=tuple(_shuffle_tail(rng, fields, 1) + distractors),
        body=tuple(body),
        footer=tuple(footer),
        letter=Letter(
            recipient=(f"{specialty} Department", v.organisation("hospital")),
            salutation=pick(rng, ("Dear Colleague,", "Dear Doctor,", "To the consulting team:")),
            opening="I am referring the patient below for specialist assessment.",
            closing=pick(rng, ("Sincerely,", "Kind regards,", "With thanks,")),
            signer_role="Referring Physician",
        ),
        issued=b.date_after(b.dos, 3),
    )


def _lab_table(b: Builder, panel: str) -> list[Block]:
    rows: list[tuple[str, ...]] = []
    for test, unit, low, high, decimals in vocab.LAB_PANELS[panel]:
        span = high - low
        value = float(b.rng.uniform(low - 0.25 * span, high + 0.25 * span))
        value = max(value, 0.0)
        flag = "H" if value > high else "L" if value < low else ""
        fmt = f"{{:.{decimals}f}}"
        rows.append((test, fmt.format(value), unit, f"{fmt.format(low)}-{fmt.format(high)}", flag))
    return [
        Heading(panel),
        Table(
            ("Test", "Result", "Units", "Reference Range", "Flag"),
            tuple(rows),
            (False, True, False, False, False),
        ),
    ]


def build_lab(b: Builder, long: bool) -> Content:
    """A laboratory report with result tables."""
    rng, v = b.rng, b.values
    fields = b.fields(
        ("patient_name", "date_of_birth", "mrn", "provider_name", "date_of_service"),
        {"npi": 0.5},
    )
    fields, footer = b.split_provider(fields, 1.0 if long else 0.3)
    reported = b.date_after(b.dos, 3)
    distractors = [
        Field(pick(rng, ("Accession #:", "Specimen ID:", "Lab No.:")), v.number("L", 9)),
        Field("Received:", b.date_after(b.dos, 1)),
        Field("Reported:", reported),
        Field("Specimen:", pick(rng, ("Serum", "Whole blood", "Plasma", "Urine"))),
    ]
    if rng.random() < 0.5:
        distractors.append(Field("Sex:", pick(rng, ("F", "M"))))
    panels = sample(rng, tuple(vocab.LAB_PANELS), 4 if long else 1 + int(rng.integers(3)))
    body: list[Block] = []
    for index, panel in enumerate(panels):
        if long and index == 2:
            body.append(PageBreak())
        body.extend(_lab_table(b, panel))
    body.append(Heading(pick(rng, ("Comments", "Laboratory Comments", "Notes"))))
    body.append(Para(" ".join(sample(rng, vocab.LAB_COMMENTS, 2))))
    return Content(
        doc_type=b.doc_type,
        title=b.maybe_title(
            (
                "Laboratory Report",
                "Lab Results",
                "Clinical Laboratory Report",
                "Final Report",
                "Cumulative Lab Report",
            ),
        ),
        org=v.organisation("lab"),
        address=v.address(),
        phone=v.phone(),
        header=tuple(_shuffle_tail(rng, fields, 1) + distractors),
        body=tuple(body),
        footer=tuple(footer),
        letter=Letter(
            recipient=("Ordering Office",),
            salutation="Results summary:",
            opening="The following results were produced by our laboratory.",
            closing="Reviewed and released,",
            signer_role="Laboratory Director",
        ),
        issued=reported,
    )


def build_prescription(b: Builder, long: bool) -> Content:
    """A prescription with medication, sig, quantity and refills."""
    rng, v = b.rng, b.values
    fields = b.fields(
        ("patient_name", "date_of_birth", "provider_name", "npi", "date_of_service"),
        {"mrn": 0.3, "payer": 0.3},
    )
    fields, footer = b.split_provider(fields, 0.4)
    distractors = [
        Field(
            "DEA #:", pick(rng, tuple("ABFM")) + pick(rng, tuple("BCDGHKLMPRSTW")) + v.number("", 7)
        ),
        Field("Phone:", v.phone()),
    ]
    if rng.random() < 0.5:
        distractors.append(Field("Pharmacy:", f"{pick(rng, vocab.ORG_PREFIXES)} Pharmacy"))
    lines: list[str] = []
    for name, form in sample(rng, vocab.MEDICATIONS, 1 + int(rng.integers(3))):
        qty = int(pick(rng, (14, 30, 60, 90)))
        refills = int(rng.integers(0, 6))
        lines.extend(
            (
                f"Rx: {name} {form}",
                f"Sig: {pick(rng, vocab.SIGS)}",
                f"Qty: {qty}   Refills: {refills}",
            )
        )
    body: list[Block] = [
        Heading(pick(rng, ("Medications", "Prescribed Medications", "Rx"))),
        Items(tuple(lines), bullet=""),
        Para(
            pick(
                rng,
                (
                    "Substitution permitted.",
                    "Dispense as written.",
                    "Generic substitution allowed unless marked otherwise.",
                ),
            )
        ),
    ]
    return Content(
        doc_type=b.doc_type,
        title=b.maybe_title(
            (
                "Prescription",
                "Rx",
                "Medication Order",
                "Outpatient Prescription",
                "Prescription Order",
            )
        ),
        org=v.organisation("clinic"),
        address=v.address(),
        phone=v.phone(),
        header=tuple(_shuffle_tail(rng, fields, 1) + distractors),
        body=tuple(body),
        footer=tuple(footer),
        letter=Letter(
            recipient=("Dispensing Pharmacist",),
            salutation="To the pharmacist:",
            opening="Please dispense the following medication to the patient named below.",
            closing="Prescriber signature,",
            signer_role="Prescriber",
        ),
        issued="",
    )


def _line_items(b: Builder, count: int) -> tuple[list[tuple[str, str, int, float]], float]:
    items = []
    total = 0.0
    for code, description, price in sample(b.rng, vocab.CPT_CODES, count):
        qty = 1 if b.rng.random() < 0.8 else 2
        amount = round(price * float(b.rng.uniform(0.85, 1.6)), 2) * qty
        items.append((code, description, qty, amount))
        total += amount
    return items, round(total, 2)


def build_claim(b: Builder, long: bool) -> Content:
    """A professional health insurance claim with service lines."""
    rng, v = b.rng, b.values
    fields = b.fields(
        (
            "patient_name",
            "date_of_birth",
            "member_id",
            "payer",
            "provider_name",
            "npi",
            "date_of_service",
            "diagnosis_code",
        ),
        {},
    )
    distractors = [
        Field(pick(rng, ("Claim #:", "Claim No.:", "Claim ID:")), v.number("C", 10)),
        Field("Group #:", v.number("G", 6)),
        Field("Federal Tax ID:", f"{v.number('', 2)}-{v.number('', 7)}"),
    ]
    items, total = _line_items(b, 2 + int(rng.integers(3)))
    rows = tuple(
        (code, description, "A", str(qty), v.fmt_amount(amount))
        for code, description, qty, amount in items
    )
    body: list[Block] = [
        Heading(pick(rng, ("Service Lines", "Services Rendered", "Procedures"))),
        Table(
            ("CPT", "Description", "Dx Ptr", "Units", "Charge"),
            rows,
            (False, False, False, True, True),
        ),
        Heading(pick(rng, ("Diagnosis", "Diagnosis Codes"))),
        Para(f"A: {b.diagnosis[1]}."),
        Items(tuple(sample(rng, vocab.CLAIM_NOTES, 2))),
    ]
    footer = [
        b.entity("total_amount", v.fmt_amount(total)),
        Field("Amount paid:", v.fmt_amount(0.0)),
    ]
    return Content(
        doc_type=b.doc_type,
        title=b.maybe_title(
            (
                "Health Insurance Claim Form",
                "CMS-1500 Claim",
                "Claim for Benefits",
                "Professional Claim",
            )
        ),
        org=v.organisation("billing"),
        address=v.address(),
        phone=v.phone(),
        header=tuple(_shuffle_tail(rng, fields, 1) + distractors),
        body=tuple(body),
        footer=tuple(footer),
        letter=Letter(
            recipient=("Claims Department",),
            salutation="Dear Claims Processor,",
            opening="Please find below our claim for the professional services provided.",
            closing="Respectfully submitted,",
            signer_role="Billing Office",
        ),
        issued=b.date_after(b.dos, 20),
    )


def build_invoice(b: Builder, long: bool) -> Content:
    """A patient invoice / statement with CPT line items and an amount due."""
    rng, v = b.rng, b.values
    fields = b.fields(
        ("patient_name", "mrn", "provider_name", "npi", "date_of_service", "payer"),
        {"member_id": 0.4},
    )
    statement_date = b.date_after(b.dos, 30)
    distractors = [
        Field(pick(rng, ("Invoice #:", "Invoice No.:", "Statement #:")), v.number("INV-", 7)),
        Field(pick(rng, ("Account #:", "Account No.:")), v.number("", 8)),
        Field(pick(rng, ("Statement date:", "Invoice date:")), statement_date),
    ]
    items, subtotal = _line_items(b, 2 + int(rng.integers(4)))
    insurance = round(subtotal * float(rng.uniform(0.4, 0.8)), 2)
    adjustment = round(subtotal * float(rng.uniform(0.0, 0.1)), 2)
    due = round(subtotal - insurance - adjustment, 2)
    rows = tuple(
        (code, description, str(qty), v.fmt_amount(amount))
        for code, description, qty, amount in items
    )
    body: list[Block] = [
        Heading(pick(rng, ("Services", "Itemized Charges", "Charges"))),
        Table(("Code", "Description", "Qty", "Amount"), rows, (False, False, True, True)),
        Para(pick(rng, vocab.INVOICE_NOTES)),
    ]
    footer = [
        Field("Subtotal:", v.fmt_amount(subtotal)),
        Field(pick(rng, ("Insurance payment:", "Paid by insurance:")), v.fmt_amount(insurance)),
        Field("Adjustments:", v.fmt_amount(adjustment)),
        b.entity("total_amount", v.fmt_amount(due)),
    ]
    return Content(
        doc_type=b.doc_type,
        title=b.maybe_title(
            ("Invoice", "Patient Statement", "Billing Statement", "Statement of Account")
        ),
        org=v.organisation("billing"),
        address=v.address(),
        phone=v.phone(),
        header=tuple(_shuffle_tail(rng, fields, 1) + distractors),
        body=tuple(body),
        footer=tuple(footer),
        letter=Letter(
            recipient=("Patient Billing",),
            salutation="Dear Patient,",
            opening="This statement lists the charges for your recent visit.",
            closing="Thank you,",
            signer_role="Billing Office",
        ),
        issued=statement_date,
    )


def build_discharge(b: Builder, long: bool) -> Content:
    """A hospital discharge summary."""
    rng, v = b.rng, b.values
    fields = b.fields(
        (
            "patient_name",
            "date_of_birth",
            "mrn",
            "provider_name",
            "date_of_service",
            "diagnosis_code",
        ),
        {"payer": 0.4},
    )
    fields, footer = b.split_provider(fields, 1.0 if long else 0.3)
    stay = int(rng.integers(1, 9))
    discharge_day = b.dos + dt.timedelta(days=stay)
    distractors = [
        Field(
            pick(rng, ("Discharge date:", "Date of discharge:", "Discharged:")),
            v.fmt_date(discharge_day),
        ),
        Field(
            "Unit:", f"{int(rng.integers(2, 8))} {pick(rng, ('West', 'East', 'North', 'South'))}"
        ),
        Field("Length of stay:", f"{stay} days"),
    ]
    others = [d for d in vocab.DIAGNOSES if d[0] != b.diagnosis[0]]
    secondary = sample(rng, others, 2 + int(rng.integers(2)))
    course = sample(rng, vocab.HOSPITAL_COURSE, (7 if long else 3) + int(rng.integers(3)))
    meds = sample(rng, vocab.MEDICATIONS, (5 if long else 2) + int(rng.integers(3)))
    body: list[Block] = [
        Heading(pick(rng, ("Principal Diagnosis", "Admitting Diagnosis"))),
        Para(f"{b.diagnosis[1]}."),
        Heading(pick(rng, ("Secondary Diagnoses", "Comorbidities"))),
        Items(tuple(f"{code} {text}" for code, text in secondary)),
        Heading("Hospital Course"),
        Para(" ".join(course)),
    ]
    if long:
        body.append(PageBreak())
    body.extend(
        [
            Heading(pick(rng, ("Discharge Medications", "Medications at Discharge"))),
            Items(tuple(f"{name} {form} - {pick(rng, vocab.SIGS).lower()}" for name, form in meds)),
            Heading(pick(rng, ("Discharge Instructions", "Instructions"))),
            Items(tuple(sample(rng, vocab.DISCHARGE_INSTRUCTIONS, 3 if long else 2))),
            Heading("Condition at Discharge"),
            Para(pick(rng, ("Stable.", "Improved.", "Good, ambulating independently."))),
        ]
    )
    return Content(
        doc_type=b.doc_type,
        title=b.maybe_title(
            (
                "Discharge Summary",
                "Hospital Discharge Summary",
                "Inpatient Discharge Summary",
                "Discharge Report",
            ),
        ),
        org=v.organisation("hospital"),
        address=v.address(),
        phone=v.phone(),
        header=tuple(_shuffle_tail(rng, fields, 1) + distractors),
        body=tuple(body),
        footer=tuple(footer),
        letter=Letter(
            recipient=("Primary Care Physician",),
            salutation="Dear Colleague,",
            opening="Your patient was discharged from our hospital; a summary of the stay follows.",
            closing="Sincerely,",
            signer_role="Attending Physician",
        ),
        issued=v.fmt_date(discharge_day),
    )


BUILDERS: dict[str, Callable[[Builder, bool], Content]] = {
    "referral_letter": build_referral,
    "lab_report": build_lab,
    "prescription": build_prescription,
    "insurance_claim": build_claim,
    "invoice": build_invoice,
    "discharge_summary": build_discharge,
}
LONG_TYPES: frozenset[str] = frozenset({"lab_report", "discharge_summary"})
"""Types of which about one in five documents runs to a second page."""


def build_content(doc_type: str, rng: np.random.Generator, values: Values) -> tuple[Content, bool]:
    """Draw the content of one document.

    Args:
        doc_type: the document class.
        rng: the document's generator.
        values: value drawer in the document's formats.

    Returns:
        The content and whether it is a two-page document.
    """
    long = doc_type in LONG_TYPES and bool(rng.random() < 0.2)
    return BUILDERS[doc_type](Builder(doc_type, rng, values), long), long

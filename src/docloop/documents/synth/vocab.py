"""Fake but plausible healthcare values: names, identifiers, dates, amounts, codes and phrases.

Nothing here is real: names come from common-name lists, identifiers are random (NPIs carry a
valid Luhn check digit so they look right), organisations and payers are generic. Every draw
goes through a :class:`numpy.random.Generator`, so a seed fixes every value.

Entity *formats* are a drift knob: :class:`Formats` says how dates, amounts, names, MRNs and
member IDs are written and which payer list is used. ``base`` formats are US-style
(``03/12/2024``, ``$1,234.56``, ``Jane Doe``); ``new_vendor`` formats are those of a new
source system (``12 Mar 2024`` / ``2024-03-12``, ``USD 1.234,56`` / ``1234.56 USD``,
``DOE, Jane``, ``MRN-AB-123456``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

FIRST_NAMES: tuple[str, ...] = tuple(
    [
        "James",
        "Mary",
        "Robert",
        "Patricia",
        "John",
        "Jennifer",
        "Michael",
        "Linda",
        "David",
        "Elizabeth",
        "William",
        "Barbara",
        "Richard",
        "Susan",
        "Joseph",
        "Jessica",
        "Thomas",
        "Sarah",
        "Carlos",
        "Karen",
        "Daniel",
        "Lisa",
        "Matthew",
        "Nancy",
        "Anthony",
        "Betty",
        "Mark",
        "Sandra",
        "Steven",
        "Ashley",
        "Andrew",
        "Emily",
        "Kevin",
        "Michelle",
        "Brian",
        "Amanda",
        "George",
        "Melissa",
        "Timothy",
        "Deborah",
        "Jorge",
        "Stephanie",
        "Ryan",
        "Rebecca",
        "Jacob",
        "Laura",
        "Gary",
        "Helen",
        "Nicholas",
        "Sharon",
        "Eric",
        "Cynthia",
        "Jonathan",
        "Kathleen",
        "Samuel",
        "Angela",
        "Raymond",
        "Maria",
        "Wei",
        "Priya",
        "Ahmed",
        "Fatima",
        "Hiroshi",
        "Mei",
        "Rahul",
        "Olga",
        "Diego",
        "Aisha",
        "Tyrone",
        "Keiko",
        "Luis",
        "Grace",
        "Omar",
        "Hannah",
        "Victor",
    ]
)
LAST_NAMES: tuple[str, ...] = tuple(
    [
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Garcia",
        "Miller",
        "Davis",
        "Rodriguez",
        "Martinez",
        "Hernandez",
        "Lopez",
        "Gonzalez",
        "Wilson",
        "Anderson",
        "Thomas",
        "Taylor",
        "Moore",
        "Jackson",
        "Martin",
        "Lee",
        "Perez",
        "Thompson",
        "White",
        "Harris",
        "Sanchez",
        "Clark",
        "Ramirez",
        "Lewis",
        "Robinson",
        "Walker",
        "Young",
        "Allen",
        "King",
        "Wright",
        "Scott",
        "Torres",
        "Nguyen",
        "Hill",
        "Flores",
        "Green",
        "Adams",
        "Nelson",
        "Baker",
        "Hall",
        "Rivera",
        "Campbell",
        "Mitchell",
        "Carter",
        "Roberts",
        "Patel",
        "Chen",
        "Kim",
        "Singh",
        "Okafor",
        "Kowalski",
        "Novak",
        "Schmidt",
        "Rossi",
        "Tanaka",
        "Yamamoto",
        "Cohen",
        "Murphy",
        "Sullivan",
        "Bennett",
        "Foster",
        "Gray",
        "Hughes",
        "Price",
        "Sanders",
        "Fischer",
        "Larsen",
    ]
)
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"

PAYERS_BASE: tuple[str, ...] = (
    "Blue Shield of CA",
    "Aetna",
    "Medicare Part B",
    "UnitedHealthcare",
    "Cigna",
    "Humana",
    "Kaiser Permanente",
    "Anthem Blue Cross",
    "Medicaid",
    "Tricare",
    "Health Net",
    "Blue Cross Blue Shield",
    "Medicare Advantage",
)
PAYERS_NEW_VENDOR: tuple[str, ...] = (
    "Oscar Health",
    "Molina Healthcare",
    "Ambetter",
    "Bright Health",
    "Highmark BCBS",
    "WellCare",
    "Centene",
    "CareSource",
    "Priority Health",
    "Harvard Pilgrim",
)

MONTHS_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

STREETS: tuple[str, ...] = (
    "Mission",
    "Oak",
    "Maple",
    "Cedar",
    "Market",
    "Lincoln",
    "Washington",
    "Park",
    "Lake",
    "Hillside",
    "Riverside",
    "Sunset",
    "Elm",
    "Pine",
    "Franklin",
    "Jefferson",
    "Broadway",
)
STREET_KINDS: tuple[str, ...] = ("Street", "Avenue", "Boulevard", "Drive", "Road", "Way")
CITIES: tuple[tuple[str, str, str], ...] = (
    ("San Francisco", "CA", "941"),
    ("Oakland", "CA", "946"),
    ("Sacramento", "CA", "958"),
    ("Portland", "OR", "972"),
    ("Seattle", "WA", "981"),
    ("Phoenix", "AZ", "850"),
    ("Denver", "CO", "802"),
    ("Austin", "TX", "787"),
    ("Chicago", "IL", "606"),
    ("Columbus", "OH", "432"),
    ("Atlanta", "GA", "303"),
    ("Boston", "MA", "021"),
    ("Raleigh", "NC", "276"),
    ("Minneapolis", "MN", "554"),
    ("Nashville", "TN", "372"),
)
AREA_CODES: tuple[str, ...] = (
    "415",
    "510",
    "916",
    "503",
    "206",
    "602",
    "303",
    "512",
    "312",
    "614",
    "404",
    "617",
    "919",
    "612",
    "615",
)

ORG_PREFIXES: tuple[str, ...] = (
    "Riverside",
    "Northgate",
    "Summit",
    "Lakeview",
    "Cedar Valley",
    "Harbor",
    "Mercy",
    "Pinecrest",
    "Bayview",
    "Golden State",
    "Evergreen",
    "Westfield",
    "Sunrise",
    "Meadowbrook",
)
ORG_SUFFIXES: dict[str, tuple[str, ...]] = {
    "clinic": (
        "Medical Group",
        "Family Practice",
        "Primary Care",
        "Health Center",
        "Internal Medicine Associates",
        "Community Clinic",
    ),
    "lab": (
        "Clinical Laboratories",
        "Pathology Associates",
        "Diagnostics Lab",
        "Reference Laboratory",
        "Medical Laboratory",
    ),
    "hospital": (
        "General Hospital",
        "Regional Medical Center",
        "Memorial Hospital",
        "Community Hospital",
        "University Hospital",
    ),
    "billing": (
        "Medical Group",
        "Physicians Billing Services",
        "Health Partners",
        "Specialty Care",
        "Orthopedic Associates",
    ),
}

DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("J18.9", "Pneumonia, unspecified organism"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("M54.50", "Low back pain, unspecified"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("F41.1", "Generalized anxiety disorder"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("I48.91", "Unspecified atrial fibrillation"),
    ("J44.1", "Chronic obstructive pulmonary disease with exacerbation"),
    ("R07.9", "Chest pain, unspecified"),
    ("S93.401A", "Sprain of unspecified ligament of right ankle"),
    ("L03.115", "Cellulitis of right lower limb"),
    ("I50.9", "Heart failure, unspecified"),
    ("E03.9", "Hypothyroidism, unspecified"),
    ("G43.909", "Migraine, unspecified, not intractable"),
    ("R10.9", "Unspecified abdominal pain"),
    ("M17.11", "Unilateral primary osteoarthritis, right knee"),
    ("N18.3", "Chronic kidney disease, stage 3"),
    ("D64.9", "Anemia, unspecified"),
    ("K35.80", "Unspecified acute appendicitis"),
)

CPT_CODES: tuple[tuple[str, str, float], ...] = (
    ("99203", "Office visit, new patient, low complexity", 165.0),
    ("99213", "Office visit, established patient", 125.0),
    ("99214", "Office visit, established, moderate", 185.0),
    ("99215", "Office visit, established, high complexity", 255.0),
    ("80053", "Comprehensive metabolic panel", 48.0),
    ("85025", "Complete blood count with differential", 32.0),
    ("36415", "Routine venipuncture", 12.0),
    ("93000", "Electrocardiogram, complete", 75.0),
    ("71046", "Chest X-ray, 2 views", 140.0),
    ("81001", "Urinalysis with microscopy", 18.0),
    ("90471", "Immunization administration", 28.0),
    ("90686", "Influenza vaccine, quadrivalent", 42.0),
    ("97110", "Therapeutic exercise, each 15 min", 68.0),
    ("12001", "Simple repair of superficial wound", 210.0),
    ("73610", "X-ray ankle, complete", 110.0),
    ("20610", "Arthrocentesis, major joint", 190.0),
    ("83036", "Hemoglobin A1c", 29.0),
    ("84443", "Thyroid stimulating hormone", 41.0),
    ("80061", "Lipid panel", 39.0),
    ("96372", "Therapeutic injection, IM", 55.0),
)

LAB_PANELS: dict[str, tuple[tuple[str, str, float, float, int], ...]] = {
    # name -> (test, unit, low, high, decimals)
    "Complete Blood Count": (
        ("WBC", "K/uL", 4.0, 11.0, 1),
        ("RBC", "M/uL", 4.2, 5.9, 2),
        ("Hemoglobin", "g/dL", 12.0, 17.5, 1),
        ("Hematocrit", "%", 36.0, 52.0, 1),
        ("MCV", "fL", 80.0, 100.0, 0),
        ("Platelets", "K/uL", 150.0, 400.0, 0),
        ("Neutrophils", "%", 40.0, 75.0, 0),
        ("Lymphocytes", "%", 20.0, 45.0, 0),
    ),
    "Comprehensive Metabolic Panel": (
        ("Sodium", "mmol/L", 135.0, 145.0, 0),
        ("Potassium", "mmol/L", 3.5, 5.1, 1),
        ("Chloride", "mmol/L", 98.0, 107.0, 0),
        ("CO2", "mmol/L", 22.0, 29.0, 0),
        ("BUN", "mg/dL", 7.0, 20.0, 0),
        ("Creatinine", "mg/dL", 0.6, 1.3, 2),
        ("Glucose", "mg/dL", 70.0, 99.0, 0),
        ("Calcium", "mg/dL", 8.6, 10.3, 1),
        ("ALT", "U/L", 7.0, 56.0, 0),
        ("AST", "U/L", 10.0, 40.0, 0),
        ("Albumin", "g/dL", 3.5, 5.0, 1),
        ("Total Bilirubin", "mg/dL", 0.1, 1.2, 1),
    ),
    "Lipid Panel": (
        ("Total Cholesterol", "mg/dL", 125.0, 200.0, 0),
        ("LDL Cholesterol", "mg/dL", 50.0, 100.0, 0),
        ("HDL Cholesterol", "mg/dL", 40.0, 80.0, 0),
        ("Triglycerides", "mg/dL", 40.0, 150.0, 0),
    ),
    "Thyroid Function": (
        ("TSH", "uIU/mL", 0.4, 4.0, 2),
        ("Free T4", "ng/dL", 0.8, 1.8, 2),
    ),
    "Diabetes Monitoring": (
        ("Hemoglobin A1c", "%", 4.0, 5.6, 1),
        ("Fasting Glucose", "mg/dL", 70.0, 99.0, 0),
    ),
    "Urinalysis": (
        ("Specific Gravity", "", 1.005, 1.030, 3),
        ("pH", "", 5.0, 8.0, 1),
        ("Protein", "mg/dL", 0.0, 14.0, 0),
        ("Urine Glucose", "mg/dL", 0.0, 15.0, 0),
    ),
}

MEDICATIONS: tuple[tuple[str, str], ...] = (
    ("Lisinopril", "10 mg tablet"),
    ("Metformin", "500 mg tablet"),
    ("Atorvastatin", "20 mg tablet"),
    ("Amlodipine", "5 mg tablet"),
    ("Levothyroxine", "50 mcg tablet"),
    ("Omeprazole", "20 mg capsule"),
    ("Sertraline", "50 mg tablet"),
    ("Albuterol HFA", "90 mcg inhaler"),
    ("Gabapentin", "300 mg capsule"),
    ("Prednisone", "10 mg tablet"),
    ("Hydrochlorothiazide", "25 mg tablet"),
    ("Amoxicillin", "500 mg capsule"),
    ("Azithromycin", "250 mg tablet"),
    ("Ibuprofen", "600 mg tablet"),
    ("Losartan", "50 mg tablet"),
    ("Metoprolol succinate", "25 mg tablet"),
    ("Furosemide", "20 mg tablet"),
    ("Apixaban", "5 mg tablet"),
    ("Cephalexin", "500 mg capsule"),
    ("Montelukast", "10 mg tablet"),
)
SIGS: tuple[str, ...] = (
    "Take 1 tablet by mouth once daily",
    "Take 1 tablet by mouth twice daily with meals",
    "Take 1 capsule by mouth three times daily for 10 days",
    "Take 1 tablet by mouth at bedtime",
    "Take 1 tablet every 6 hours as needed for pain",
    "Inhale 2 puffs every 4 to 6 hours as needed",
    "Take 2 tablets on day 1 then 1 tablet daily for 4 days",
    "Take 1 capsule by mouth before breakfast",
)
SPECIALTIES: tuple[str, ...] = (
    "Cardiology",
    "Endocrinology",
    "Orthopedics",
    "Neurology",
    "Gastroenterology",
    "Dermatology",
    "Pulmonology",
    "Nephrology",
    "Rheumatology",
    "Physical Therapy",
)
REFERRAL_REASONS: tuple[str, ...] = (
    "evaluation of persistent palpitations and an abnormal electrocardiogram",
    "management of poorly controlled blood glucose despite oral therapy",
    "assessment of chronic right knee pain limiting daily activities",
    "recurrent headaches with visual aura not responding to first-line treatment",
    "further workup of intermittent epigastric pain and reflux symptoms",
    "a changing pigmented lesion on the upper back",
    "progressive shortness of breath on exertion",
    "declining kidney function noted on recent laboratory results",
    "joint swelling and morning stiffness lasting more than one hour",
    "rehabilitation after an ankle sprain with reduced range of motion",
)
HISTORY_SENTENCES: tuple[str, ...] = (
    "Symptoms began approximately three months ago and have gradually worsened.",
    "The patient denies fever, chills or unintended weight loss.",
    "Past medical history is notable for hypertension and hyperlipidemia.",
    "There is a family history of coronary artery disease.",
    "The patient is a nonsmoker and drinks alcohol occasionally.",
    "Recent laboratory studies are enclosed for your review.",
    "Physical examination was otherwise unremarkable.",
    "Current medications have been reconciled and are listed below.",
    "Allergies: no known drug allergies.",
    "The patient has been informed of this referral and agrees with the plan.",
)
HOSPITAL_COURSE: tuple[str, ...] = (
    "The patient presented to the emergency department with worsening symptoms.",
    "Intravenous antibiotics were started on admission and transitioned to oral therapy.",
    "Blood cultures remained negative throughout the stay.",
    "Serial troponins were within normal limits and telemetry showed no arrhythmia.",
    "Renal function improved with gentle intravenous hydration.",
    "Pain was controlled with oral analgesics and the patient ambulated independently.",
    "Physical therapy evaluated the patient and recommended home exercises.",
    "Blood pressure was optimized and home medications were adjusted.",
    "The patient tolerated a regular diet prior to discharge.",
    "Oxygen was weaned to room air by hospital day three.",
    "Glucose was managed with a basal bolus insulin regimen.",
    "A chest radiograph showed improvement of the right lower lobe infiltrate.",
)
DISCHARGE_INSTRUCTIONS: tuple[str, ...] = (
    "Return to the emergency department for chest pain, fever or shortness of breath.",
    "Resume a regular diet as tolerated and stay well hydrated.",
    "No driving while taking sedating medications.",
    "Check blood glucose twice daily and keep a log.",
    "Follow up with the primary care physician within 7 days.",
    "Activity as tolerated; avoid heavy lifting for two weeks.",
)
LAB_COMMENTS: tuple[str, ...] = (
    "Specimen received in good condition.",
    "Results verified by repeat analysis.",
    "Fasting status confirmed at collection.",
    "Reference ranges are age and sex specific.",
    "Critical values were called to the ordering office.",
    "Hemolysis index within acceptable limits.",
)
INVOICE_NOTES: tuple[str, ...] = (
    "Please remit payment within 30 days of the statement date.",
    "Payments can be made online, by phone or by mail.",
    "Questions about this bill? Call our billing office.",
    "Insurance has been billed for the services listed above.",
    "A late fee may apply to balances older than 60 days.",
)
CLAIM_NOTES: tuple[str, ...] = (
    "I certify that the statements on this form are true and complete.",
    "Signature on file for release of medical information.",
    "Accept assignment: Yes",
    "Place of service: 11 Office",
    "Prior authorization not required.",
)


def pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    """One item of ``items``, uniformly."""
    return items[int(rng.integers(len(items)))]


def sample(rng: np.random.Generator, items: Sequence[T], k: int) -> list[T]:
    """``k`` distinct items of ``items`` (order random)."""
    return [items[int(i)] for i in rng.choice(len(items), size=min(k, len(items)), replace=False)]


@dataclass(frozen=True)
class Formats:
    """How entity values are written in one document.

    Attributes:
        date_style: ``us`` (03/12/2024), ``dmy_text`` (12 Mar 2024) or ``iso`` (2024-03-12).
        amount_style: ``usd`` ($1,234.56), ``usd_eu`` (USD 1.234,56) or ``suffix`` (1234.56 USD).
        name_style: ``first_last`` (Jane Doe) or ``last_first`` (DOE, Jane).
        mrn_style: ``digits`` (4827163), ``alnum`` (A12-345678) or ``vendor`` (MRN-AB-123456).
        member_style: ``base`` (XGH123456789) or ``vendor`` (MBR-0012-3456).
        payers: the payer names to draw from.
    """

    date_style: str = "us"
    amount_style: str = "usd"
    name_style: str = "first_last"
    mrn_style: str = "digits"
    member_style: str = "base"
    payers: tuple[str, ...] = PAYERS_BASE


def base_formats(rng: np.random.Generator) -> Formats:
    """US formats of the incumbent source systems (the ``base`` scenario)."""
    return Formats(mrn_style=pick(rng, ("digits", "alnum")))


def new_vendor_formats(rng: np.random.Generator) -> Formats:
    """Formats of a newly onboarded source system (the ``new_vendor`` scenario)."""
    return Formats(
        date_style=pick(rng, ("dmy_text", "iso")),
        amount_style=pick(rng, ("usd_eu", "suffix")),
        name_style="last_first",
        mrn_style="vendor",
        member_style="vendor",
        payers=PAYERS_NEW_VENDOR,
    )


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(int(d)) for d in rng.integers(0, 10, size=n))


def _letters(rng: np.random.Generator, n: int, alphabet: str = "ABCDEFGHJKLMNPRSTUVWXYZ") -> str:
    return "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), size=n))


def luhn_check_digit(payload: str) -> int:
    """Luhn check digit of a digit string (the digit appended to make it Luhn-valid)."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


class Values:
    """Draws the values printed in one document, written in that document's :class:`Formats`.

    Args:
        rng: the document's generator.
        formats: how values are written.
    """

    def __init__(self, rng: np.random.Generator, formats: Formats) -> None:
        self.rng = rng
        self.formats = formats

    # --- people -------------------------------------------------------------------------
    def person_name(self) -> str:
        """A patient name, e.g. ``Jane Doe``, ``Jane A. Doe`` or ``DOE, Jane``."""
        first, last = pick(self.rng, FIRST_NAMES), pick(self.rng, LAST_NAMES)
        if self.formats.name_style == "last_first":
            return f"{last.upper()}, {first}"
        if self.rng.random() < 0.25:
            return f"{first} {pick(self.rng, MIDDLE_INITIALS)}. {last}"
        return f"{first} {last}"

    def provider_name(self) -> str:
        """A clinician's name, e.g. ``Dr. Maria Lopez``, ``Wei Chen MD`` or ``LOPEZ, Maria MD``."""
        first, last = pick(self.rng, FIRST_NAMES), pick(self.rng, LAST_NAMES)
        credential = pick(self.rng, ("MD", "MD", "MD", "DO", "NP", "PA-C"))
        if self.formats.name_style == "last_first":
            return f"{last.upper()}, {first} {credential}"
        style = int(self.rng.integers(3))
        if style == 0 and credential in ("MD", "DO"):
            return f"Dr. {first} {last}"
        if style == 1:
            return f"{first} {last}, {credential}"
        return f"{first} {last} {credential}"

    # --- dates and money ----------------------------------------------------------------
    def date(self, start: dt.date, end: dt.date) -> dt.date:
        """A uniform date in ``[start, end]``."""
        return start + dt.timedelta(days=int(self.rng.integers((end - start).days + 1)))

    def fmt_date(self, day: dt.date) -> str:
        """Write a date in this document's date style."""
        if self.formats.date_style == "dmy_text":
            return f"{day.day} {MONTHS_ABBR[day.month - 1]} {day.year}"
        if self.formats.date_style == "iso":
            return day.isoformat()
        return f"{day.month:02d}/{day.day:02d}/{day.year}"

    def birth_date(self) -> dt.date:
        """A date of birth between 1935 and 2015."""
        return self.date(dt.date(1935, 1, 1), dt.date(2015, 12, 31))

    def service_date(self) -> dt.date:
        """A date of service between 2023 and mid-2025."""
        return self.date(dt.date(2023, 1, 2), dt.date(2025, 6, 30))

    def fmt_amount(self, amount: float) -> str:
        """Write an amount in this document's amount style."""
        cents = round(amount * 100)
        whole, frac = divmod(cents, 100)
        if self.formats.amount_style == "usd_eu":
            return f"USD {whole:,}".replace(",", ".") + f",{frac:02d}"
        if self.formats.amount_style == "suffix":
            return f"{whole}.{frac:02d} USD"
        return f"${whole:,}.{frac:02d}"

    # --- identifiers --------------------------------------------------------------------
    def mrn(self) -> str:
        """A medical record number, e.g. ``4827163``, ``A12-345678`` or ``MRN-AB-123456``."""
        style = self.formats.mrn_style
        if style == "vendor":
            return f"MRN-{_letters(self.rng, 2)}-{_digits(self.rng, 6)}"
        if style == "alnum":
            return f"{_letters(self.rng, 1)}{_digits(self.rng, 2)}-{_digits(self.rng, 6)}"
        return str(int(self.rng.integers(1, 10))) + _digits(self.rng, 6)

    def npi(self) -> str:
        """A 10-digit NPI with a valid check digit (Luhn over ``80840`` + the first 9 digits)."""
        body = str(int(self.rng.integers(1, 3))) + _digits(self.rng, 8)
        return body + str(luhn_check_digit("80840" + body))

    def member_id(self) -> str:
        """An insurance member ID, e.g. ``XGH123456789`` or ``MBR-0012-3456``."""
        if self.formats.member_style == "vendor":
            return f"MBR-{_digits(self.rng, 4)}-{_digits(self.rng, 4)}"
        if self.rng.random() < 0.5:
            return _letters(self.rng, 3) + _digits(self.rng, 9)
        return "W" + _digits(self.rng, 9)

    def payer(self) -> str:
        """An insurance payer name."""
        return pick(self.rng, self.formats.payers)

    def diagnosis(self) -> tuple[str, str]:
        """An ICD-10-CM code and its description."""
        return pick(self.rng, DIAGNOSES)

    # --- distractors (printed but never labelled) ---------------------------------------
    def phone(self) -> str:
        """A phone number, e.g. ``(415) 555-0134``."""
        return f"({pick(self.rng, AREA_CODES)}) 555-{_digits(self.rng, 4)}"

    def number(self, prefix: str, digits: int) -> str:
        """A reference number such as ``INV-00123456``."""
        return f"{prefix}{_digits(self.rng, digits)}"

    def organisation(self, kind: str) -> str:
        """An organisation name of one kind (``clinic``, ``lab``, ``hospital``, ``billing``)."""
        return f"{pick(self.rng, ORG_PREFIXES)} {pick(self.rng, ORG_SUFFIXES[kind])}"

    def address(self) -> str:
        """A one-line street address."""
        city, state, zip3 = pick(self.rng, CITIES)
        number = int(self.rng.integers(10, 9900))
        street = f"{pick(self.rng, STREETS)} {pick(self.rng, STREET_KINDS)}"
        suite = f", Suite {int(self.rng.integers(1, 9)) * 100}" if self.rng.random() < 0.4 else ""
        return f"{number} {street}{suite}, {city}, {state} {zip3}{_digits(self.rng, 2)}"

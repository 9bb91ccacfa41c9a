"""The records the feedback loop passes around: one shape for the API, the store and the stages.

A prediction (``predictions`` table, written by the predictor's prediction log) names the served
model, the request, the document id and what the model said. The ids that feedback and training
hang on are the server's: ``request_id`` is drawn by the predictor for every request
(:func:`new_request_id`; with ``instance``, the document's position in the request, it keys the
log), and ``doc_id`` is a digest of the document's content. What a client sends as
``x-request-id`` (or the v2 ``id``) is kept only as ``client_request_id``, for correlation
(:func:`client_request_id`). The document itself — its OCR words,
boxes and pages, what a correction's word positions refer to and what retraining learns from —
is kept as a one-row ``DocumentExample`` Parquet under :func:`served_documents_uri`. A reviewer's
verdict (``feedback_events`` table) points at the prediction by request id and carries either a
confirmation or a correction: a document type and/or entities given by their word positions in
that document (indices into ``DocumentExample.words``, reading order).

What the predictor answers (:class:`PredictionAnswer`, with its :class:`PredictedEntity` list)
crosses three processes: the predictor's HTTP answer, the prediction log, and the feedback records
the stages read back. Optional parts that are not known are left out of their JSON rather than
written as null (a prediction without a classifier has no ``doc_type``; an entity logged without
``word_indices`` stays without), so the JSON reads as the predictor wrote it.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from typing import Annotated, Final, Literal

from fontTools import unicodedata as unicode_scripts  # type: ignore[import-untyped]
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from docloop.config import DocloopConfig
from docloop.documents.examples import DocumentExample, read_examples, write_examples
from docloop.limits import MAX_ID_CHARS, MAX_INSTANCES
from docloop.storage import Storage, join

FeedbackKind = Literal["confirmation", "correction"]
TextSource = Literal["ocr", "text_layer", "mixed", "unknown"]
"""Where a served document's words came from: every page OCR'd, every page a text layer, both,
or ``unknown`` (the client sent words without saying, for at least one page)."""
SERVED_DOCUMENTS = "served-documents"
CLIENT_REQUEST_ID_RE = re.compile(rf"^[A-Za-z0-9._:-]{{1,{MAX_ID_CHARS}}}$")
"""A client's correlation id: letters, digits, ``.``, ``_``, ``:`` and ``-`` (UUIDs, trace ids)."""


def new_request_id() -> str:
    """A fresh server request id: a random UUID (122 random bits, neither guessable nor reused)."""
    return str(uuid.uuid4())


def client_request_id(value: str | None, field: str) -> str | None:
    """A client's correlation id as given, or None when it sent none.

    Args:
        value: the ``x-request-id`` header or the v2 request ``id``.
        field: where it came from, for the message.

    Raises:
        ValueError: the id is empty, longer than :data:`MAX_ID_CHARS` or carries other
            characters than :data:`CLIENT_REQUEST_ID_RE` allows.
    """
    if value is None:
        return None
    if not CLIENT_REQUEST_ID_RE.fullmatch(value):
        shown = value[:40] + ("..." if len(value) > 40 else "")
        msg = (
            f"{field}: {shown!r} ({len(value)} characters) is not a usable correlation id; send "
            f"1-{MAX_ID_CHARS} letters, digits, '.', '_', ':' or '-' (e.g. a UUID), or "
            "leave it out (the answer's request_id is the server's id either way)"
        )
        raise ValueError(msg)
    return value


BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Explicit bidirectional formatting characters (Unicode UAX #9), refused in names."""


ANY_SCRIPT: Final = frozenset({"Zyyy", "Zinh", "Zzzz"})
"""Common, Inherited and Unknown: characters that go with the letters of any script."""
CJK_WRITING: Final = {
    "Hani": frozenset({"Hani", "Hanb", "Jpan", "Kore"}),
    "Hira": frozenset({"Hira", "Jpan"}),
    "Kana": frozenset({"Kana", "Jpan"}),
    "Bopo": frozenset({"Bopo", "Hanb"}),
    "Hang": frozenset({"Hang", "Kore"}),
}
"""UTS #39 §5.1's augmented script sets: Han is written with Hiragana and Katakana (Jpan),
Bopomofo (Hanb) or Hangul (Kore), so those mixes are one writing system."""
CJK_SYSTEMS: Final = frozenset({"Jpan", "Hanb", "Kore"})


def _scripts(char: str) -> frozenset[str] | None:
    """The augmented Script_Extensions of ``char`` (None: it goes with any script)."""
    found = frozenset(unicode_scripts.script_extension(char))
    if found <= ANY_SCRIPT:
        return None
    return frozenset(s for script in found for s in CJK_WRITING.get(script, {script}))


def _resolved(text: str) -> frozenset[str] | None:
    """The scripts every character of ``text`` can be written in (None: any script)."""
    resolved: frozenset[str] | None = None
    for char in text:
        scripts = _scripts(char)
        if scripts is not None:
            resolved = scripts if resolved is None else resolved & scripts
    return resolved


def mixed_scripts(text: str) -> str | None:
    """Why ``text`` mixes scripts, naming the odd characters; None when it is one script.

    Unicode UTS #39's "highly restrictive" level (§5.2): every letter from one script, or
    Latin with Han and Hiragana/Katakana, Bopomofo or Hangul. Digits and punctuation go with
    any script. A Latin ``admin`` spelt with a Cyrillic a (U+0430) reads as ``admin`` and is
    another id: it is refused.
    """
    resolved = _resolved(text)
    if resolved is None or resolved:
        return None
    without_latin = _resolved("".join(c for c in text if _scripts(c) != frozenset({"Latn"})))
    if without_latin is None or without_latin & CJK_SYSTEMS:
        return None
    by_script: dict[str, list[str]] = {}
    for char in text:
        script = str(unicode_scripts.script(char))
        if script not in ANY_SCRIPT:
            by_script.setdefault(script, []).append(char)
    main = max(by_script, key=lambda script: len(by_script[script]))
    odd = [c for script, chars in by_script.items() if script != main for c in chars]
    shown = ", ".join(
        f"U+{ord(c):04X} {unicodedata.name(c, 'UNNAMED')} ({c!r})" for c in dict.fromkeys(odd)
    )
    names = " and ".join(
        unicode_scripts.script_name(script) for script in sorted(by_script, key=str)
    )
    return (
        f"mixes the scripts {names}: {shown} among {unicode_scripts.script_name(main)} "
        "letters, a look-alike that reads as another id; send the id in one script"
    )


def normalised_name(value: str) -> str:
    """An id or a name in NFKC form; refused with hidden characters or mixed scripts.

    Full-width and compatibility letters become their plain form, so one reviewer has one
    spelling; characters that hide or reorder text (zero-width spaces,
    right-to-left overrides, ANSI escapes) and look-alike letters from another script
    (:func:`mixed_scripts`) have no place in an id and are refused.

    Raises:
        ValueError: the name carries such a character (named by its code point).
    """
    normal = unicodedata.normalize("NFKC", value)
    for char in normal:
        category = unicodedata.category(char)
        if char == "\x00":
            continue  # left to the text check, which names it for what it is (invalid_text)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or char in BIDI_CONTROLS:
            kind = (
                "bidi"
                if char in BIDI_CONTROLS
                else {"Cc": "control", "Cf": "format"}.get(category, "non-printing")
            )
            msg = (
                f"carries the {kind} character U+{ord(char):04X}, which hides or reorders text; "
                "send the plain name"
            )
            raise ValueError(msg)
    mixed = mixed_scripts(normal)
    if mixed is not None:
        raise ValueError(mixed)
    return normal


Name = Annotated[str, AfterValidator(normalised_name)]
"""A string id or name, NFKC-normalised, without control, format or bidi characters."""


def _absent(value: object) -> bool:
    """An optional part that was not given: left out of the JSON rather than written as null."""
    return value is None


class PredictedEntity(BaseModel):
    """One entity as the extractor predicted it."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Entity type, e.g. ``mrn``.")
    text: str | None = Field(default=None, exclude_if=_absent, description="The entity's text.")
    page: int | None = Field(
        default=None, exclude_if=_absent, description="The page of its first word (0-based)."
    )
    box: list[int] | None = Field(
        default=None, exclude_if=_absent, description="Bounding box of its words."
    )
    confidence: float | None = Field(
        default=None, exclude_if=_absent, description="The extractor's confidence."
    )
    word_indices: list[int] | None = Field(
        default=None,
        exclude_if=_absent,
        description="Positions of its words in the document (0-based, reading order); absent "
        "when the prediction did not record them.",
    )

    def span(self) -> tuple[str, tuple[int, ...]] | None:
        """``(type, sorted distinct word positions)``, or None without positions."""
        if not self.word_indices:
            return None
        return (self.type, tuple(sorted(set(self.word_indices))))


class FieldAnswer(BaseModel):
    """One field's answer: the value of its best span and how likely that value is right."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The span's words as printed.")
    value: str = Field(
        description="The value, normalised by the field's kind (ISO date, digits.cc amount)."
    )
    confidence: float = Field(
        description="Calibrated per field on held-out documents: the share of answers this "
        "confident that were right (raw span score when ``calibrated`` is false)."
    )
    calibrated: bool
    known_value: bool = Field(
        default=False,
        description="``value`` is a value the model learned for this field "
        "(training.known_value_fields), which the printed ``text`` was read as.",
    )
    page: int
    box: list[int]
    word_indices: list[int]


class TypeAnswer(BaseModel):
    """The classifier's answer: the type, its probability, every type's probability."""

    model_config = ConfigDict(extra="forbid")

    label: str
    confidence: float
    probabilities: dict[str, float]


class QuarantinedPage(BaseModel):
    """A page the predictor set aside while reading the document, with the reason."""

    model_config = ConfigDict(extra="forbid")

    page: int | None
    code: str
    reason: str


class PredictionAnswer(BaseModel):
    """The predictor's answer for one document (one entry of V1 ``predictions``).

    ``doc_type`` is absent without a classifier and ``entities`` without an extractor.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    doc_id: str
    doc_type: TypeAnswer | None = Field(default=None, exclude_if=_absent)
    entities: list[PredictedEntity] | None = Field(default=None, exclude_if=_absent)
    fields: dict[str, FieldAnswer] | None = Field(
        default=None,
        exclude_if=_absent,
        description="Each field the extractor knows, answered once (absent without an extractor).",
    )
    model_name: str
    model_version: str
    model_versions: dict[str, str]
    request_id: str = Field(
        description="The server's id of the request (the same for every document of one "
        "request); with ``instance`` it names this prediction to the feedback API."
    )
    instance: int = Field(ge=0, description="The document's position in its request.")
    client_request_id: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="The client's ``x-request-id`` (or v2 ``id``), echoed for correlation; "
        "absent when the client sent none. Never a key.",
    )
    pages: int
    words: int
    mean_confidence: float | None
    ocr_pages: int
    text_source: TextSource = Field(
        default="unknown",
        description="Where the words came from: ocr, text_layer, mixed, or unknown (the "
        "client sent words without a page ``source``).",
    )
    quarantined_pages: list[QuarantinedPage]


def text_source_of(sources: Sequence[str | None]) -> TextSource:
    """The document's :data:`TextSource` from its pages' sources (None: not said)."""
    if not sources or any(source not in ("ocr", "text_layer") for source in sources):
        return "unknown"
    kinds = set(sources)
    if kinds == {"ocr"}:
        return "ocr"
    return "text_layer" if kinds == {"text_layer"} else "mixed"


class CorrectedEntity(BaseModel):
    """One entity as the reviewer says it is."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64, description="Entity type, e.g. ``mrn``.")
    word_indices: list[StrictInt] | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Positions of the entity's words in the document (0-based, reading order). "
        "Leave out to name the entity by ``value``: the API then finds the words that print it "
        "in the served document and stores their positions.",
    )
    value: str | None = Field(
        default=None,
        max_length=1024,
        description="The text as printed. With ``word_indices`` it is for humans (positions "
        "decide); without, it is how the entity is found.",
    )

    @model_validator(mode="after")
    def _positions_or_value(self) -> CorrectedEntity:
        if self.word_indices is None and not (self.value or "").strip():
            msg = (
                "an entity needs its word_indices, or its value for the API to find the words "
                '(e.g. {"type": "total", "value": "9.00"})'
            )
            raise ValueError(msg)
        return self

    @property
    def positions(self) -> list[int]:
        """The word positions (empty while the entity is named by value only)."""
        return list(self.word_indices or [])


class Correction(BaseModel):
    """What was wrong: the document type, the entities, or both."""

    model_config = ConfigDict(extra="forbid")

    doc_type: str | None = Field(default=None, max_length=64, description="The right type.")
    entities: list[CorrectedEntity] | None = Field(
        default=None,
        max_length=256,
        description="The complete, correct entity list of the document (replaces the "
        "prediction's); ``[]`` says the document has none.",
    )


class FeedbackEvent(BaseModel):
    """A reviewer's verdict on one predicted document (``POST /v1/feedback``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    idempotency_key: str = Field(
        min_length=8,
        max_length=MAX_ID_CHARS,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Unique per verdict; a retried submission with the same key is stored once.",
    )
    model_name: Name = Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="The answer's ``model_name`` (served name).",
    )
    model_version: Name = Field(
        min_length=1, max_length=MAX_ID_CHARS, description="The answer's ``model_version``."
    )
    request_id: Name = Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="The server's id of the predicted request: the answer's ``request_id`` "
        "(not the client's ``x-request-id``, which the answer echoes as ``client_request_id``).",
    )
    instance: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_INSTANCES - 1,
        description="The answer's ``instance``: the document's position in its request (a "
        'number: ``"0"`` is refused).',
    )
    reviewer_id: Name = Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="Who reviewed the prediction: the authenticated principal (another name is "
        "403), NFKC-normalised.",
    )
    kind: FeedbackKind = Field(
        description="``confirmation``: the prediction was right; ``correction``: see "
        "``correction``."
    )
    correction: Correction | None = Field(
        default=None, description="Required for a correction, absent for a confirmation."
    )


class FeedbackRecord(BaseModel):
    """An accepted feedback event as the stages read it back (with the prediction it judges)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: int
    idempotency_key: str
    model_name: str
    model_version: str
    request_id: str
    instance: int = Field(default=0, description="Document position in its request.")
    doc_id: str
    reviewer_id: str
    kind: FeedbackKind
    correction: Correction | None
    received_at: str
    status: str
    quarantine_reason: str | None = None
    reviewer_role: str | None = Field(
        default=None,
        description="The role the sender was authenticated with (None: stored before roles).",
    )
    predicted_doc_type: str | None = None
    predicted_probabilities: dict[str, float] = Field(default_factory=dict)
    predicted_entities: list[PredictedEntity] = Field(default_factory=list)


def served_documents_uri(config: DocloopConfig) -> str:
    """Where the predictor keeps the documents it answered for (one Parquet per document id)."""
    return join(config.data_root, SERVED_DOCUMENTS)


def served_document_uri(config: DocloopConfig, doc_id: str) -> str:
    """The Parquet file of one served document."""
    return join(served_documents_uri(config), f"{doc_id}.parquet")


def write_served_document(storage: Storage, config: DocloopConfig, example: DocumentExample) -> str:
    """Keep a served document (unlabelled) unless it is already kept; return its URI."""
    uri = served_document_uri(config, example.doc_id)
    if not storage.exists(uri):
        write_examples(storage, uri, [example])
    return uri


def read_served_document(storage: Storage, config: DocloopConfig, doc_id: str) -> DocumentExample:
    """Read a served document back."""
    return read_examples(storage, served_document_uri(config, doc_id))[0]

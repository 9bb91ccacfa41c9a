"""Request payloads -> validated instances: one document each, as OCR pages or as a file.

An instance is a JSON object with exactly one of:

``pages``
    a non-empty list of page records (``docloop.documents.schema.PageRecord`` dicts, or just
    ``{"words": [...], "boxes": [[x0, y0, x1, y1], ...]}``, optionally with ``page``,
    ``confidences`` (0-100 per word) and ``source`` (``ocr`` or ``text_layer``; left out, the
    page's provenance is unknown and it never counts as OCR'd)). Boxes are normalised to 0-1000
    of the page, top-left origin.
``document``
    a base64 PDF, PNG, JPEG or TIFF (a ``data:...;base64,`` prefix is accepted); the server runs
    the same intake, render and OCR code as the preprocess component.

and nothing else: a ``doc_id`` is refused, since the server names every document by its content
(``docloop.serve.documents``). Every validation error raises
``InvalidInput`` (HTTP 400) with a message that starts with the path of the offending field, e.g.
``instances[0].pages[1].boxes[3]: coordinates must be within 0..1000``. A request is answered
whole or refused whole: one bad document refuses it, and nothing of it is logged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docloop import strict_json
from docloop.documents.examples import OUTSIDE, DocumentExample
from docloop.errors import ConfigError
from docloop.limits import MAX_INSTANCES, MAX_PAGES, MAX_WORDS
from docloop.serve.compat import InferRequest, InvalidInput

V2_INPUT_NAME = "document_json"
"""The one BYTES input of an Open Inference Protocol request: a JSON string per instance."""
V2_OUTPUT_NAME = "prediction_json"
"""The one BYTES output of the response: a JSON string per instance."""

INSTANCE_KEYS = frozenset({"pages", "document"})
V1_KEYS = frozenset({"instances"})
V2_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
"""The fields of an Open Inference Protocol request (its ``parameters`` carry extensions)."""
BOX_MAX = 1000


class TooLarge(InvalidInput):  # type: ignore[misc]
    """A document over a size or cost cap (HTTP 413: the request is valid, only too large)."""


class TooManyWords(TooLarge):
    """A document over ``serve.max_words`` (HTTP 413)."""

    def __init__(self, where: str, words: int, limit: int) -> None:
        super().__init__(
            f"{where}: {words} words, over the limit of {limit} words per document "
            "(serve.max_words, --max-words); split the document into smaller ones"
        )


@dataclass(frozen=True)
class ServeLimits:
    """Caps on what one request may ask for (each breach is an HTTP 400 naming the field).

    Attributes:
        max_instances: documents per request.
        max_request_bytes: size of the HTTP request body.
        max_pages: pages per document (``pages`` entries, or pages of a PDF/TIFF).
        max_words: words per document, over all its pages.
    """

    max_instances: int = 32
    max_request_bytes: int = 32 * 1024 * 1024
    max_pages: int = 50
    max_words: int = 20_000

    def __post_init__(self) -> None:
        # Above the shared limits the feedback API could not name what the predictor answered.
        for name, value, ceiling in (
            ("max_instances", self.max_instances, MAX_INSTANCES),
            ("max_pages", self.max_pages, MAX_PAGES),
            ("max_words", self.max_words, MAX_WORDS),
        ):
            if not 1 <= value <= ceiling:
                raise ConfigError(
                    f"{name}: {value} is outside 1..{ceiling}, the range the feedback API can "
                    "review (docloop.limits)"
                )


@dataclass(frozen=True)
class ServePage:
    """One page of a document ready for the models."""

    page: int
    words: list[str]
    boxes: list[list[int]]
    confidences: list[float] | None
    source: Literal["ocr", "text_layer"] | None


@dataclass(frozen=True)
class PagesInstance:
    """An instance given as OCR page records."""

    field: str
    pages: list[ServePage]
    page_count: int


@dataclass(frozen=True)
class DocumentInstance:
    """An instance given as a file (decoded from base64, not yet inspected)."""

    field: str
    data: bytes


Instance = PagesInstance | DocumentInstance


class PageInput(BaseModel):
    """A page as a caller sends it: a PageRecord, or the subset the models need."""

    model_config = ConfigDict(extra="forbid", strict=True)

    page: int | None = Field(default=None, ge=0, le=MAX_PAGES - 1)
    words: list[str]
    boxes: list[list[int]]
    confidences: list[float] | None = None
    source: Literal["ocr", "text_layer"] | None = None
    # The other PageRecord fields are accepted so that preprocess output can be sent as is.
    doc_id: str | None = None
    source_uri: str | None = None
    page_count: int | None = Field(default=None, ge=1, le=MAX_PAGES)
    width: int | None = None
    height: int | None = None
    dpi: int | None = None
    image_uri: str | None = None
    mean_confidence: float | None = None
    ocr_engine: str | None = None
    settings_digest: str | None = None


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "an object"),
)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _page(raw: object, field: str, limits: ServeLimits) -> ServePage:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{field}: expected a page object, got {_describe(raw)}")
    try:
        page = PageInput.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{_path(field, first['loc'])}: {first['msg']}") from exc
    if len(page.boxes) != len(page.words):
        raise InvalidInput(
            f"{field}.boxes: {len(page.boxes)} boxes for {len(page.words)} words; "
            "send exactly one [x0, y0, x1, y1] box per word"
        )
    if page.confidences is not None and len(page.confidences) != len(page.words):
        raise InvalidInput(
            f"{field}.confidences: {len(page.confidences)} confidences for {len(page.words)} "
            "words; send one per word or leave the field out"
        )
    for index, box in enumerate(page.boxes):
        where = f"{field}.boxes[{index}]"
        if len(box) != 4:
            raise InvalidInput(f"{where}: expected [x0, y0, x1, y1], got {len(box)} numbers")
        if any(value < 0 or value > BOX_MAX for value in box):
            raise InvalidInput(
                f"{where}: coordinates must be within 0..{BOX_MAX} (normalised to the page's "
                f"width and height), got {box}"
            )
        if box[0] > box[2] or box[1] > box[3]:
            raise InvalidInput(f"{where}: expected x0 <= x1 and y0 <= y1, got {box}")
    if page.confidences is not None:
        for index, confidence in enumerate(page.confidences):
            if not 0 <= confidence <= 100:
                raise InvalidInput(
                    f"{field}.confidences[{index}]: must be within 0..100, got {confidence}"
                )
    if len(page.words) > limits.max_words:
        raise TooManyWords(f"{field}.words", len(page.words), limits.max_words)
    return ServePage(
        page=-1 if page.page is None else page.page,
        words=page.words,
        boxes=page.boxes,
        confidences=page.confidences,
        source=page.source,
    )


def _pages_instance(raw: object, field: str, limits: ServeLimits) -> Instance:
    if not isinstance(raw, list):
        raise InvalidInput(f"{field}: expected a list of page records, got {_describe(raw)}")
    if not raw:
        raise InvalidInput(f"{field}: the page list is empty; send at least one page")
    if len(raw) > limits.max_pages:
        raise InvalidInput(f"{field}: {len(raw)} pages, over the limit of {limits.max_pages}")
    pages = [_page(item, f"{field}[{index}]", limits) for index, item in enumerate(raw)]
    numbered = [
        page
        if page.page >= 0
        else ServePage(index, page.words, page.boxes, page.confidences, page.source)
        for index, page in enumerate(pages)
    ]
    seen: set[int] = set()
    for index, page in enumerate(numbered):
        if page.page in seen:
            raise InvalidInput(f"{field}[{index}].page: page {page.page} is given twice")
        seen.add(page.page)
    words = sum(len(page.words) for page in numbered)
    if words == 0:
        raise InvalidInput(f"{field}: no page has any words; send OCR words and boxes")
    if words > limits.max_words:
        raise TooManyWords(field, words, limits.max_words)
    declared = [item.get("page_count") for item in raw if isinstance(item.get("page_count"), int)]
    page_count = max([len(numbered), max(page.page for page in numbered) + 1, *declared])
    return PagesInstance(field, sorted(numbered, key=lambda p: p.page), page_count)


def _document_instance(raw: object, field: str) -> Instance:
    if not isinstance(raw, str):
        raise InvalidInput(f"{field}: expected a base64 string, got {_describe(raw)}")
    text = raw.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise InvalidInput(f"{field}: a data URL must be base64 (data:<type>;base64,...)")
    if not text:
        raise InvalidInput(f"{field}: the document is empty")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{field}: not valid base64 ({exc})") from exc
    if not data:
        raise InvalidInput(f"{field}: the document is empty")
    return DocumentInstance(field, data)


def parse_instance(raw: object, field: str, limits: ServeLimits) -> Instance:
    """Validate one instance.

    Args:
        raw: the decoded JSON value.
        field: its path in the request, for messages (``instances[2]``).
        limits: the caps in force.

    Returns:
        The instance, with pages or with the decoded file bytes.

    Raises:
        InvalidInput: the instance is malformed; the message names the field.
    """
    if not isinstance(raw, dict):
        raise InvalidInput(
            f"{field}: expected an object with 'pages' or 'document', got {_describe(raw)}"
        )
    if "doc_id" in raw:
        raise InvalidInput(
            f"{field}.doc_id: a document's id is assigned by the server (a digest of its "
            "content, the answer's doc_id); leave the field out"
        )
    unknown = sorted(set(raw) - INSTANCE_KEYS)
    if unknown:
        raise InvalidInput(
            f"{field}.{unknown[0]}: unknown field; an instance has 'pages' or 'document'"
        )
    if ("pages" in raw) == ("document" in raw):
        raise InvalidInput(f"{field}: give exactly one of 'pages' (OCR records) or 'document'")
    if "pages" in raw:
        return _pages_instance(raw["pages"], f"{field}.pages", limits)
    return _document_instance(raw["document"], f"{field}.document")


def _check_count(count: int, field: str, limits: ServeLimits) -> None:
    if count == 0:
        raise InvalidInput(f"{field}: no instances; send at least one document")
    if count > limits.max_instances:
        raise InvalidInput(
            f"{field}: {count} instances, over the limit of {limits.max_instances} per request; "
            "split the request"
        )


def parse_v1(payload: object, limits: ServeLimits) -> list[Instance]:
    """Instances of a KServe V1 request body (``{"instances": [...]}``).

    Raises:
        InvalidInput: the body or an instance is malformed.
    """
    if isinstance(payload, bytes | bytearray):
        raise InvalidInput(
            "payload: expected a JSON object (Content-Type: application/json) with 'instances'"
        )
    if not isinstance(payload, Mapping):
        raise InvalidInput(
            f"payload: expected a JSON object with 'instances', got {_describe(payload)}"
        )
    if "instances" not in payload:
        raise InvalidInput('instances: missing; send {"instances": [{"pages": [...]}, ...]}')
    unknown = sorted(str(key) for key in set(payload) - V1_KEYS)
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: unknown field; a V1 request has only 'instances' (a document's id "
            "is the server's)"
        )
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput(f"instances: expected a list, got {_describe(instances)}")
    _check_count(len(instances), "instances", limits)
    return [parse_instance(raw, f"instances[{i}]", limits) for i, raw in enumerate(instances)]


def check_v2_body(body: object) -> None:
    """What the v2 request model would let through: unknown fields, booleans as sizes.

    KServe's ``InferenceRequest`` ignores fields it does not know and takes ``true`` as the
    size 1, so the raw body is checked before it is parsed.

    Raises:
        InvalidInput: the message names the field.
    """
    if not isinstance(body, Mapping):
        return  # the request model answers for the shape of the whole body
    unknown = sorted(str(key) for key in set(body) - V2_KEYS)
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: unknown field; an inference request has {', '.join(sorted(V2_KEYS))}"
            " (a document's id is the server's)"
        )
    inputs = body.get("inputs")
    for position, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        shape = tensor.get("shape") if isinstance(tensor, Mapping) else None
        if isinstance(shape, list) and any(isinstance(size, bool) for size in shape):
            raise InvalidInput(
                f"inputs[{position}].shape: {str(shape)[:60]} holds a boolean; sizes are "
                "numbers, e.g. [1]"
            )


def _flatten(data: object) -> list[Any]:
    if isinstance(data, list):
        return [leaf for item in data for leaf in _flatten(item)]
    return [data]


def _check_shape(shape: object, count: int, field: str) -> None:
    """The tensor's ``shape`` must describe its data: its sizes multiply to the item count."""
    sizes = list(shape) if isinstance(shape, list | tuple) else []
    product = 1
    for size in sizes:
        product *= size if isinstance(size, int) and not isinstance(size, bool) else -1
    if not sizes or product != count:
        raise InvalidInput(
            f"{field}.shape: {str(shape)[:60]} does not describe the {count} JSON string(s) in "
            f"data; send shape [{count}]"
        )


def parse_v2(request: InferRequest, limits: ServeLimits) -> list[Instance]:
    """Instances of an Open Inference Protocol request.

    The request has one ``BYTES`` input named ``document_json`` whose data are JSON strings, one
    instance each (``shape`` ``[n]``).

    Raises:
        InvalidInput: the request or an instance is malformed.
    """
    inputs = list(request.inputs or [])
    names = [getattr(item, "name", None) for item in inputs]
    if V2_INPUT_NAME not in names:
        raise InvalidInput(
            f"inputs: expected one BYTES input named '{V2_INPUT_NAME}' (JSON strings, one "
            f"instance each), got {names}"
        )
    position = names.index(V2_INPUT_NAME)
    tensor = inputs[position]
    field = f"inputs[{position}]"
    if str(tensor.datatype).upper() != "BYTES":
        raise InvalidInput(f"{field}.datatype: expected BYTES, got {tensor.datatype}")
    data = tensor.data
    if not isinstance(data, list):
        raise InvalidInput(f"{field}.data: expected a list of JSON strings")
    items = _flatten(data)
    _check_shape(tensor.shape, len(items), field)
    _check_count(len(items), f"{field}.data", limits)
    instances: list[Instance] = []
    for index, item in enumerate(items):
        where = f"{field}.data[{index}]"
        value: object = item
        if isinstance(item, bytes | str):
            try:
                value = strict_json.loads(item)
            except strict_json.StrictJsonError as exc:
                raise InvalidInput(f"{where}: {exc}") from exc
        instances.append(parse_instance(value, where, limits))
    return instances


def to_example(
    doc_id: str, source_uri: str, pages: Sequence[ServePage], page_count: int
) -> DocumentExample:
    """A model input built from pages, the way ``build_examples`` builds training examples."""
    confidences = [c for page in pages for c in (page.confidences or [])]
    return DocumentExample(
        doc_id=doc_id,
        source_uri=source_uri,
        doc_type=None,
        words=[word for page in pages for word in page.words],
        boxes=[box for page in pages for box in page.boxes],
        pages=[page.page for page in pages for _ in page.words],
        tags=[OUTSIDE for page in pages for _ in page.words],
        page_count=page_count,
        ocr_pages=sum(1 for page in pages if page.source == "ocr"),
        mean_confidence=round(sum(confidences) / len(confidences), 3) if confidences else 0.0,
    )

"""Checks a feedback event must pass before it is stored (the feedback API's 4xx answers).

Every failed check is a :class:`Problem`: an HTTP status, a stable ``code`` (also the
``reason`` label of the rejection metric), the field it is about (``correction.entities[1].type``)
and a message that names the field, says what is wrong and how to fix it.

Three stages, in order (a later stage runs only when an earlier one found nothing that makes it
unsafe or pointless):

1. :func:`check_text`: no string holds a NUL character or an unpaired surrogate (PostgreSQL cannot
   store the first, UTF-8 cannot encode the second), so nothing bad reaches the database.
2. :func:`check_shape`: the event is consistent with itself: a confirmation carries no
   correction; a correction names a document type and/or entities; an entity lists each word
   once, at a position >= 0, and no word belongs to two entities.
3. :func:`check_against_prediction`: the event fits the prediction it judges (found by
   ``request_id`` + ``instance``; none is HTTP 404): same model name and version; a corrected
   type is one of the classifier's labels and a corrected entity type one of the extractor's;
   word positions exist in the served document; a correction differs from the prediction.

Label sets: the classifier's labels are the keys of the prediction's ``probabilities`` (the
classifier scores every label it knows); the extractor's entity types are the prediction's
``entity_types``, which the predictor records from the extractor's model card with every
prediction. Both therefore belong to exactly the model version that made the prediction, and the
API needs no access to model folders. The deployment's declared schema (config ``schema``) adds
its document types and fields to those, so a type or field the model does not know yet can be
taught through corrections (the next retrain's dataset and model carry it). A prediction logged
without ``entity_types`` (an older log) gets no entity-type check. The document's word count is
the prediction's ``ocr.words`` (the length of the served ``DocumentExample.words``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from docloop import strict_json
from docloop.documents.label_schema import LabelSchema
from docloop.errors import DocloopError
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackEvent
from docloop.feedback.records import StoredPrediction
from docloop.limits import MAX_JSON_DEPTH

DECLARE: Final = (
    "a new one is accepted once declared under schema in docloop.yaml (the next retrain learns it)"
)
MAX_SHOWN: Final = 60
MAX_LISTED: Final = 30


@dataclass(frozen=True)
class Problem:
    """One failed check.

    Attributes:
        status: the HTTP status it maps to (400, 404, 409, 413, 422).
        code: a stable machine-readable reason (``unknown_label``, ...).
        field: the event field it is about, dotted (``correction.entities[0].word_indices``).
        message: ``<field>: <what is wrong>; <how to fix it>``.
        index: the event's position in a batch (None for a single event).
    """

    status: int
    code: str
    field: str
    message: str
    index: int | None = None

    def at(self, index: int) -> Problem:
        """The same problem, located at batch position ``index``."""
        return replace(self, index=index)


class FeedbackRejected(DocloopError):
    """Events failed validation; nothing was stored.

    Attributes:
        problems: every failed check (at least one).
        retry_after: seconds to wait before retrying (a 429), else None.
        status: the HTTP status of the answer (the first problem's, or 422 when the problems
            of a batch disagree).
    """

    def __init__(
        self, problems: Sequence[Problem], *, batch: bool = False, retry_after: int | None = None
    ) -> None:
        if not problems:
            raise ValueError("FeedbackRejected needs at least one problem")
        self.problems = list(problems)
        self.batch = batch
        self.retry_after = retry_after
        statuses = {problem.status for problem in self.problems}
        self.status = self.problems[0].status if len(statuses) == 1 or not batch else 422
        super().__init__(self.problems[0].message)


def show(value: object) -> str:
    """A user value for a message: ``repr``, cut to a readable length (safe to encode)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _listing(values: Sequence[str]) -> str:
    shown = ", ".join(sorted(values)[:MAX_LISTED])
    return shown + (f", ... ({len(values)} in all)" if len(values) > MAX_LISTED else "")


def _problem(status: int, code: str, field: str, what: str, fix: str) -> Problem:
    return Problem(status, code, field, f"{field}: {what}; {fix}")


# --- 0. the JSON itself -----------------------------------------------------------------------
def check_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Problem | None:
    """What makes a request body unacceptable JSON before anything reads it, else None.

    Refused (400 ``invalid_json``) by :func:`docloop.strict_json.loads`, as the predictor
    refuses them: bytes that are not UTF-8, a key repeated in one object (``json`` would keep
    the last one silently), ``NaN`` or ``Infinity``, nesting deeper than ``max_depth``. A body
    that is not JSON at all is left to the framework's own ``invalid_json`` answer.
    """
    try:
        strict_json.loads(body, max_depth)
    except strict_json.StrictJsonError as exc:
        if exc.flaw == "syntax":
            return None  # the framework answers invalid_json with the parser's detail
        fix = "send a flat feedback event or batch" if exc.flaw == "depth" else exc.fix
        return _problem(400, "invalid_json", "body", exc.what, fix)
    return None


# --- 1. text ----------------------------------------------------------------------------------
def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def check_text(event: FeedbackEvent) -> list[Problem]:
    """Strings the store cannot hold: NUL characters and unpaired surrogates."""
    problems: list[Problem] = []
    for path, text in _strings(event.model_dump(mode="python"), ""):
        if "\x00" in text:
            problems.append(
                _problem(
                    422,
                    "invalid_text",
                    path,
                    "contains a NUL character (\\u0000)",
                    "remove it; text must be printable UTF-8",
                )
            )
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            problems.append(
                _problem(
                    422,
                    "invalid_text",
                    path,
                    "contains an unpaired UTF-16 surrogate, which is not text",
                    "send valid UTF-8 (escape only whole characters, e.g. \\ud83d\\ude00)",
                )
            )
    return problems


# --- 2. shape ---------------------------------------------------------------------------------
def _entity_problems(entities: Sequence[CorrectedEntity]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[int, int] = {}
    for e, entity in enumerate(entities):
        field = f"correction.entities[{e}].word_indices"
        seen: set[int] = set()
        for position, index in enumerate(entity.positions):
            if index < 0:
                problems.append(
                    _problem(
                        422,
                        "word_index_out_of_range",
                        f"{field}[{position}]",
                        f"{index} is negative",
                        "word positions count from 0 in reading order",
                    )
                )
            elif index in seen:
                problems.append(
                    _problem(
                        422,
                        "duplicate_word_index",
                        f"{field}[{position}]",
                        f"word {index} is listed twice in this entity",
                        "list each word of an entity once",
                    )
                )
            elif index in owner and owner[index] != e:
                problems.append(
                    _problem(
                        422,
                        "overlapping_entities",
                        f"{field}[{position}]",
                        f"word {index} is already in correction.entities[{owner[index]}]",
                        "a word belongs to at most one entity; keep it in one of them",
                    )
                )
            seen.add(index)
            owner.setdefault(index, e)
    return problems


def check_shape(event: FeedbackEvent) -> list[Problem]:
    """Whether the event is consistent with itself (no prediction needed)."""
    correction = event.correction
    if event.kind == "confirmation":
        if correction is not None:
            return [
                _problem(
                    422,
                    "confirmation_with_correction",
                    "correction",
                    "a confirmation says the prediction was right, so it carries no correction",
                    "drop correction, or send kind 'correction' to correct the prediction",
                )
            ]
        return []
    if correction is None or (correction.doc_type is None and correction.entities is None):
        return [
            _problem(
                422,
                "empty_correction",
                "correction",
                "a correction must say what was wrong, and this one names neither "
                "correction.doc_type nor correction.entities",
                "send the right correction.doc_type and/or the complete correction.entities "
                "list ([] for none), or send kind 'confirmation'",
            )
        ]
    return _entity_problems(correction.entities or [])


# --- 3. against the prediction ----------------------------------------------------------------
def value_not_found(entity: int, value: str, why: str) -> Problem:
    """The 422 for an entity named by a value the served document does not print."""
    return _problem(
        422,
        "value_not_found",
        f"correction.entities[{entity}].value",
        f"{show(value)} is not printed in the served document ({why})",
        "correct the value as the document prints it, or send the entity's word_indices",
    )


def document_unreadable(entity: int) -> Problem:
    """The 503 for a by-value entity whose served document cannot be read right now."""
    return _problem(
        503,
        "served_document_unavailable",
        f"correction.entities[{entity}].value",
        "the served document, where the value would be looked up, cannot be read now",
        "retry later, or send the entity's word_indices",
    )


def _with_declared(known: Sequence[str], declared: Sequence[str]) -> list[str]:
    """The model's names, then declared ones it does not know yet."""
    return [*known, *(name for name in declared if name not in known)]


def unknown_prediction(event: FeedbackEvent) -> Problem:
    """The 404 for an event whose prediction is not in the log."""
    return _problem(
        404,
        "unknown_prediction",
        "request_id",
        f"no prediction was logged for request {show(event.request_id)} instance {event.instance}",
        "send the request_id and instance of the predictor's answer (the server's id, not the "
        "x-request-id or v2 id the client sent, which the answer echoes as client_request_id); "
        "predictions are logged a moment after the answer, so retry shortly if it was just made",
    )


def _spans(entities: Sequence[Mapping[str, Any]]) -> set[tuple[str, tuple[int, ...]]] | None:
    spans: set[tuple[str, tuple[int, ...]]] = set()
    for entity in entities:
        indices = entity.get("word_indices")
        kind = entity.get("type")
        if not isinstance(indices, list) or not isinstance(kind, str):
            return None  # logged without positions: not comparable
        spans.add((kind, tuple(sorted(int(i) for i in indices))))
    return spans


def _model_problems(event: FeedbackEvent, prediction: StoredPrediction) -> list[Problem]:
    where = f"request {show(prediction.request_id)} instance {prediction.instance}"
    problems: list[Problem] = []
    if event.model_name != prediction.model_name:
        problems.append(
            _problem(
                422,
                "model_mismatch",
                "model_name",
                f"{where} was answered by model {prediction.model_name!r}, not "
                f"{show(event.model_name)}",
                f"send model_name {prediction.model_name!r} (the answer's model_name)",
            )
        )
    if event.model_version != prediction.model_version:
        problems.append(
            _problem(
                422,
                "model_mismatch",
                "model_version",
                f"{where} was answered by version {prediction.model_version!r}, not "
                f"{show(event.model_version)}",
                f"send model_version {prediction.model_version!r} (the answer's model_version)",
            )
        )
    return problems


def _doc_type_problems(
    correction: Correction, prediction: StoredPrediction, model: str, declared: LabelSchema | None
) -> list[Problem]:
    problems: list[Problem] = []
    doc_types = prediction.doc_types
    if doc_types and declared is not None:
        doc_types = _with_declared(doc_types, declared.doc_types)
    if correction.doc_type is not None:
        if not doc_types:
            problems.append(
                _problem(
                    422,
                    "unknown_label",
                    "correction.doc_type",
                    f"{model} served no classifier for this prediction, so it has no document "
                    "type to correct",
                    "leave correction.doc_type out and correct the entities only",
                )
            )
        elif correction.doc_type not in doc_types:
            problems.append(
                _problem(
                    422,
                    "unknown_label",
                    "correction.doc_type",
                    f"{show(correction.doc_type)} is not a document type of {model}",
                    f"use one of: {_listing(doc_types)}; {DECLARE}",
                )
            )
    return problems


def _label_problems(
    event: FeedbackEvent,
    prediction: StoredPrediction,
    word_count: int | None,
    declared: LabelSchema | None = None,
) -> list[Problem]:
    correction = event.correction
    if correction is None:
        return []
    model = f"model {prediction.model_name!r} version {prediction.model_version!r}"
    problems = _doc_type_problems(correction, prediction, model, declared)
    if correction.entities is None:
        return problems
    extractor = bool(prediction.entity_types) or bool(prediction.entities)
    entity_types = prediction.entity_types
    if entity_types and declared is not None:
        entity_types = _with_declared(entity_types, declared.field_names)
    if not extractor:
        problems.append(
            _problem(
                422,
                "unknown_label",
                "correction.entities",
                f"{model} served no extractor for this prediction, so it has no entities to "
                "correct",
                "leave correction.entities out and correct the document type only",
            )
        )
        return problems
    for e, entity in enumerate(correction.entities):
        if entity_types and entity.type not in entity_types:
            problems.append(
                _problem(
                    422,
                    "unknown_label",
                    f"correction.entities[{e}].type",
                    f"{show(entity.type)} is not an entity type of {model}",
                    f"use one of: {_listing(entity_types)}; {DECLARE}",
                )
            )
        if word_count is None:
            continue
        for position, index in enumerate(entity.positions):
            if index >= word_count:
                problems.append(
                    _problem(
                        422,
                        "word_index_out_of_range",
                        f"correction.entities[{e}].word_indices[{position}]",
                        f"word {index} does not exist: the served document has {word_count} "
                        f"words (positions 0-{word_count - 1})",
                        "use positions of the document's words in reading order (pages "
                        "concatenated), as the prediction's entities' word_indices do",
                    )
                )
    return problems


def _same_as_prediction(event: FeedbackEvent, prediction: StoredPrediction) -> Problem | None:
    correction = event.correction
    if correction is None:
        return None
    same_type = correction.doc_type is None or correction.doc_type == prediction.doc_type
    same_entities = True
    if correction.entities is not None:
        predicted = _spans(prediction.entities)
        given = {(e.type, tuple(sorted(e.positions))) for e in correction.entities}
        same_entities = predicted is not None and given == predicted
    if not (same_type and same_entities):
        return None
    said = []
    if correction.doc_type is not None:
        said.append(f"doc_type {correction.doc_type!r}")
    if correction.entities is not None:
        said.append(f"the same {len(correction.entities)} entities")
    return _problem(
        422,
        "correction_matches_prediction",
        "correction",
        f"it repeats the prediction ({' and '.join(said)}), so it corrects nothing",
        "send kind 'confirmation' without a correction if the prediction was right, or correct "
        "what was wrong",
    )


def check_against_prediction(
    event: FeedbackEvent,
    prediction: StoredPrediction,
    *,
    word_count: int | None = None,
    declared: LabelSchema | None = None,
) -> list[Problem]:
    """Whether the event fits the prediction it judges.

    Args:
        event: the verdict (already through :func:`check_text` and :func:`check_shape`).
        prediction: the logged prediction of ``(event.request_id, event.instance)``.
        word_count: words in the served document; None: the prediction's ``ocr.words`` (no
            position check when neither is known).
        declared: the deployment's declared schema (config ``schema``): its document types and
            fields are accepted beyond the model's, so a new one can be taught through feedback.

    Returns:
        The problems found (empty: the event may be stored).
    """
    problems = _model_problems(event, prediction)
    if problems:
        return problems  # labels and positions of another model mean nothing here
    count = word_count if word_count is not None else prediction.word_count
    problems = _label_problems(event, prediction, count, declared)
    if problems:
        return problems
    same = _same_as_prediction(event, prediction)
    return [same] if same is not None else []


def validate_event(
    event: FeedbackEvent,
    prediction: StoredPrediction | None,
    *,
    word_count: int | None = None,
    declared: LabelSchema | None = None,
) -> list[Problem]:
    """Every check of one event, in order (see the module docstring).

    Args:
        event: the verdict.
        prediction: the prediction it names, or None when none is logged.
        word_count: words in the served document (default: from the prediction).
        declared: the deployment's declared schema (see :func:`check_against_prediction`).

    Returns:
        The problems (empty: valid). Text problems stop the checks there.
    """
    problems = check_text(event)
    if problems:
        return problems
    problems = check_shape(event)
    if prediction is None:
        return [*problems, unknown_prediction(event)]
    if problems:
        return problems
    return check_against_prediction(event, prediction, word_count=word_count, declared=declared)

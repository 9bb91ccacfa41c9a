"""Server-side dynamic batching: documents of concurrent requests share one forward pass.

``MicroBatcher`` keeps a queue of pending documents. A single worker task takes the first one,
waits at most ``max_wait_s`` for more (or until ``max_batch_size`` are there), and runs the batch
in a dedicated one-thread executor so the event loop keeps accepting requests while torch works.
Documents that arrive during a forward pass queue up and form the next batch, so under load the
batches fill up without any extra waiting; at low load a request waits at most ``max_wait_s``.

``Lanes`` puts documents over ``bulk_words`` words in a lane of their own (its own runner and
forward thread): a huge document runs beside the small ones, sharing the cores, instead of in
front of them, so a 3-word request never waits for a 20,000-word one to finish.

At low load a batch never waits for company: the worker only waits ``max_wait_s`` while callers
have announced themselves (``arriving``) and not yet queued their documents, so a lone request
goes straight to the forward pass.

``DirectRunner`` is the no-batching baseline (``--no-batching``): each request's documents are one
forward pass of their own, in the same one-thread executor (forward passes never overlap, exactly
as with the batcher, so a benchmark compares batching and nothing else).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True)
class BatchingConfig:
    """How documents of concurrent requests are grouped.

    Attributes:
        enabled: group documents of concurrent requests; off, each request is its own batch.
        max_batch_size: documents per forward pass at most.
        max_wait_s: how long the first document of a batch waits for company.
    """

    enabled: bool = True
    max_batch_size: int = 16
    max_wait_s: float = 0.005


def batches_by_default(device: str) -> bool:
    """Whether ``docloop serve`` batches when not told: on a CUDA GPU only.

    On the CPU a forward pass of one document already keeps every core busy, so a batch only adds
    padding and waiting: at 16 concurrent requests batching gave 0.73x and 0.75x the documents per
    second of one pass per request (``python -m bench.predictor``, docs/benchmarks.md).
    """
    if device == "cpu":
        return False
    if device == "cuda":
        return True
    import torch

    return bool(torch.cuda.is_available())


class Runner(Protocol[T_contra, R_co]):
    """Runs items through a batch function and returns one result per item, in order."""

    async def run(self, items: Sequence[T_contra]) -> Sequence[R_co]:
        """Results for ``items``, in order."""
        ...

    def arriving(self, count: int) -> None:
        """``count`` callers will call ``run`` soon (negative: they did, or gave up)."""
        ...


BatchFunction = Callable[[list[T]], list[R]]
"""Blocking: takes a batch and returns one result per item, in order."""


class DirectRunner(Generic[T, R]):
    """No cross-request batching: each call is one batch (the benchmark's baseline)."""

    def __init__(
        self,
        process: BatchFunction[T, R],
        executor: Executor,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._process = process
        self._executor = executor
        self._on_batch = on_batch

    def arriving(self, count: int) -> None:
        """Nothing to wait for: each call is its own batch."""

    async def run(self, items: Sequence[T]) -> list[R]:
        """Run ``items`` as one batch in the executor."""
        if not items:
            return []
        if self._on_batch is not None:
            self._on_batch(len(items))
        batch = list(items)
        return await asyncio.wrap_future(self._executor.submit(self._process, batch))


class MicroBatcher(Generic[T, R]):
    """Groups items submitted by concurrent callers into bounded batches.

    Args:
        process: the blocking batch function (a forward pass).
        executor: where ``process`` runs; one thread, so forward passes never overlap.
        max_batch_size: items per batch at most.
        max_wait_s: how long a batch's first item waits for more.
        on_batch: called with each batch's size (metrics).
    """

    def __init__(
        self,
        process: BatchFunction[T, R],
        executor: Executor,
        *,
        max_batch_size: int = 16,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self._process = process
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0
        self._arriving = 0

    def arriving(self, count: int) -> None:
        """Callers about to queue documents: a batch waits for them (at most ``max_wait_s``)."""
        self._arriving = max(0, self._arriving + count)

    def _ensure_worker(self) -> asyncio.Queue[tuple[T, asyncio.Future[R]]]:
        loop = asyncio.get_running_loop()
        if (
            self._loop is not loop
            or self._queue is None
            or self._worker is None
            or self._worker.done()
        ):
            # First use, or a new event loop (e.g. one asyncio.run per test): start afresh.
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(self._queue), name="docloop-batcher")
        return self._queue

    async def run(self, items: Sequence[T]) -> list[R]:
        """Queue ``items`` and wait for their results (they may land in different batches)."""
        if not items:
            return []
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            queue.put_nowait((item, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def _collect(
        self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]
    ) -> list[tuple[T, asyncio.Future[R]]]:
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            if self._arriving <= 0:
                break  # nobody else is on the way: waiting would only add latency
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _work(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        while True:
            batch = [entry for entry in await self._collect(queue) if not entry[1].done()]
            if not batch:
                continue  # every caller gave up (client disconnected)
            items = [item for item, _ in batch]
            self.batches += 1
            self.items += len(items)
            if self._on_batch is not None:
                self._on_batch(len(items))
            done = asyncio.wrap_future(self._executor.submit(self._process, items))
            # wait() never raises: the batch's outcome, result or error, goes to its callers.
            await asyncio.wait([done])
            error = done.exception()
            results: list[R] = [] if error is not None else done.result()
            if error is None and len(results) != len(items):
                error = RuntimeError(
                    f"batch function returned {len(results)} results for {len(items)} items"
                )
            for position, (_, future) in enumerate(batch):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(results[position])


class Lanes(Generic[T, R]):
    """Two runners: items that ``is_bulk`` go to ``bulk``, the others to ``small``.

    Args:
        small: the runner of ordinary items.
        bulk: the runner of large items (its own forward thread, so they run beside the others).
        is_bulk: which items are large.
    """

    def __init__(
        self, small: Runner[T, R], bulk: Runner[T, R], is_bulk: Callable[[T], bool]
    ) -> None:
        self.small = small
        self.bulk = bulk
        self.is_bulk = is_bulk

    def arriving(self, count: int) -> None:
        """Announced callers are expected by the small lane (bulk items never wait for company)."""
        self.small.arriving(count)

    async def run(self, items: Sequence[T]) -> list[R]:
        """Results for ``items``, in order; each item runs in its lane."""
        bulk = [index for index, item in enumerate(items) if self.is_bulk(item)]
        small = [index for index in range(len(items)) if index not in set(bulk)]
        small_results, bulk_results = await asyncio.gather(
            self.small.run([items[index] for index in small]),
            self.bulk.run([items[index] for index in bulk]),
        )
        results: dict[int, R] = dict(zip(small, small_results, strict=True))
        results.update(zip(bulk, bulk_results, strict=True))
        return [results[index] for index in range(len(items))]

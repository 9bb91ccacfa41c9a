"""Worst-case files against a real ``docloop serve`` process: 413 (never 500), bounded memory.

Four decompression bombs at a time (a TIFF whose third frame is 40,000 x 40,000, a PDF showing a
46,000 x 46,000 image on a small page, a PDF whose content inflates to 512 MB, a PNG claiming
40,000 x 40,000), three rounds, while the server's resident memory is sampled from ``/proc``
through psutil. Before the intake checks, two such PDFs pushed the server to 5.4 GB.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from tests import documents
from tests.serving import Predictor, TinyModels, start_predictor, stop_predictor

pytest_plugins = ["tests.serving"]
pytestmark = pytest.mark.slow

ROUNDS = 3
RSS_GROWTH_CEILING_MB = 100
"""Growth of the server's RSS over idle: measured 9 MB (idle 850 MB) for 3 rounds of 4 bombs."""


@pytest.fixture(scope="module")
def bomb_predictor(
    tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Predictor]:
    running = start_predictor(tiny_models, tmp_path_factory.mktemp("bombs"))
    try:
        yield running
    finally:
        stop_predictor(running)


def _bombs() -> dict[str, bytes]:
    good = [documents.text_image(["Invoice 12"]), documents.text_image(["Total 9.00"])]
    return {
        "tiff-third-frame": documents.multi_frame_tiff([*good, (40_000, 40_000)]),
        "pdf-huge-image": documents.pdf_with_huge_image(46_000, 46_000),
        "pdf-inflating": documents.pdf_inflating_to(512),
        "png-header": documents.decompression_bomb_png(),
    }


class _PeakRss:
    """Samples a process's resident memory every 5 ms in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> _PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()


def test_concurrent_bombs_are_413_and_memory_stays_bounded(bomb_predictor: Predictor) -> None:
    bombs = _bombs()
    url = f"{bomb_predictor.url}/v1/models/{bomb_predictor.name}:predict"
    bodies = {
        name: {"instances": [{"document": base64.b64encode(data).decode()}]}
        for name, data in bombs.items()
    }
    idle = psutil.Process(bomb_predictor.process.pid).memory_info().rss
    statuses: dict[str, set[int]] = {name: set() for name in bodies}
    messages: dict[str, str] = {}

    def send(name: str) -> None:
        response = httpx.post(url, json=bodies[name], timeout=120)
        statuses[name].add(response.status_code)
        messages[name] = response.text[:300]

    with _PeakRss(bomb_predictor.process.pid) as meter, ThreadPoolExecutor(4) as pool:
        for _ in range(ROUNDS):
            list(pool.map(send, bodies))
    growth_mb = (meter.peak - idle) / 1024 / 1024
    print(f"idle RSS {idle / 1024 / 1024:.0f} MB, peak growth {growth_mb:.0f} MB")
    assert statuses == {name: {413} for name in bodies}, messages
    assert growth_mb < RSS_GROWTH_CEILING_MB, bomb_predictor.log_tail()
    assert bomb_predictor.process.poll() is None


def test_an_over_long_request_id_is_400_naming_the_header(bomb_predictor: Predictor) -> None:
    url = f"{bomb_predictor.url}/v1/models/{bomb_predictor.name}:predict"
    page = {"words": ["Invoice"], "boxes": [[0, 0, 10, 10]]}
    response = httpx.post(
        url, json={"instances": [{"pages": [page]}]}, headers={"x-request-id": "r" * 129}
    )
    assert response.status_code == 400
    assert "x-request-id" in response.text and "128" in response.text
    ok = httpx.post(
        url, json={"instances": [{"pages": [page]}]}, headers={"x-request-id": "r" * 128}
    )
    assert ok.status_code == 200


def test_bombs_file_builders_stay_small(tmp_path: Path) -> None:
    """The bombs are small files (what makes them dangerous): each under the 1 MB request cap."""
    assert all(len(data) * 4 / 3 < 1_000_000 for data in _bombs().values())

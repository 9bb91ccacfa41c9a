"""Real local object-store servers for tests: moto's S3 server and a GCS emulator.

Both run as subprocesses bound to 127.0.0.1 on a free port and are stopped when the session ends,
whatever the tests did. Tests share one server per session and isolate themselves by creating a
fresh bucket with a random name (see :func:`unique_bucket_name`).

Import the fixtures into a conftest with ``from tests.object_stores import gcs_emulator,
moto_server``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0

# Dummy credentials: moto accepts anything, and real ones must never be used by tests.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Traffic to the local servers must never go through a proxy.
NO_PROXY_ENV = {"NO_PROXY": f"{HOST},localhost", "no_proxy": f"{HOST},localhost"}

StopFn = Callable[[], None]


def unique_bucket_name(prefix: str = "docloop-test") -> str:
    """A fresh, valid S3/GCS bucket name."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _venv_tool(name: str) -> str | None:
    """The console script ``name`` next to the running interpreter, else on PATH."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def _answers_http(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(url, timeout=1.0) as response:
            return 200 <= response.status < 500
    except urllib.error.HTTPError as exc:  # any HTTP answer means the server is up
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


def _start_server(name: str, command: list[str], url: str) -> StopFn:
    """Start ``command``, wait until ``url`` answers, and return a function that stops it."""
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115  (closed by stop())
        prefix=f"docloop-{name}-", suffix=".log", delete=False
    )
    env = {**os.environ, **NO_PROXY_ENV, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # so a Ctrl-C to pytest does not race our own shutdown
    )

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        log.close()
        Path(log.name).unlink(missing_ok=True)

    atexit.register(stop)  # a second guard should fixture teardown never run; stop() is idempotent

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    delay = 0.02
    while not _answers_http(url):
        if process.poll() is not None or time.monotonic() > deadline:
            log.flush()
            output = Path(log.name).read_text(encoding="utf-8", errors="replace")[-4000:]
            status = "exited" if process.poll() is not None else "did not answer in time"
            stop()
            raise RuntimeError(f"{name} ({' '.join(command)}) {status}; output:\n{output}")
        time.sleep(delay)  # polling back-off, not a fixed wait
        delay = min(delay * 2, 0.25)
    return stop


def start_moto_server() -> tuple[str, StopFn]:
    """Start ``moto_server`` on a free port of 127.0.0.1.

    Returns:
        The endpoint URL (``http://127.0.0.1:PORT``) and a function that stops the server.
    """
    port = free_port()
    tool = _venv_tool("moto_server")
    base = [tool] if tool else [sys.executable, "-m", "moto.server"]
    url = f"http://{HOST}:{port}"
    return url, _start_server("moto_server", [*base, "-H", HOST, "-p", str(port)], url)


def start_gcs_emulator() -> tuple[str, StopFn]:
    """Start ``gcp-storage-emulator`` (in memory) on a free port of 127.0.0.1.

    Returns:
        The emulator URL (``http://127.0.0.1:PORT``, the value for ``STORAGE_EMULATOR_HOST``) and
        a function that stops it.
    """
    port = free_port()
    tool = _venv_tool("gcp-storage-emulator")
    base = [tool] if tool else [sys.executable, "-m", "gcp_storage_emulator"]
    url = f"http://{HOST}:{port}"
    command = [*base, "start", f"--host={HOST}", f"--port={port}", "--in-memory", "--quiet"]
    return url, _start_server("gcp-storage-emulator", command, url)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server for the session; yields its endpoint URL.

    Dummy AWS credentials and region are set in the environment for the whole session (and
    restored afterwards) so boto3 never looks for real ones.
    """
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**FAKE_AWS_ENV, **NO_PROXY_ENV}.items():
            patch.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(key, raising=False)
        url, stop = start_moto_server()
        try:
            yield url
        finally:
            stop()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A GCS emulator for the session; yields its URL for ``STORAGE_EMULATOR_HOST``.

    The variable itself is not set here: a test sets it (``monkeypatch.setenv``) so that tests
    without it never reach the emulator by accident.
    """
    with pytest.MonkeyPatch.context() as patch:
        for key, value in NO_PROXY_ENV.items():
            patch.setenv(key, value)
        url, stop = start_gcs_emulator()
        try:
            yield url
        finally:
            stop()

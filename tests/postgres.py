"""A real, throwaway PostgreSQL server for tests.

``postgres_server`` (session scope) runs ``initdb`` into a fresh temporary folder and starts the
server with ``pg_ctl``, listening on 127.0.0.1 on a free port with its unix socket inside that
folder; it is stopped and the folder deleted when the session ends. The cluster trusts local
connections (no password) and trades durability for speed (``fsync=off``): it only ever holds test
data. PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` system user
(created by the Debian package) through ``runuser``.

``postgres_url`` (function scope) creates a fresh database for each test and drops it afterwards,
so tests never see each other's rows. ``store_url`` is parametrised over both state-store backends
(a SQLite file in ``tmp_path``, and a ``postgres_url`` database).

When PostgreSQL is not installed the tests that need it are skipped, with a message saying how to
install it, unless ``DOCLOOP_REQUIRE_POSTGRES=1`` is set (CI), in which case they fail.

Register the fixtures in a conftest with ``from tests.postgres import postgres_server,
postgres_url, store_url``.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.object_stores import free_port

HOST = "127.0.0.1"
SUPERUSER = "docloop"
REQUIRE_ENV = "DOCLOOP_REQUIRE_POSTGRES"
INSTALL_HINT = (
    "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH): install "
    "it with `sudo apt-get install -y postgresql` (or run `sudo bash scripts/setup.sh`)"
)
START_TIMEOUT_S = 30


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster."""

    host: str
    port: int
    user: str
    root: Path

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database``."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """A libpq connection string for ``database``."""
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest Debian cluster version first)."""

    def version(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        folder = Path(initdb).parent
        if (folder / "pg_ctl").is_file():
            return folder
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


def _unavailable(message: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1, so this is an error, not a skip)")
    pytest.skip(message)


def _as_server_user(command: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root (initdb and postgres refuse to run as root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(
        _as_server_user(command),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S * 2,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({' '.join(command)}), exit {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL cluster for the session (skipped if PostgreSQL is missing)."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        _unavailable(INSTALL_HINT)
    assert bin_dir is not None
    if os.geteuid() == 0:
        try:
            server_user = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable(
                "running as root, but there is no `postgres` system user to run PostgreSQL as "
                "(the Debian postgresql package creates it): reinstall postgresql or run the "
                "tests as a normal user"
            )
        if shutil.which("runuser") is None:
            _unavailable("running as root, but `runuser` (util-linux) is missing: install it")

    root = Path(tempfile.mkdtemp(prefix="docloop-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (root, sockets):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
        root.chmod(0o700)  # its parent (the temp dir) must be searchable by postgres
    port = free_port()
    pg_ctl = str(bin_dir / "pg_ctl")

    def stop() -> None:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=START_TIMEOUT_S,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)  # a second guard should fixture teardown never run; stop() is idempotent
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        options = (
            f"-c listen_addresses={HOST} -p {port} -k {sockets} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        _run(
            [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start"],
            "pg_ctl start",
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        server_log = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        stop()
        pytest.fail(f"could not start the test PostgreSQL: {exc}\n{server_log}")
    try:
        yield PostgresServer(host=HOST, port=port, user=SUPERUSER, root=root)
    finally:
        stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the test cluster (dropped after the test); its SQLAlchemy URL."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh state-store URL on each backend: a SQLite file, and a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))

"""The local target (``deploy.target: local``): canaries with KServe ModelServer processes.

The embedded default serves the champion and its canary on this machine, **loopback only**
(127.0.0.1), with the same rollout code as the cluster (:func:`docloop.deploy.rollout.run_rollout`
drives :class:`LocalTarget` through the :class:`~docloop.deploy.rollout.Target` protocol):

* each variant is one ``docloop serve`` process — a real KServe ``ModelServer`` bound to
  127.0.0.1 on a free port, serving the release's classifier and extractor folders under the name
  ``deploy.service_name``, writing the prediction log (``prediction_log``, the state-store URL)
  that the canary analysis and the drift check read;
* a router (:mod:`docloop.deploy.router`, ``python -m docloop.deploy.router``) on 127.0.0.1 at
  ``deploy.local_port`` splits the traffic: ``percent`` % to the canary once it is ready, the rest
  to the stable server, deterministically per ``x-request-id``; it labels every answer
  (``x-docloop-variant``) and counts requests, errors and latency per variant
  (:meth:`LocalTarget.variant_errors`, :meth:`LocalTarget.router_stats`).

Processes are started with ``start_new_session=True`` (their own session and process group), so
they outlive the KFP task process that started them; their output goes to log files next to the
state. Everything another process (every KFP task is one) needs to find and control them is in
``<data_root>/deploy/<service_name>/state.json``: the stable and the canary server (label, model
folders, port, pid, log file, command; the canary's percent), the router (port, pid, log) and a
``generation`` incremented by every change. The file is replaced atomically (temporary file +
rename); changes hold an exclusive ``flock`` on ``state.lock`` beside it, so two deploys of one
service take turns. The router re-reads the file when it changes: a promotion or a rollback moves
the traffic at the next request.

A pid in the state counts as running only when that process exists, is not a zombie and (where
``/proc`` exists) its command line is the recorded server's (``docloop.cli serve ... --port P``
or the router's): a pid reused after a reboot is never signalled. Dead processes (a reboot, a
crash) are restarted — on their recorded port when it is free, else on a new one — by
:meth:`LocalTarget.heal`. :meth:`~LocalTarget.first_deploy` and :meth:`~LocalTarget.start_canary`
do the same before changing anything (the stable server and the router; ``first_deploy`` of the
release already serving also the canary), :meth:`~LocalTarget.promote` and
:meth:`~LocalTarget.rollback` restart a dead router. A re-run of a rollout that is already done
does not touch the target (``run_rollout`` returns early): after a reboot, call ``heal()`` first
to bring the champion back. :meth:`~LocalTarget.stop_all` stops everything (SIGTERM to the
process group, SIGKILL after a grace period) and removes the state.

The servers' stdin is ``/dev/null`` and their output goes to the log files, so no pipe of the
starting process stays open: a KFP task (or ``subprocess.run(capture_output=True)``) that starts
them finishes without waiting for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import yaml

from docloop.config import CONFIG_ENV, CONFIG_YAML_ENV, ENV_PREFIX, DocloopConfig
from docloop.deploy.inference_service import PredictorRelease
from docloop.deploy.router import LOOPBACK, READY_PATH
from docloop.errors import DeployFailed, InvalidInput, RolloutNotReady, StorageError
from docloop.storage import is_local, local_path

if TYPE_CHECKING:
    from docloop.deploy.rollout import Target

logger = logging.getLogger(__name__)

STATE_FILE: Final = "state.json"
LOCK_FILE: Final = "state.lock"
SCHEMA: Final = 1
POLL_S: Final = 0.1
STOP_GRACE_S: Final = 5.0
ROUTER_TIMEOUT_S: Final = 30.0
SERVER_MODULE: Final = "docloop.cli"
ROUTER_MODULE: Final = "docloop.deploy.router"
LOG_TAIL_LINES: Final = 15

# Processes this interpreter started, so that they are reaped (a dead child stays a zombie,
# which `kill -0` would call alive, until its parent waits for it).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ServerRecord:
    """One ``docloop serve`` process as the state file records it.

    Attributes:
        label: The versions it serves (``PredictorRelease.label``).
        folders: Model folder per task (absolute paths).
        port: Its HTTP port on 127.0.0.1.
        pid: Its process id (and process group id).
        log: The file its stdout and stderr go to.
        command: How it was started.
        started_at: When (UTC, ISO 8601).
        percent: The canary's share of traffic (0 for the stable server).
    """

    label: str
    folders: dict[str, str]
    port: int
    pid: int
    log: str
    command: list[str]
    started_at: str
    percent: int = 0

    @property
    def url(self) -> str:
        """The server's own base URL (not through the router)."""
        return f"http://{LOOPBACK}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        """As stored in the state file."""
        return {
            "label": self.label,
            "folders": dict(self.folders),
            "port": self.port,
            "pid": self.pid,
            "log": self.log,
            "command": list(self.command),
            "started_at": self.started_at,
            "percent": self.percent,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerRecord:
        """Read a record back from the state file."""
        return cls(
            label=str(data["label"]),
            folders={str(k): str(v) for k, v in dict(data["folders"]).items()},
            port=int(data["port"]),
            pid=int(data["pid"]),
            log=str(data["log"]),
            command=[str(part) for part in data.get("command") or []],
            started_at=str(data.get("started_at") or ""),
            percent=int(data.get("percent") or 0),
        )


@dataclass(frozen=True)
class RouterRecord:
    """The router process as the state file records it."""

    port: int
    pid: int
    log: str
    command: list[str]
    started_at: str

    def as_json(self) -> dict[str, Any]:
        """As stored in the state file."""
        return {
            "port": self.port,
            "pid": self.pid,
            "log": self.log,
            "command": list(self.command),
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouterRecord:
        """Read the record back from the state file."""
        return cls(
            port=int(data["port"]),
            pid=int(data["pid"]),
            log=str(data["log"]),
            command=[str(part) for part in data.get("command") or []],
            started_at=str(data.get("started_at") or ""),
        )


@dataclass
class LocalState:
    """What the state file says (the local target's ``TargetState``).

    Attributes:
        name: The service (``deploy.service_name``).
        path: The state file.
        generation: Incremented by every change.
        url: The router's base URL (what clients call).
        stable_label: The versions the stable server serves.
        canary_label: The versions the canary serves (None: no canary).
        canary_percent: The canary's share of traffic (0 without a canary).
        stable: The stable server.
        canary: The canary server.
        router: The router.
        alive: Per role (``stable``, ``canary``, ``router``): is its process running now.
        updated_at: When the file was last written.
    """

    name: str
    path: Path
    generation: int
    url: str
    stable_label: str | None
    canary_label: str | None
    canary_percent: int
    stable: ServerRecord | None = None
    canary: ServerRecord | None = None
    router: RouterRecord | None = None
    alive: dict[str, bool] = field(default_factory=dict)
    updated_at: str = ""

    def as_json(self) -> dict[str, Any]:
        """The state as JSON (the deploy record and the component's status output)."""
        processes: dict[str, Any] = {}
        for role, record in (("stable", self.stable), ("canary", self.canary)):
            if record is not None:
                processes[role] = {
                    "label": record.label,
                    "port": record.port,
                    "pid": record.pid,
                    "log": record.log,
                    "alive": self.alive.get(role, False),
                }
        if self.router is not None:
            processes["router"] = {
                "port": self.router.port,
                "pid": self.router.pid,
                "log": self.router.log,
                "alive": self.alive.get("router", False),
            }
        return {
            "target": "local",
            "name": self.name,
            "state_file": str(self.path),
            "generation": self.generation,
            "url": self.url,
            "stable": self.stable_label,
            "canary": self.canary_label,
            "canary_percent": self.canary_percent,
            "processes": processes,
            "updated_at": self.updated_at,
        }


# --- processes ---------------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments from ``/proc`` (None where there is no ``/proc``)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").is_dir():
        return None
    try:
        raw = (proc / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] in (["Z"], ["X"])


def _matches(args: list[str], module: str, port: int) -> bool:
    """Do these arguments belong to our ``module`` listening on ``port``?"""
    if module not in args:
        return False
    return (
        any(args[i] == "--port" and args[i + 1] == str(port) for i in range(len(args) - 1))
        or f"--port={port}" in args
    )


def process_alive(pid: int, module: str, port: int) -> bool:
    """Is ``pid`` running, and is it our ``module`` on ``port`` (not a reused pid)?

    Args:
        pid: The recorded process id.
        module: ``docloop.cli`` (a server) or ``docloop.deploy.router``.
        port: The port it was started with.

    Returns:
        True when the process exists, is not a zombie and its command line matches.
    """
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one we started
    if _is_zombie(pid):
        return False
    args = _cmdline(pid)
    return True if args is None else _matches(args, module, port)


def stop_process(pid: int, module: str, port: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group of ``pid`` (graceful shutdown), SIGKILL after ``grace_s``.

    Does nothing when the process is gone or is not ours (see :func:`process_alive`).
    """
    if not process_alive(pid, module, port):
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            child = _CHILDREN.get(pid)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(POLL_S)
            if not process_alive(pid, module, port):
                logger.info("stopped pid %d (%s on port %d)", pid, module, port)
                return
            if child is None:
                time.sleep(POLL_S)
        if sig == signal.SIGTERM:
            logger.warning("pid %d ignored SIGTERM for %.0f s; killing it", pid, grace_s)
    if process_alive(pid, module, port):
        raise DeployFailed(f"pid {pid} ({module} on port {port}) survived SIGKILL")


def port_free(port: int) -> bool:
    """Can a server bind ``127.0.0.1:port`` now?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def log_tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when it cannot be read)."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- the target --------------------------------------------------------------------------------
class LocalTarget:
    """Serves a stable and a canary ``docloop serve`` process behind a router on 127.0.0.1.

    Every method is safe to repeat and to call from another process than the one that started
    the servers: all it needs is in the state file. Loopback only: the servers and the router
    bind 127.0.0.1 and nothing else.
    """

    def __init__(
        self,
        config: DocloopConfig,
        *,
        prediction_log: str | None = None,
        python: str = sys.executable,
    ) -> None:
        """Bind the target to a configuration.

        Args:
            config: The configuration: ``deploy`` (service name, ``local_port``,
                ``ready_timeout_s``) and ``data_root`` (a local folder: the state lives in
                ``<data_root>/deploy/<service_name>/``). The servers get this configuration too
                (as ``$DOCLOOP_CONFIG_YAML``, with ``data_root`` made absolute).
            prediction_log: Where the servers log predictions (``--prediction-log``): the state
                store's URL, as the canary analysis and the drift check read it (None: no log).
            python: The interpreter that runs ``docloop serve`` and the router (docloop must be
                installed in it).

        Raises:
            InvalidInput: ``data_root`` is not local.
        """
        try:
            local = is_local(config.data_root)
        except StorageError:
            local = False
        if not local:
            raise InvalidInput(
                f"deploy.target: local keeps its servers' state under data_root, which must be "
                f"a local folder (file:// or a path), not {config.data_root!r}; use "
                "deploy.target: kserve to deploy to a cluster"
            )
        root = local_path(config.data_root).resolve()
        self.config = config
        self.deploy = config.deploy
        self.folder = root / "deploy" / config.deploy.service_name
        self.state_path = self.folder / STATE_FILE
        self.prediction_log = _absolute_log(prediction_log)
        self.python = python
        child_config = config.model_copy(update={"data_root": root.as_uri()})
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(ENV_PREFIX) and key != CONFIG_ENV
        }
        env[CONFIG_YAML_ENV] = yaml.safe_dump(child_config.model_dump(mode="json"))
        env["PYTHONUNBUFFERED"] = "1"
        self._env = env

    # --- reads -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The router's base URL (``http://127.0.0.1:<deploy.local_port>``)."""
        state = self._load()
        port = state.router.port if state is not None and state.router else self.deploy.local_port
        return f"http://{LOOPBACK}:{port}"

    def state(self) -> LocalState | None:
        """The state file's contents with the liveness of each process (None: nothing deployed).

        Raises:
            DeployFailed: The state file exists but cannot be read.
        """
        return self._load()

    def router_stats(self) -> dict[str, Any]:
        """The router's ``GET /router/stats``: per label requests, errors, latency since it started.

        Raises:
            DeployFailed: Nothing is deployed, or the router does not answer.
        """
        state = self._load()
        if state is None or state.router is None:
            raise DeployFailed(f"nothing is deployed here ({self.state_path} does not exist)")
        try:
            with httpx.Client(timeout=5.0, trust_env=False) as client:
                answer = client.get(f"{state.url}/router/stats")
                answer.raise_for_status()
                body = answer.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise DeployFailed(
                f"the router at {state.url} did not answer /router/stats ({exc}); read its log "
                f"{state.router.log}"
            ) from exc
        if not isinstance(body, dict):
            raise DeployFailed(f"the router at {state.url} answered {body!r} to /router/stats")
        return body

    def variant_errors(self, label: str) -> tuple[int, int]:
        """``(requests, errors)`` the router counted for ``label`` since the router started.

        Errors are upstream answers with HTTP status ≥ 500 and upstreams that did not answer
        (the client got 502). A label the router has not routed to yet gives ``(0, 0)``.

        Raises:
            DeployFailed: Nothing is deployed, or the router does not answer.
        """
        variants = self.router_stats().get("variants") or {}
        numbers = variants.get(label) or {}
        return int(numbers.get("requests") or 0), int(numbers.get("errors") or 0)

    # --- the rollout -----------------------------------------------------------------------
    def first_deploy(self, release: PredictorRelease) -> LocalState:
        """Start the stable server for ``release`` and the router, and wait until both answer.

        Repeating it for the release already serving only restarts what died (:meth:`heal`).

        Raises:
            InvalidInput: A model is not a local folder.
            DeployFailed: Another release is deployed already, or ``deploy.local_port`` is
                taken by another program.
            RolloutNotReady: The server was not ready within ``deploy.ready_timeout_s`` (it is
                stopped again; its log is named).
        """
        folders = self._folders(release)
        with self._locked():
            current = self._load()
            if current is not None:
                if current.stable_label == release.label:
                    return self._heal(current, canary=True)
                raise DeployFailed(
                    f"{self.deploy.service_name} already serves {current.stable_label} "
                    f"({self.state_path}); roll {release.label} out as a canary, or stop it "
                    "first (LocalTarget.stop_all / docloop deploy --stop)"
                )
            router_owner = self._router_owner(self.deploy.local_port)
            if router_owner is None and not port_free(self.deploy.local_port):
                raise self._port_taken(self.deploy.local_port)
            deadline = time.monotonic() + self.deploy.ready_timeout_s
            server = self._start_server(release.label, folders, role="stable")
            router: RouterRecord | None = None
            try:
                router = self._start_router(router_owner)
                self._wait_server(server, deadline, "stable server")
            except DeployFailed:
                stop_process(server.pid, SERVER_MODULE, server.port)
                if router is not None and router_owner is None:
                    stop_process(router.pid, ROUTER_MODULE, router.port)
                raise
            state = self._write(generation=1, stable=server, canary=None, router=router)
            self._wait_router(state)
            logger.info("%s serves %s at %s", self.deploy.service_name, release.label, state.url)
            return self._require()

    def start_canary(self, release: PredictorRelease, percent: int) -> dict[str, Any]:
        """Start ``release`` as the canary with ``percent`` % of traffic, without waiting.

        The router sends the canary its share once the canary answers its readiness probe. A
        canary of another release already running is stopped and replaced; the same release
        keeps running (only its percent is updated).

        Returns:
            What rollback needs — the stable server's ``label`` and ``folders`` — and the
            ``generation`` written (:meth:`wait_canary` waits for it).

        Raises:
            InvalidInput: A model is not a local folder, or ``percent`` is not 0-100.
            DeployFailed: Nothing is deployed yet (use :meth:`first_deploy`), or the stable
                server or router that died could not be restarted.
        """
        if not 0 <= percent <= 100:
            raise InvalidInput(f"a canary takes 0-100 % of traffic, not {percent}")
        folders = self._folders(release)
        with self._locked():
            state = self._require()
            state = self._heal(state, canary=False)
            assert state.stable is not None  # _require: a state always has a stable server
            previous = {"label": state.stable.label, "folders": dict(state.stable.folders)}
            canary = state.canary
            if canary is not None and (
                canary.label != release.label
                or canary.folders != folders
                or not process_alive(canary.pid, SERVER_MODULE, canary.port)
            ):
                stop_process(canary.pid, SERVER_MODULE, canary.port)
                canary = None
            if canary is None:
                canary = self._start_server(release.label, folders, role="canary")
            canary = replace(canary, percent=percent)
            written = self._write(
                generation=state.generation + 1,
                stable=state.stable,
                canary=canary,
                router=state.router,
            )
            logger.info(
                "canary %s started on port %d (pid %d) for %d %% of traffic",
                canary.label,
                canary.port,
                canary.pid,
                percent,
            )
            return {**previous, "generation": written.generation}

    def wait_canary(self, previous: dict[str, Any]) -> LocalState:
        """Wait until the canary answers its readiness probe and the router routes to it.

        Raises:
            RolloutNotReady: The canary exited, is gone from the state, or was not ready within
                ``deploy.ready_timeout_s`` (the message names its log file).
        """
        deadline = time.monotonic() + self.deploy.ready_timeout_s
        state = self._require()
        if state.canary is None:
            raise RolloutNotReady(
                f"{self.state_path} holds no canary (generation {state.generation}); it was "
                "rolled back or promoted meanwhile"
            )
        self._wait_server(state.canary, deadline, "canary")
        generation = max(int(previous.get("generation") or 0), state.generation)
        return self._wait_router(state, generation, deadline, canary=True)

    def promote(self) -> LocalState:
        """Make the canary the stable server (all traffic at once) and stop the old one.

        A no-op without a canary.

        Raises:
            DeployFailed: Nothing is deployed, or the canary's process is not running.
        """
        with self._locked():
            state = self._require()
            canary, old = state.canary, state.stable
            if canary is None:
                return state
            state = self._heal(state, canary=False, servers=False)  # a dead router, restarted
            if not process_alive(canary.pid, SERVER_MODULE, canary.port):
                raise DeployFailed(
                    f"the canary {canary.label} (pid {canary.pid}) is not running, so it is not "
                    f"promoted; read its log {canary.log}"
                )
            written = self._write(
                generation=state.generation + 1,
                stable=replace(canary, percent=0),
                canary=None,
                router=state.router,
            )
            try:
                self._wait_router(written)
            finally:  # the state no longer names it: stop it whatever happens
                if old is not None and old.pid != canary.pid:
                    stop_process(old.pid, SERVER_MODULE, old.port)
            logger.info("promoted %s (was %s)", canary.label, old.label if old else None)
            return self._require()

    def rollback(self, previous: dict[str, Any]) -> LocalState:
        """Stop the canary and serve what :meth:`start_canary` recorded in ``previous``.

        The canary loses its traffic first; when the stable server is no longer
        ``previous["label"]`` (a promotion happened), that release is started again from
        ``previous["folders"]`` and, once ready, takes all traffic. Safe to repeat.

        Raises:
            DeployFailed: Nothing is deployed, ``previous`` records no stable server, or the
                previous release could not be started again.
        """
        label = previous.get("label")
        folders = previous.get("folders")
        if not label or not isinstance(folders, Mapping) or not folders:
            raise DeployFailed(
                "this deployment recorded no previous server (it was the first one); there is "
                "nothing to roll back to — stop it (LocalTarget.stop_all) or deploy another version"
            )
        with self._locked():
            state = self._heal(self._require(), canary=False, servers=False)
            canary = state.canary
            if canary is not None:
                state = self._write(
                    generation=state.generation + 1,
                    stable=state.stable,
                    canary=None,
                    router=state.router,
                )
                try:
                    self._wait_router(state)
                finally:
                    stop_process(canary.pid, SERVER_MODULE, canary.port)
                logger.info("rolled back canary %s", canary.label)
            old = state.stable
            if old is not None and old.label == label:
                return self._heal(state, canary=False)
            deadline = time.monotonic() + self.deploy.ready_timeout_s
            server = self._start_server(
                str(label), {str(k): str(v) for k, v in folders.items()}, role="stable"
            )
            try:
                self._wait_server(server, deadline, "previous stable server")
            except DeployFailed:
                stop_process(server.pid, SERVER_MODULE, server.port)
                raise
            state = self._write(
                generation=state.generation + 1, stable=server, canary=None, router=state.router
            )
            try:
                self._wait_router(state)
            finally:
                if old is not None:
                    stop_process(old.pid, SERVER_MODULE, old.port)
            logger.info("restored %s (was %s)", label, old.label if old else None)
            return self._require()

    def heal(self) -> LocalState | None:
        """Restart every process of the state that is not running (after a reboot or a crash).

        Servers come back on their recorded port when it is free (else on a new one); the stable
        server is waited for (``deploy.ready_timeout_s``), a canary gets traffic again once the
        router sees it ready. None: nothing is deployed.

        Raises:
            DeployFailed: A process could not be restarted.
        """
        with self._locked():
            state = self._load()
            return None if state is None else self._heal(state, canary=True)

    def stop_all(self) -> None:
        """Stop the canary, the stable server and the router, and remove the state file.

        Safe to repeat; processes that are gone (or whose pid now belongs to something else)
        are skipped.
        """
        with self._locked():
            state = self._load()
            if state is None:
                return
            for record in (state.canary, state.stable):
                if record is not None:
                    stop_process(record.pid, SERVER_MODULE, record.port)
            if state.router is not None:
                stop_process(state.router.pid, ROUTER_MODULE, state.router.port)
            self.state_path.unlink(missing_ok=True)
            logger.info("stopped %s (%s)", self.deploy.service_name, self.state_path)

    # --- internals -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _load(self) -> LocalState | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise DeployFailed(
                f"cannot read the local target's state {self.state_path} ({exc}); stop the "
                "processes it names by hand and delete it to start over"
            ) from exc
        try:
            stable = ServerRecord.from_json(data["stable"]) if data.get("stable") else None
            canary = ServerRecord.from_json(data["canary"]) if data.get("canary") else None
            router = RouterRecord.from_json(data["router"]) if data.get("router") else None
            generation = int(data.get("generation") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise DeployFailed(f"{self.state_path} is not a local target state: {exc!r}") from exc
        alive: dict[str, bool] = {}
        for role, record in (("stable", stable), ("canary", canary)):
            if record is not None:
                alive[role] = process_alive(record.pid, SERVER_MODULE, record.port)
        if router is not None:
            alive["router"] = process_alive(router.pid, ROUTER_MODULE, router.port)
        port = router.port if router is not None else self.deploy.local_port
        return LocalState(
            name=str(data.get("service") or self.deploy.service_name),
            path=self.state_path,
            generation=generation,
            url=f"http://{LOOPBACK}:{port}",
            stable_label=stable.label if stable else None,
            canary_label=canary.label if canary else None,
            canary_percent=canary.percent if canary else 0,
            stable=stable,
            canary=canary,
            router=router,
            alive=alive,
            updated_at=str(data.get("updated_at") or ""),
        )

    def _require(self) -> LocalState:
        state = self._load()
        if state is None or state.stable is None:
            raise DeployFailed(
                f"nothing is deployed for {self.deploy.service_name} ({self.state_path} does not "
                "exist): deploy a first release (first_deploy) before a canary"
            )
        return state

    def _write(
        self,
        *,
        generation: int,
        stable: ServerRecord | None,
        canary: ServerRecord | None,
        router: RouterRecord | None,
    ) -> LocalState:
        body = {
            "schema": SCHEMA,
            "service": self.deploy.service_name,
            "generation": generation,
            "updated_at": _now(),
            "stable": stable.as_json() if stable else None,
            "canary": canary.as_json() if canary else None,
            "router": router.as_json() if router else None,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{STATE_FILE}.{os.getpid()}.tmp"
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(body, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.state_path)
        state = self._load()
        assert state is not None
        return state

    def _folders(self, release: PredictorRelease) -> dict[str, str]:
        folders: dict[str, str] = {}
        for task, uri in sorted(release.storage_uris.items()):
            try:
                local = is_local(uri)
            except StorageError:
                local = False
            if not local:
                raise InvalidInput(
                    f"the {task} model {uri!r} is not a local folder; deploy.target: local serves "
                    "model folders on this machine (a path or file:// URI) — use "
                    "deploy.target: kserve for models on object storage"
                )
            folders[task] = str(local_path(uri).resolve())
        return folders

    def _spawn(self, command: list[str], log: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            sink.write(f"--- {_now()} starting: {shlex.join(command)}\n".encode())
            sink.flush()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[process.pid] = process
        return process.pid

    def _start_server(
        self, label: str, folders: Mapping[str, str], *, role: str, port: int | None = None
    ) -> ServerRecord:
        port = port if port is not None and port_free(port) else free_port()
        command = [self.python, "-m", SERVER_MODULE, "serve"]
        for task in sorted(folders):
            command += ["--model", folders[task]]
        command += ["--host", LOOPBACK, "--port", str(port), "--name", self.deploy.service_name]
        if self.prediction_log is not None:
            command += ["--prediction-log", self.prediction_log]
        log = self.folder / f"server-{label}.log"
        pid = self._spawn(command, log)
        logger.info("started %s server %s: pid %d, port %d, log %s", role, label, pid, port, log)
        return ServerRecord(
            label=label,
            folders=dict(folders),
            port=port,
            pid=pid,
            log=str(log),
            command=command,
            started_at=_now(),
        )

    def _port_taken(self, port: int) -> DeployFailed:
        return DeployFailed(
            f"port {port} on 127.0.0.1 (deploy.local_port, the local router's port) is taken "
            "by another program; stop it or set deploy.local_port to a free port"
        )

    def _router_owner(self, port: int) -> dict[str, Any] | None:
        """``/router/healthz`` of a router on ``port`` that routes for this state, else None."""
        try:
            with httpx.Client(timeout=1.0, trust_env=False) as client:
                body = client.get(f"http://{LOOPBACK}:{port}/router/healthz").json()
        except (httpx.HTTPError, json.JSONDecodeError):
            return None
        if isinstance(body, dict) and body.get("state") == str(self.state_path):
            return body
        return None

    def _start_router(self, owner: dict[str, Any] | None = None) -> RouterRecord:
        """Start the router on ``deploy.local_port`` (or adopt ``owner``, ours already there)."""
        port = self.deploy.local_port
        log = self.folder / "router.log"
        command = [
            self.python, "-m", ROUTER_MODULE, "--state", str(self.state_path),
            "--host", LOOPBACK, "--port", str(port),
        ]  # fmt: skip
        if owner is not None and process_alive(int(owner.get("pid") or 0), ROUTER_MODULE, port):
            logger.info("adopting the router already on port %d (pid %s)", port, owner["pid"])
            return RouterRecord(port, int(owner["pid"]), str(log), command, _now())
        if not port_free(port):
            raise self._port_taken(port)
        pid = self._spawn(command, log)
        logger.info("started the router: pid %d, port %d, log %s", pid, port, log)
        return RouterRecord(port, pid, str(log), command, _now())

    def _wait_server(self, server: ServerRecord, deadline: float, what: str) -> None:
        """Poll the server's ``/v2/health/ready`` until 200.

        Raises:
            RolloutNotReady: It exited, or the deadline passed.
        """
        timeout = self.deploy.ready_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if not process_alive(server.pid, SERVER_MODULE, server.port):
                    raise RolloutNotReady(
                        f"the {what} {server.label} (pid {server.pid}, port {server.port}) exited "
                        f"before it was ready; read its log {server.log}:\n{log_tail(server.log)}"
                    )
                try:
                    if client.get(server.url + READY_PATH).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() >= deadline:
                    raise RolloutNotReady(
                        f"the {what} {server.label} on 127.0.0.1:{server.port} was not ready "
                        f"within {timeout:g} s (deploy.ready_timeout_s); read its log "
                        f"{server.log}"
                    )
                time.sleep(POLL_S)

    def _wait_router(
        self,
        state: LocalState,
        generation: int | None = None,
        deadline: float | None = None,
        *,
        canary: bool = False,
    ) -> LocalState:
        """Wait until the router has loaded ``generation`` (and, ``canary``, routes to it).

        Raises:
            RolloutNotReady: ``canary`` and the router did not route to it by ``deadline``.
            DeployFailed: The router is not running or did not load the state in time.
        """
        router = state.router
        if router is None:
            raise DeployFailed(f"{self.state_path} names no router; run first_deploy")
        wanted = state.generation if generation is None else generation
        limit = deadline if deadline is not None else time.monotonic() + ROUTER_TIMEOUT_S
        seen: dict[str, Any] = {}
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if not process_alive(router.pid, ROUTER_MODULE, router.port):
                    raise DeployFailed(
                        f"the router (pid {router.pid}, port {router.port}) is not running; read "
                        f"its log {router.log}:\n{log_tail(router.log)}"
                    )
                try:
                    seen = client.get(f"{state.url}/router/healthz").json()
                except (httpx.HTTPError, json.JSONDecodeError):
                    seen = {}
                if (
                    int(seen.get("generation") or 0) >= wanted
                    and seen.get("stable") is not None
                    and (not canary or seen.get("canary_routed"))
                ):
                    return self._require()
                if time.monotonic() >= limit:
                    problem = (
                        f"the router at {state.url} did not route generation {wanted} in time "
                        f"(it reports {seen or 'nothing'}); read its log {router.log}"
                    )
                    raise RolloutNotReady(problem) if canary else DeployFailed(problem)
                time.sleep(POLL_S)

    def _heal(self, state: LocalState, *, canary: bool, servers: bool = True) -> LocalState:
        """Restart the dead processes of ``state`` (the lock is held).

        Args:
            state: As just loaded.
            canary: Restart a dead canary too.
            servers: Restart dead servers (False: only the router).
        """
        stable, new_canary, router = state.stable, state.canary, state.router
        changed = False
        if servers and stable is not None and not state.alive.get("stable"):
            logger.warning("stable server %s (pid %d) is not running: restarting it",
                           stable.label, stable.pid)  # fmt: skip
            stable = self._start_server(stable.label, stable.folders, role="stable",
                                        port=stable.port)  # fmt: skip
            changed = True
        if servers and canary and new_canary is not None and not state.alive.get("canary"):
            logger.warning("canary %s (pid %d) is not running: restarting it",
                           new_canary.label, new_canary.pid)  # fmt: skip
            restarted = self._start_server(new_canary.label, new_canary.folders, role="canary",
                                           port=new_canary.port)  # fmt: skip
            new_canary = replace(restarted, percent=new_canary.percent)
            changed = True
        if router is None or not state.alive.get("router"):
            owner = self._router_owner(self.deploy.local_port)
            if router is not None:
                logger.warning("the router (pid %d) is not running: restarting it", router.pid)
            router = self._start_router(owner)
            changed = True
        if changed and stable is not None and stable is not state.stable:
            deadline = time.monotonic() + self.deploy.ready_timeout_s
            try:
                self._wait_server(stable, deadline, "restarted stable server")
            except DeployFailed:
                stop_process(stable.pid, SERVER_MODULE, stable.port)
                raise
        if not changed:
            return state
        written = self._write(
            generation=state.generation + 1, stable=stable, canary=new_canary, router=router
        )
        return self._wait_router(written)


def _absolute_log(prediction_log: str | None) -> str | None:
    """The prediction log with a relative SQLite file or directory made absolute.

    A server restarted by another process (another working directory) then still writes to the
    same log.
    """
    if prediction_log is None or not prediction_log.strip():
        return None
    if "://" not in prediction_log:
        return str(Path(prediction_log).resolve())
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(prediction_log)
    except ArgumentError:
        return prediction_log
    database = url.database
    if (
        url.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).is_absolute()
    ):
        return url.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)
    return prediction_log


if TYPE_CHECKING:

    def _conforms(target: LocalTarget) -> Target:
        """Static check: a LocalTarget is a rollout Target."""
        return target

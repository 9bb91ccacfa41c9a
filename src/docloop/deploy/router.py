"""The local target's traffic router: one port in front of the stable and the canary server.

``python -m docloop.deploy.router --state <state.json> --port 8080`` runs a small asynchronous
reverse proxy (Starlette + ``httpx.AsyncClient``, served by uvicorn) on **127.0.0.1 only**: the
``docloop serve`` processes it forwards to listen on loopback, and so does the router — a
non-loopback ``--host`` is refused, so the local target never exposes a model to the network.

Every request (any method, path, query, headers and body) goes to one variant:

* the split follows the local target's state file (:mod:`docloop.deploy.local_target`): the
  stable server, and the canary with ``percent`` % of the requests. The file is re-read whenever
  its inode, size or modification time changes (it is replaced atomically), checked on every
  request and every 0.2 s, so a promotion or a rollback takes effect at the next request;
* a new canary gets traffic only once its ``GET /v2/health/ready`` answered 200 (as Knative
  routes to a revision only when it is ready); until then everything goes to the stable server;
* with an ``x-request-id`` header the choice is deterministic — ``sha256(id) mod 100 < percent``
  → canary — so a client retrying a request reaches the same variant; without one it is random.

Each answer carries ``x-docloop-variant: <label>``. An upstream answer with HTTP status ≥ 500, or
an upstream that does not answer (→ HTTP 502 with a JSON ``error`` naming the variant), counts as
an error of that variant. Per label the router counts requests, errors and latency (since the
router started), served as JSON by ``GET /router/stats``; ``GET /router/healthz`` says which state
generation the router has loaded (HTTP 503 until the state file names a stable server). Paths
under ``/router/`` are the router's own and never forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

logger = logging.getLogger("docloop.deploy.router")  # also when run as __main__

VARIANT_HEADER: Final = "x-docloop-variant"
REQUEST_ID_HEADER: Final = "x-request-id"
LOOPBACK: Final = "127.0.0.1"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
READY_PATH: Final = "/v2/health/ready"
PROBE_S: Final = 0.2
LATENCY_WINDOW: Final = 10_000
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def bucket(request_id: str) -> int:
    """The request's bucket 0-99: ``sha256(request_id) mod 100`` (below the percent → canary)."""
    return int.from_bytes(hashlib.sha256(request_id.encode("utf-8")).digest(), "big") % 100


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Upstream:
    """One ``docloop serve`` process the router forwards to."""

    label: str
    port: int
    pid: int
    role: str

    @property
    def url(self) -> str:
        """Its base URL (always loopback)."""
        return f"http://{LOOPBACK}:{self.port}"

    def describe(self) -> str:
        """``the canary variant classify-2.extract-1 (127.0.0.1:40123)``."""
        return f"the {self.role} variant {self.label} ({LOOPBACK}:{self.port})"


@dataclass
class Counters:
    """What one label's requests did since the router started."""

    requests: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    total_ms: float = 0.0
    first_at: str | None = None
    last_at: str | None = None

    def record(self, latency_ms: float, error: bool) -> None:
        """Count one answered (or failed) request."""
        self.requests += 1
        self.errors += int(error)
        self.latencies_ms.append(latency_ms)
        self.total_ms += latency_ms
        stamp = _now()
        self.first_at = self.first_at or stamp
        self.last_at = stamp

    def as_json(self, role: str) -> dict[str, Any]:
        """The numbers as JSON (latency percentiles over the last 10,000 requests)."""
        ordered = sorted(self.latencies_ms)

        def percentile(share: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)

        return {
            "role": role,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "latency_ms": {
                "mean": round(self.total_ms / self.requests, 3) if self.requests else None,
                "p50": percentile(0.50),
                "p95": percentile(0.95),
                "max": round(ordered[-1], 3) if ordered else None,
                "window": len(ordered),
            },
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


class Routes:
    """The split as the state file says, reloaded when the file changes.

    Args:
        state_path: The local target's ``state.json``.
    """

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.generation = 0
        self.stable: Upstream | None = None
        self.canary: Upstream | None = None
        self.percent = 0
        self.canary_ready = False
        self._signature: tuple[int, int, int] | None = None
        self.problem: str | None = f"{state_path} does not exist yet"

    def refresh(self) -> None:
        """Re-read the state file if it changed (an unreadable file keeps the last split)."""
        try:
            stat = self.state_path.stat()
        except FileNotFoundError:
            if self._signature is not None:
                logger.warning("state file %s is gone: not routing", self.state_path)
            self._signature = None
            self.stable = self.canary = None
            self.problem = f"{self.state_path} does not exist (nothing is deployed)"
            return
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if signature == self._signature:
            return
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("cannot read %s (%s); keeping the last split", self.state_path, exc)
            return
        self._signature = signature
        self._apply(data)

    def _apply(self, data: dict[str, Any]) -> None:
        stable = data.get("stable")
        canary = data.get("canary")
        self.generation = int(data.get("generation") or 0)
        self.stable = (
            Upstream(str(stable["label"]), int(stable["port"]), int(stable["pid"]), "stable")
            if stable
            else None
        )
        new_canary = (
            Upstream(str(canary["label"]), int(canary["port"]), int(canary["pid"]), "canary")
            if canary
            else None
        )
        if new_canary != self.canary:
            self.canary_ready = False
        self.canary = new_canary
        self.percent = max(0, min(100, int(canary.get("percent") or 0))) if canary else 0
        self.problem = None if self.stable else f"{self.state_path} names no stable server"
        logger.info(
            "generation %d: stable %s, canary %s (%d %%)",
            self.generation,
            self.stable.label if self.stable else None,
            self.canary.label if self.canary else None,
            self.percent,
        )

    def pick(self, request_id: str | None, rng: random.Random) -> Upstream | None:
        """The variant this request goes to (None: nothing to route to)."""
        if self.canary is not None and self.canary_ready and self.percent > 0:
            if request_id:
                chosen = bucket(request_id) < self.percent
            else:
                chosen = rng.random() * 100 < self.percent
            if chosen or self.stable is None:
                return self.canary
        return self.stable

    def roles(self) -> dict[str, str]:
        """Label → role (``stable`` / ``canary``) of what the state routes to now."""
        roles: dict[str, str] = {}
        if self.canary is not None:
            roles[self.canary.label] = "canary"
        if self.stable is not None:
            roles[self.stable.label] = "stable"
        return roles


class Router:
    """The proxy's handlers and counters (one per router process).

    Args:
        state_path: The local target's ``state.json``.
        timeout_s: How long an upstream may take to answer one request.
        seed: Seed of the random split of requests without ``x-request-id`` (None: random).
    """

    def __init__(
        self, state_path: Path, *, timeout_s: float = 120.0, seed: int | None = None
    ) -> None:
        self.state_path = state_path
        self.timeout_s = timeout_s
        self.routes = Routes(state_path)
        self.stats: dict[str, Counters] = {}
        self.rng = random.Random(seed)
        self.started_at = _now()
        self.client: httpx.AsyncClient | None = None

    async def probe(self) -> None:
        """Reload the state and probe a new canary's readiness until it answers (forever)."""
        routes = self.routes
        while True:
            routes.refresh()
            canary = routes.canary
            if canary is not None and not routes.canary_ready and self.client is not None:
                try:
                    answer = await self.client.get(canary.url + READY_PATH, timeout=1.0)
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 200 and routes.canary == canary:
                    routes.canary_ready = True
                    logger.info(
                        "%s is ready: routing %d %% to it", canary.describe(), routes.percent
                    )
            await asyncio.sleep(PROBE_S)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        """Open the upstream client and run the probe while the app serves."""
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        timeout = httpx.Timeout(self.timeout_s, connect=2.0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
            self.client = client
            task = asyncio.create_task(self.probe())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self.client = None

    def health(self) -> dict[str, Any]:
        """What the router routes now (``/router/healthz``)."""
        routes = self.routes
        return {
            "status": "ok" if routes.stable is not None else "unavailable",
            "problem": routes.problem,
            "pid": os.getpid(),
            "state": str(self.state_path),
            "generation": routes.generation,
            "stable": routes.stable.label if routes.stable else None,
            "canary": routes.canary.label if routes.canary else None,
            "canary_percent": routes.percent,
            "canary_routed": routes.canary is not None and routes.canary_ready,
        }

    async def healthz(self, _: Request) -> JSONResponse:
        """``GET /router/healthz``: 200 once the state names a stable server, else 503."""
        self.routes.refresh()
        ok = self.routes.stable is not None
        return JSONResponse(self.health(), status_code=200 if ok else 503)

    async def router_stats(self, _: Request) -> JSONResponse:
        """``GET /router/stats``: per label requests, errors and latency since the start."""
        self.routes.refresh()
        roles = self.routes.roles()
        variants = {
            label: counters.as_json(roles.get(label, "retired"))
            for label, counters in self.stats.items()
        }
        return JSONResponse({**self.health(), "started_at": self.started_at, "variants": variants})

    async def proxy(self, request: Request) -> Response:
        """Forward one request to the variant the split picks."""
        self.routes.refresh()
        upstream = self.routes.pick(request.headers.get(REQUEST_ID_HEADER), self.rng)
        client = self.client
        if upstream is None or client is None:
            return JSONResponse(
                {"error": f"no model is deployed behind this router: {self.routes.problem}"},
                status_code=503,
            )
        counters = self.stats.setdefault(upstream.label, Counters())
        variant = (VARIANT_HEADER.encode(), upstream.label.encode())
        raw_path = request.scope.get("raw_path")
        url = upstream.url + (raw_path.decode("latin-1") if raw_path else request.url.path)
        if request.url.query:
            url += "?" + request.url.query
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in HOP_BY_HOP]
        began = time.perf_counter()
        try:
            body = await request.body()
            sent = client.build_request(request.method, url, headers=headers, content=body)
            answer = await client.send(sent, stream=True)
            try:
                content = b"".join([chunk async for chunk in answer.aiter_raw()])
            finally:
                await answer.aclose()
        except httpx.HTTPError as exc:
            counters.record((time.perf_counter() - began) * 1000, error=True)
            logger.warning("%s did not answer %s %s: %r", upstream.describe(), request.method,
                           request.url.path, exc)  # fmt: skip
            failed = JSONResponse(
                {"error": f"{upstream.describe()} did not answer: {type(exc).__name__}: {exc}"},
                status_code=502,
            )
            failed.raw_headers.append(variant)
            return failed
        counters.record((time.perf_counter() - began) * 1000, error=answer.status_code >= 500)
        response = Response(content=content, status_code=answer.status_code)
        response.raw_headers = [
            *((k, v) for k, v in answer.headers.raw if k.lower() not in HOP_BY_HOP),
            (b"content-length", str(len(content)).encode()),
            variant,
        ]
        return response


def create_app(state_path: Path, *, timeout_s: float = 120.0, seed: int | None = None) -> Starlette:
    """The router's ASGI app (run it with uvicorn on 127.0.0.1); arguments as :class:`Router`."""
    router = Router(state_path, timeout_s=timeout_s, seed=seed)
    return Starlette(
        routes=[
            Route("/router/healthz", router.healthz, methods=["GET"]),
            Route("/router/stats", router.router_stats, methods=["GET"]),
            Route("/{path:path}", router.proxy, methods=METHODS),
        ],
        lifespan=router.lifespan,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the router until SIGTERM/SIGINT (``python -m docloop.deploy.router``)."""
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m docloop.deploy.router",
        description="The docloop local target's traffic router (127.0.0.1 only).",
    )
    parser.add_argument("--state", required=True, type=Path, help="The local target's state.json.")
    parser.add_argument("--host", default=LOOPBACK, help="Loopback address to bind (127.0.0.1).")
    parser.add_argument("--port", required=True, type=int, help="Port (deploy.local_port).")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="Upstream answer timeout.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK_HOSTS:
        parser.error(
            f"--host {args.host}: the local router binds loopback only (127.0.0.1); to serve on "
            "a network, deploy with deploy.target: kserve"
        )
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded request
    app = create_app(args.state.resolve(), timeout_s=args.timeout_s)
    logger.info("routing for %s on http://%s:%d", args.state, args.host, args.port)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on"
    )


if __name__ == "__main__":
    main()

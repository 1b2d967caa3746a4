"""/metrics, /healthz and /readyz on one port, served from background threads, for the
dispatcher and the watcher alike.

- /metrics  prometheus-client's text exposition of the default registry;
- /healthz  liveness: 200 while `alive()` returns None, else 503 with its one-line reason;
- /readyz   readiness: 200 while `ready()` returns None, else 503 with its one-line reason.

A check is a function returning None when healthy, else why not. `stalled` is the liveness
check of a loop that ticks; `CachedProbe` runs a slow readiness check (Redis and
Kubernetes API round trips) in a thread of its own, so a slow API never blocks a scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], str | None]  # None = healthy, else the reason it is not
TEXT = "text/plain; charset=utf-8"


@dataclass
class HealthServer:
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(port: int, alive: Check, ready: Check, host: str = "0.0.0.0") -> HealthServer:
    """Start serving on `port` (0 = any free port; see `.port`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                reason = alive() if path == "/healthz" else ready()
                code, body = (503, reason) if reason else (200, "ok")
                self._reply(code, f"{body}\n".encode())
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _reply(self, code: int, body: bytes, content_type: str = TEXT) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # scrapes and probes every few seconds would drown an INFO log
            log.debug("health: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="health-http", daemon=True)
    thread.start()
    log.info("serving /metrics, /healthz, /readyz on port %d", server.server_address[1])
    return HealthServer(server, thread)


def stalled(last_tick: float, after: float, loop: str) -> str | None:
    """Liveness: why not, once `loop` last ticked (a time.monotonic() value) over `after` s ago."""
    idle = time.monotonic() - last_tick
    return f"{loop} has not run for {idle:.0f}s" if idle > after else None


@dataclass
class CachedProbe:
    """Runs `check` every `every` seconds in a daemon thread; calling the probe returns the
    last result at once. Logs each change between ready and not ready, once."""

    check: Check
    every: float = 5.0
    reason: str | None = "not probed yet"
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def __call__(self) -> str | None:
        return self.reason

    def probe_once(self) -> None:
        try:
            reason = self.check()
        except Exception as e:  # a probe that raises is a failed probe, not a dead thread
            reason = f"readiness probe failed: {e}"
        if reason != self.reason:
            if reason:
                log.warning("not ready: %s", reason)
            else:
                log.info("ready")
        self.reason = reason

    def start(self) -> CachedProbe:
        threading.Thread(target=self._loop, name="readiness", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self.every)

"""The dispatcher's HTTP endpoints on its metrics port:
- /metrics  Prometheus text format (prometheus-client's default registry);
- /healthz  liveness: 200 while the claim loop has ticked in the last `stall_after` seconds;
- /readyz   readiness: 200 only while Redis and the Kubernetes API of every pool served
            answered the last probe (every `probe_every` seconds, in a thread of its own so
            a slow API never blocks a scrape), else 503 with a one-line reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Probe = Callable[[], str | None]  # None = healthy, else the reason it is not


class Health:
    def __init__(
        self,
        ready_probe: Probe,
        last_tick: Callable[[], float],
        *,
        probe_every: float = 5.0,
        stall_after: float = 60.0,
    ) -> None:
        self.ready_probe = ready_probe
        self.last_tick = last_tick
        self.probe_every = probe_every
        self.stall_after = stall_after
        self.not_ready: str | None = "not probed yet"
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def alive(self) -> str | None:
        stalled = time.monotonic() - self.last_tick()
        if stalled > self.stall_after:
            return f"the claim loop has not run for {stalled:.0f}s"
        return None

    def probe_once(self) -> None:
        try:
            reason = self.ready_probe()
        except Exception as e:  # a probe that raises is a failed probe, not a dead thread
            reason = f"readiness probe failed: {e}"
        if reason != self.not_ready:
            if reason:
                log.warning("not ready: %s", reason)
            else:
                log.info("ready")
        self.not_ready = reason

    def _probe_loop(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self.probe_every)

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Start the server and the probe thread; returns the bound port (port 0 = any)."""
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    reason = health.alive() if path == "/healthz" else health.not_ready
                    code, body = (503, reason) if reason else (200, "ok")
                    self._send(code, f"{body}\n".encode(), "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found: try /metrics, /healthz, /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes and probes every few seconds would drown the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="http", daemon=True).start()
        threading.Thread(target=self._probe_loop, name="readiness", daemon=True).start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

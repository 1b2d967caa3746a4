"""/metrics, /healthz and /readyz on one port, in a background thread.

- /metrics: prometheus-client's text exposition of the default registry.
- /healthz: 200 while `alive()` (the process loop is turning), else 503 — liveness.
- /readyz: 200 while `not_ready()` returns None, else 503 with its one-line reason —
  readiness (Redis and every Kubernetes API the process serves answer).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)


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


def serve(
    port: int,
    alive: Callable[[], bool],
    not_ready: Callable[[], str | None],
    host: str = "0.0.0.0",
) -> HealthServer:
    """Start serving on `port` (0 = any free port; see `.port`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = alive()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"process loop stalled\n")
            elif path == "/readyz":
                reason = not_ready()
                body = b"ok\n" if reason is None else f"{reason}\n".encode()
                self._reply(200 if reason is None else 503, body)
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="health-http", daemon=True)
    thread.start()
    log.info("serving /metrics, /healthz, /readyz on port %d", server.server_address[1])
    return HealthServer(server, thread)

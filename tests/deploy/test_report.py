"""`kubequeue report` on bad input: each problem ends in one clear line, never a traceback.
(The happy path runs against a real Prometheus in test_promql.py.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kubequeue import embedded_redis
from kubequeue.bench import report
from kubequeue.cli import main


class _Prometheus(BaseHTTPRequestHandler):
    """A stand-in Prometheus answering every query_range with `answer` (status, body)."""

    answer: tuple[int, dict[str, Any]] = (200, {"status": "success", "data": {"result": []}})

    def do_GET(self) -> None:
        status, body = self.answer
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[str, type[_Prometheus]]]:
    handler = type("Handler", (_Prometheus,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["report", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_unreachable_prometheus(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{embedded_redis.free_port()}"
    code, output = run("--prometheus", url, "--out", str(tmp_path / "x.png"))
    assert code == 1
    assert f"Error: cannot reach Prometheus at {url}" in output
    assert not (tmp_path / "x.png").exists()


def test_no_data(tmp_path: Path, fake_prometheus: tuple[str, type[_Prometheus]]) -> None:
    url, _ = fake_prometheus
    code, output = run("--prometheus", url, "--range", "10m", "--out", str(tmp_path / "x.png"))
    assert code == 1
    assert "no kubequeue start-up data" in output
    assert "load deploy/monitoring/kubequeue.rules.yaml?" in output


def test_query_rejected(tmp_path: Path, fake_prometheus: tuple[str, type[_Prometheus]]) -> None:
    url, handler = fake_prometheus
    handler.answer = (400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
    code, output = run("--prometheus", url, "--out", str(tmp_path / "x.png"))
    assert code == 1
    assert "Prometheus rejected the query" in output and "parse error" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--range", "ten minutes"], "duration 'ten minutes' is invalid: use e.g. 90s"),
        (["--rate-interval", "1x"], "duration '1x' is invalid"),
    ],
)
def test_bad_durations(args: list[str], message: str) -> None:
    code, output = run("--prometheus", "http://127.0.0.1:1", *args)
    assert code == 1
    assert message in output


def test_dashboard_without_the_panels(tmp_path: Path) -> None:
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"panels": [{"title": "something else", "targets": []}]}))
    code, output = run("--dashboard", str(board), "--prometheus", "http://127.0.0.1:1")
    assert code == 1
    assert f"dashboard {board} has no panel '{report.PANELS[0]}'" in output


def test_reads_the_committed_dashboard() -> None:
    panels = report.load_panels(report.DASHBOARD / report.DASHBOARD_FILE)
    assert [p.title for p in panels] == list(report.PANELS)
    assert [p.kind for p in panels] == ["timeseries", "heatmap", "timeseries", "timeseries"]
    assert panels[2].stacked and not panels[0].stacked
    assert all(p.queries for p in panels)

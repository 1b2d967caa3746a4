"""kubequeue.health: what a kubelet probe and a Prometheus scrape see on the metrics port."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from kubequeue import health


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Checks:
    alive: str | None = None
    ready: str | None = None


@pytest.fixture
def served() -> Iterator[tuple[str, Checks]]:
    checks = Checks()
    server = health.serve(0, lambda: checks.alive, lambda: checks.ready, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.port}", checks
    finally:
        server.stop()


def test_probes_answer_ok_or_503_with_the_reason(served: tuple[str, Checks]) -> None:
    base, checks = served
    assert get(f"{base}/healthz") == (200, "ok\n")
    assert get(f"{base}/readyz?verbose") == (200, "ok\n")
    checks.alive, checks.ready = "the claim loop has not run for 61s", "Redis does not answer"
    assert get(f"{base}/healthz") == (503, "the claim loop has not run for 61s\n")
    assert get(f"{base}/readyz") == (503, "Redis does not answer\n")


def test_metrics_and_unknown_paths(served: tuple[str, Checks]) -> None:
    base, _ = served
    status, text = get(f"{base}/metrics")
    assert status == 200 and "# TYPE" in text
    assert get(f"{base}/nope") == (404, "not found: try /metrics, /healthz or /readyz\n")


def test_stalled_names_the_loop_once_it_is_idle_too_long() -> None:
    now = time.monotonic()
    assert health.stalled(now, 60.0, "the claim loop") is None
    assert health.stalled(now - 90, 60.0, "the claim loop") == "the claim loop has not run for 90s"


def test_cached_probe_keeps_the_last_answer_and_survives_a_raising_check() -> None:
    answers: list[str | None] = ["Redis does not answer", None]

    def check() -> str | None:
        if not answers:
            raise RuntimeError("boom")
        return answers.pop(0)

    probe = health.CachedProbe(check)
    assert probe() == "not probed yet"
    probe.probe_once()
    assert probe() == "Redis does not answer"
    probe.probe_once()
    assert probe() is None
    probe.probe_once()
    assert probe() == "readiness probe failed: boom"

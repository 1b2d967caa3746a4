"""Every PromQL expression kubequeue ships, run against a real Prometheus.

A short workload goes through two `kubequeue dispatcher` processes and a `kubequeue watcher`
on the simulated cluster (with 429s on pod creates, an image that cannot be pulled and a
pool no node matches, so failure and error series exist too). Debian's `prometheus` scrapes
them every second and evaluates deploy/monitoring's rules every second. Then:
- each dashboard query and each recording rule parses and returns series,
- each alert expression parses, and each series selector in it returns series,
- the health alerts stay quiet while everything runs, and fire once it stops,
- `promtool check metrics` accepts every component's /metrics,
- `kubequeue report` draws the latency panels from that Prometheus.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubequeue.bench import report
from tests.deploy.promql import dashboard_queries, rules, selectors, substitute
from tests.deploy.stack import Stack, http_get, run_workload, running_stack, submit
from tests.fixtures.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("promtool") is None,
        reason="Debian's prometheus/promtool are not installed",
    ),
]
# Alerts that must be silent while the whole system runs (the others react to the failures
# and 429s this workload causes on purpose).
HEALTH_ALERTS = (
    "KubequeueWatcherNoLeader",
    "KubequeueWatcherSplitBrain",
    "KubequeueQueueGrowingWithoutDispatcher",
    "KubequeueQueueStalled",
    "KubequeueQueuedNearTimeout",
    "KubequeueStartupLatencyHigh",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        run_workload(running, {"default": 40, "broken": 3, "nowhere": 3}, failing=4)
        yield running


def _missing(stack: Stack, exprs: list[tuple[str, str]]) -> list[str]:
    missing = []
    for where, expr in exprs:
        answer = stack.query(expr)
        assert answer["status"] == "success", f"{where}: {expr}\n{answer.get('error')}"
        if not answer["data"]["result"]:
            missing.append(f"{where}: {expr}")
    return missing


def _until_all_return_series(stack: Stack, exprs: list[tuple[str, str]]) -> None:
    """Rules are evaluated every second; give them a few rounds to produce series."""
    left: list[str] = []

    def done() -> bool:
        left[:] = _missing(stack, exprs)
        return not left

    try:
        wait_for("series", done, 30)
    except AssertionError:
        raise AssertionError("no series for:\n" + "\n".join(left)) from None


def test_every_component_metrics_pass_promtool(stack: Stack) -> None:
    for name, url in stack.components.items():
        status, body = http_get(f"{url}/metrics")
        assert status == 200 and "kubequeue_" in body, name
        done = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"


def test_every_dashboard_query_returns_series(stack: Stack) -> None:
    queries = [
        (f"{board} / {title}", substitute(expr)) for board, title, expr in dashboard_queries()
    ]
    assert len(queries) > 20
    _until_all_return_series(stack, queries)


def test_every_recording_rule_returns_series(stack: Stack) -> None:
    exprs = []
    for rule in rules():
        if "record" in rule:
            labels = ", ".join(f'{k}="{v}"' for k, v in rule.get("labels", {}).items())
            exprs.append((rule["record"], f"{rule['record']}{{{labels}}}"))
    _until_all_return_series(stack, exprs)


def test_every_alert_parses_and_reads_existing_series(stack: Stack) -> None:
    exprs = []
    for rule in rules():
        if "alert" not in rule:
            continue
        answer = stack.query(rule["expr"])
        assert answer["status"] == "success", f"{rule['alert']}: {answer.get('error')}"
        for name, matchers in selectors(rule["expr"]):
            text = ", ".join(f'{label}{op}"{value}"' for label, (op, value) in matchers.items())
            exprs.append((rule["alert"], f"{name}{{{text}}}"))
    _until_all_return_series(stack, exprs)


def test_health_alerts_are_quiet_while_everything_runs(stack: Stack) -> None:
    by_name = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    firing = {name: stack.series(by_name[name]) for name in HEALTH_ALERTS}
    assert not any(firing.values()), firing


def test_report_draws_the_latency_panels(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "startup.png"
    result = CliRunner().invoke(
        report.report,
        ["--prometheus", stack.prometheus_url, "--range", "5m", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert f"({len(report.PANELS)}/{len(report.PANELS)} panels with data)" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_alerts_fire_when_the_components_stop(stack: Stack) -> None:
    """Runs last: stops the dispatchers, queues work, then stops the watcher."""
    by_name = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    procs = dict(stack.procs)
    for name in ("dispatcher1", "dispatcher2"):
        procs[name].terminate()
        procs[name].wait(30)
    for round_ in range(1, 4):  # the queue grows, scrape after scrape, with no dispatcher
        submit(stack, {"default": 5})
        depth = f'max(kubequeue_queue_depth{{queue="default"}}) >= {5 * round_}'
        wait_for(depth, functools.partial(stack.series, depth), 30)
    wait_for("KubequeueQueueGrowingWithoutDispatcher to fire", lambda: stack.series(by_name["KubequeueQueueGrowingWithoutDispatcher"]), 30)
    procs["watcher1"].terminate()
    procs["watcher1"].wait(30)
    wait_for("KubequeueWatcherNoLeader to fire", lambda: stack.series(by_name["KubequeueWatcherNoLeader"]), 30)

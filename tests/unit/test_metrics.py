"""Which process exports which metric."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import REGISTRY

from kubequeue import metrics


def test_importing_metrics_does_not_export_the_leader_gauge() -> None:
    # A dispatcher imports kubequeue.metrics too; it must not show a "leader = 0" series.
    code = (
        "import kubequeue.metrics\n"
        "from prometheus_client import generate_latest\n"
        "print(generate_latest().decode())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "kubequeue_dispatches_total" in out.stdout
    assert "kubequeue_watcher_leader" not in out.stdout


def test_the_watcher_registers_the_leader_gauge_once() -> None:
    metrics.export_watcher_metrics()
    metrics.export_watcher_metrics()
    assert REGISTRY.get_sample_value("kubequeue_watcher_leader") is not None

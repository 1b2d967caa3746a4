"""`kubequeue bench` end to end on a tiny workload: every process starts and stops, every
system's phases complete, and the results carry every figure. Timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from kubequeue.bench.cli import bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIGURES = (
    "throughput_created",
    "throughput_running",
    "latency_created_ms",
    "latency_running_ms",
    "heartbeat_ms",
    "scheduler_cpu_ms_per_task",
    "cdf_created_ms",
)


@pytest.mark.timeout(600)
def test_bench_runs_every_system_and_writes_the_results(tmp_path: Path) -> None:
    before = _children()
    args = ["-n", "20", "--paced-n", "10", "--rate", "20", "--rate-seconds", "0.5"]
    args += ["--levels", "10", "--replicas", "1", "--name", "smoke", "--out", str(tmp_path)]
    args += ["--systems", "limit,ke-tuned,kubequeue-1", "--api-latency-ms", "0"]
    args += ["--task-seconds", "0.5"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    (path,) = tmp_path.glob("*-smoke.json")
    doc = json.loads(path.read_text())
    assert set(doc["results"]) == {"limit", "ke-tuned", "kubequeue-1"}
    assert set(doc["results"]["limit"]) == {"burst", "rate"}
    assert set(doc["results"]["ke-tuned"]) == {"burst", "paced", "rate", "ladder"}
    assert set(doc["results"]["kubequeue-1"]) == {"burst", "paced", "rate", "ladder"}
    for system, phases in doc["results"].items():
        for phase, figures in phases.items():
            assert figures["complete"], (system, phase, figures["note"])
            assert figures["tasks"] == figures["created"] == figures["running"]
            for name in FIGURES:
                assert name in figures, (system, phase, name)
    burst = doc["results"]["kubequeue-1"]["burst"]
    assert burst["tasks"] == 20
    assert set(burst["fleet_cpu_ms_per_task"]) == {"dispatcher", "watcher", "redis"}
    ladder = doc["results"]["kubequeue-1"]["ladder"]["levels"]
    assert set(ladder) == {"10"}
    assert {"idle_ms_mean", "busy_ms_mean", "busy_cpu_ms_per_task"} <= set(ladder["10"])
    assert doc["ratios"]["kubequeue-1"]["burst"]["throughput_created"].keys() == {
        "ke-tuned",
        "limit",
    }
    assert {t["target"].split(" ")[0] for t in doc["targets"]} == {"kubequeue-1"}
    assert doc["versions"]["apache-airflow-providers-cncf-kubernetes"] != "not installed"
    assert (tmp_path / path.name.replace(".json", ".png")).stat().st_size > 0
    assert "| kubequeue-1 |" in (tmp_path / path.name.replace(".json", ".md")).read_text()
    # every process the benchmark started has stopped
    assert _children() <= before


def _children() -> set[str]:
    out = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        # multiprocessing's resource tracker lives as long as this (test) process does
        if "resource_tracker" not in cmdline:
            out.add(f"{proc.pid} {cmdline}")
    return out

from __future__ import annotations

import math

import pytest

from kubequeue.bench import measure
from kubequeue.bench.simproc import PodTimes


def pod(index: int, created: float, running: float = 0.0) -> PodTimes:
    return PodTimes("bench_burst", index, created, running, 0.0)


def test_percentile_interpolates() -> None:
    assert measure.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert measure.percentile([1.0, 2.0], 50) == 1.5
    assert measure.percentile([5.0], 99) == 5.0
    assert math.isnan(measure.percentile([], 50))


def test_quantiles_span_min_to_max() -> None:
    q = measure.quantiles([float(i) for i in range(1000)], points=11)
    assert q[0] == 0.0 and q[-1] == 999.0 and len(q) == 11


def test_join_matches_pods_to_queued_tasks_and_keeps_the_first_pod() -> None:
    tasks = measure.join(
        [10.0, 10.0, 0.0],  # task 2 was never queued
        [pod(1, 12.0, 13.0), pod(0, 11.0, 11.5), pod(1, 11.5, 0.0), pod(2, 20.0)],
    )
    assert tasks == [
        measure.TaskTimes(10.0, 11.0, 11.5),
        measure.TaskTimes(10.0, 11.5, 0.0),  # the earlier of task 1's two pods
    ]


def test_throughput_counts_tasks_that_reached_the_moment() -> None:
    tasks = [measure.TaskTimes(0.0, 1.0, 2.0), measure.TaskTimes(0.0, 2.0, 0.0)]
    assert measure.throughput(tasks, "created") == 1.0  # 2 tasks in 2 s
    assert measure.throughput(tasks, "running") == 0.5  # 1 task in 2 s
    assert measure.throughput([measure.TaskTimes(0.0, 0.0, 0.0)], "created") == 0.0


def test_phase_figures() -> None:
    queued = [100.0] * 4
    pods = [pod(i, 100.0 + 0.01 * (i + 1), 100.5 + 0.01 * i) for i in range(4)]
    f = measure.phase_figures(queued, pods, [1.0, 3.0], cpu_s=0.004, helper_cpu_s=0.0)
    assert f["tasks"] == 4 and f["created"] == 4 and f["running"] == 4
    assert f["throughput_created"] == pytest.approx(100.0)
    assert f["latency_created_ms"]["p50"] == pytest.approx(25.0)
    assert f["latency_created_ms"]["max"] == pytest.approx(40.0)
    assert f["heartbeat_ms"]["mean"] == 2.0 and f["heartbeat_ms"]["count"] == 2
    assert f["scheduler_cpu_ms_per_task"] == pytest.approx(1.0)
    assert len(f["cdf_created_ms"]) == measure.CDF_POINTS


def _results() -> dict:
    def figs(tput: float, p99: float) -> dict:
        return {
            "throughput_created": tput,
            "latency_created_ms": {"p50": p99 / 2, "p95": p99, "p99": p99},
        }

    return {
        "limit": {"burst": figs(1000.0, 20.0), "rate": figs(200.0, 22.0)},
        "ke-default": {"burst": figs(50.0, 900.0)},
        "ke-tuned": {"burst": figs(100.0, 400.0)},
        "kubequeue-4": {"burst": figs(800.0, 30.0), "rate": figs(200.0, 30.0)},
    }


def test_ratios_divide_kubequeue_by_each_baseline() -> None:
    r = measure.ratios(_results())
    assert set(r) == {"kubequeue-4"}
    burst = r["kubequeue-4"]["burst"]["throughput_created"]
    assert burst == {"ke-default": 16.0, "ke-tuned": 8.0, "limit": 0.8}
    # the rate phase has no KE figures in this run: only the limit ratio exists
    assert set(r["kubequeue-4"]["rate"]["throughput_created"]) == {"limit"}


def test_added_latency_subtracts_the_limit() -> None:
    added = measure.added_latency(_results(), "kubequeue-4")
    assert added["p99"] == pytest.approx(8.0)
    assert math.isnan(measure.added_latency(_results(), "kubequeue-9")["p99"])


def test_lookup_and_ratio_tolerate_missing_values() -> None:
    assert math.isnan(measure.lookup({}, "latency_created_ms.p99"))
    assert math.isnan(measure.ratio(1.0, 0.0))


def test_kubequeue_latency_is_split_at_the_dispatch() -> None:
    pods = [PodTimes("bench_rate", 0, 100.05, 100.4, 0.0, dispatched=100.01)]
    f = measure.phase_figures([100.0], pods, [], 0.0, 0.0)
    assert f["latency_dispatched_ms"]["p50"] == pytest.approx(10.0)
    assert f["latency_dispatched_to_created_ms"]["p50"] == pytest.approx(40.0)
    # other systems' pods carry no dispatch time: no split
    assert "latency_dispatched_ms" not in measure.phase_figures([100.0], [pod(0, 100.05)], [], 0, 0)

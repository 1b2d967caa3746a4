"""Turn what the drivers and the simulator recorded into the benchmark's figures.

Per task there are three moments: queued (the driver handed it to the executor, or the limit
run's client was free to send it), created (the simulated API server stored its pod) and
running (the simulated kubelet set phase Running). Every figure below is computed from those
and from the driver's own timings; nothing is read from the systems' own metrics, so all
systems are measured by the same clock in the same way.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubequeue.bench.simproc import PodTimes

PERCENTILES = (50, 95, 99)
CDF_POINTS = 101  # quantiles kept per latency distribution for the plot


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100) of values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def quantiles(values: Sequence[float], points: int = CDF_POINTS) -> list[float]:
    """`points` evenly spaced quantiles (0..100 %), enough to draw a CDF."""
    if not values:
        return []
    ordered = sorted(values)
    return [percentile(ordered, 100.0 * i / (points - 1)) for i in range(points)]


def summary(values: Sequence[float]) -> dict[str, float]:
    out = {f"p{p}": percentile(values, p) for p in PERCENTILES}
    out["mean"] = statistics.fmean(values) if values else math.nan
    out["max"] = max(values) if values else math.nan
    return out


@dataclass(frozen=True)
class TaskTimes:
    queued: float
    created: float
    running: float
    dispatched: float = 0.0


def join(queued_at: Sequence[float], pods: Sequence[PodTimes]) -> list[TaskTimes]:
    """Match pods to tasks by index. A task with several pods (a duplicate create) counts
    its first; tasks never queued are left out; 0.0 marks a moment never seen."""
    first: dict[int, PodTimes] = {}
    for pod in pods:
        seen = first.get(pod.index)
        if seen is None or pod.created < seen.created:
            first[pod.index] = pod
    out = []
    for i, queued in enumerate(queued_at):
        if not queued:
            continue
        pod = first.get(i)
        if pod is None:
            out.append(TaskTimes(queued, 0.0, 0.0))
        else:
            out.append(TaskTimes(queued, pod.created, pod.running, pod.dispatched))
    return out


def throughput(tasks: Sequence[TaskTimes], moment: str) -> float:
    """Tasks per second from the first task queued to the last one reaching `moment`
    ("created" or "running"), counting only tasks that reached it."""
    ends = [getattr(t, moment) for t in tasks if getattr(t, moment)]
    if not ends:
        return 0.0
    span = max(ends) - min(t.queued for t in tasks)
    return len(ends) / span if span > 0 else math.inf


def latencies_ms(tasks: Sequence[TaskTimes], moment: str) -> list[float]:
    return [(getattr(t, moment) - t.queued) * 1000.0 for t in tasks if getattr(t, moment)]


def phase_figures(
    queued_at: Sequence[float],
    pods: Sequence[PodTimes],
    heartbeat_ms: Sequence[float],
    cpu_s: float,
    helper_cpu_s: float,
) -> dict[str, Any]:
    """Every figure of one system in one phase."""
    tasks = join(queued_at, pods)
    n = len(tasks)
    created = latencies_ms(tasks, "created")
    running = latencies_ms(tasks, "running")
    dispatched = latencies_ms(tasks, "dispatched")
    out: dict[str, Any] = {
        "tasks": n,
        "created": len(created),
        "running": len(running),
        "throughput_created": throughput(tasks, "created"),
        "throughput_running": throughput(tasks, "running"),
        "latency_created_ms": summary(created),
        "latency_running_ms": summary(running),
        "heartbeat_ms": summary(heartbeat_ms) | {"count": len(heartbeat_ms)},
        "scheduler_cpu_ms_per_task": cpu_s * 1000.0 / n if n else math.nan,
        "helper_cpu_ms_per_task": helper_cpu_s * 1000.0 / n if n else math.nan,
        "cdf_created_ms": quantiles(created),
        "cdf_running_ms": quantiles(running),
    }
    if dispatched:  # kubequeue: split queued → created at the dispatcher's claim
        out["latency_dispatched_ms"] = summary(dispatched)
        out["latency_dispatched_to_created_ms"] = summary(
            [(t.created - t.dispatched) * 1000.0 for t in tasks if t.dispatched and t.created]
        )
    return out


# figure path -> True when higher is better (used for the ratio tables' wording only)
RATIO_FIGURES: dict[str, bool] = {
    "throughput_created": True,
    "throughput_running": True,
    "latency_created_ms.p99": False,
    "latency_running_ms.p99": False,
    "heartbeat_ms.mean": False,
    "scheduler_cpu_ms_per_task": False,
}
BASELINES = ("ke-default", "ke-tuned", "limit")


def lookup(figures: Mapping[str, Any], path: str) -> float:
    value: Any = figures
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return math.nan
        value = value[part]
    return float(value)


def ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def ratios(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """For every kubequeue system, phase and figure: its value divided by each baseline's."""
    out: dict[str, Any] = {}
    for system, phases in results.items():
        if not system.startswith("kubequeue"):
            continue
        for phase, figures in phases.items():
            for path in RATIO_FIGURES:
                mine = lookup(figures, path)
                for base in BASELINES:
                    theirs = lookup(results.get(base, {}).get(phase, {}), path)
                    r = ratio(mine, theirs)
                    if not math.isnan(r):
                        out.setdefault(system, {}).setdefault(phase, {}).setdefault(path, {})[
                            base
                        ] = r
    return out


def added_latency(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]], system: str, phase: str = "rate"
) -> dict[str, float]:
    """Latency queued → created of `system` minus the limit run's at the same percentile:
    what the system adds on top of the API's own path (the limit sends each create the moment
    its task is queued)."""
    mine = results.get(system, {}).get(phase, {}).get("latency_created_ms", {})
    base = results.get("limit", {}).get(phase, {}).get("latency_created_ms", {})
    return {f"p{p}": mine.get(f"p{p}", math.nan) - base.get(f"p{p}", math.nan) for p in PERCENTILES}

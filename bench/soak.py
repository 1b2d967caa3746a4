"""`--soak N`: N tasks through kubequeue (the largest replica count), arriving at a steady
rate, to see whether the dispatchers' memory stays flat. RSS "at start" is read after a
1,000-task warm-up (imports, connection pools and caches are filled by then), "at end" right
after the last task's pod is Running."""

from __future__ import annotations

import math
from typing import Any

from kubequeue.bench.plan import Phase, Settings, System
from kubequeue.bench.run import Sink, run_system

WARMUP = 1000


def run_soak(settings: Settings, sink: Sink) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    replicas = max(settings.replicas)
    phases = (
        Phase("warmup", WARMUP, rate=settings.soak_rate, task_seconds=0.5),
        Phase("soak", settings.soak, rate=settings.soak_rate, task_seconds=0.5),
    )
    system = System(f"kubequeue-{replicas}-soak", "kubequeue", replicas=replicas, phases=phases)
    with tempfile.TemporaryDirectory(prefix="kubequeue-soak-") as tmp:
        results = run_system(system, settings, Path(tmp), sink)
    figures = results["soak"]
    rss = figures["dispatcher_rss_mib"]
    start, end = rss["start"], rss["end"]
    return {
        "system": system.name,
        "tasks": settings.soak,
        "rate": settings.soak_rate,
        "dispatcher_rss_mib_start": start,
        "dispatcher_rss_mib_end": end,
        "rss_growth": (end - start) / start if start else math.nan,
        "throughput_created": figures["throughput_created"],
        "complete": figures["complete"],
    }

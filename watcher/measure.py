"""Prometheus updates for published events (kubequeue/metrics.py defines the metrics).

Each start-up phase is observed once per queueing, when the event ending the phase is
published, as the difference between two event times (see each histogram's help text for
which clock each moment comes from). Negative spans (clock skew between the executor,
dispatcher and watcher hosts) are clamped to zero rather than dropped, so counts stay one
per task per phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Histogram
from prometheus_client.metrics import MetricWrapperBase

from kubequeue import metrics
from kubequeue.messages import EventType
from kubequeue.watcher.tracker import Emitted

# event ending the phase → (histogram, phase starts at "queued" (True) or at the previous
# milestone (False))
PHASES: dict[EventType, tuple[Histogram, bool]] = {
    EventType.DISPATCHED: (metrics.QUEUED_TO_DISPATCHED, True),
    EventType.POD_CREATED: (metrics.DISPATCHED_TO_CREATED, False),
    EventType.SCHEDULED: (metrics.CREATED_TO_SCHEDULED, False),
    EventType.STARTED: (metrics.SCHEDULED_TO_STARTED, False),
    EventType.RUNNING: (metrics.STARTUP, True),
}


def record(emitted: Iterable[Emitted]) -> None:
    for e in emitted:
        event = e.event
        phase = PHASES.get(event.type)
        if phase is not None:
            histogram, from_queued = phase
            start = e.queued_at if from_queued else e.prev_at
            if start is not None:
                _child(histogram, event.queue, event.pool).observe(max(event.at - start, 0.0))
        elif event.terminal:
            _child(metrics.TASKS_FINISHED, event.queue, event.pool, event.type.value).inc()
            if event.type is EventType.FAILED:
                reason = event.reason.value if event.reason else "Unknown"
                _child(metrics.TASK_FAILURES, event.queue, event.pool, reason).inc()


# (metric, label values) → that child. `.labels()` takes a lock and builds a key on every
# call, once per published event; the children live as long as the process (nothing removes
# these metrics' children), and the label values are bounded (queues, pools, reasons).
_children: dict[tuple[object, ...], Any] = {}


def _child(metric: MetricWrapperBase, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


class InFlightGauge:
    """Sets kubequeue_pods_in_flight from a full count, zeroing (queue, pool) pairs that
    dropped out, so a finished queue does not keep showing its last value."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def set(self, counts: Mapping[tuple[str, str], int]) -> None:
        for labels in self._seen - set(counts):
            metrics.PODS_IN_FLIGHT.labels(*labels).set(0)
        for labels, n in counts.items():
            metrics.PODS_IN_FLIGHT.labels(*labels).set(n)
        self._seen |= set(counts)

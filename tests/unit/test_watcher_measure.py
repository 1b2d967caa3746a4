"""watcher.measure: one observation per published event, under that event's labels."""

from __future__ import annotations

from prometheus_client import REGISTRY

from kubequeue.messages import EventType, Reason, TaskEvent
from kubequeue.watcher import measure
from kubequeue.watcher.tracker import Emitted

QUEUED = 1_790_000_000.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def emitted(kind: EventType, queue: str, pool: str, reason: Reason | None = None) -> Emitted:
    event = TaskEvent(type=kind, id="q", queue=queue, pool=pool, at=QUEUED + 2, reason=reason)
    return Emitted(event, prev_at=QUEUED + 1, queued_at=QUEUED)


def test_each_event_counts_under_its_own_queue_and_pool() -> None:
    startup = "kubequeue_task_startup_seconds_count"
    finished = "kubequeue_tasks_finished_total"
    a, b = {"queue": "qa-m", "pool": "pa-m"}, {"queue": "qb-m", "pool": "pb-m"}
    before = [sample(startup, **a), sample(startup, **b)]
    for _ in range(2):  # the second round goes through the children already looked up
        measure.record([emitted(EventType.RUNNING, "qa-m", "pa-m"),
                        emitted(EventType.RUNNING, "qb-m", "pb-m"),
                        emitted(EventType.RUNNING, "qb-m", "pb-m"),
                        emitted(EventType.FAILED, "qa-m", "pa-m", Reason.OOM_KILLED)])  # fmt: skip
    assert [sample(startup, **a), sample(startup, **b)] == [before[0] + 2, before[1] + 4]
    assert sample("kubequeue_task_startup_seconds_sum", **b) >= 8.0
    assert sample(finished, **a, outcome="failed") == 2
    assert sample("kubequeue_task_failures_total", **a, reason="OOMKilled") == 2
    assert sample(finished, **b, outcome="failed") == 0

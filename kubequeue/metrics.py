"""Every Prometheus metric kubequeue exports, defined once.

Help texts name the two moments each latency spans and where each moment is observed;
labels are bounded (queue, pool, outcome, reason, code) and never carry a task id. The
dispatcher and the watcher each expose the ones they update on their own /metrics port;
`deploy/` alerts and `grafana/` dashboards use exactly these names.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

# Start-up latency buckets: 10 ms .. 10 min (a workload token dies at 600 s by default).
LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
QP = ("queue", "pool")

# --- start-up phases, observed by the watcher -------------------------------------------
QUEUED_TO_DISPATCHED = Histogram(
    "kubequeue_queued_to_dispatched_seconds",
    "From the executor queueing the task (TaskSpec.queued_at, executor clock) to a "
    "dispatcher taking its spec off the queue (pod annotation kubequeue.io/dispatched-at, "
    "dispatcher clock). Observed by the watcher when it first sees the pod.",
    QP,
    buckets=LATENCY_BUCKETS,
)
DISPATCHED_TO_CREATED = Histogram(
    "kubequeue_dispatched_to_created_seconds",
    "From a dispatcher taking the spec (kubequeue.io/dispatched-at, dispatcher clock) to "
    "the watcher first seeing the pod through its watch (ADDED event, watcher clock).",
    QP,
    buckets=LATENCY_BUCKETS,
)
CREATED_TO_SCHEDULED = Histogram(
    "kubequeue_created_to_scheduled_seconds",
    "From the watcher first seeing the pod to the watcher first seeing its PodScheduled "
    "condition True (both watcher clock).",
    QP,
    buckets=LATENCY_BUCKETS,
)
SCHEDULED_TO_STARTED = Histogram(
    "kubequeue_scheduled_to_started_seconds",
    "From the watcher first seeing PodScheduled=True to the watcher first seeing every "
    "container in state running (both watcher clock); includes image pull and start.",
    QP,
    buckets=LATENCY_BUCKETS,
)
STARTUP = Histogram(
    "kubequeue_task_startup_seconds",
    "Task start-up latency, end to end: from the executor queueing the task "
    "(TaskSpec.queued_at, executor clock) to the watcher first seeing the pod in phase "
    "Running (watcher clock).",
    QP,
    buckets=LATENCY_BUCKETS,
)

# --- outcomes, observed by the watcher (and the dispatcher for specs that got no pod) ---
TASKS_FINISHED = Counter(
    "kubequeue_tasks_finished_total",
    "Tasks whose try ended, by outcome (succeeded|failed|requeued): counted once per "
    "queueing when its terminal event is published to the events stream.",
    (*QP, "outcome"),
)
TASK_FAILURES = Counter(
    "kubequeue_task_failures_total",
    "Failed tries by reason (ExitCode, OOMKilled, Evicted, Unschedulable, ImagePullBackOff, "
    "Deleted, Expired, UnknownQueue, Invalid, ...), counted when the failure event is published.",
    (*QP, "reason"),
)
PODS_IN_FLIGHT = Gauge(
    "kubequeue_pods_in_flight",
    "Task pods that exist and have not reached a terminal phase, as last seen by the "
    "watcher's list+watch.",
    QP,
)
QUEUE_DEPTH = Gauge(
    "kubequeue_queue_depth",
    "TaskSpecs waiting in the RQ queue of an Airflow queue (LLEN at scrape time).",
    ("queue",),
)
OLDEST_QUEUED_AGE = Gauge(
    "kubequeue_oldest_queued_age_seconds",
    "Age of the oldest TaskSpec still waiting in the queue: now minus its queued_at, at "
    "scrape time. Airflow revokes a task when this reaches [scheduler] task_queued_timeout.",
    ("queue",),
)

# --- dispatcher ------------------------------------------------------------------------
DISPATCHES = Counter(
    "kubequeue_dispatches_total",
    "Specs a dispatcher finished handling, by outcome (created|exists|failed|expired|revoked|"
    "retry): counted when the pod create call returns or the spec is dropped.",
    (*QP, "outcome"),
)
API_ERRORS = Counter(
    "kubequeue_dispatcher_api_errors_total",
    "Kubernetes API errors a dispatcher got on pod create, by HTTP status code "
    "(0 = unreachable); retried ones included.",
    (*QP, "code"),
)
CREATE_SECONDS = Histogram(
    "kubequeue_dispatcher_create_seconds",
    "From a dispatcher sending the pod create request to the API answering it (dispatcher "
    "clock), retries included.",
    QP,
    buckets=LATENCY_BUCKETS,
)
QUEUED_TO_CREATE_SENT = Histogram(
    "kubequeue_queued_to_create_sent_seconds",
    "Latency kubequeue adds: from the executor queueing the task (TaskSpec.queued_at) to "
    "a dispatcher sending the first pod create request (dispatcher clock).",
    QP,
    buckets=LATENCY_BUCKETS,
)

# --- watcher ---------------------------------------------------------------------------
# Not in the default registry on import: an unlabelled gauge exports a 0 sample at once, and
# a dispatcher (which imports this module too) must not look like a watcher that lost the
# election. The watcher registers it with `export_watcher_metrics()`.
WATCHER_LEADER = Gauge(
    "kubequeue_watcher_leader",
    "1 while this watcher replica holds the leader Lease and publishes events, else 0.",
    registry=None,
)
WATCH_RESTARTS = Counter(
    "kubequeue_watch_restarts_total",
    "Times the watcher re-listed pods, by reason (gone = 410 Gone, error, start).",
    ("reason",),
)


def export_watcher_metrics() -> None:
    """Add the watcher-only metrics to the default registry (idempotent)."""
    if REGISTRY.get_sample_value("kubequeue_watcher_leader") is None:
        REGISTRY.register(WATCHER_LEADER)


def set_backlog(rows: Iterable[tuple[str, int, float | None]], now: float) -> None:
    """QUEUE_DEPTH and OLDEST_QUEUED_AGE from `queues.backlog()` rows, at time `now`; a
    queued_at ahead of this clock (skew between hosts) counts as age 0."""
    for queue, depth, oldest in rows:
        QUEUE_DEPTH.labels(queue).set(depth)
        OLDEST_QUEUED_AGE.labels(queue).set(max(now - oldest, 0.0) if oldest else 0.0)

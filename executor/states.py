"""Task event -> what the executor tells Airflow. A table plus two rules, tested on its own.

What Airflow hears from an executor only means "the worker process is running / ended":
the task's own state is written by the worker through the Execution API. So SUCCEEDED
becomes `success` (the worker exited 0; it does so even when the task failed) and FAILED
becomes `fail`: if the database still says queued or running for that try, the scheduler
then fails or retries the task as killed externally, which is how a pod that never ran its
task (Unschedulable, ImagePullBackOff, evicted or deleted before start) ends the try.

The two rules, like the KubernetesExecutor's `pod_launch_failure_retries`: a pod that failed
for a transient reason *before its task could have started* is launched again under a new
queueing id without using a try (RELAUNCH), as long as launches are left; and the watcher's
REQUEUED means the same. With no launch left, both are plain failures.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from kubequeue.messages import EventType, Reason, TaskEvent, TaskRecord


class Action(StrEnum):
    NOTE = "note"  # progress (dispatched, pod created, scheduled, started): tell Airflow nothing
    RUNNING = "running"  # running_state(key, info=queueing id)
    SUCCESS = "success"  # the worker process ended normally
    FAIL = "fail"  # the try ended without the worker finishing normally
    RELAUNCH = "relaunch"  # a transient launch failure: new pod, same try


TABLE: dict[EventType, Action] = {
    EventType.DISPATCHED: Action.NOTE,
    EventType.POD_CREATED: Action.NOTE,
    EventType.SCHEDULED: Action.NOTE,
    EventType.STARTED: Action.NOTE,
    EventType.RUNNING: Action.RUNNING,
    EventType.SUCCEEDED: Action.SUCCESS,
    EventType.FAILED: Action.FAIL,
    EventType.REQUEUED: Action.RELAUNCH,
}

# Once a container has started, the task process may have told the API it runs: from then
# on a failure uses up the try, whatever its reason.
STARTED_TYPES = frozenset({EventType.STARTED, EventType.RUNNING})

# Progress the executor acts on in no way: its reads pass these over without parsing them.
IGNORED_TYPES = frozenset(
    t.value for t, action in TABLE.items() if action is Action.NOTE and t not in STARTED_TYPES
)

# Failures that no relaunch can fix.
NEVER_RELAUNCH = frozenset(
    {
        Reason.REVOKED,
        Reason.EXPIRED,
        Reason.UNKNOWN_QUEUE,
        Reason.INVALID,
        Reason.MALFORMED_SPEC,
        Reason.FORBIDDEN,
    }
)


def decide(
    event_type: EventType,
    reason: Reason | None,
    *,
    started: bool,
    can_relaunch: bool,
    relaunch_reasons: Collection[Reason],
) -> Action:
    """`started`: a STARTED/RUNNING event was seen for this queueing before. `can_relaunch`:
    a launch is left and the executor still holds the spec (not after adoption)."""
    action = TABLE[event_type]
    if (
        action is Action.FAIL
        and not started
        and reason in relaunch_reasons
        and reason not in NEVER_RELAUNCH
    ):
        action = Action.RELAUNCH
    if action is Action.RELAUNCH and (not can_relaunch or reason in NEVER_RELAUNCH):
        action = Action.FAIL
    return action


def describe(
    event_type: EventType,
    reason: Reason | None,
    message: str,
    pod: str = "",
    namespace: str = "",
    node: str = "",
    exit_code: int | None = None,
) -> str:
    """One line for the scheduler log, the audit log and the task log."""
    where = f"pod {namespace}/{pod}" if pod else "no pod"
    if node:
        where += f" on node {node}"
    what = reason.value if reason else event_type.value
    if exit_code is not None:
        what += f" (exit code {exit_code})"
    return f"{where}: {what}" + (f": {message}" if message else "")


def record_event(record: TaskRecord | None) -> TaskEvent | None:
    """A task record's last state as the event that set it (None while only queued)."""
    if record is None:
        return None
    try:
        event_type = EventType(record.state)
    except ValueError:  # "queued": nothing happened yet
        return None
    return TaskEvent(
        type=event_type,
        id=record.id,
        key=record.key,
        queue=record.queue,
        pool=record.pool,
        at=record.at,
        pod=record.pod,
        namespace=record.namespace,
        reason=record.reason,
        message=record.message,
    )


def describe_event(event: TaskEvent) -> str:
    return describe(
        event.type,
        event.reason,
        event.message,
        event.pod,
        event.namespace,
        event.node,
        event.exit_code,
    )

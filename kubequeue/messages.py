"""Everything that crosses a process or queue boundary, as typed, versioned models.

A `TaskSpec` goes from the executor to a dispatcher through an RQ queue; a `TaskEvent`
goes from a dispatcher or the watcher to the executor through the events stream. Both are
JSON (never pickle) with a version field `v`; parsing rejects unknown versions and
malformed input with a `SpecError` that says what is wrong.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubequeue.errors import SpecError, truncate

SPEC_VERSION: Final = 1
EVENT_VERSION: Final = 1
M = TypeVar("M", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskKey(_Frozen):
    """Airflow's TaskInstanceKey. Not unique per queueing: reschedules reuse it whole."""

    dag_id: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    try_number: int = Field(ge=0)
    map_index: int = Field(default=-1, ge=-1)

    def __str__(self) -> str:
        mi = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{mi} run={self.run_id} try={self.try_number}"


class TaskSpec(_Frozen):
    """One queueing of one task instance: what a dispatcher needs to create its pod."""

    v: Literal[1] = SPEC_VERSION
    # The queueing's identity: Airflow's external_executor_id, a fresh UUID each time the
    # scheduler queues the task. Pod names, RQ job ids and events are keyed on it.
    # <= 63 characters, alphanumeric at both ends: it is also the value of a pod label.
    id: str = Field(
        min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$"
    )
    key: TaskKey
    queue: str = Field(min_length=1)
    # argv of the task container, e.g. python -m airflow.sdk.execution_time.execute_workload
    # --json-string '<workload>'. The workload JSON carries the task's token.
    command: list[str] = Field(min_length=1)
    # Extra environment for the task container (execution API URL, [core] executor, ...).
    env: dict[str, str] = Field(default_factory=dict)
    # executor_config["pod_override"] serialized as the Kubernetes API takes it (camelCase).
    pod_override: dict[str, Any] | None = None
    # executor_config["pod_template_file"]: a path the dispatcher can read.
    pod_template_file: str | None = None
    priority: int = 0
    queued_at: float = Field(description="epoch seconds when the executor queued the task")
    expires_at: float = Field(
        description="epoch seconds after which the workload token is dead "
        "(queued_at + [scheduler] task_queued_timeout)"
    )

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def parse(cls, raw: str | bytes) -> TaskSpec:
        return _parse(cls, raw, "TaskSpec", SPEC_VERSION)


class EventType(StrEnum):
    """One name per transition; the values are what the stream stores."""

    DISPATCHED = "dispatched"  # a dispatcher took the spec off its queue
    POD_CREATED = "pod_created"  # the pod was first seen through the watch
    SCHEDULED = "scheduled"  # PodScheduled=True seen
    STARTED = "started"  # all containers started (ContainersReady / running state)
    RUNNING = "running"  # phase Running seen
    SUCCEEDED = "succeeded"  # the worker process exited 0
    FAILED = "failed"  # the try ended without the worker finishing normally
    REQUEUED = "requeued"  # transient pod-launch failure: requeued without using a try


TERMINAL = frozenset({EventType.SUCCEEDED, EventType.FAILED})


class Reason(StrEnum):
    """Why a task failed. A bounded set: these are also metric label values."""

    EXIT_CODE = "ExitCode"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL = "ImagePullBackOff"
    DELETED = "Deleted"
    EXPIRED = "Expired"
    UNKNOWN_QUEUE = "UnknownQueue"
    INVALID = "Invalid"  # the API answered 400/422, or the override could not be merged
    FORBIDDEN = "Forbidden"
    MALFORMED_SPEC = "MalformedSpec"
    REVOKED = "Revoked"
    NODE_LOST = "NodeLost"
    UNKNOWN = "Unknown"


class TaskEvent(_Frozen):
    """One transition of one queueing, published to the events stream."""

    v: Literal[1] = EVENT_VERSION
    type: EventType
    id: str  # the queueing's identity (TaskSpec.id); may be "" for an unparseable spec
    key: TaskKey | None = None  # None only when the spec could not be parsed
    queue: str = ""
    pool: str = ""
    at: float = Field(description="epoch seconds when the transition was observed")
    pod: str = ""
    namespace: str = ""
    node: str = ""
    reason: Reason | None = None
    message: str = ""
    exit_code: int | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def parse(cls, raw: str | bytes) -> TaskEvent:
        return _parse(cls, raw, "TaskEvent", EVENT_VERSION)

    @classmethod
    def from_dict(cls, data: Any) -> TaskEvent:
        """From decoded JSON, with parse's errors (for a reader that peeked at it first)."""
        return _parse_dict(cls, data, "TaskEvent", EVENT_VERSION)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


def _parse(model: type[M], raw: str | bytes, what: str, version: int) -> M:
    try:
        # pydantic's own JSON parser validates in one pass: the common, valid case costs a
        # third less than json.loads + model_validate. Anything it rejects is parsed again
        # below, only to say precisely what is wrong.
        return model.model_validate_json(raw)
    except ValidationError:
        pass
    return _parse_explained(model, raw, what, version)


def _parse_dict(model: type[M], data: Any, what: str, version: int) -> M:
    """A model from already-decoded JSON (e.g. after peeking at a field), with the same
    SpecErrors as parsing the text."""
    if not isinstance(data, dict):
        raise SpecError(f"{what} must be a JSON object, got {type(data).__name__}")
    if data.get("v") != version:
        raise SpecError(
            f"{what} has unknown version v={data.get('v')!r}; this kubequeue reads v={version}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in e.errors()[:5]
        )
        raise SpecError(f"{what} is invalid: {truncate(problems, 400)}") from e


def _parse_explained(model: type[M], raw: str | bytes, what: str, version: int) -> M:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"{what} is not valid JSON: {truncate(str(e), 200)}") from e
    return _parse_dict(model, data, what, version)


class TaskRecord(_Frozen):
    """The last known state of one queueing, kept in the tasks hash until the executor has
    handled its terminal event. It is how a restarted executor adopts work and how events
    lost to stream trimming are recovered."""

    v: Literal[1] = EVENT_VERSION
    id: str
    key: TaskKey | None = None
    queue: str = ""
    pool: str = ""
    state: str = "queued"  # "queued" until the first event, then that event's type
    at: float = 0.0
    pod: str = ""
    namespace: str = ""
    reason: Reason | None = None
    message: str = ""

    @classmethod
    def queued(cls, spec: TaskSpec, pool: str = "") -> TaskRecord:
        return cls(id=spec.id, key=spec.key, queue=spec.queue, pool=pool, at=spec.queued_at)

    @classmethod
    def from_event(cls, event: TaskEvent) -> TaskRecord:
        return cls(
            id=event.id,
            key=event.key,
            queue=event.queue,
            pool=event.pool,
            state=event.type.value,
            at=event.at,
            pod=event.pod,
            namespace=event.namespace,
            reason=event.reason,
            message=event.message,
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def parse(cls, raw: str | bytes) -> TaskRecord:
        return _parse(cls, raw, "TaskRecord", EVENT_VERSION)

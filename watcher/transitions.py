"""Pod JSON → task transitions: a pure, table-driven function of the pod object.

A pod's status proves that some milestones of the task's start-up have happened. They are
cumulative and ordered (`RANK`): dispatched → pod created → scheduled → containers started →
running → terminal. `steps(pod, last, deleted)` returns every milestone the pod proves that
ranks above `last` (the last event already published for it), so a relist after a gap
reports what was missed exactly once, and an event seen twice reports nothing.

Each step carries the time the pod itself records for it (creationTimestamp, condition and
container timestamps; second precision, API/kubelet clock), used when the watcher catches up
on transitions it did not see happen; a transition seen live is stamped with the watch's own
clock by the caller.

How a terminal pod ended is decided by `FAILURE_RULES`, read top to bottom, first match wins.
Why a Pending pod is stuck (for fail-fast) is decided by `pending_block`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubequeue import naming
from kubequeue.errors import truncate
from kubequeue.messages import EventType, Reason

Pod = dict[str, Any]

# Order of the milestones. Both terminal types share the top rank: one terminal per queueing.
RANK: dict[EventType, int] = {
    EventType.DISPATCHED: 0,
    EventType.POD_CREATED: 1,
    EventType.SCHEDULED: 2,
    EventType.STARTED: 3,
    EventType.RUNNING: 4,
    EventType.SUCCEEDED: 5,
    EventType.FAILED: 5,
}
TERMINAL_RANK = 5

# Container waiting reasons that mean the image cannot be pulled (kubelet's names).
IMAGE_PULL_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
)
# Container termination reasons that mean the container never ran its command.
NEVER_STARTED = frozenset({"ContainerCannotRun", "StartError"})


@dataclass(frozen=True)
class Step:
    """One milestone the pod proves. `at` is the pod's own timestamp for it, when it has one."""

    type: EventType
    at: float | None = None
    reason: Reason | None = None
    message: str = ""
    exit_code: int | None = None


def rank(last: EventType | None) -> int:
    return -1 if last is None else RANK.get(last, -1)


# Timestamps already parsed → epoch seconds (None: unreadable). A pod's timestamps come back
# in every watch event of it, and second-precision ones are shared by the pods of a burst;
# parsing them again was a visible part of the watcher's CPU. Bounded: cleared when full.
_TIMES: dict[str, float | None] = {}
TIMES_KEPT = 20_000


def parse_time(value: object) -> float | None:
    """Epoch seconds (as the dispatcher writes its annotations) or RFC 3339
    (`2026-11-25T10:00:00Z`, optional fraction, as the API writes) → epoch seconds; None if
    absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _TIMES[value]
    except KeyError:
        pass
    if len(_TIMES) >= TIMES_KEPT:
        _TIMES.clear()
    parsed = _TIMES[value] = _parse_time(value)
    return parsed


def _parse_time(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --- accessors (the pod is the API's JSON: camelCase, any field may be missing) -----------


def _status(pod: Pod) -> dict[str, Any]:
    return pod.get("status") or {}


def _meta(pod: Pod) -> dict[str, Any]:
    return pod.get("metadata") or {}


def phase(pod: Pod) -> str:
    return str(_status(pod).get("phase") or "Pending")


# The accessors hand out the pod's own dicts and lists, not copies: nothing here or in the
# tracker changes a pod, and copying them was a visible share of the cost per watch event.


def condition(pod: Pod, kind: str) -> dict[str, Any] | None:
    for cond in _status(pod).get("conditions") or ():
        if cond.get("type") == kind:
            return cond
    return None


def containers(pod: Pod, init: bool = False) -> list[dict[str, Any]]:
    field = "initContainerStatuses" if init else "containerStatuses"
    return list(_status(pod).get(field) or ())


def _state(cs: dict[str, Any], which: str) -> dict[str, Any] | None:
    state = (cs.get("state") or {}).get(which)
    return state if isinstance(state, dict) else None


def _has_started(cs: dict[str, Any]) -> bool:
    if _state(cs, "running") is not None:
        return True
    # A container that never ran (deleted while waiting, failed to start) has no startedAt.
    term = _state(cs, "terminated")
    return (
        term is not None and bool(term.get("startedAt")) and term.get("reason") not in NEVER_STARTED
    )


def _terminations(pod: Pod) -> Iterator[tuple[str, dict[str, Any]]]:
    for cs in containers(pod):
        term = _state(cs, "terminated")
        if term is not None:
            yield str(cs.get("name") or "?"), term


# --- milestones before the terminal one ---------------------------------------------------


def is_scheduled(pod: Pod) -> bool:
    if (pod.get("spec") or {}).get("nodeName"):
        return True
    cond = condition(pod, "PodScheduled")
    return cond is not None and cond.get("status") == "True"


def all_started(pod: Pod) -> bool:
    """Every container of the pod has started (is running, or ran and terminated)."""
    wanted = {c.get("name") for c in (pod.get("spec") or {}).get("containers") or ()}
    started = {cs.get("name") for cs in containers(pod) if _has_started(cs)}
    return bool(started) and wanted <= started


def _started_at(pod: Pod) -> float | None:
    times = [
        parse_time((_state(cs, "running") or _state(cs, "terminated") or {}).get("startedAt"))
        for cs in containers(pod)
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _scheduled_at(pod: Pod) -> float | None:
    cond = condition(pod, "PodScheduled")
    return parse_time(cond.get("lastTransitionTime")) if cond else None


def _finished_at(pod: Pod) -> float | None:
    known = [t for _, term in _terminations(pod) if (t := parse_time(term.get("finishedAt")))]
    return max(known) if known else None


def _dispatched_at(pod: Pod) -> float | None:
    return parse_time((_meta(pod).get("annotations") or {}).get(naming.ANN_DISPATCHED_AT))


def _created_at(pod: Pod) -> float | None:
    return parse_time(_meta(pod).get("creationTimestamp"))


def _exists(pod: Pod) -> bool:
    return True


def _is_running(pod: Pod) -> bool:
    # Phase Running alone is not enough: it is set once *one* container runs. A pod that
    # already ended (Succeeded/Failed) with every container started went through Running.
    return phase(pod) in ("Running", "Succeeded", "Failed") and all_started(pod)


# The non-terminal milestones, in order: (event, does the pod prove it?, the pod's own
# time for it). A row is only reached when every row above it holds.
MILESTONES: tuple[tuple[EventType, Callable[[Pod], bool], Callable[[Pod], float | None]], ...] = (
    (EventType.DISPATCHED, _exists, _dispatched_at),
    (EventType.POD_CREATED, _exists, _created_at),
    (EventType.SCHEDULED, is_scheduled, _scheduled_at),
    (EventType.STARTED, all_started, _started_at),
    (EventType.RUNNING, _is_running, _started_at),
)


LAST_PROGRESS_RANK = RANK[MILESTONES[-1][0]]


def progress(pod: Pod, after: int = -1) -> list[Step]:
    """The non-terminal milestones the pod proves that rank above `after`, in order. Every
    row is checked (a row counts only when all rows above it hold), but only the new ones
    look up their times."""
    out: list[Step] = []
    for event, proven, when in MILESTONES:
        if not proven(pod):
            break
        if RANK[event] > after:
            out.append(Step(event, when(pod)))
    return out


# --- the terminal milestone --------------------------------------------------------------


def _container_exit(pod: Pod) -> tuple[str, dict[str, Any]] | None:
    """The first container that terminated with a non-zero exit code."""
    for name, term in _terminations(pod):
        if int(term.get("exitCode") or 0) != 0:
            return name, term
    return None


def _node(pod: Pod) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _disruption(pod: Pod) -> str:
    cond = condition(pod, "DisruptionTarget")
    return str(cond.get("reason") or "") if cond and cond.get("status") == "True" else ""


def _msg_exit(pod: Pod) -> tuple[str, int | None]:
    found = _container_exit(pod)
    if found is None:
        detail = _status(pod).get("message") or _status(pod).get("reason") or "no exit code"
        return f"pod failed ({truncate(str(detail), 300)}); see the task log", None
    name, term = found
    code = int(term.get("exitCode") or 0)
    why = term.get("reason") or "Error"
    extra = f": {truncate(str(term['message']), 300)}" if term.get("message") else ""
    return f"container {name} exited with code {code} ({why}){extra}; see the task log", code


def _msg_oom(pod: Pod) -> tuple[str, int | None]:
    name, code = next(
        (
            (n, int(t.get("exitCode") or 137))
            for n, t in _terminations(pod)
            if t.get("reason") == "OOMKilled"
        ),
        ("?", 137),
    )
    return (
        f"container {name} was killed for using more memory than its limit (OOMKilled); "
        "raise resources.limits.memory in the pool or the task's pod_override",
        code,
    )


def _msg_evicted(pod: Pod) -> tuple[str, int | None]:
    detail = _status(pod).get("message") or _disruption(pod) or "no message"
    return f"pod was evicted from node {_node(pod) or '?'}: {truncate(str(detail), 300)}", None


def _msg_node_lost(pod: Pod) -> tuple[str, int | None]:
    return (
        f"node {_node(pod) or '?'} stopped reporting (pod phase {phase(pod)}, "
        f"{_status(pod).get('reason') or _disruption(pod) or 'node lost'}); the task may be "
        "retried on another node",
        None,
    )


def _msg_deleted(pod: Pod) -> tuple[str, int | None]:
    meta = _meta(pod)
    return (
        f"pod {meta.get('namespace', '?')}/{meta.get('name', '?')} was deleted before the task "
        "finished (by a user, kubectl or another controller)",
        None,
    )


def _is_evicted(pod: Pod, deleted: bool) -> bool:
    return _status(pod).get("reason") == "Evicted" or _disruption(pod) in (
        "EvictionByEvictionAPI",
        "TerminationByKubelet",
        "PreemptionByScheduler",
    )


def _is_node_lost(pod: Pod, deleted: bool) -> bool:
    return (
        phase(pod) == "Unknown"
        or _status(pod).get("reason") == "NodeLost"
        or _disruption(pod) == "DeletionByTaintManager"
    )


def _is_deleted(pod: Pod, deleted: bool) -> bool:
    return deleted or bool(_meta(pod).get("deletionTimestamp"))


def _is_oom(pod: Pod, deleted: bool) -> bool:
    return any(term.get("reason") == "OOMKilled" for _, term in _terminations(pod))


def _any(pod: Pod, deleted: bool) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """A row of the failure table: if `matches(pod, deleted)`, the task failed for `reason`,
    and `message(pod)` gives the text a human acts on (and the exit code, if any)."""

    matches: Callable[[Pod, bool], bool]
    reason: Reason
    message: Callable[[Pod], tuple[str, int | None]]


# Read top to bottom, first match wins. Disruptions come before "deleted" because a pod the
# node lifecycle controller or the kubelet evicts is also deleted; a container's own exit
# comes last because a deleted or evicted pod's containers exit too (SIGTERM, 143).
FAILURE_RULES: tuple[Rule, ...] = (
    Rule(_is_evicted, Reason.EVICTED, _msg_evicted),
    Rule(_is_node_lost, Reason.NODE_LOST, _msg_node_lost),
    Rule(_is_deleted, Reason.DELETED, _msg_deleted),
    Rule(_is_oom, Reason.OOM_KILLED, _msg_oom),
    Rule(_any, Reason.EXIT_CODE, _msg_exit),
)


def outcome(pod: Pod, deleted: bool = False) -> Step | None:
    """The terminal step the pod proves, or None while it may still run. A pod that is gone
    (`deleted`) is always terminal; one that succeeded before it was deleted still succeeded."""
    ph = phase(pod)
    if ph == "Succeeded":
        return Step(EventType.SUCCEEDED, _finished_at(pod))
    if ph not in ("Failed", "Unknown") and not deleted:
        return None
    for rule in FAILURE_RULES:
        if rule.matches(pod, deleted):
            message, code = rule.message(pod)
            at = None if deleted else _finished_at(pod)
            return Step(EventType.FAILED, at, rule.reason, message, code)
    raise AssertionError("the last failure rule matches every pod")  # pragma: no cover


def steps(pod: Pod, last: EventType | None = None, deleted: bool = False) -> list[Step]:
    """Every milestone the pod proves beyond `last`, in order; [] when nothing is new."""
    seen = rank(last)
    if seen >= TERMINAL_RANK:
        return []
    end = outcome(pod, deleted)
    # Past the last non-terminal milestone (Running) only the outcome can be new.
    found = progress(pod, seen) if seen < LAST_PROGRESS_RANK else []
    return [*found, end] if end is not None else found


# --- why a Pending pod is stuck (fail fast) -----------------------------------------------


@dataclass(frozen=True)
class Block:
    reason: Reason
    message: str


def pending_block(pod: Pod) -> Block | None:
    """Unschedulable or image-pull trouble of a Pending pod, with the scheduler's or the
    kubelet's own message; None when the pod is not stuck for one of these reasons."""
    if phase(pod) != "Pending":
        return None
    cond = condition(pod, "PodScheduled")
    if cond and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
        return Block(Reason.UNSCHEDULABLE, truncate(str(cond.get("message") or "Unschedulable")))
    for cs in containers(pod, init=True) + containers(pod):
        waiting = _state(cs, "waiting")
        if waiting and waiting.get("reason") in IMAGE_PULL_REASONS:
            text = waiting.get("message") or waiting["reason"]
            image = cs.get("image") or "?"
            return Block(
                Reason.IMAGE_PULL,
                truncate(f"image {image} of container {cs.get('name')}: {text}"),
            )
    return None

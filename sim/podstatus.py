"""How a stage's `next` changes a pod, and the kubelet's rules that derive the rest.

A stage says only what happened to the containers (waiting/running/terminated) and to the
pod's sandbox; the phase and the readiness conditions are then derived from the container
states by the kubelet's own rules (pkg/kubelet/kubelet_pods.go `getPhase`, restartPolicy
Never), so no profile can write an inconsistent status.

`next` keys:
  admit: true           the kubelet accepted the pod: hostIP, startTime, Initialized=True
  sandbox: true|false   PodReadyToStartContainers; true also assigns the pod IP
  containers: {state: waiting|running|terminated, reason, message, exit_code}
  pod: {phase, reason, message}             pod-level overrides (eviction, node lost)
  conditions: {Type: {status, reason, message}}   extra conditions (DisruptionTarget)
  events: [{type: Normal|Warning, reason, message, each_container, at: begin|end}]
  delete: true          remove the pod (the end of a graceful delete)
`reason`, `message` and `exit_code` may be {annotation: <key>, default: <value>}; event
messages may use {image} {container} {pod} {namespace} {node} {delay}.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_NEXT_KEYS = {"admit", "sandbox", "containers", "pod", "conditions", "events", "delete"}
_CONTAINER_KEYS = {"state", "reason", "message", "exit_code"}
_EVENT_KEYS = {"type", "reason", "message", "each_container", "at"}
_TEMPLATE_FIELDS = {"image", "container", "pod", "namespace", "node", "delay"}
# The order a kubelet writes pod conditions in (kubectl describe shows them so).
_ORDER = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
_RANK = {kind: n for n, kind in enumerate(_ORDER)}
_LAST = len(_ORDER)  # unknown condition types go after the known ones
_TERMINAL = ("Succeeded", "Failed")
_event_seq = itertools.count()


_stamp: list[Any] = [-1, ""]  # [second, text]: the writes of a burst share their second


def rfc3339(t: float | None = None) -> str:
    second = int(time.time() if t is None else t)
    if second != _stamp[0]:
        _stamp[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))]
    return str(_stamp[1])


def micro_time(t: float | None = None) -> str:
    """`2026-11-25T10:00:00.123456Z` (MicroTime), the second's text shared with rfc3339."""
    fraction, second = math.modf(time.time() if t is None else t)
    micros = round(fraction * 1_000_000)
    if micros == 1_000_000:
        second, micros = second + 1, 0
    return f"{rfc3339(second)[:-1]}.{micros:06d}Z"


def go_duration(seconds: float) -> str:
    """`1.234s`, `512ms`, `1m2.5s`: how the kubelet prints durations in event messages."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


@dataclass
class Context:
    """What the kubelet knows when a stage fires."""

    node: str
    host_ip: str
    pod_ip: Callable[[], str] = lambda: ""
    now: float = field(default_factory=time.time)
    delay: float = 0.0  # how long the stage waited (event messages, `at: begin`)


# -- validation (at profile load) ---------------------------------------------------------
def _check_value(where: str, value: object) -> None:
    if isinstance(value, dict) and set(value) - {"annotation", "default"}:
        raise ValueError(f"{where}: use a value or {{annotation: <key>, default: <value>}}")


def _check_template(where: str, text: object) -> None:
    try:
        str(text).format_map({f: "x" for f in _TEMPLATE_FIELDS})
    except (KeyError, IndexError, ValueError) as e:
        fields = ", ".join("{" + f + "}" for f in sorted(_TEMPLATE_FIELDS))
        raise ValueError(f"{where}: bad template {text!r} ({e}); fields: {fields}") from e


def validate_next(nxt: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first thing wrong with a stage's `next`."""
    if not isinstance(nxt, dict) or set(nxt) - _NEXT_KEYS:
        raise ValueError(f"next: unknown keys; allowed: {sorted(_NEXT_KEYS)}")
    spec = nxt.get("containers")
    if spec is not None:
        if not isinstance(spec, dict) or set(spec) - _CONTAINER_KEYS:
            raise ValueError(f"next.containers: allowed keys {sorted(_CONTAINER_KEYS)}")
        if spec.get("state") not in ("waiting", "running", "terminated"):
            raise ValueError("next.containers.state must be waiting, running or terminated")
        for key in ("reason", "message", "exit_code"):
            _check_value(f"next.containers.{key}", spec.get(key))
        if isinstance(spec.get("message"), str):
            _check_template("next.containers.message", spec["message"])
    for i, event in enumerate(nxt.get("events") or ()):
        if not isinstance(event, dict) or set(event) - _EVENT_KEYS or "reason" not in event:
            raise ValueError(f"next.events[{i}]: needs a reason; keys {sorted(_EVENT_KEYS)}")
        if event.get("type", "Normal") not in ("Normal", "Warning"):
            raise ValueError(f"next.events[{i}].type must be Normal or Warning")
        _check_template(f"next.events[{i}].message", event.get("message", ""))
    for key in ("pod", "conditions"):
        if not isinstance(nxt.get(key, {}), dict):
            raise ValueError(f"next.{key} must be a mapping")


# -- applying -----------------------------------------------------------------------------
def _value(value: Any, pod: Mapping[str, Any], as_int: bool = False) -> Any:
    """A `next` value: as written, {annotation, default} read from the pod, or {literal}
    (text the kubelet made up, e.g. process output, used as is)."""
    if not isinstance(value, dict):
        return value
    if "literal" in value:
        return value["literal"]
    raw = (pod["metadata"].get("annotations") or {}).get(value["annotation"])
    if raw is None:
        return value.get("default")
    if as_int:
        try:
            return int(raw)
        except ValueError:
            return value.get("default")
    return raw


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


@lru_cache(maxsize=1024)
def _image_id(image: str) -> str:
    return f"{image}@sha256:{_digest(image)}"  # pods share images: hash each once


def container_state(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    spec: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """A containerStatuses entry after `spec` ({state, reason, message, exit_code})."""
    name, image = container["name"], container.get("image", "")
    old = old or {}
    status: dict[str, Any] = {
        "name": name,
        "state": {},
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": image,
        "imageID": old.get("imageID", ""),
        "started": False,
    }
    message = spec.get("message")
    if isinstance(message, str):  # a template; text read from an annotation is used as is
        message = message.format_map(_fields(pod, container, ""))
    message = _value(message, pod)
    kind = spec["state"]
    if kind == "waiting":
        waiting = {"reason": _value(spec.get("reason"), pod) or "ContainerCreating"}
        if message:
            waiting["message"] = message
        status["state"] = {"waiting": waiting}
        return status
    cid = old.get("containerID") or f"containerd://{_digest(pod['metadata'].get('uid', ''), name)}"
    status["containerID"] = cid
    if kind == "running":
        status["imageID"] = old.get("imageID") or _image_id(image)
        status.update(ready=True, started=True, state={"running": {"startedAt": now}})
        return status
    started = (old.get("state") or {}).get("running", {}).get("startedAt")
    code = _value(spec.get("exit_code", 0), pod, as_int=True)
    term: dict[str, Any] = {"exitCode": int(code or 0), "reason": _value(spec.get("reason"), pod)}
    term["reason"] = term["reason"] or ("Completed" if term["exitCode"] == 0 else "Error")
    if message:
        term["message"] = message
    if started:
        term["startedAt"] = started
    term.update(finishedAt=now, containerID=cid)
    status["state"] = {"terminated": term}
    return status


def _rank(condition: Mapping[str, Any]) -> int:
    return _RANK.get(condition.get("type", ""), _LAST)


def set_condition(
    status: dict[str, Any], kind: str, value: bool, now: str, reason: str = "", message: str = ""
) -> None:
    """Set one pod condition, keeping lastTransitionTime unless its status changes."""
    text = "True" if value else "False"
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    since, at = now, -1
    for i, old in enumerate(conditions):
        if old.get("type") == kind:
            at = i
            if old.get("status") == text:
                if old.get("reason", "") == reason and old.get("message", "") == message:
                    return  # unchanged: keep the very same list (and save the copy)
                since = old.get("lastTransitionTime") or now
            break
    cond: dict[str, Any] = {"type": kind, "status": text, "lastProbeTime": None}
    cond["lastTransitionTime"] = since
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    conditions = list(conditions)
    if at >= 0:
        conditions[at] = cond
    else:
        conditions.append(cond)
        conditions.sort(key=_rank)
    status["conditions"] = conditions


def pod_phase(statuses: list[dict[str, Any]], n_containers: int) -> str:
    """kubelet getPhase for restartPolicy Never."""
    waiting = running = failed = stopped = 0
    for cs in statuses:
        state = cs.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            failed += state["terminated"].get("exitCode", 0) != 0
        else:
            waiting += 1
    waiting += max(0, n_containers - len(statuses))
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        return "Failed" if failed else "Succeeded"
    return "Pending"


def settle(status: dict[str, Any], n_containers: int, now: str) -> None:
    """Derive phase and the readiness conditions from the container states."""
    statuses = status.get("containerStatuses") or []
    if status.get("phase") not in _TERMINAL:
        status["phase"] = pod_phase(statuses, n_containers)
    if not any(c.get("type") == "Initialized" for c in status.get("conditions") or ()):
        return  # not admitted by a kubelet yet: only PodScheduled
    terminal = status["phase"] in _TERMINAL
    unready = [cs["name"] for cs in statuses if not cs.get("ready")]
    ready = bool(statuses) and not unready and len(statuses) == n_containers
    reason = "" if ready else "PodCompleted" if terminal else "ContainersNotReady"
    message = "" if ready or terminal else f"containers with unready status: [{' '.join(unready)}]"
    set_condition(status, "Ready", ready, now, reason, message)
    set_condition(status, "ContainersReady", ready, now, reason, message)
    if terminal:
        set_condition(status, "PodReadyToStartContainers", False, now)


def apply(
    pod: Mapping[str, Any],
    nxt: Mapping[str, Any],
    ctx: Context,
    only: Collection[str] | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The pod after `nxt` (None: remove it) and the events to record. `only` limits the
    container change to the named containers."""
    events = [e for spec in nxt.get("events") or () for e in _events(pod, spec, ctx, only)]
    if nxt.get("delete"):
        return None, events
    now = rfc3339(ctx.now)
    status: dict[str, Any] = dict(pod.get("status") or {})
    containers = pod.get("spec", {}).get("containers") or []
    if nxt.get("admit"):
        status.update(hostIP=ctx.host_ip, hostIPs=[{"ip": ctx.host_ip}])
        status.setdefault("startTime", now)
        set_condition(status, "Initialized", True, now)
        if not any(c.get("type") == "PodScheduled" for c in status["conditions"]):
            set_condition(status, "PodScheduled", True, now)  # bound by spec.nodeName
    if "sandbox" in nxt:
        set_condition(status, "PodReadyToStartContainers", bool(nxt["sandbox"]), now)
        if nxt["sandbox"] and not status.get("podIP"):
            ip = ctx.pod_ip()
            status.update(podIP=ip, podIPs=[{"ip": ip}])
    if nxt.get("containers"):
        old = {cs["name"]: cs for cs in status.get("containerStatuses") or ()}
        status["containerStatuses"] = [
            container_state(pod, c, old.get(c["name"]), nxt["containers"], now)
            if only is None or c["name"] in only
            else old.get(c["name"]) or container_state(pod, c, None, {"state": "waiting"}, now)
            for c in containers
        ]
    for key, value in (nxt.get("pod") or {}).items():
        status[key] = _value(value, pod)
    settle(status, len(containers), now)
    for kind, cond in (nxt.get("conditions") or {}).items():
        value = str(cond.get("status", "True")) == "True"
        set_condition(status, kind, value, now, cond.get("reason", ""), cond.get("message", ""))
    new = dict(pod)
    new["status"] = status
    return new, events


# -- events -------------------------------------------------------------------------------
def _fields(
    pod: Mapping[str, Any], container: Mapping[str, Any], node: str, delay: float = 0.0
) -> dict[str, str]:
    meta = pod["metadata"]
    return {
        "image": container.get("image", ""),
        "container": container.get("name", ""),
        "pod": meta["name"],
        "namespace": meta.get("namespace", "default"),
        "node": node,
        "delay": go_duration(delay),
    }


def _events(
    pod: Mapping[str, Any],
    spec: Mapping[str, Any],
    ctx: Context,
    only: Collection[str] | None = None,
) -> list[dict]:
    containers = pod.get("spec", {}).get("containers") or [{}]
    if only is not None:
        containers = [c for c in containers if c.get("name") in only]
    chosen = containers if spec.get("each_container") else containers[:1]
    when = ctx.now - ctx.delay if spec.get("at") == "begin" else ctx.now
    out = []
    for c in chosen:
        message = str(spec.get("message", "")).format_map(_fields(pod, c, ctx.node, ctx.delay))
        path = f"spec.containers{{{c['name']}}}" if spec.get("each_container") else ""
        out.append(
            new_event(
                pod,
                spec["reason"],
                message,
                spec.get("type", "Normal"),
                host=ctx.node,
                field_path=path,
                when=when,
            )
        )
    return out


def reference(pod: Mapping[str, Any], field_path: str = "") -> dict[str, Any]:
    """An event's involvedObject: the pod (and the container, as `spec.containers{name}`)."""
    meta = pod["metadata"]
    ref = {"kind": "Pod", "namespace": meta.get("namespace", "default"), "name": meta["name"]}
    ref.update(uid=meta.get("uid", ""), apiVersion="v1")
    ref["resourceVersion"] = meta.get("resourceVersion", "")
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def new_event(
    pod: Mapping[str, Any],
    reason: str,
    message: str,
    kind: str = "Normal",
    *,
    component: str = "kubelet",
    host: str = "",
    field_path: str = "",
    when: float | None = None,
    action: str = "",
) -> dict[str, Any]:
    """A core/v1 Event about `pod`. Kubelet events carry source/first/lastTimestamp/count
    (the old recorder); scheduler events (`action` set) carry eventTime and reporting* like
    the events.k8s.io recorder kube-scheduler uses."""
    meta = pod["metadata"]
    t = time.time() if when is None else when
    ref = reference(pod, field_path)
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{time.time_ns() + next(_event_seq):x}",
            "namespace": ref["namespace"],
        },
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "type": kind,
    }
    if action:
        event.update(
            source={},
            firstTimestamp=None,
            lastTimestamp=None,
            eventTime=micro_time(t),
            action=action,
            reportingComponent=component,
            reportingInstance=f"{component}-{host or 'kubequeue-sim'}",
        )
    else:
        stamp = rfc3339(t)
        source = {"component": component, **({"host": host} if host else {})}
        event.update(
            source=source,
            firstTimestamp=stamp,
            lastTimestamp=stamp,
            count=1,
            eventTime=None,
            reportingComponent=component,
            reportingInstance=host,
        )
    return event

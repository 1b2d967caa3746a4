"""What kube-apiserver does to pods beyond plain storage: defaults and admission on create,
the status strategy (spec and status change through different endpoints), spec
immutability, graceful deletion (with a fallback timer so deletes always complete),
binding, and the log endpoint's error cases."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from kubequeue.sim import status
from kubequeue.sim.status import Cause
from kubequeue.sim.store import Store, now_rfc3339

DEFAULT_GRACE = 30
# The DefaultTolerationSeconds admission plugin adds these to every pod.
DEFAULT_TOLERATIONS = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)
# Fields of a pod's spec an update may change (ValidatePodUpdate); everything else is fixed.
MUTABLE_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _default_container(c: dict) -> dict:
    c = dict(c)
    image = c.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    resources = dict(c.get("resources") or {})
    limits = resources.get("limits") or {}
    requests = dict(resources.get("requests") or {})
    for name, value in limits.items():  # a limit with no request defaults the request
        requests.setdefault(name, value)
    if requests:
        resources["requests"] = requests
    c["resources"] = resources
    return c


def qos_class(spec: dict) -> str:
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or str(requests.get(name, limits[name])) != str(limits[name]):
                return "Burstable"
    return "Guaranteed"


def prepare_create(pod: dict) -> dict:
    """Apply the defaults and admission plugins of a stock cluster; reset status."""
    spec = dict(pod.get("spec") or {})
    spec["containers"] = [_default_container(c) for c in spec.get("containers") or []]
    if spec.get("initContainers"):
        spec["initContainers"] = [_default_container(c) for c in spec["initContainers"]]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    tolerations = list(spec.get("tolerations") or [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] for t in tolerations):
            tolerations.append(dict(default))
    spec["tolerations"] = tolerations
    out = dict(pod)
    out["spec"] = spec
    out["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    return out


def admit(store: Store, pod: dict) -> None:
    """The ServiceAccount admission plugin: the pod's account must exist."""
    meta, spec = pod["metadata"], pod["spec"]
    namespace, account = meta["namespace"], spec["serviceAccountName"]
    if store.get("serviceaccounts", namespace, account) is None:
        name = meta.get("name") or meta.get("generateName") or ""
        message = (
            f'pods "{name}" is forbidden: error looking up service account '
            f'{namespace}/{account}: serviceaccount "{account}" not found'
        )
        raise status.ApiError(403, "Forbidden", message, {"name": name, "kind": "pods"})


def check_update(old: dict, new: dict) -> None:
    """Pods are mostly immutable: only images and a few fields may change."""
    old_spec, new_spec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
    for field in MUTABLE_SPEC:
        old_spec.pop(field, None)
        new_spec.pop(field, None)
    images_ok = len(old_spec.get("containers") or []) == len(new_spec.get("containers") or [])
    if images_ok:
        new_spec["containers"] = [
            {**n, "image": o.get("image")}
            for o, n in zip(
                old_spec.get("containers") or [], new_spec.get("containers") or [], strict=True
            )
        ]
    if old_spec != new_spec:
        message = (
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
            "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
            "(allow it to be set to 1 if it was previously negative)"
        )
        raise status.invalid(
            "pods", old["metadata"]["name"], [Cause("FieldValueForbidden", message, "spec")]
        )


def bind(store: Store, namespace: str, name: str, binding: dict) -> None:
    """POST pods/<name>/binding: set spec.nodeName and PodScheduled=True."""
    pod = store.get("pods", namespace, name)
    if pod is None:
        raise status.not_found("pods", name)
    target = (binding.get("target") or {}).get("name")
    if not target:
        raise status.invalid(
            "bindings", name, [Cause("FieldValueRequired", "Required value", "target.name")]
        )
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        why = f'pod {name} is already assigned to node "{node_name}"'
        raise status.conflict("pods/binding", name, why)
    if pod["metadata"].get("deletionTimestamp"):
        raise status.conflict(
            "pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host"
        )
    st = dict(pod.get("status") or {})
    conditions = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
    conditions.append(
        {
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339(),
        }
    )
    st["conditions"] = conditions
    store.update("pods", {**pod, "spec": {**pod["spec"], "nodeName": target}, "status": st})


class Deleter:
    """Graceful pod deletion. The kubelet finishes a graceful delete (store.remove); if none
    does within the grace period + 1 s, the fallback timer removes the pod."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def delete(self, namespace: str, name: str, grace: int | None) -> tuple[dict, bool]:
        """(object, removed-now). Immediate for unbound or finished pods and grace 0."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise status.not_found("pods", name)
        spec, phase = pod.get("spec") or {}, (pod.get("status") or {}).get("phase")
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        if grace <= 0 or not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            removed = self.store.remove("pods", namespace, name)
            return (removed or pod), True
        meta = pod["metadata"]
        current = meta.get("deletionGracePeriodSeconds")
        if current is not None and current <= grace:
            return pod, False  # already terminating at least as fast
        deadline = datetime.now(UTC) + timedelta(seconds=grace)
        meta = {
            **meta,
            "deletionTimestamp": deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "deletionGracePeriodSeconds": grace,
        }
        meta.pop("resourceVersion", None)
        updated = self.store.update("pods", {**pod, "metadata": meta})
        self._arm(namespace, name, pod["metadata"]["uid"], grace + 1)
        return updated, False

    def _arm(self, namespace: str, name: str, uid: str, delay: float) -> None:
        key = f"{namespace}/{name}"
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._expire, namespace, name, uid)

    def _expire(self, namespace: str, name: str, uid: str) -> None:
        self._timers.pop(f"{namespace}/{name}", None)
        pod = self.store.get("pods", namespace, name)
        if pod is not None and pod["metadata"]["uid"] == uid:
            self.store.remove("pods", namespace, name)

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


def log_container(pod: dict, container: str | None) -> str:
    """The container a log request reads, with kube-apiserver's 400 messages."""
    name = pod["metadata"]["name"]
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    init = [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
    if not container:
        if len(names) == 1:
            return names[0]
        listed = " ".join(names)
        message = f"a container name must be specified for pod {name}, choose one of: [{listed}]"
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        raise status.bad_request(message)
    if container not in names and container not in init:
        raise status.bad_request(f"container {container} is not valid for pod {name}")
    return container


def log_ready(store: Store, pod: dict, container: str) -> None:
    """400 while the container has not started, as the kubelet answers."""
    meta = pod["metadata"]
    if store.read_log(meta["namespace"], meta["name"], container):
        return
    if not (pod.get("spec") or {}).get("nodeName"):
        raise status.bad_request(f"pod {meta['name']} does not have a host assigned")
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    cs = next((s for s in statuses if s.get("name") == container), None)
    waiting = (
        ((cs or {}).get("state") or {}).get("waiting") if cs else {"reason": "ContainerCreating"}
    )
    if waiting is not None:
        reason = waiting.get("reason") or "ContainerCreating"
        message = f'container "{container}" in pod "{meta["name"]}" is waiting to start: {reason}'
        raise status.bad_request(message)


def tail(text: str, lines: int | None, limit_bytes: int | None) -> str:
    if lines is not None:
        parts = text.splitlines(keepends=True)
        text = "".join(parts[-lines:]) if lines > 0 else ""
    if limit_bytes is not None:
        text = text.encode()[:limit_bytes].decode(errors="ignore")
    return text


def stamp(text: str) -> str:
    """`timestamps=true`: each line prefixed with an RFC 3339 time (the time it was read)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    return "".join(f"{now} {line}" for line in text.splitlines(keepends=True))


def parse_grace(value: Any) -> int | None:
    if value is None or value == "":
        return None
    with contextlib.suppress(TypeError, ValueError):
        return int(value)
    raise status.bad_request(f"invalid gracePeriodSeconds {value!r}")

"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with the
columns kube-apiserver's printers use (wide columns have priority 1), and the
PartialObjectMetadata shape used by metadata-only lists."""

from __future__ import annotations

import time
from calendar import timegm
from collections.abc import Callable, Iterable
from typing import Any

Row = list[Any]
Printer = Callable[[dict, float], Row]


def _col(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    s = max(s, 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    years = days // 365
    return f"{years}y{days % 365}d" if years < 8 and days % 365 else f"{years}y"


def age(obj: dict, now: float) -> str:
    created = _ts(obj["metadata"].get("creationTimestamp"))
    return "<unknown>" if created is None else human_duration(now - created)


# -- pods ----------------------------------------------------------------------------------------
def _container_reason(cs: dict, reason: str) -> tuple[str, bool]:
    """(reason, running-and-ready) for one container status, as kubectl's printPod reads it."""
    state = cs.get("state") or {}
    waiting, terminated = state.get("waiting"), state.get("terminated")
    if waiting and waiting.get("reason"):
        return waiting["reason"], False
    if terminated and terminated.get("reason"):
        return terminated["reason"], False
    if terminated:
        if terminated.get("signal"):
            return f"Signal:{terminated['signal']}", False
        return f"ExitCode:{terminated.get('exitCode', 0)}", False
    return reason, bool(cs.get("ready") and state.get("running"))


def pod_status_reason(pod: dict) -> tuple[str, int, int, int]:
    """(status column, ready containers, total containers, restarts)."""
    status = pod.get("status") or {}
    total = len((pod.get("spec") or {}).get("containers") or [])
    reason = status.get("reason") or status.get("phase") or "Pending"
    ready = restarts = 0
    running = False
    for cs in reversed(status.get("containerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        reason, is_ready = _container_reason(cs, reason)
        if is_ready:
            ready += 1
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason, ready, total, restarts


def _pod_row(pod: dict, now: float) -> Row:
    reason, ready, total, restarts = pod_status_reason(pod)
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    gates = spec.get("readinessGates") or []
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        str(restarts),
        age(pod, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"0/{len(gates)}" if gates else "<none>",
    ]


def _node_row(node: dict, now: float) -> Row:
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown"
    if ready is not None:
        state = "Ready" if ready.get("status") == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [
        node["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        age(node, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _event_row(event: dict, now: float) -> Row:
    inv = event.get("involvedObject") or {}
    last = _ts(event.get("lastTimestamp") or event.get("eventTime")) or _ts(
        event["metadata"].get("creationTimestamp")
    )
    first = _ts(event.get("firstTimestamp")) or last
    source = event.get("source") or {}
    return [
        human_duration(now - last) if last else "<unknown>",
        event.get("type", ""),
        event.get("reason", ""),
        f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
        inv.get("fieldPath", ""),
        ", ".join(v for v in (source.get("component"), source.get("host")) if v),
        (event.get("message") or "").strip(),
        human_duration(now - first) if first else "<unknown>",
        event.get("count", 1),
        event["metadata"]["name"],
    ]


TABLES: dict[str, tuple[list[dict[str, Any]], Printer]] = {
    "pods": (
        [
            _col("Name", fmt="name"),
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    "nodes": (
        [
            _col("Name", fmt="name"),
            _col("Status"),
            _col("Roles"),
            _col("Age"),
            _col("Version"),
            _col("Internal-IP", priority=1),
            _col("External-IP", priority=1),
            _col("OS-Image", priority=1),
            _col("Kernel-Version", priority=1),
            _col("Container-Runtime", priority=1),
        ],
        _node_row,
    ),
    "namespaces": (
        [_col("Name", fmt="name"), _col("Status"), _col("Age")],
        lambda o, now: [
            o["metadata"]["name"],
            (o.get("status") or {}).get("phase", ""),
            age(o, now),
        ],
    ),
    "events": (
        [
            _col("Last Seen"),
            _col("Type"),
            _col("Reason"),
            _col("Object"),
            _col("Subobject", priority=1),
            _col("Source", priority=1),
            _col("Message"),
            _col("First Seen", priority=1),
            _col("Count", "integer", priority=1),
            _col("Name", fmt="name", priority=1),
        ],
        _event_row,
    ),
    "leases": (
        [_col("Name", fmt="name"), _col("Holder"), _col("Age")],
        lambda o, now: [
            o["metadata"]["name"],
            (o.get("spec") or {}).get("holderIdentity", ""),
            age(o, now),
        ],
    ),
    "configmaps": (
        [_col("Name", fmt="name"), _col("Data", "integer"), _col("Age")],
        lambda o, now: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            age(o, now),
        ],
    ),
    "secrets": (
        [_col("Name", fmt="name"), _col("Type"), _col("Data", "integer"), _col("Age")],
        lambda o, now: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            len(o.get("data") or {}) + len(o.get("stringData") or {}),
            age(o, now),
        ],
    ),
    "serviceaccounts": (
        [_col("Name", fmt="name"), _col("Secrets", "integer"), _col("Age")],
        lambda o, now: [o["metadata"]["name"], len(o.get("secrets") or []), age(o, now)],
    ),
}


def partial(obj: dict, version: str = "v1") -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj["metadata"],
    }


def _row_object(obj: dict, include: str, version: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return partial(obj, version)


def table(
    resource: str,
    objects: Iterable[dict],
    list_meta: dict[str, Any],
    *,
    include: str = "Metadata",
    version: str = "v1",
    headers: bool = True,
) -> dict[str, Any]:
    columns, printer = TABLES[resource]
    now = time.time()
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, now)}
        embedded = _row_object(obj, include, version)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    out: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": list_meta,
    }
    if headers:
        out["columnDefinitions"] = columns
    out["rows"] = rows
    return out

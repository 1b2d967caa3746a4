"""The simulated kube-scheduler: binds Pending pods to nodes.

Filters as kube-scheduler's default plugins do, in their order: NodeUnschedulable,
TaintToleration (NoSchedule/NoExecute), NodeAffinity (nodeSelector and required node
affinity), NodeResourcesFit (requests against allocatable, pods per node). A pod that fits
nowhere stays Pending with PodScheduled=False/Unschedulable, kube-scheduler's message and a
FailedScheduling event, and is retried when capacity frees or a node changes.

Cost stays O(changes), not O(pods): pods with the same constraints and requests share a
*group* (one Airflow queue's pods usually are one group). A group is tried head first;
once its head does not fit, the rest cannot either until capacity frees, so they wait
untouched. Used capacity is indexed per node and updated from pod changes. Nodes that fit
are taken round-robin (no scoring), which spreads pods as LeastAllocated roughly does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubequeue.sim.podstatus import new_event, rfc3339, set_condition
from kubequeue.sim.quantity import QuantityError, amount
from kubequeue.sim.status import ApiError
from kubequeue.sim.store import Store

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
ROUND_BUDGET = 500  # binds per loop turn, so a burst of pods cannot stall the API server
_TERMINAL = ("Succeeded", "Failed")
_NOT_HELPFUL = "Preemption is not helpful for scheduling"
_NO_VICTIMS = "No preemption victims found for incoming pod"


# -- filters (pure) -----------------------------------------------------------------------
def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """core/v1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if toleration.get("operator") == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(taints: list[dict], tolerations: list[dict]) -> dict | None:
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue  # PreferNoSchedule only lowers a node's score
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _requirement(expr: Mapping[str, Any], value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            mine, theirs = int(value), int(values[0])
        except ValueError:
            return False
        return mine > theirs if op == "Gt" else mine < theirs
    return False


def matches_term(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    """A nodeSelectorTerm: all its expressions hold; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    return all(_requirement(e, labels.get(e.get("key", ""))) for e in exprs) and all(
        _requirement(f, name if f.get("key") == "metadata.name" else None) for f in fields
    )


def node_affinity_terms(spec: Mapping[str, Any]) -> list[dict] | None:
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    return required.get("nodeSelectorTerms") if required else None


def pod_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """Effective requests: containers summed, the largest init container, plus overhead;
    a limit stands in for a missing request (the API defaults requests to limits)."""

    def of(container: Mapping[str, Any]) -> dict[str, int]:
        res = container.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        out = {}
        for name, qty in merged.items():
            try:
                out[name] = amount(name, qty)
            except QuantityError:
                continue  # the API rejects bad quantities; never crash on one here
        return out

    total: Counter[str] = Counter()
    for c in spec.get("containers") or ():
        total.update(of(c))
    for c in spec.get("initContainers") or ():
        for name, value in of(c).items():
            total[name] = max(total[name], value)
    total.update(of({"resources": {"requests": spec.get("overhead") or {}}}))
    return {k: v for k, v in total.items() if v}


@dataclass
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    taints: list[dict]
    allocatable: dict[str, int]
    unschedulable: bool = False
    used: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> NodeInfo:
        alloc = {}
        for name, qty in ((node.get("status") or {}).get("allocatable") or {}).items():
            try:
                alloc[name] = amount(name, qty)
            except QuantityError:
                continue
        spec = node.get("spec") or {}
        return cls(
            name=node["metadata"]["name"],
            labels=node["metadata"].get("labels") or {},
            taints=list(spec.get("taints") or ()),
            allocatable=alloc,
            unschedulable=bool(spec.get("unschedulable")),
        )

    def static_reason(self, demand: Demand) -> str | None:
        """Why the pod can never go here while the node stays as it is; None if it may."""
        if self.unschedulable:
            return "node(s) were unschedulable"
        taint = untolerated_taint(self.taints, demand.tolerations)
        if taint is not None:
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
        selector = demand.node_selector
        if any(self.labels.get(k) != v for k, v in selector.items()) or (
            demand.terms is not None
            and not any(matches_term(t, self.labels, self.name) for t in demand.terms)
        ):
            return "node(s) didn't match Pod's node affinity/selector"
        return None

    def lacks(self, requests: Mapping[str, int]) -> list[str]:
        """NodeResourcesFit: every resource the node is short of."""
        out = []
        if self.used["pods"] + 1 > self.allocatable.get("pods", 0):
            out.append("Too many pods")
        for name, want in requests.items():
            if self.used[name] + want > self.allocatable.get(name, 0):
                out.append(f"Insufficient {name}")
        return out


@dataclass
class Demand:
    """What the pods of one group need; the group key is its JSON."""

    requests: dict[str, int]
    node_selector: dict[str, str]
    terms: list[dict] | None
    tolerations: list[dict]

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> tuple[str, Demand]:
        demand = cls(
            pod_requests(spec),
            dict(spec.get("nodeSelector") or {}),
            node_affinity_terms(spec),
            list(spec.get("tolerations") or ()),
        )
        key = json.dumps(
            [demand.requests, demand.node_selector, demand.terms, demand.tolerations],
            sort_keys=True,
        )
        return key, demand


@dataclass
class Group:
    demand: Demand
    pods: dict[tuple[str, str], None] = field(default_factory=dict)  # FIFO
    unreported: dict[tuple[str, str], None] = field(default_factory=dict)
    blocked: bool = False
    cursor: int = 0
    feasible: list[NodeInfo] | None = None  # nodes passing the static filters
    static: Counter[str] = field(default_factory=Counter)  # reasons of the others


PodKey = tuple[str, str]


def _key(pod: Mapping[str, Any]) -> PodKey:
    meta = pod["metadata"]
    return meta.get("namespace") or "default", meta["name"]


class Scheduler:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.nodes: dict[str, NodeInfo] = {}
        self.bound: dict[PodKey, tuple[str, dict[str, int]]] = {}
        self.groups: dict[str, Group] = {}
        self._group_of: dict[PodKey, str] = {}
        self._reported: dict[PodKey, str] = {}  # the Unschedulable message a pod carries
        self._retry = False
        self._woken = False
        self.binds = 0

    # -- watching the store ---------------------------------------------------------------
    def load(self) -> None:
        """Take in the nodes and pods already stored (call before listening)."""
        for node in self.store.list("nodes"):
            self.on_change("ADDED", "nodes", node)
        for pod in self.store.list("pods"):
            self.on_change("ADDED", "pods", pod)

    def on_change(self, kind: str, resource: str, obj: dict) -> None:
        """Store listener: keep the node and usage indexes, queue new Pending pods."""
        if resource == "pods":
            self._pod_changed(kind, obj)
        elif resource == "nodes":
            self._node_changed(kind, obj)

    def _pod_changed(self, kind: str, pod: dict) -> None:
        key = _key(pod)
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        gone = kind == "DELETED" or (pod.get("status") or {}).get("phase") in _TERMINAL
        if node:
            if gone:
                self._release(key)
            elif key not in self.bound:
                self._account(key, node, pod_requests(spec))
            self._forget(key)
            return
        if gone or pod["metadata"].get("deletionTimestamp"):
            self._forget(key)
        elif key not in self._group_of and spec.get("schedulerName", SCHEDULER_NAME) in (
            SCHEDULER_NAME,
            "",
        ):
            self._enqueue(key, spec)

    def _node_changed(self, kind: str, node: dict) -> None:
        name = node["metadata"]["name"]
        old = self.nodes.pop(name, None)
        if kind != "DELETED":
            info = self.nodes[name] = NodeInfo.of(node)
            if old is not None:
                info.used = old.used
        for group in self.groups.values():
            group.feasible = None
        self.retry()

    def _enqueue(self, key: PodKey, spec: Mapping[str, Any]) -> None:
        gkey, demand = Demand.of(spec)
        group = self.groups.get(gkey)
        if group is None:
            group = self.groups[gkey] = Group(demand)
        group.pods[key] = None
        group.unreported[key] = None
        self._group_of[key] = gkey
        self._wake()

    def _forget(self, key: PodKey) -> None:
        gkey = self._group_of.pop(key, None)
        self._reported.pop(key, None)
        if gkey is not None:
            group = self.groups[gkey]
            group.pods.pop(key, None)
            group.unreported.pop(key, None)
            if not group.pods:
                del self.groups[gkey]

    def _account(self, key: PodKey, node: str, requests: dict[str, int]) -> None:
        self.bound[key] = (node, requests)
        info = self.nodes.get(node)
        if info is not None:
            info.used.update(requests)
            info.used["pods"] += 1

    def _release(self, key: PodKey) -> None:
        held = self.bound.pop(key, None)
        if held is None:
            return
        info = self.nodes.get(held[0])
        if info is not None:
            info.used.subtract(held[1])
            info.used["pods"] -= 1
        self.retry()

    # -- scheduling -----------------------------------------------------------------------
    def retry(self) -> None:
        """Capacity freed or nodes changed: every waiting group gets another try."""
        self._retry = True
        self._wake()

    def _wake(self) -> None:
        if self._woken:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (unit tests): the caller runs schedule() itself
        self._woken = True
        loop.call_soon(self._round)

    def _round(self) -> None:
        self._woken = False
        if self.schedule() >= ROUND_BUDGET:
            self._wake()

    def schedule(self, budget: int = ROUND_BUDGET) -> int:
        """One scheduling round; returns how many pods it bound (at most `budget`)."""
        if self._retry:
            self._retry = False
            for group in self.groups.values():
                group.blocked = False
        done = 0
        for gkey, group in list(self.groups.items()):
            while group.pods and not group.blocked and done < budget:
                key = next(iter(group.pods))
                node = self._fit(group)
                if node is None:
                    group.blocked = True
                    self._report(group, key)
                    break
                done += self._bind(key, node, group.demand.requests)
                self._forget(key)
            if group.blocked and group.unreported:
                self._report(group, None)
            if done >= budget:
                self._wake()
                break
            if not group.pods:
                self.groups.pop(gkey, None)
        return done

    def _fit(self, group: Group) -> NodeInfo | None:
        if group.feasible is None:
            group.static = Counter()
            group.feasible = []
            for info in self.nodes.values():
                reason = info.static_reason(group.demand)
                if reason is None:
                    group.feasible.append(info)
                else:
                    group.static[reason] += 1
        feasible, n = group.feasible, len(group.feasible)
        for i in range(n):
            info = feasible[(group.cursor + i) % n]
            if not info.lacks(group.demand.requests):
                group.cursor = (group.cursor + i + 1) % n
                return info
        return None

    def _bind(self, key: PodKey, node: NodeInfo, requests: dict[str, int]) -> bool:
        pod = self.store.get("pods", *key)
        if pod is None or (pod.get("spec") or {}).get("nodeName"):
            return False
        if pod["metadata"].get("deletionTimestamp"):
            return False
        new = dict(pod)
        new["spec"] = {**pod["spec"], "nodeName": node.name}
        status = new["status"] = dict(pod.get("status") or {})
        status.setdefault("phase", "Pending")
        set_condition(status, "PodScheduled", True, rfc3339())
        self._account(key, node.name, requests)
        try:
            bound = self.store.update("pods", new)
        except ApiError as e:
            log.warning("binding %s/%s to %s failed: %s", *key, node.name, e)
            self._release(key)
            return False
        self.binds += 1
        message = f"Successfully assigned {key[0]}/{key[1]} to {node.name}"
        self._event(bound, "Scheduled", message, "Normal", "Binding")
        return True

    def _message(self, group: Group) -> str:
        total = len(self.nodes)
        if not total:
            return "no nodes available to schedule pods"
        reasons = Counter(group.static)
        preempt = Counter({_NOT_HELPFUL: sum(group.static.values())})
        for info in group.feasible or ():
            lacking = info.lacks(group.demand.requests)
            reasons.update(lacking)
            preempt[_NO_VICTIMS] += 1
        listed = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
        victims = ", ".join(sorted(f"{n} {r}" for r, n in preempt.items() if n))
        return (
            f"0/{total} nodes are available: {listed}. "
            f"preemption: 0/{total} nodes are available: {victims}."
        )

    def _report(self, group: Group, head: PodKey | None) -> None:
        """Mark the head (when its message changed) and every pod never marked yet."""
        message = self._message(group)
        keys = list(group.unreported)
        if head is not None and head not in group.unreported:
            keys.insert(0, head)
        group.unreported.clear()
        for key in keys:
            if self._reported.get(key) != message:
                self._unschedulable(key, message)

    def _unschedulable(self, key: PodKey, message: str) -> None:
        pod = self.store.get("pods", *key)
        if pod is None:
            return
        new = dict(pod)
        status = new["status"] = dict(pod.get("status") or {})
        status.setdefault("phase", "Pending")
        set_condition(status, "PodScheduled", False, rfc3339(), "Unschedulable", message)
        try:
            pod = self.store.update("pods", new)
        except ApiError as e:
            log.warning("marking %s/%s unschedulable failed: %s", *key, e)
            return
        self._reported[key] = message
        self._event(pod, "FailedScheduling", message, "Warning", "Scheduling")

    def _event(self, pod: dict, reason: str, message: str, kind: str, action: str) -> None:
        event = new_event(pod, reason, message, kind, component=SCHEDULER_NAME, action=action)
        try:
            self.store.create("events", event)
        except ApiError as e:  # e.g. the namespace is going away; the pod status says it all
            log.debug("event %s for %s not recorded: %s", reason, pod["metadata"]["name"], e)

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
import heapq
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubequeue.sim.fit import Demand, NodeInfo, pod_requests
from kubequeue.sim.podstatus import new_event, rfc3339, set_condition
from kubequeue.sim.status import ApiError
from kubequeue.sim.store import Store

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
ROUND_BUDGET = 500  # binds per loop turn, so a burst of pods cannot stall the API server
MAX_PLACEMENTS = 10_000  # remembered demands; beyond, the memory starts over
_TERMINAL = ("Succeeded", "Failed")
_NOT_HELPFUL = "Preemption is not helpful for scheduling"
_NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass
class Placement:
    """Where pods of one demand may go while the nodes stay as they are. Kept after its
    group empties (pods often arrive one by one, each finding its group gone), so the static
    filters run once per node change, not once per pod, and round-robin carries on."""

    feasible: list[NodeInfo]  # nodes passing the static filters
    static: Counter[str]  # why the others do not
    cursor: int = 0


@dataclass
class Group:
    key: str
    demand: Demand
    pods: dict[tuple[str, str], int] = field(default_factory=dict)  # FIFO: pod -> arrival
    unreported: dict[tuple[str, str], None] = field(default_factory=dict)
    blocked: bool = False
    placement: Placement | None = None


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
        self._placements: dict[str, Placement] = {}
        self._group_of: dict[PodKey, str] = {}
        self._reported: dict[PodKey, str] = {}  # the Unschedulable message a pod carries
        self._retry = False
        self._woken = False
        self._arrivals = 0
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
        self._placements.clear()
        for group in self.groups.values():
            group.placement = None
        self.retry()

    def _enqueue(self, key: PodKey, spec: Mapping[str, Any]) -> None:
        gkey, demand = Demand.of(spec)
        group = self.groups.get(gkey)
        if group is None:
            group = self.groups[gkey] = Group(gkey, demand)
        self._arrivals += 1
        group.pods[key] = self._arrivals
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
        self.schedule()

    def schedule(self, budget: int = ROUND_BUDGET) -> int:
        """One scheduling round, oldest pod first across groups; returns how many pods it
        bound (at most `budget`)."""
        if self._retry:
            self._retry = False
            for waiting in self.groups.values():
                waiting.blocked = False
        heads = [(next(iter(g.pods.values())), k) for k, g in self.groups.items() if not g.blocked]
        heapq.heapify(heads)
        done = 0
        while heads and done < budget:
            gkey = heapq.heappop(heads)[1]
            group = self.groups.get(gkey)
            if group is None or group.blocked or not group.pods:
                continue
            key = next(iter(group.pods))
            node = self._fit(group)
            if node is None:
                group.blocked = True
                self._report(group, key)
                continue
            done += self._bind(key, node, group.demand.requests)
            self._forget(key)
            if group.pods:
                heapq.heappush(heads, (next(iter(group.pods.values())), gkey))
        for waiting in list(self.groups.values()):
            if waiting.blocked and waiting.unreported:
                self._report(waiting, None)
        if heads:
            self._wake()  # the budget ran out: carry on in the next turn of the loop
        return done

    def _placement(self, group: Group) -> Placement:
        if group.placement is None:
            placement = self._placements.get(group.key)
            if placement is None:
                if len(self._placements) >= MAX_PLACEMENTS:
                    self._placements.clear()
                placement = self._placements[group.key] = Placement([], Counter())
                for info in self.nodes.values():
                    reason = info.static_reason(group.demand)
                    if reason is None:
                        placement.feasible.append(info)
                    else:
                        placement.static[reason] += 1
            group.placement = placement
        return group.placement

    def _fit(self, group: Group) -> NodeInfo | None:
        placement = self._placement(group)
        feasible, n = placement.feasible, len(placement.feasible)
        for i in range(n):
            info = feasible[(placement.cursor + i) % n]
            if not info.lacks(group.demand.requests):
                placement.cursor = (placement.cursor + i + 1) % n
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
        placement = self._placement(group)
        reasons = Counter(placement.static)
        preempt = Counter({_NOT_HELPFUL: sum(placement.static.values())})
        for info in placement.feasible:
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

"""The simulated kubelet: one object drives the pods of every simulated node.

It listens to pod changes; for a pod bound to one of its nodes it finds the profile's stages
that match (sim/stages.py), keeps one `loop.call_later` timer per pod for the chosen stage,
and when the timer fires applies the stage's `next` (sim/podstatus.py). A change that keeps
the pending stage matching keeps its timer, so unrelated updates (a label patch) do not
delay a pod. In process mode the stage that starts the containers runs them instead
(sim/process.py): the process's exit, not a timer, ends the container, and a graceful
delete signals it. A node that goes NotReady has died: its timers stop, its processes are
killed, its pods lose readiness and, after their toleration of the unreachable NoExecute
taint (none: at once), turn Failed with reason NodeLost. Pods that had started are lost too
when the node comes back (their containers are gone); the others carry on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubequeue.sim.fit import tolerates
from kubequeue.sim.podstatus import Context, apply, new_event, rfc3339, set_condition
from kubequeue.sim.process import PodKey, ProcessRunner
from kubequeue.sim.stages import KubeletMode, Profile, Stage, is_terminal
from kubequeue.sim.status import ApiError
from kubequeue.sim.store import Store

log = logging.getLogger(__name__)

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
_UNKNOWN = {
    "state": "terminated",
    "exit_code": 137,
    "reason": "ContainerStatusUnknown",
    "message": "The container could not be located when the pod was terminated",
}


@dataclass
class NodeRuntime:
    """What the kubelet knows about one node."""

    name: str
    ip: str
    mode: KubeletMode
    profile: Profile
    pod_net: str  # "10.64.3." — pods get .2 .. .254
    ready: bool = True
    _next_ip: int = 0

    def pod_ip(self) -> str:
        self._next_ip = self._next_ip % 253 + 1
        return f"{self.pod_net}{self._next_ip + 1}"


@dataclass(slots=True)
class Timer:
    uid: str
    stage: str
    handle: asyncio.TimerHandle
    delay: float


def _key(pod: Mapping[str, Any]) -> PodKey:
    return pod["metadata"].get("namespace") or "default", pod["metadata"]["name"]


def grace_period(pod: Mapping[str, Any]) -> float:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    for value in (
        meta.get("deletionGracePeriodSeconds"),
        spec.get("terminationGracePeriodSeconds"),
    ):
        if value is not None:
            return float(value)
    return 30.0


def _starts_containers(stage: Stage) -> bool:
    return (stage.next.get("containers") or {}).get("state") == "running"


class Kubelet:
    def __init__(self, store: Store, nodes: Mapping[str, NodeRuntime], rng: random.Random) -> None:
        self.store = store
        self.nodes = nodes
        self.rng = rng
        self.timers: dict[PodKey, Timer] = {}
        self.fired: dict[PodKey, dict[str, int]] = {}
        self.on_node: dict[str, set[PodKey]] = {name: set() for name in nodes}
        self.evictions: dict[PodKey, asyncio.TimerHandle] = {}
        self.processes = ProcessRunner(store, self._exited)
        self.starting: dict[PodKey, asyncio.Task[None]] = {}  # process mode: spawn under way
        # exits reported while the pod's other containers were still being started: applied
        # once the start is recorded, so "running" never overwrites "terminated"
        self.early_exits: dict[PodKey, list[tuple[str, str, int, str]]] = {}
        self._closing = False

    # -- listening ------------------------------------------------------------------------
    def on_change(self, kind: str, pod: dict) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        rt = self.nodes.get(node or "")
        if rt is None or self._closing:
            return
        key = _key(pod)
        if kind == "DELETED":
            self._forget(key, rt.name)
            self.processes.kill(key)  # removed under us (grace 0): nothing to wait for
            return
        self.on_node[rt.name].add(key)
        if not rt.ready:
            return
        if pod["metadata"].get("deletionTimestamp") and self.processes.has(key):
            self._terminate(key, pod, rt)
        self._evaluate(key, pod, rt)

    def resync(self) -> None:
        """Pick up pods bound before the kubelet listened (or while a node was down)."""
        for pod in self.store.list("pods"):
            self.on_change("ADDED", pod)

    def _forget(self, key: PodKey, node: str) -> None:
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.handle.cancel()
        eviction = self.evictions.pop(key, None)
        if eviction is not None:
            eviction.cancel()
        self.fired.pop(key, None)
        self.on_node.get(node, set()).discard(key)

    # -- stages ---------------------------------------------------------------------------
    def _evaluate(self, key: PodKey, pod: dict, rt: NodeRuntime) -> None:
        if key in self.starting:
            return  # _start evaluates once its processes run
        uid = pod["metadata"].get("uid", "")
        stages = rt.profile.matching(pod, rt.mode)
        timer = self.timers.get(key)
        if timer is not None:
            if timer.uid == uid and any(s.name == timer.stage for s in stages):
                return  # still on course: an unrelated change must not reset the clock
            timer.handle.cancel()
            del self.timers[key]
        if not stages:
            return
        stage = stages[0] if len(stages) == 1 else self._pick(stages)
        fired = self.fired[key].get(stage.name, 0) if key in self.fired else 0
        delay = stage.seconds(pod, self.rng, fired)
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key, stage, uid, delay)
        self.timers[key] = Timer(uid, stage.name, handle, delay)

    def _pick(self, stages: list[Stage]) -> Stage:
        return self.rng.choices(stages, weights=[s.weight for s in stages])[0]

    def _fire(self, key: PodKey, stage: Stage, uid: str, delay: float) -> None:
        self.timers.pop(key, None)
        pod = self.store.get("pods", *key)
        if pod is None or pod["metadata"].get("uid") != uid:
            return
        rt = self.nodes[pod["spec"]["nodeName"]]
        if not rt.ready:
            return
        # No need to match again: every change since went through _evaluate, which keeps
        # the timer only while its stage still matches.
        if stage.backs_off:  # only back-off delays count repeats
            counts = self.fired.setdefault(key, {})
            counts[stage.name] = counts.get(stage.name, 0) + 1
        ctx = Context(rt.name, rt.ip, rt.pod_ip, delay=delay)
        if rt.mode == "process" and _starts_containers(stage):
            self.starting[key] = asyncio.create_task(self._start(key, pod, stage, ctx))
        else:
            self._write(key, pod, stage.next, ctx)

    def _write(
        self,
        key: PodKey,
        pod: dict,
        nxt: Mapping[str, Any],
        ctx: Context,
        only: set[str] | None = None,
    ) -> dict | None:
        """Apply `nxt` to the pod and store the result and its events."""
        new, events = apply(pod, nxt, ctx, only)
        try:
            if new is None:
                self.store.remove("pods", *key)
            else:
                new = self.store.update("pods", new)
        except ApiError as e:
            log.warning("kubelet: updating pod %s/%s failed: %s", *key, e)
            return None
        self._record(events)
        if new is not None and (nxt.get("containers") or {}).get("state") == "terminated":
            ended = [
                cs["name"]
                for cs in new["status"].get("containerStatuses") or ()
                if "terminated" in cs["state"] and (only is None or cs["name"] in only)
            ]
            self.processes.kill(key, ended)  # ended by a stage (OOM, eviction): process too
            for name in ended:
                self.store.close_log(*key, name)
        return new

    def _record(self, events: list[dict]) -> None:
        for event in events:
            try:
                self.store.create("events", event)
            except ApiError as e:
                log.debug("kubelet: event not recorded: %s", e)

    # -- process mode ---------------------------------------------------------------------
    async def _start(self, key: PodKey, pod: dict, stage: Stage, ctx: Context) -> None:
        try:
            failed = await self.processes.start(pod)
            current = self.store.get("pods", *key)
            if current is None or current["metadata"].get("uid") != pod["metadata"].get("uid"):
                self.processes.kill(key)
                return
            if is_terminal(current) or not self.nodes[ctx.node].ready:
                self.processes.kill(key)
                return
            ctx.now = time.time()
            started = {c["name"] for c in current["spec"]["containers"]} - set(failed)
            current = self._write(key, current, stage.next, ctx, started) or current
            for name, why in failed.items():
                fail: dict[str, Any] = {"state": "terminated", "exit_code": 128}
                fail.update(reason="StartError", message={"literal": why})
                current = self._write(key, current, {"containers": fail}, ctx, {name}) or current
                path = f"spec.containers{{{name}}}"
                event = new_event(
                    current, "Failed", f"Error: {why}", "Warning", host=ctx.node, field_path=path
                )
                self._record([event])
        finally:
            self.starting.pop(key, None)
            for early in self.early_exits.pop(key, ()):
                self._exited(key, *early)
            current = self.store.get("pods", *key)
        if current is None:
            return
        rt = self.nodes[ctx.node]
        if current["metadata"].get("deletionTimestamp"):
            self._terminate(key, current, rt)
        self._evaluate(key, current, rt)

    def _terminate(self, key: PodKey, pod: dict, rt: NodeRuntime) -> None:
        for name in self.processes.terminate(key, grace_period(pod)):
            path = f"spec.containers{{{name}}}"
            event = new_event(
                pod, "Killing", f"Stopping container {name}", host=rt.name, field_path=path
            )
            self._record([event])

    def _exited(self, key: PodKey, uid: str, container: str, code: int, message: str) -> None:
        if key in self.starting:
            self.early_exits.setdefault(key, []).append((uid, container, code, message))
            return
        pod = self.store.get("pods", *key)
        if self._closing or pod is None or pod["metadata"].get("uid") != uid:
            return
        rt = self.nodes[pod["spec"]["nodeName"]]
        statuses = {cs["name"]: cs for cs in pod["status"].get("containerStatuses") or ()}
        if not rt.ready or "terminated" in (statuses.get(container) or {}).get("state", {}):
            return  # the node died, or a stage already ended it
        state: dict[str, Any] = {"state": "terminated", "exit_code": code}
        state["message"] = {"literal": message}
        state["reason"] = "Completed" if code == 0 else "Error"
        self._write(key, pod, {"containers": state}, Context(rt.name, rt.ip), {container})

    # -- node readiness -------------------------------------------------------------------
    def node_ready(self, name: str, ready: bool) -> None:
        """The node died (False) or came back (True); see the module docstring."""
        rt = self.nodes[name]
        if rt.ready == ready:
            return
        rt.ready = ready
        loop = asyncio.get_running_loop()
        for key in list(self.on_node[name]):
            pod = self.store.get("pods", *key)
            timer = self.timers.pop(key, None)
            if timer is not None:
                timer.handle.cancel()
            eviction = self.evictions.pop(key, None)
            if eviction is not None:
                eviction.cancel()
            if pod is None or is_terminal(pod):
                continue
            if ready:
                if _has_started(pod):
                    self._lose(key, pod, rt)
                else:
                    self._evaluate(key, pod, rt)
                continue
            self.processes.kill(key)
            self._not_ready(key, pod)
            wait = _toleration_seconds(pod)
            if wait is not None:
                self.evictions[key] = loop.call_later(wait, self._evict, key, rt)

    def _not_ready(self, key: PodKey, pod: dict) -> None:
        new = dict(pod)
        status = new["status"] = dict(pod.get("status") or {})
        set_condition(status, "Ready", False, rfc3339())
        try:
            pod = self.store.update("pods", new)
        except ApiError as e:
            log.warning("kubelet: marking %s/%s not ready failed: %s", *key, e)
            return
        event = new_event(
            pod, "NodeNotReady", "Node is not ready", "Warning", component="node-controller"
        )
        self._record([event])

    def _evict(self, key: PodKey, rt: NodeRuntime) -> None:
        self.evictions.pop(key, None)
        pod = self.store.get("pods", *key)
        if pod is not None and not is_terminal(pod) and not rt.ready:
            self._lose(key, pod, rt)

    def _lose(self, key: PodKey, pod: dict, rt: NodeRuntime) -> None:
        """Failed, reason NodeLost: its containers are gone with the node."""
        message = f"Node {rt.name} which was running pod {key[1]} is unresponsive"
        statuses = pod["status"].get("containerStatuses") or ()
        alive = {cs["name"] for cs in statuses if "terminated" not in cs.get("state", {})}
        alive |= {c["name"] for c in pod["spec"]["containers"]} - {cs["name"] for cs in statuses}
        nxt = {
            "containers": _UNKNOWN,
            "pod": {"phase": "Failed", "reason": "NodeLost", "message": {"literal": message}},
            "conditions": {
                "DisruptionTarget": {
                    "status": "True",
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                }
            },
        }
        self._write(key, pod, nxt, Context(rt.name, rt.ip), alive)
        self._record([new_event(pod, "NodeLost", message, "Warning", component="node-controller")])

    async def shutdown(self) -> None:
        """Stop every timer and kill every process; the store is left as it is."""
        self._closing = True
        for timer in self.timers.values():
            timer.handle.cancel()
        for handle in self.evictions.values():
            handle.cancel()
        self.timers.clear()
        self.evictions.clear()
        if self.starting:
            await asyncio.wait(list(self.starting.values()), timeout=10)
        await self.processes.shutdown()


def _has_started(pod: Mapping[str, Any]) -> bool:
    return any(
        "waiting" not in cs.get("state", {})
        for cs in (pod.get("status") or {}).get("containerStatuses") or ()
    )


def _toleration_seconds(pod: Mapping[str, Any]) -> float | None:
    """How long the pod may stay on an unreachable node: 0 without a toleration, None
    (for ever) with one that sets no tolerationSeconds, else the smallest it sets."""
    matching = [t for t in pod["spec"].get("tolerations") or () if tolerates(t, UNREACHABLE)]
    if not matching:
        return 0.0
    seconds = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
    return max(0.0, float(min(seconds))) if seconds else None

"""The simulated cluster's nodes: node pools, their `--nodes` spec strings, the Node objects,
and `Cluster`, which owns the scheduler and the kubelet and is what sim/__init__.py starts.

A pool spec is `name[=count]` followed by `:key=value` options:
  cpu=8  mem=32Gi  pods=110          allocatable (and capacity) per node
  taint=key[=value]:Effect           repeatable; Effect is NoSchedule|PreferNoSchedule|NoExecute
  label=key=value                    repeatable, on every node of the pool
  res=nvidia.com/gpu=1               repeatable extended resource
  kubelet=timed|process              timed: stages' delays; process: run the command locally
  profile=general|fast|<file.yaml>   the stages the kubelet follows
e.g. `gpu=2:cpu=8:mem=32Gi:taint=gpu=true:NoSchedule:kubelet=process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import random
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kubequeue.errors import ConfigError
from kubequeue.naming import LABEL_POOL, safe_label_value
from kubequeue.sim.kubelet import Kubelet, NodeRuntime
from kubequeue.sim.podstatus import micro_time, rfc3339
from kubequeue.sim.quantity import QuantityError, parse_quantity
from kubequeue.sim.scheduler import Scheduler
from kubequeue.sim.stages import StageError, load_profile
from kubequeue.sim.status import ApiError, not_found
from kubequeue.sim.store import Store

log = logging.getLogger(__name__)

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
UNREACHABLE = "node.kubernetes.io/unreachable"
KUBELET_VERSION = "v1.32.0"
EVENT_TTL = 3600.0  # kube-apiserver's --event-ttl default
MAX_EVENTS = 50_000  # and a cap, so a long benchmark does not hoard memory
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def to_dict(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class NodePool:
    name: str
    count: int
    cpu: str = "8"
    memory: str = "32Gi"
    max_pods: int = 110
    taints: tuple[Taint, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    kubelet: Literal["timed", "process"] = "timed"
    profile: str = "general"
    resources: Mapping[str, str] = field(default_factory=dict)  # extended, e.g. nvidia.com/gpu

    def __post_init__(self) -> None:
        validate_pool(self)


class PoolError(ConfigError):
    """A node pool is invalid; `why` says what, the message also names the pool."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"node pool {where!r}: {why}")
        self.why = why


def _fail(spec: str, why: str) -> PoolError:
    return PoolError(spec, why)


def validate_pool(pool: NodePool) -> None:
    """Raise PoolError naming the pool and what is wrong with it."""
    where = pool.name
    if not _DNS_LABEL.match(pool.name) or len(pool.name) > 50:
        raise _fail(where, f"name {pool.name!r} must be a DNS label (a-z, 0-9, '-'), <= 50 chars")
    if pool.count < 0 or pool.max_pods < 1:
        raise _fail(where, "count must be >= 0 and pods >= 1")
    for what, qty in (("cpu", pool.cpu), ("mem", pool.memory), *pool.resources.items()):
        try:
            if parse_quantity(qty) <= 0:
                raise _fail(where, f"{what}={qty} must be positive")
        except QuantityError as e:
            raise _fail(where, f"{what}={qty}: {e}") from e
    for key, value in [*pool.labels.items(), *((t.key, t.value) for t in pool.taints)]:
        if not _QUALIFIED.match(key) or not _LABEL_VALUE.match(value) or len(value) > 63:
            raise _fail(where, f"bad label/taint {key}={value} (keys like a.b/c, values <= 63)")
    if any(t.effect not in EFFECTS for t in pool.taints):
        raise _fail(where, f"taint effect must be one of {', '.join(EFFECTS)}")
    if pool.kubelet not in ("timed", "process"):
        raise _fail(where, f"kubelet must be timed or process, not {pool.kubelet!r}")
    try:
        load_profile(pool.profile)
    except StageError as e:
        raise _fail(where, str(e)) from e


def _pair(spec: str, text: str, what: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise _fail(spec, f"{what} needs key=value, got {text!r}")
    return key, value


def _count(spec: str, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _fail(spec, f"{what} must be a whole number, got {text!r}") from None


def parse_pool(spec: str) -> NodePool:
    """`gpu=2:cpu=8:mem=32Gi:taint=gpu=true:NoSchedule:kubelet=process` → NodePool."""
    tokens = spec.strip().split(":")
    name, _, count = tokens[0].partition("=")
    fields: dict[str, Any] = {"name": name, "count": _count(spec, count or "1", "count")}
    taints, labels, extra = [], {}, {}
    i = 1
    while i < len(tokens):
        key, value = _pair(spec, tokens[i], "an option")
        if key == "taint":
            if i + 1 >= len(tokens) or tokens[i + 1] not in EFFECTS:
                raise _fail(spec, f"taint={value} needs an effect: taint=key=value:NoSchedule")
            tkey, _, tvalue = value.partition("=")
            taints.append(Taint(tkey, tvalue, tokens[i + 1]))
            i += 1
        elif key == "label":
            lkey, lvalue = _pair(spec, value, "label")
            labels[lkey] = lvalue
        elif key == "res":
            rkey, rvalue = _pair(spec, value, "res")
            extra[rkey] = rvalue
        elif key in ("cpu", "kubelet", "profile"):
            fields[key] = value
        elif key in ("mem", "memory"):
            fields["memory"] = value
        elif key in ("pods", "max-pods"):
            fields["max_pods"] = _count(spec, value, "pods")
        else:
            known = "cpu, mem, pods, taint, label, res, kubelet, profile"
            raise _fail(spec, f"unknown option {key!r} (options: {known})")
        i += 1
    try:
        return NodePool(**fields, taints=tuple(taints), labels=labels, resources=extra)
    except PoolError as e:
        raise _fail(spec, e.why) from None


# -- node objects -------------------------------------------------------------------------
def node_name(pool: NodePool, index: int) -> str:
    return f"{pool.name}-{index}"


def _conditions(ready: bool, now: str) -> list[dict[str, Any]]:
    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }

    if not ready:
        gone = "Kubelet stopped posting node status."
        kinds = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
        return [cond(k, "Unknown", "NodeStatusUnknown", gone) for k in kinds]
    return [
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]


def node_object(pool: NodePool, index: int, number: int) -> dict[str, Any]:
    """The Node a kubelet of `pool` registers; `number` is its index in the whole cluster."""
    name = node_name(pool, index)
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": str(pool.max_pods),
        "ephemeral-storage": "100Gi",
        **pool.resources,
    }
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": name,
        "node.kubernetes.io/instance-type": safe_label_value(f"sim.{pool.cpu}cpu.{pool.memory}"),
        LABEL_POOL: pool.name,
        **pool.labels,
    }
    cidr = f"10.{64 + number // 256}.{number % 256}.0/24"
    spec: dict[str, Any] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    if pool.taints:
        spec["taints"] = [t.to_dict() for t in pool.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "kubequeue.io/sim-kubelet": pool.kubelet,
                "kubequeue.io/sim-profile": pool.profile,
            },
        },
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": _conditions(True, rfc3339()),
            "addresses": [
                {"type": "InternalIP", "address": node_ip(number)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{number:032x}",
                "systemUUID": f"{number:032x}",
                "bootID": f"{number:032x}",
                "kernelVersion": platform.release(),
                "osImage": "kubequeue simulated node",
                "containerRuntimeVersion": f"kubequeue-sim://{pool.kubelet}",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def node_lease(name: str, uid: str) -> dict[str, Any]:
    """The node's heartbeat Lease in kube-node-lease (`kubectl describe node` shows it).
    Simulated kubelets never renew it: nothing in the simulator reads it."""
    owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [owner]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_time()},
    }


def node_ip(number: int) -> str:
    return f"10.0.{number // 250}.{number % 250 + 2}"


# -- the cluster --------------------------------------------------------------------------
class Cluster:
    """Nodes, scheduler and kubelet of one simulated cluster (one event loop, one store)."""

    def __init__(self, store: Store, pools: Sequence[NodePool], *, seed: int | None = None) -> None:
        names = [p.name for p in pools]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ConfigError(f"node pool names must be unique: {', '.join(doubled)} given twice")
        self.store = store
        self.pools = tuple(pools)
        self.rng = random.Random(seed)
        self.scheduler = Scheduler(store)
        self.nodes: list[dict[str, Any]] = []
        runtimes: dict[str, NodeRuntime] = {}
        for pool in self.pools:
            profile = load_profile(pool.profile)
            for index in range(pool.count):
                number = len(self.nodes)
                node = node_object(pool, index, number)
                self.nodes.append(node)
                net = node["spec"]["podCIDR"].removesuffix("0/24")
                name = node["metadata"]["name"]
                runtimes[name] = NodeRuntime(name, node_ip(number), pool.kubelet, profile, net)
        self.kubelet = Kubelet(store, runtimes, self.rng)
        self._events: deque[tuple[float, str, str]] = deque()
        self._stopping: asyncio.Event | None = None
        self._installed = False

    def install(self) -> None:
        """Register the nodes and start listening to the store."""
        for node in self.nodes:
            node = self._create(node)
            self._create(node_lease(node["metadata"]["name"], node["metadata"].get("uid", "")))
        self.scheduler.load()
        self.store.add_listener(self._on_change)
        self._installed = True

    def _create(self, obj: dict[str, Any]) -> dict[str, Any]:
        resource = "nodes" if obj["kind"] == "Node" else "leases"
        try:
            return self.store.create(resource, obj)
        except ApiError as e:
            if e.code != 409:
                raise
            log.info("%s %s already exists; keeping it", resource, obj["metadata"]["name"])
            return obj

    def _on_change(self, kind: str, resource: str, obj: dict) -> None:
        if resource == "pods":
            self.scheduler.on_change(kind, resource, obj)
            self.kubelet.on_change(kind, obj)
        elif resource == "nodes":
            self.scheduler.on_change(kind, resource, obj)
        elif resource == "events" and kind == "ADDED":
            meta = obj["metadata"]
            self._events.append((time.monotonic(), meta.get("namespace") or "", meta["name"]))

    async def run(self) -> None:
        """Until shutdown: resync the kubelet, then expire old events now and then."""
        self._stopping = asyncio.Event()
        self.kubelet.resync()
        self.scheduler.retry()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=10)
            self.expire_events()

    def expire_events(self, ttl: float = EVENT_TTL, keep: int = MAX_EVENTS) -> int:
        """Remove events older than `ttl` seconds and the oldest beyond `keep`."""
        removed = 0
        limit = time.monotonic() - ttl
        while self._events and (self._events[0][0] < limit or len(self._events) > keep):
            _, namespace, name = self._events.popleft()
            removed += self.store.remove("events", namespace, name) is not None
        return removed

    async def shutdown(self) -> None:
        """Kill every process-mode container, cancel every timer, stop listening."""
        if self._stopping is not None:
            self._stopping.set()
        await self.kubelet.shutdown()
        if self._installed:
            self.store.remove_listener(self._on_change)
            self._installed = False

    def set_node_ready(self, node: str, ready: bool) -> None:
        """The "node NotReady" fault: Ready=Unknown and the unreachable taints (NoSchedule,
        NoExecute) as the node lifecycle controller sets them; back to Ready undoes both."""
        current = self.store.get("nodes", None, node)
        if current is None or node not in self.kubelet.nodes:
            raise not_found("nodes", node)
        now = rfc3339()
        taints = [
            t
            for t in (current.get("spec") or {}).get("taints") or ()
            if t.get("key") != UNREACHABLE
        ]
        if not ready:
            taints += [
                {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now},
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now},
            ]
        new = dict(current)
        new["spec"] = {k: v for k, v in (current.get("spec") or {}).items() if k != "taints"}
        if taints:
            new["spec"]["taints"] = taints
        new["status"] = {**current["status"], "conditions": _conditions(ready, now)}
        self.store.update("nodes", new)
        self.kubelet.node_ready(node, ready)

"""The simulated cluster's state: every object, one global resourceVersion, the recent change
history that watches resume from, and the pods' container logs.

Everything runs in one asyncio event loop, so the store is plain synchronous code with no
locks. Objects are the dicts the API returns (Kubernetes JSON shape, camelCase). The store
owns them and never changes one in place: `update` stores a new dict. Callers therefore
must not mutate what `get`/`list` return — copy what you change (a shallow copy of the dicts
on the path you touch is enough), then `update`.

Logs (for the kubelet): `append_log(namespace, pod, container, text)` adds output,
`close_log(...)` marks the container terminated (ends `follow` streams), `read_log(...)`
returns everything so far and `await wait_log(..., offset)` waits until there is more than
`offset` characters or the log is closed. Logs go when the pod is removed.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from kubequeue.sim import status

Objects = list[dict]  # (a plain alias: `Store.list` shadows the builtin in the class body)
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
Listener = Callable[[ChangeType, str, dict], None]  # (type, resource, object)

CLUSTER_SCOPED = frozenset({"nodes", "namespaces"})
NAMESPACED = frozenset({"pods", "events", "leases", "serviceaccounts", "configmaps", "secrets"})
RESOURCES = CLUSTER_SCOPED | NAMESPACED

# generateName suffixes use the alphabet of k8s.io/apimachinery/pkg/util/rand (no vowels,
# no look-alike digits), five characters as the API server does.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


_stamp: list[Any] = [0, ""]  # (second, its text): formatting once per second, not per object
_uid_random = random.Random()


def now_rfc3339() -> str:
    """A timestamp as the API writes them (`2026-11-25T10:00:00Z`, second precision)."""
    second = int(time.time())
    if second != _stamp[0]:
        _stamp[0], _stamp[1] = second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    text: str = _stamp[1]
    return text


def new_uid() -> str:
    """A random (version 4) UUID, formatted without the cost of `uuid.uuid4()`."""
    h = f"{_uid_random.getrandbits(128):032x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


class Change(NamedTuple):
    """One entry of the watch history (a tuple: five of these are made per pod lifecycle)."""

    rv: int
    type: ChangeType
    resource: str
    obj: dict
    prev: dict | None = None  # the object before the change (None for ADDED)


@dataclass
class _Log:
    chunks: list[str] = field(default_factory=list)
    size: int = 0
    closed: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


class Store:
    def __init__(self, watch_window: int = 10_000) -> None:
        self.resource_version = 0
        self.watch_window = watch_window
        # resource -> namespace ("" for cluster-scoped) -> name -> object
        self._objects: dict[str, dict[str, dict[str, dict]]] = {r: {} for r in RESOURCES}
        self._history: list[Change] = []
        self._history_rvs: list[int] = []
        # Watches may resume from any RV >= this one; older ones get 410 Gone.
        self.oldest_resumable = 0
        self._listeners: list[Listener] = []
        # The change being announced; listeners that need the previous object read it here.
        self.last_change: Change | None = None
        self._logs: dict[tuple[str, str], dict[str, _Log]] = {}  # (namespace, pod) -> container
        self._random = random.Random()

    # -- reading ---------------------------------------------------------------------------
    def get(self, resource: str, namespace: str | None, name: str) -> dict | None:
        return self._table(resource).get(namespace or "", {}).get(name)

    def list(self, resource: str, namespace: str | None = None) -> Objects:
        table = self._table(resource)
        if namespace is not None and resource not in CLUSTER_SCOPED:
            return list(table.get(namespace, {}).values())
        out: Objects = []
        for by_name in table.values():
            out.extend(by_name.values())
        return out

    def count(self, resource: str) -> int:
        return sum(len(by_name) for by_name in self._table(resource).values())

    # -- writing ---------------------------------------------------------------------------
    def create(self, resource: str, obj: dict) -> dict:
        """Store a new object; sets uid, resourceVersion, creationTimestamp, the name from
        generateName and the namespace ("default" when a namespaced object names none)."""
        table = self._table(resource)
        obj = dict(obj)
        meta = obj["metadata"] = dict(obj.get("metadata") or {})
        ns = self._namespace_of(resource, meta)
        by_name = table.setdefault(ns, {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generated_name(meta["generateName"], by_name)
        name = meta.get("name", "")
        if name in by_name:
            raise status.already_exists(resource, name)
        self.resource_version += 1
        meta["uid"] = new_uid()
        meta["resourceVersion"] = str(self.resource_version)
        meta["creationTimestamp"] = now_rfc3339()
        by_name[name] = obj
        self._emit("ADDED", resource, obj, None)
        return obj

    def update(self, resource: str, obj: dict) -> dict:
        """Replace an object whole (status included). A stale metadata.resourceVersion gets
        409 Conflict, a missing object 404; an update that changes nothing keeps the RV."""
        meta = dict(obj.get("metadata") or {})
        ns = self._namespace_of(resource, meta)
        name = meta.get("name", "")
        by_name = self._table(resource).get(ns, {})
        old = by_name.get(name)
        if old is None:
            raise status.not_found(resource, name)
        old_meta = old["metadata"]
        given_rv = meta.get("resourceVersion")
        if given_rv and given_rv != old_meta["resourceVersion"]:
            raise status.conflict(resource, name)
        # uid and creationTimestamp are immutable; a client cannot change them.
        meta["uid"] = old_meta["uid"]
        meta["creationTimestamp"] = old_meta["creationTimestamp"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new = dict(obj)
        new["metadata"] = meta
        if new == old:
            return old
        self.resource_version += 1
        meta["resourceVersion"] = str(self.resource_version)
        by_name[name] = new
        self._emit("MODIFIED", resource, new, old)
        return new

    def remove(self, resource: str, namespace: str | None, name: str) -> dict | None:
        """Delete now (no grace): watchers get DELETED with the deletion's resourceVersion."""
        by_name = self._table(resource).get(namespace or "", {})
        old = by_name.pop(name, None)
        if old is None:
            return None
        self.resource_version += 1
        gone = dict(old)
        gone["metadata"] = {**old["metadata"], "resourceVersion": str(self.resource_version)}
        if resource == "pods":
            self._drop_logs(namespace or "", name)
        self._emit("DELETED", resource, gone, old)
        return gone

    # -- watching --------------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def compact(self) -> None:
        """Forget the history: watches from any RV older than the current one get 410."""
        self._history.clear()
        self._history_rvs.clear()
        self.oldest_resumable = self.resource_version

    def changes_since(self, rv: int) -> Sequence[Change]:
        """Every change after `rv` (all resources, oldest first); 410 Gone if compacted."""
        if rv < self.oldest_resumable:
            raise status.gone(f"too old resource version: {rv} ({self.oldest_resumable})")
        start = bisect.bisect_right(self._history_rvs, rv)
        return self._history[start:]

    def _emit(self, kind: ChangeType, resource: str, obj: dict, prev: dict | None) -> None:
        change = Change(self.resource_version, kind, resource, obj, prev)
        self.last_change = change
        self._history.append(change)
        self._history_rvs.append(self.resource_version)
        if len(self._history) >= 2 * self.watch_window:
            self._trim()
        for listener in self._listeners:
            listener(kind, resource, obj)

    def _trim(self) -> None:
        # Trimming in batches keeps appends O(1) amortised.
        drop = len(self._history) - self.watch_window
        self.oldest_resumable = self._history_rvs[drop - 1]
        del self._history[:drop]
        del self._history_rvs[:drop]

    # -- logs ------------------------------------------------------------------------------
    def append_log(self, namespace: str, name: str, container: str, text: str) -> None:
        log = self._log(namespace, name, container)
        log.chunks.append(text)
        log.size += len(text)
        log.wake()

    def close_log(self, namespace: str, name: str, container: str) -> None:
        """The container terminated: `follow` readers stop once they have read everything."""
        log = self._log(namespace, name, container)
        log.closed = True
        log.wake()

    def read_log(self, namespace: str, name: str, container: str, offset: int = 0) -> str:
        log = self._logs.get((namespace, name), {}).get(container)
        if log is None:
            return ""
        if len(log.chunks) > 1:
            log.chunks[:] = ["".join(log.chunks)]
        return log.chunks[0][offset:] if log.chunks else ""

    def log_closed(self, namespace: str, name: str, container: str) -> bool:
        log = self._logs.get((namespace, name), {}).get(container)
        return log is not None and log.closed

    async def wait_log(self, namespace: str, name: str, container: str, offset: int) -> None:
        """Return once the log is longer than `offset`, closed, or the pod removed."""
        log = self._log(namespace, name, container)
        if log.size > offset or log.closed:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        log.waiters.append(waiter)
        await waiter

    def _log(self, namespace: str, name: str, container: str) -> _Log:
        containers = self._logs.setdefault((namespace, name), {})
        log = containers.get(container)
        if log is None:
            log = containers[container] = _Log()
        return log

    def _drop_logs(self, namespace: str, name: str) -> None:
        for log in self._logs.pop((namespace, name), {}).values():
            log.closed = True
            log.wake()

    # -- helpers ---------------------------------------------------------------------------
    def _table(self, resource: str) -> dict[str, dict[str, dict]]:
        table = self._objects.get(resource)
        if table is None:
            raise status.page_not_found()
        return table

    @staticmethod
    def _namespace_of(resource: str, meta: dict[str, Any]) -> str:
        if resource in CLUSTER_SCOPED:
            meta.pop("namespace", None)
            return ""
        ns: str = meta.get("namespace") or "default"
        meta["namespace"] = ns
        return ns

    def _generated_name(self, prefix: str, taken: dict[str, dict]) -> str:
        while True:
            suffix = "".join(self._random.choice(_ALPHABET) for _ in range(5))
            name = f"{prefix}{suffix}"
            if name not in taken:
                return name

"""Watches: one store listener fans every change out to the open watch streams of its
resource, each filtered by namespace and selectors the way the watch cache does (an object
that stops matching a selector is DELETED for that watcher, one that starts matching is
ADDED). Events are pre-encoded lines; a stream writes whatever has queued in one chunk."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kubequeue.sim import status
from kubequeue.sim.faults import Faults
from kubequeue.sim.selectors import Matcher
from kubequeue.sim.store import Change, Store
from kubequeue.sim.wire import dumps, encode_stored

LineCache = dict[tuple[str, int], bytes]  # (type, id(object)) -> line, for one fan-out
Encoder = Callable[[str, dict, LineCache], bytes]  # (type, object, cache) -> line
MAX_BUFFER = 64 * 1024 * 1024  # a watcher this far behind is closed, as the apiserver does


def json_line(kind: str, obj: dict, cache: LineCache) -> bytes:
    """`{"type":..,"object":..}\\n`, encoded once per change and shared by every watcher
    (the bytes are immutable; watchers only queue them)."""
    key = (kind, id(obj))
    line = cache.get(key)
    if line is None:
        encoded = encode_stored(obj)  # a create's answer then reuses these bytes
        line = cache[key] = b'{"type":"' + kind.encode() + b'","object":' + encoded + b"}\n"
    return line


@dataclass(eq=False)
class Watcher:
    resource: str
    namespace: str | None
    matcher: Matcher | None
    encode: Encoder
    bookmark: Callable[[int], bytes] | None = None  # set when the client allows bookmarks
    min_rv: int = 0  # changes at or below this RV were already covered
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    closed: bool = False
    overflow: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, line: bytes) -> None:
        if self.closed:
            return
        self.chunks.append(line)
        self.size += len(line)
        if self.size > MAX_BUFFER:
            self.overflow = True
            self.close()
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def offer(self, change: Change, cache: LineCache) -> None:
        obj = change.obj
        if change.rv <= self.min_rv:
            return
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return
        if self.matcher is None:
            self.push(self.encode(change.type, obj, cache))
            return
        if change.type == "DELETED":
            if self.matcher(obj):
                self.push(self.encode("DELETED", obj, cache))
            return
        now = self.matcher(obj)
        before = change.prev is not None and self.matcher(change.prev)
        if now:
            self.push(self.encode("MODIFIED" if before else "ADDED", obj, cache))
        elif before and change.prev is not None:
            # Left the selection: DELETED carrying the last matching state at the new RV.
            prev = change.prev
            gone = {**prev, "metadata": {**prev["metadata"], "resourceVersion": str(change.rv)}}
            self.push(self.encode("DELETED", gone, {}))  # a new dict: its id may be reused


class WatchHub:
    def __init__(self, store: Store, faults: Faults) -> None:
        self.store = store
        self.faults = faults
        self.watchers: dict[str, set[Watcher]] = {}
        store.add_listener(self._on_change)

    def _on_change(self, kind: str, resource: str, obj: dict) -> None:
        watchers = self.watchers.get(resource)
        change = self.store.last_change
        if not watchers or change is None:
            return
        cache: LineCache = {}
        for w in list(watchers):
            w.offer(change, cache)

    def open(self, w: Watcher, rv: int | None, initial_end_bookmark: bool = False) -> None:
        """Queue the initial events and start following; atomic (no await), so no change
        falls between the two. `rv` None: every current object as ADDED first."""
        cache: LineCache = {}
        if rv is None:
            for obj in self.store.list(w.resource, w.namespace):
                if w.matcher is None or w.matcher(obj):
                    w.push(w.encode("ADDED", obj, cache))
            if initial_end_bookmark:
                w.push(self._initial_end(w))
        elif rv > self.store.resource_version:
            w.min_rv = rv  # a version from the future: follow from there on
        else:
            for change in self.store.changes_since(rv):
                if change.resource == w.resource:
                    w.offer(change, cache)
        self.watchers.setdefault(w.resource, set()).add(w)

    def _initial_end(self, w: Watcher) -> bytes:
        rv = self.store.resource_version
        line = w.bookmark(rv) if w.bookmark else b""
        # The end of the initial events is a bookmark annotated so (sendInitialEvents).
        event: dict[str, Any] = json.loads(line) if line else {"type": "BOOKMARK", "object": {}}
        event["object"]["metadata"] = {
            "resourceVersion": str(rv),
            "annotations": {"k8s.io/initial-events-end": "true"},
        }
        return dumps(event) + b"\n"

    def close(self, w: Watcher) -> None:
        w.close()
        watchers = self.watchers.get(w.resource)
        if watchers is not None:
            watchers.discard(w)

    def count(self) -> int:
        return sum(len(ws) for ws in self.watchers.values())

    def drop_all(self) -> int:
        """End every open watch now (the 'dropped watch connections' fault)."""
        dropped = 0
        for watchers in self.watchers.values():
            for w in list(watchers):
                w.close()
                dropped += 1
        return dropped

    def send_bookmarks(self) -> None:
        rv = self.store.resource_version
        for watchers in self.watchers.values():
            for w in watchers:
                if w.bookmark is not None and not w.chunks:
                    w.push(w.bookmark(rv))

    async def bookmark_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.send_bookmarks()

    async def serve(
        self, request: web.BaseRequest, w: Watcher, timeout: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        timer = asyncio.get_running_loop().call_later(timeout, w.close)
        try:
            await self._pump(response, w)
        except ConnectionResetError:
            return response  # the client went away
        finally:
            timer.cancel()
            self.close(w)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    async def _pump(self, response: web.StreamResponse, w: Watcher) -> None:
        while True:
            if w.overflow:
                return
            if w.chunks:
                data = b"".join(w.chunks)
                w.chunks.clear()
                w.size = 0
                await response.write(data)
                if self.faults.drop_watch():
                    return
                continue
            if w.closed:
                return
            w.wake.clear()
            await w.wake.wait()


async def serve_error(request: web.BaseRequest, error: status.ApiError) -> web.StreamResponse:
    """A watch that cannot start (410 Gone): HTTP 200 and one ERROR event, as the watch cache
    answers; clients raise the Status's code."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(dumps({"type": "ERROR", "object": error.status()}) + b"\n")
    await response.write_eof()
    return response

"""List+watch of the task pods of one (context, namespace), in kopf's three stacked loops:

    watch_forever   an endless reconnect loop; the ONE place that handles 410 Gone
      list_then_watch   list (paged), hand the full list over, then watch from its RV
        watch_once          one watch request, resumed from the last RV seen

`resourceVersion` is taken from every event, bookmarks included. When the server forgot that
version (410 Gone, raised by `watch_once` or by a paged list whose continue token expired),
`watch_forever` goes round again: a fresh list, which the consumer reconciles against what it
knew. Any other error also goes round again after a backoff. Every exit of the loop logs
one line saying why. Pods travel as the API's JSON (no client model objects: a 10,000-pod
list deserializes in milliseconds, not seconds).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import kubernetes
import orjson
from kubernetes.client.exceptions import ApiException

from kubequeue import kube, metrics, naming
from kubequeue.errors import KubeApiError, KubeGoneError
from kubequeue.watcher.tracker import Target

log = logging.getLogger(__name__)

Pod = dict[str, Any]
# The watcher labels pods of finished tasks it keeps (deleteWorkerPods false) so that they
# leave the watch; KubernetesExecutor does the same with airflow_executor_done=True.
LABEL_DONE = f"{naming.GROUP}/done"
SELECTOR = f"{naming.POD_SELECTOR},{LABEL_DONE}!=true"
PAGE = 500
# Server-side watch timeout, jittered like client-go's (5-10 min) so that many watches do
# not reconnect in step.
WATCH_TIMEOUT = (300, 600)
# Seconds before reconnecting after an error; the last value repeats.
ERROR_BACKOFFS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class Observation:
    """What a watch loop hands the consumer: a full list, or one watch event."""

    kind: Literal["list", "event"]
    target: Target
    at: float  # watcher clock when it arrived
    pods: Sequence[Pod] = ()
    type: str = ""  # ADDED | MODIFIED | DELETED for kind "event"


Sink = Callable[[Observation], None]


@dataclass
class WatchLoop:
    """One (context, namespace)'s loop. `stop()` ends it promptly, from any thread."""

    api: kubernetes.client.CoreV1Api
    target: Target
    sink: Sink
    selector: str = SELECTOR
    watch_timeout: tuple[int, int] = WATCH_TIMEOUT
    backoffs: Sequence[float] = ERROR_BACKOFFS
    stopping: threading.Event = field(default_factory=threading.Event)
    _response: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        context, namespace = self.target
        return f"{context or 'default'}/{namespace}"

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            if self._response is not None:
                # Unblocks a read waiting on the socket. The errors mean the response was
                # already closed or released: that watch request is ending anyway.
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    self._response.shutdown()

    # --- the outer loop ------------------------------------------------------------------

    def watch_forever(self, iterations: int | None = None) -> str:
        """Reconnect loop. `iterations` bounds how many list+watch rounds run (tests).
        Returns (and logs) why it ended."""
        reason, rounds, failures = "start", 0, 0
        while True:
            if self.stopping.is_set():
                why = "stopped"
                break
            if iterations is not None and rounds >= iterations:
                why = f"iteration bound {iterations} reached"
                break
            rounds += 1
            metrics.WATCH_RESTARTS.labels(reason).inc()
            try:
                self.list_then_watch()
                reason = "start"
            except KubeGoneError as e:
                # THE place 410 is handled: the RV (or list continue token) is too old; the
                # next round lists afresh and the consumer reconciles.
                log.info("watch %s: %s; listing again", self.name, e)
                reason, failures = "gone", 0
            except KubeApiError as e:
                if self.stopping.is_set():
                    continue
                delay = self.backoffs[min(failures, len(self.backoffs) - 1)]
                failures += 1
                log.warning("watch %s failed (%s); listing again in %.1fs", self.name, e, delay)
                reason = "error"
                self.stopping.wait(delay)
        log.info("watch loop %s ended: %s", self.name, why)
        return why

    # --- list, then watch ----------------------------------------------------------------

    def list_then_watch(self) -> None:
        pods, rv = self.list_pods()
        self.sink(Observation("list", self.target, time.time(), pods=pods))
        while not self.stopping.is_set():
            rv = self.watch_once(rv)

    def list_pods(self) -> tuple[list[Pod], str]:
        pods: list[Pod] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {
                "label_selector": self.selector,
                "limit": PAGE,
                "_preload_content": False,
                "_request_timeout": kube.REQUEST_TIMEOUT,
            }
            if token:
                kw["_continue"] = token
            page = self._call(self.api.list_namespaced_pod, self.target[1], **kw)
            data = orjson.loads(page.data)
            pods.extend(data.get("items") or ())
            meta = data.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return pods, str(meta.get("resourceVersion") or "")

    def watch_once(self, rv: str) -> str:
        """One watch request from `rv`; returns the last RV seen when the server ends it."""
        timeout = random.randint(*self.watch_timeout)
        response = self._call(
            self.api.list_namespaced_pod,
            self.target[1],
            label_selector=self.selector,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=rv,
            timeout_seconds=timeout,
            _preload_content=False,
            _request_timeout=(kube.REQUEST_TIMEOUT[0], timeout + 30),
        )
        with self._lock:
            self._response = response
        try:
            for event in _lines(response, self):
                rv = self._handle(event, rv)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return rv

    def _handle(self, event: dict[str, Any], rv: str) -> str:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            raise _status_error(obj)
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.sink(Observation("event", self.target, time.time(), pods=(obj,), type=kind))
        return new_rv  # BOOKMARK events carry only this

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a client call (for its raw urllib3 response), errors mapped by kubequeue.kube."""
        try:
            return fn(*args, **kw)
        except Exception as e:
            raise kube.api_error(e) from e


def _lines(response: Any, loop: WatchLoop) -> Iterator[dict[str, Any]]:
    """JSON objects of a watch response, one per line."""
    buffer = b""
    try:
        for chunk in response.stream(64 * 1024, decode_content=True):
            # Split a chunk's complete lines in one go (not one split per line, which copies
            # the rest of the buffer each time); keep the unfinished tail for the next chunk.
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    # orjson: parsing watch events is the watcher's largest CPU cost per pod.
                    yield orjson.loads(line)
    except Exception as e:
        if loop.stopping.is_set():
            return
        raise kube.api_error(e) from e


def _status_error(status: dict[str, Any]) -> KubeApiError:
    """A watch ERROR event (a Status object) as the error its HTTP code maps to."""
    exc = ApiException(status=int(status.get("code") or 500), reason=status.get("reason") or "")
    exc.body = json.dumps(status).encode()
    exc.headers = {}
    return kube.api_error(exc)

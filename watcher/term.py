"""One leadership term: the watch loops, and the one thread that owns the task state.

Watch loops (one thread per (context, namespace)) only put observations into an inbox. The
processor thread takes them in batches, lets the tracker decide, writes each batch to Redis
in one transaction (retrying while Redis is away), then updates metrics and hands pod
deletions/labels to a small thread pool. Periodically it also picks up revocations, fails
stuck pods fast, renews in-flight slots and refreshes the gauges.

A term ends when leadership is lost, on shutdown, or on an unexpected error; the service
starts a new one (from what Redis holds) while this replica leads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import kubernetes

from kubequeue import kube, metrics, queues
from kubequeue.errors import KubeApiError, KubeNotFoundError
from kubequeue.watcher import measure
from kubequeue.watcher.podapi import PodApi
from kubequeue.watcher.publisher import REDIS_ERRORS, Publisher
from kubequeue.watcher.tracker import Action, Batch, PoolPolicy, Tracker
from kubequeue.watcher.watch import LABEL_DONE, WATCH_TIMEOUT, Observation, WatchLoop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Done:
    """A kept pod was labelled done (it leaves the watch)."""

    id: str


@dataclass(frozen=True)
class Timing:
    sweep_interval: float = 1.0  # fail fast, revocations, in-flight gauge
    gauge_interval: float = 5.0  # queue depth / oldest queued age
    renew_interval: float = 60.0  # in-flight slot leases (they last 900 s)
    max_batch: int = 2000  # observations per Redis transaction
    watch_timeout: tuple[int, int] = WATCH_TIMEOUT
    action_threads: int = 4


class Term:
    def __init__(
        self,
        pools: Mapping[str, PoolPolicy],
        queue_names: Sequence[str],
        apis: Mapping[str | None, kubernetes.client.ApiClient],
        publisher: Publisher,
        may_publish: Callable[[], bool],
        timing: Timing = Timing(),
        tombstone: float | None = None,
    ) -> None:
        self.pools = dict(pools)
        self.queue_names = list(queue_names)
        self.core = {ctx: kubernetes.client.CoreV1Api(api) for ctx, api in apis.items()}
        self.pods = {ctx: PodApi(api) for ctx, api in apis.items()}
        self.publisher = publisher
        self.may_publish = may_publish
        self.timing = timing
        self.tracker = Tracker(self.pools) if tombstone is None else Tracker(self.pools, tombstone)
        # SimpleQueue: a put or get is one C call, not three lock operations in Python (one
        # of each per watch event).
        self.inbox: queue.SimpleQueue[Observation | Done] = queue.SimpleQueue()
        self.stopping = threading.Event()
        targets = sorted({p.target for p in self.pools.values()}, key=str)
        self.loops = [
            WatchLoop(self.core[ctx], (ctx, ns), self.inbox.put, watch_timeout=timing.watch_timeout)
            for ctx, ns in targets
        ]
        self.actions = ThreadPoolExecutor(timing.action_threads, thread_name_prefix="pod-action")
        self.thread = threading.Thread(target=self._run, name="watcher-term", daemon=True)
        self.ended: str | None = None
        self._in_flight = measure.InFlightGauge()

    def start(self) -> Term:
        self.thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping.set()
        for loop in self.loops:
            loop.stop()
        self.thread.join(timeout)
        self.actions.shutdown(wait=True, cancel_futures=True)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    # --- the processor thread ------------------------------------------------------------

    def _run(self) -> None:
        threads: list[threading.Thread] = []
        try:
            if not self._load():
                self.ended = "stopped before the published state could be read"
                return
            for loop in self.loops:
                t = threading.Thread(target=loop.watch_forever, name=f"watch-{loop.name}",
                                     daemon=True)  # fmt: skip
                t.start()
                threads.append(t)
            self.ended = self._process()
        except Exception as e:  # a bug must end the term loudly, not silently stop publishing
            log.exception("watcher term failed")
            self.ended = f"error: {e}"
        finally:
            self.stopping.set()
            for loop in self.loops:
                loop.stop()
            for t in threads:
                t.join(timeout=10)
            # A follower exports no stale gauges: only the leader's count.
            self._in_flight.set({})
            metrics.QUEUE_DEPTH.clear()
            metrics.OLDEST_QUEUED_AGE.clear()
            log.info("watcher term ended: %s", self.ended)

    def _load(self) -> bool:
        attempt = 0
        while not self.stopping.is_set():
            try:
                self.tracker.load(self.publisher.load())
                log.info("term started: %d tracked tasks, watching %s", len(self.tracker.tasks),
                         ", ".join(loop.name for loop in self.loops))  # fmt: skip
                return True
            except REDIS_ERRORS as e:
                delay = self.publisher.backoffs[min(attempt, len(self.publisher.backoffs) - 1)]
                attempt += 1
                log.warning("reading published state failed (attempt #%d): %s", attempt, e)
                self.stopping.wait(delay)
        return False

    def _process(self) -> str:
        due: dict[str, float] = defaultdict(float)
        while not self.stopping.is_set():
            batch = self._drain()
            now = time.time()
            if now >= due["sweep"]:
                due["sweep"] = now + self.timing.sweep_interval
                batch.extend(self._sweep(now))
            if now >= due["gauges"]:
                due["gauges"] = now + self.timing.gauge_interval
                self._queue_gauges(now)
            if now >= due["renew"]:
                due["renew"] = now + self.timing.renew_interval
                self._renew()
            if batch and not self._commit(batch):
                return "leadership lost" if not self.may_publish() else "stopped while publishing"
        return "stopped"

    def _drain(self) -> Batch:
        batch = Batch()
        try:
            item = self.inbox.get(timeout=self.timing.sweep_interval)
        except queue.Empty:
            return batch
        for _ in range(self.timing.max_batch):
            batch.extend(self._apply(item))
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
        else:
            batch.extend(self._apply(item))
        return batch

    def _apply(self, item: Observation | Done) -> Batch:
        if isinstance(item, Done):
            return self.tracker.marked_done(item.id)
        if item.kind == "list":
            return self.tracker.relisted(item.target, item.pods, item.at)
        return self.tracker.seen(item.pods[0], item.at, deleted=item.type == "DELETED")

    def _sweep(self, now: float) -> Batch:
        batch = Batch()
        try:
            batch.extend(self.tracker.revoke(self.publisher.new_revocations(), now))
        except REDIS_ERRORS as e:
            log.warning("reading revocations failed: %s", e)
        batch.extend(self.tracker.sweep(now))
        batch.extend(self.tracker.expire(now))
        self._in_flight.set(self.tracker.in_flight())
        return batch

    def _commit(self, batch: Batch) -> bool:
        def keep_trying() -> bool:
            return not self.stopping.is_set() and self.may_publish()

        if not keep_trying() or not self.publisher.write_until_done(batch, keep_trying):
            return False
        measure.record(batch.events)
        for action in batch.actions:
            self.actions.submit(self._act, action)
        return True

    # --- periodic upkeep -----------------------------------------------------------------

    def _queue_gauges(self, now: float) -> None:
        try:
            rows = queues.backlog(self.publisher.client, self.publisher.keys, self.queue_names)
        except REDIS_ERRORS as e:
            log.warning("reading queue depths failed: %s", e)
            return
        metrics.set_backlog(rows, now)

    def _renew(self) -> None:
        slots: dict[str, list[str]] = defaultdict(list)
        for t in self.tracker.tasks.values():
            if not t.terminal:
                slots[t.pool].append(t.id)
        try:
            self.publisher.renew_slots(slots)
        except REDIS_ERRORS as e:
            log.warning("renewing in-flight slots failed: %s", e)

    # --- pod actions (thread pool) -------------------------------------------------------

    def _act(self, action: Action) -> None:
        pool = self.pools.get(action.pool)
        pods = self.pods.get(pool.context if pool else None)
        if pods is None or self.stopping.is_set():
            return
        try:
            kube.retry_call(lambda: _call_pod_api(pods, action), attempts=5,
                            stop_when=self.stopping.is_set,
                            what=f"{action.kind} pod {action.pod}")  # fmt: skip
        except KubeNotFoundError:
            pass  # already gone: that is what we wanted
        except KubeApiError as e:
            log.warning("could not %s pod %s/%s (%s): %s", action.kind, action.namespace,
                        action.pod, action.why, e)  # fmt: skip
            return
        log.debug("%s pod %s/%s: %s", action.kind, action.namespace, action.pod, action.why)
        if action.kind == "mark_done":
            self.inbox.put(Done(action.id))


def _call_pod_api(pods: PodApi, action: Action) -> None:
    if action.kind == "delete":
        pods.delete(action.namespace, action.pod)
    else:
        pods.patch(action.namespace, action.pod, {"metadata": {"labels": {LABEL_DONE: "true"}}})

"""The watcher's Redis side: one MULTI/EXEC per batch, retried until Redis answers.

A batch's events, its `published` hash entries, its in-flight releases and the start-up
latencies for `kubequeue queues` go in one transaction: after a crash either all of them
are in Redis or none, so a restarted watcher neither skips nor repeats an event.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from kubequeue import inflight, stream
from kubequeue.keys import Keys
from kubequeue.messages import EventType
from kubequeue.watcher.tracker import Batch

log = logging.getLogger(__name__)

# Start-up latencies kept per queue for the status screen's percentiles.
STARTUP_KEEP = 1000
# Seconds between attempts while Redis is unreachable; the last value repeats.
REDIS_BACKOFFS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


@dataclass
class Publisher:
    client: redis.Redis
    keys: Keys
    maxlen: int = stream.DEFAULT_MAXLEN
    backoffs: Sequence[float] = REDIS_BACKOFFS
    _revoked_score: float = field(default=float("-inf"), repr=False)

    def load(self) -> dict[Any, Any]:
        """The published hash, whole (the tracker's memory at the start of a term)."""
        published: dict[Any, Any] = self.client.hgetall(self.keys.published())
        return published

    def new_revocations(self) -> list[str]:
        """Queueing ids revoked since the last call (all of them on the first call)."""
        low = "-inf" if self._revoked_score == float("-inf") else f"({self._revoked_score}"
        raw: list[tuple[Any, float]] = self.client.zrangebyscore(  # type: ignore[assignment]
            self.keys.revoked(), low, "+inf", withscores=True
        )
        if raw:
            self._revoked_score = max(score for _, score in raw)
        return [m.decode() if isinstance(m, bytes) else str(m) for m, _ in raw]

    def write(self, batch: Batch) -> None:
        pipe = self.client.pipeline(transaction=True)
        stream.publish(self.client, self.keys, [e.event for e in batch.events],
                       maxlen=self.maxlen, pipe=pipe)  # fmt: skip
        sets = {k: v for k, v in batch.published.items() if v is not None}
        gone = [k for k, v in batch.published.items() if v is None]
        if sets:
            pipe.hset(self.keys.published(), mapping=sets)
        if gone:
            pipe.hdel(self.keys.published(), *gone)
        by_pool: dict[str, list[str]] = defaultdict(list)
        for pool, qid in batch.releases:
            by_pool[pool].append(qid)
        for pool, ids in by_pool.items():
            inflight.release(pipe, self.keys, pool, ids)
        startups: dict[str, list[str]] = defaultdict(list)
        for e in batch.events:
            if e.event.type is EventType.RUNNING and e.queued_at is not None:
                startups[e.event.queue].append(f"{max(e.event.at - e.queued_at, 0.0):.3f}")
        for queue, latencies in startups.items():
            # One LPUSH of many values pushes them in order, so the list ends up as one LPUSH
            # per value would leave it (newest first); two commands per queue, not per task.
            key = self.keys.startup(queue)
            pipe.lpush(key, *latencies)
            pipe.ltrim(key, 0, STARTUP_KEEP - 1)
        pipe.execute()

    def write_until_done(self, batch: Batch, keep_trying: Callable[[], bool]) -> bool:
        """`write`, retried with backoff while Redis is unreachable and `keep_trying()`;
        False when it gave up (leadership lost or shutting down: the next leader starts
        from what Redis holds, so nothing is lost or doubled)."""
        attempt = 0
        wait = threading.Event()
        while True:
            try:
                self.write(batch)
                if attempt:
                    log.info("Redis is back after %d failed attempts", attempt)
                return True
            except REDIS_ERRORS as e:
                delay = self.backoffs[min(attempt, len(self.backoffs) - 1)]
                attempt += 1
                log.warning("publishing %d events failed (attempt #%d): %s; retrying in %.2fs",
                            len(batch.events), attempt, e, delay)  # fmt: skip
            if not keep_trying():
                return False
            wait.wait(delay)
            if not keep_trying():
                return False

    def renew_slots(self, slots: dict[str, list[str]]) -> None:
        """Extend the in-flight leases of pods still running (pool → ids)."""
        for pool, ids in slots.items():
            inflight.renew(self.client, self.keys, pool, ids)

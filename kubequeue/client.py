"""The client: everything the executor does with kubequeue. It talks to Redis only, never
to Kubernetes.

- `submit` enqueues a batch of TaskSpecs in ONE pipeline (the RQ jobs and the tasks-hash
  records); a spec whose queue the pools file does not map gets a FAILED/UnknownQueue event
  at once (published, and returned so the caller need not wait for the stream).
- `events` reads the events stream from a cursor: O(new events), whatever runs.
- `revoke` cancels a queued spec, or marks a dispatched one revoked (dispatchers skip it;
  the watcher deletes its pod and publishes FAILED/Revoked).
- `in_flight` (adoption after a restart) and `forget` (done with a terminal event).
Redis errors surface as RedisUnavailableError naming the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager

import redis

from kubequeue import queues, stream, tasks
from kubequeue.errors import RedisUnavailableError, UnknownQueueError
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskEvent, TaskRecord, TaskSpec
from kubequeue.pools import PoolsConfig, load
from kubequeue.settings import DEFAULT_EVENTS_MAXLEN, connect_redis, ping_redis

log = logging.getLogger(__name__)


class Client:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        pools: PoolsConfig,
        *,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        url: str | None = None,
    ) -> None:
        self.redis = client
        self.keys = keys
        self.pools = pools
        self.events_maxlen = events_maxlen
        self._url = url

    @classmethod
    def from_settings(
        cls,
        redis_url: str,
        prefix: str,
        pools_file: str,
        *,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
    ) -> Client:
        """ConfigError for a bad pools file or prefix; does not connect yet (see `ping`)."""
        return cls(
            connect_redis(redis_url),
            Keys(prefix),
            load(pools_file),
            events_maxlen=events_maxlen,
            url=redis_url,
        )

    @contextmanager
    def _redis(self, what: str) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as e:
            where = self._url or "the configured Redis"
            raise RedisUnavailableError(f"{what} failed: cannot reach Redis at {where}: {e}") from e

    def ping(self) -> None:
        ping_redis(self.redis, self._url)

    def submit(self, specs: Sequence[TaskSpec]) -> list[TaskEvent]:
        """Queue specs in one round trip. Returns the FAILED events of specs that cannot be
        queued (unknown queue); they are also published, so the stream stays complete."""
        ready: list[TaskSpec] = []
        records: list[TaskRecord] = []
        failed: list[TaskEvent] = []
        seen: set[str] = set()
        now = time.time()
        for spec in specs:
            if spec.id in seen:
                log.warning("submit: spec %s appears twice in one batch; queued once", spec.id)
                continue
            seen.add(spec.id)
            try:
                pool = self.pools.pool_for(spec.queue)
            except UnknownQueueError as e:
                failed.append(unknown_queue_event(spec, str(e), now))
                continue
            ready.append(spec)
            records.append(TaskRecord.queued(spec, pool.name))
        with self._redis(f"submitting {len(specs)} task(s)"):
            pipe = self.redis.pipeline(transaction=False)
            tasks.put(pipe, self.keys, records)
            queues.enqueue(self.redis, self.keys, ready, pipe)
            stream.publish(self.redis, self.keys, failed, maxlen=self.events_maxlen, pipe=pipe)
            pipe.execute()
        for event in failed:
            log.warning("task %s not queued: %s", event.id, event.message)
        return failed

    def events(self, cursor: str = stream.START, count: int = 1000) -> tuple[list[TaskEvent], str]:
        with self._redis("reading events"):
            return stream.read(self.redis, self.keys, cursor, count)

    def events_page(
        self, cursor: str, count: int = 1000, *, skip: Collection[str] = ()
    ) -> stream.Page:
        """Like `events`; types in `skip` are passed over unparsed, and the page says whether
        it was full."""
        with self._redis("reading events"):
            return stream.read_page(self.redis, self.keys, cursor, count, skip=skip)

    def latest_cursor(self) -> str:
        with self._redis("reading the events cursor"):
            return stream.latest(self.redis, self.keys)

    def trimmed_past(self, cursor: str) -> bool:
        """True when events after `cursor` may have been trimmed unread (reconcile from
        `in_flight()` then)."""
        with self._redis("checking the events stream"):
            return stream.trimmed_past(self.redis, self.keys, cursor)

    def revoke(self, queueing_id: str) -> bool:
        """Stop a task. True: it was still queued and is now cancelled, with a FAILED/Revoked
        event published here. False: a dispatcher or a pod has it (or it is unknown); it is
        marked revoked, so a dispatcher skips it and the watcher deletes its pod and
        publishes FAILED/Revoked."""
        with self._redis(f"revoking {queueing_id}"):
            return self._revoke(queueing_id)

    def _revoke(self, queueing_id: str) -> bool:
        self.redis.zadd(self.keys.revoked(), {queueing_id: time.time()})
        record = tasks.get(self.redis, self.keys, [queueing_id]).get(queueing_id)
        if record is None or not record.queue:
            return False
        if not queues.cancel(self.redis, self.keys, record.queue, queueing_id):
            return False
        event = TaskEvent(
            type=EventType.FAILED,
            id=queueing_id,
            key=record.key,
            queue=record.queue,
            pool=record.pool,
            at=time.time(),
            reason=Reason.REVOKED,
            message="revoked while queued; no pod was created",
        )
        stream.publish(self.redis, self.keys, [event], maxlen=self.events_maxlen)
        return True

    def in_flight(self) -> dict[str, TaskRecord]:
        with self._redis("reading in-flight tasks"):
            return tasks.all_records(self.redis, self.keys)

    def forget(self, ids: Iterable[str]) -> None:
        with self._redis("forgetting tasks"):
            tasks.forget(self.redis, self.keys, ids)

    def close(self) -> None:
        self.redis.close()


def unknown_queue_event(spec: TaskSpec, message: str, at: float) -> TaskEvent:
    return TaskEvent(
        type=EventType.FAILED,
        id=spec.id,
        key=spec.key,
        queue=spec.queue,
        at=at,
        reason=Reason.UNKNOWN_QUEUE,
        message=message,
    )

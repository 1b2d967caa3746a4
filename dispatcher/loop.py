"""The dispatcher's loops: claim jobs, hand them to a thread pool, keep their leases alive,
do the Redis bookkeeping each result asks for, and give abandoned jobs back.

Threads:
- the claim loop (the caller's thread): claims up to `concurrency - held` jobs at a time
  with one atomic Lua call (kubequeue.queues.claim), rotating the queue order so no queue
  starves; when nothing is claimable it blocks on the queues' doorbell (rung by every
  submit), so an idle replica neither polls nor adds latency; a replica that took all it
  could rings the doorbell of those queues for another (at most once per RING_GAP each);
- `concurrency` workers: build and create pods (dispatcher/handle.py);
- the recorder: writes the results of finished jobs (ack, FAILED events, slot releases,
  requeues) to Redis in one MULTI/EXEC per batch, not one round trip per job;
- maintenance: extends the leases of held jobs every lease/3, requeues other replicas'
  abandoned jobs (`queues.reap`), trims the revoked set and updates the queue gauges.
Redis lost mid-run: every loop logs once, backs off (up to 5 s) and carries on when Redis is
back; nothing held is dropped (a job whose lease ran out meanwhile is requeued by `reap`, and
its second create is a harmless 409).
"""

from __future__ import annotations

import functools
import logging
import queue as queue_mod
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import redis
from prometheus_client import Counter

from kubequeue import inflight, metrics, queues, stream
from kubequeue.dispatcher.handle import Handler, Outcome, Result
from kubequeue.keys import Keys
from kubequeue.pools import PoolsConfig

log = logging.getLogger(__name__)

# Any Redis failure in a loop is logged and retried with backoff; none ends the process
# (a server that is OOM, READONLY after a failover or restarting answers with errors too).
REDIS_ERRORS = (redis.RedisError,)
REVOKED_KEEP = 24 * 3600.0  # seconds a revoked id is remembered
RECORD_BATCH = 256
# A saturated replica claims again every time a create ends, and each full claim used to ring
# the doorbell: a Redis round trip per claim for bells that only an idle replica needs, and
# one bell wakes it. A later bell within this many seconds is left out.
RING_GAP = 0.05


@dataclass(frozen=True)
class Options:
    queues: tuple[str, ...]  # Airflow queues this replica serves
    name: str  # this replica, e.g. <pod name>; no ':'
    concurrency: int = 16  # pod creates in flight in this replica
    lease: float = 30.0  # seconds a claimed job stays ours without a heartbeat
    slot_lease: float = inflight.DEFAULT_LEASE
    reap_every: float = 5.0
    # Longest block on the doorbell: bounds how late an idle replica notices work nobody
    # rang for (slots freed by the watcher, a cooled-down pool) and how late it sees a stop.
    idle_max: float = 0.5
    cooldown: float = 2.0  # seconds a pool whose API is unreachable is not claimed for
    events_maxlen: int = stream.DEFAULT_MAXLEN


class Backoff:
    """Logs the first failure of an outage and its end; sleeps 0.1 s doubling to 5 s."""

    def __init__(self, what: str, stop: threading.Event) -> None:
        self.what, self.stop = what, stop
        self.since: float | None = None
        self.delay = 0.1

    def failed(self, e: Exception) -> None:
        if self.since is None:
            self.since = time.monotonic()
            lost = isinstance(e, redis.ConnectionError | redis.TimeoutError)
            problem = "Redis unreachable" if lost else "Redis error"
            log.error("%s: %s (%s); retrying with backoff", self.what, problem, e)
        self.stop.wait(self.delay)
        self.delay = min(self.delay * 2, 5.0)

    def ok(self) -> None:
        if self.since is not None:
            log.warning("%s: Redis is back after %.1fs", self.what, time.monotonic() - self.since)
        self.since, self.delay = None, 0.1

    @property
    def down(self) -> bool:
        return self.since is not None


class Dispatcher:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        pools: PoolsConfig,
        handler: Handler,
        options: Options,
    ) -> None:
        self.redis, self.keys, self.pools, self.options = client, keys, pools, options
        self.handler = handler
        self._stop = threading.Event()
        handler.stopping = self.stopping
        handler.sleep = self._stop.wait
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, queues.Claimed] = {}
        # SimpleQueues: a hand-off is one put and one get in C (a ThreadPoolExecutor builds a
        # Future with its own Condition per job, a queue.Queue takes Python-level locks).
        self._jobs: queue_mod.SimpleQueue[tuple[queues.Claimed, float] | None]
        self._jobs = queue_mod.SimpleQueue()
        self._done: queue_mod.SimpleQueue[tuple[queues.Claimed, Result] | None]
        self._done = queue_mod.SimpleQueue()
        self._cool_until: dict[str, float] = {}
        self._rang: dict[str, float] = {}  # queue -> time.monotonic() of our last ring
        self._claim_backoff = Backoff("claim loop", self._stop)
        self.last_tick = time.monotonic()

    # --- control -------------------------------------------------------------------------

    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop claiming; jobs being created finish; jobs waiting on retries are requeued."""
        if not self._stop.is_set():
            log.info("stopping: no new work; finishing %d job(s) in flight", len(self._held))
        self._stop.set()
        self._wake.set()

    @property
    def redis_ok(self) -> bool:
        return not self._claim_backoff.down

    @property
    def held(self) -> int:
        return len(self._held)

    def run(self) -> None:
        """Until request_stop: claim and dispatch. Returns when every held job is done."""
        maintenance = threading.Thread(target=self._maintain, name="maintenance", daemon=True)
        recorder = threading.Thread(target=self._recorder, name="recorder", daemon=True)
        maintenance.start()
        recorder.start()
        workers = [
            threading.Thread(target=self._worker, name=f"create_{i}", daemon=True)
            for i in range(self.options.concurrency)
        ]
        for worker in workers:
            worker.start()
        try:
            self._claim_loop()
        finally:
            for _ in workers:
                self._jobs.put(None)
            for worker in workers:
                worker.join()
            self._done.put(None)
            recorder.join(timeout=self.options.lease + 5)
            maintenance.join(timeout=self.options.lease)
            log.info("dispatcher %s stopped", self.options.name)

    # --- claiming ------------------------------------------------------------------------

    def _claim_loop(self) -> None:
        order = list(self.options.queues)
        while not self._stop.is_set():
            self.last_tick = time.monotonic()
            free = self.options.concurrency - len(self._held)
            if free <= 0:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                claimed = self._claim(order, free)
            except REDIS_ERRORS as e:
                self._claim_backoff.failed(e)
                continue
            self._claim_backoff.ok()
            now = time.time()
            with self._lock:
                self._held.update((job.entry, job) for job in claimed)
            for job in claimed:
                self._jobs.put((job, now))
            order.append(order.pop(0))
            if len(claimed) >= free:
                self._ring_others({job.queue for job in claimed})
            elif not claimed:
                self._idle()

    def _ring_others(self, names: set[str]) -> None:
        """We took all we could and may have left work behind: wake another idle replica."""
        now = time.monotonic()
        due = {name for name in names if now - self._rang.get(name, -RING_GAP) >= RING_GAP}
        if not due:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)  # one round trip, not two per queue
            queues.ring(pipe, self.keys, due)
            pipe.execute()
        except REDIS_ERRORS as e:
            self._claim_backoff.failed(e)
            return
        self._rang.update(dict.fromkeys(due, now))

    def _idle(self) -> None:
        try:
            queues.wait(self.redis, self.keys, self.options.queues, self.options.idle_max)
        except REDIS_ERRORS as e:
            self._claim_backoff.failed(e)

    def _claim(self, order: list[str], free: int) -> list[queues.Claimed]:
        now = time.monotonic()
        wants = []
        for queue in order:
            pool = self.pools.pools[self.pools.queues[queue]]
            if self._cool_until.get(pool.name, 0.0) > now:
                continue
            wants.append(queues.Want(queue, pool.name, free, pool.max_in_flight))
        return queues.claim(
            self.redis,
            self.keys,
            wants,
            total=free,
            execution=self.options.name,
            lease=self.options.lease,
            slot_lease=self.options.slot_lease,
        )

    # --- one job -------------------------------------------------------------------------

    def _worker(self) -> None:
        """One of `concurrency` threads: jobs until the None each gets at the end."""
        while (item := self._jobs.get()) is not None:
            try:
                self._work(*item)
            except Exception:  # keep the thread: its job's lease lapses and `reap` requeues it
                log.exception("handing on the result of %s failed unexpectedly", item[0].job_id)

    def _work(self, job: queues.Claimed, dispatched_at: float) -> None:
        try:
            result = self.handler.handle(job, dispatched_at)
        except Exception:  # a bug must not lose the job or kill the worker thread
            log.exception("dispatching %s failed unexpectedly; requeueing it", job.job_id)
            pool = self.pools.queues.get(job.queue, "")
            result = Result(Outcome.RETRY, job.queue, pool)
        if result.outcome is Outcome.RETRY and result.unreachable:
            self._cool_until[result.pool] = time.monotonic() + self.options.cooldown
        self._done.put((job, result))

    # --- recording results --------------------------------------------------------------

    def _recorder(self) -> None:
        """Until the sentinel: take finished jobs in batches and record them. While Redis is
        away it retries; once stopping it gives up after one lease (the unrecorded jobs'
        leases then lapse and another replica requeues them: at worst a second 409)."""
        backoff = Backoff("recorder", threading.Event())
        done = False
        while not done:
            batch, done = self._next_batch()
            deadline = time.monotonic() + self.options.lease
            while batch:
                try:
                    self._record(batch)
                    backoff.ok()
                    break
                except redis.ResponseError:
                    # Not a connection problem: retrying will not help. The jobs' leases
                    # lapse and `reap` requeues them, so nothing is lost.
                    log.exception("cannot record %d job(s); their leases will lapse", len(batch))
                    break
                except REDIS_ERRORS as e:
                    if self._stop.is_set() and time.monotonic() > deadline:
                        log.error("giving up recording %d job(s): %s", len(batch), e)
                        break
                    backoff.failed(e)
            for job, result in batch:
                self._count(result)
                with self._lock:
                    self._held.pop(job.entry, None)
            self._wake.set()

    def _next_batch(self) -> tuple[list[tuple[queues.Claimed, Result]], bool]:
        first = self._done.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < RECORD_BATCH:
            try:
                item = self._done.get_nowait()
            except queue_mod.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _record(self, batch: list[tuple[queues.Claimed, Result]]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        requeued = set()
        for job, result in batch:
            slot_pool = self.pools.queues.get(job.queue, "")
            if result.outcome is Outcome.RETRY:
                inflight.release(pipe, self.keys, slot_pool, [job.job_id])
                queues.requeue(self.redis, self.keys, job, pipe=pipe)
                requeued.add(job.queue)
                continue
            queues.ack(pipe, self.keys, job)
            if not result.keeps_slot:
                inflight.release(pipe, self.keys, slot_pool, [job.job_id])
            if result.event is not None:
                stream.publish(
                    self.redis, self.keys, [result.event], maxlen=self.options.events_maxlen,
                    pipe=pipe,
                )  # fmt: skip
        queues.ring(pipe, self.keys, requeued)
        pipe.execute()

    def _count(self, result: Result) -> None:
        _dispatches(result.queue, result.pool, result.outcome).inc()
        event = result.event
        if event is not None:
            labels = (event.queue, event.pool)
            metrics.TASKS_FINISHED.labels(*labels, "failed").inc()
            metrics.TASK_FAILURES.labels(*labels, str(event.reason)).inc()
            log.warning("task %s failed (%s): %s", event.id, event.reason, event.message)

    # --- maintenance ---------------------------------------------------------------------

    def _maintain(self) -> None:
        backoff = Backoff("maintenance", threading.Event())
        tasks: list[tuple[Callable[[], None], float]] = [
            (self._extend, self.options.lease / 3),
            (self._reap, self.options.reap_every),
            (self._gauges, 2.0),
        ]
        last = [0.0] * len(tasks)
        while not (self._stop.is_set() and not self._held):
            for i, (task, period) in enumerate(tasks):
                if time.monotonic() - last[i] < period:
                    continue
                try:
                    task()
                    last[i] = time.monotonic()
                    backoff.ok()
                except REDIS_ERRORS as e:
                    backoff.failed(e)
                except Exception:  # a bug here must not stop the leases being extended
                    log.exception("maintenance task %s failed", task.__name__)
                    last[i] = time.monotonic()
            time.sleep(0.2)

    def _extend(self) -> None:
        with self._lock:
            jobs = list(self._held.values())
        held: dict[str, list[str]] = defaultdict(list)
        for job in jobs:
            held[job.queue].append(job.entry)
        queues.extend(self.redis, self.keys, held, self.options.lease)

    def _reap(self) -> None:
        if self._stop.is_set():
            return
        requeued = queues.reap(self.redis, self.keys, self.options.queues)
        if requeued:
            queues.ring(self.redis, self.keys, self.options.queues)
            log.warning(
                "requeued %d job(s) abandoned by a dispatcher that stopped renewing its leases: %s",
                len(requeued),
                ", ".join(requeued[:10]),
            )
        self.redis.zremrangebyscore(self.keys.revoked(), "-inf", time.time() - REVOKED_KEEP)

    def _gauges(self) -> None:
        rows = queues.backlog(self.redis, self.keys, self.options.queues)
        metrics.set_backlog(rows, time.time())


@functools.cache
def _dispatches(queue: str, pool: str, outcome: Outcome) -> Counter:
    """The kubequeue_dispatches_total child: `.labels()` takes a lock and builds a key per
    call. Queues are the claimed ones, pools the pools file's: a small, fixed set."""
    return metrics.DISPATCHES.labels(queue, pool, outcome.value)

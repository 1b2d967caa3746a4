"""One claimed job → one decision: create its pod, or end the task with a FAILED event, or
give it back to the queue. Pure of Redis: the loop (dispatcher/loop.py) does the
bookkeeping the returned `Result` asks for, so this is testable with a fake API.

Decisions, in order:
- the job's data is not a TaskSpec we can read       → FAILED MalformedSpec
- revoked (kubequeue.client.revoke)                   → FAILED Revoked
- the spec names a queue the pools file does not map  → FAILED UnknownQueue
- past its expiry (the workload's token is dead)      → FAILED Expired, never created
- the pod cannot be built (override/template)         → FAILED Invalid
- create: 201 → created; 409 AlreadyExists → exists (a duplicate dispatch; counts as done);
  400/422 → FAILED Invalid and 401/403 → FAILED Forbidden, with the API's message;
  429/5xx/unreachable → retried (Retry-After honoured) until `retry_for` seconds pass, the
  spec expires or the dispatcher stops; then the job is requeued, nothing lost.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kubernetes.client import ApiClient
from prometheus_client import Histogram

from kubequeue import kube, metrics, queues
from kubequeue.dispatcher import podbuild
from kubequeue.dispatcher.podapi import PodApi
from kubequeue.errors import (
    KubeAlreadyExistsError,
    KubeApiError,
    KubeForbiddenError,
    KubeInvalidError,
    KubeNotFoundError,
    PodBuildError,
    SpecError,
    UnknownQueueError,
    truncate,
)
from kubequeue.messages import EventType, Reason, TaskEvent, TaskSpec
from kubequeue.pools import PoolsConfig

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """The `outcome` label of kubequeue_dispatches_total."""

    CREATED = "created"
    EXISTS = "exists"
    FAILED = "failed"
    EXPIRED = "expired"
    REVOKED = "revoked"
    RETRY = "retry"  # given back to the queue


@dataclass
class Result:
    outcome: Outcome
    queue: str
    pool: str
    event: TaskEvent | None = None  # the FAILED event to publish
    keeps_slot: bool = False  # a pod exists: the watcher releases the slot when it ends
    unreachable: bool = False  # requeued because the pool's API did not answer


@dataclass
class Handler:
    pools: PoolsConfig
    apis: Mapping[str, ApiClient]  # pool name -> API client of its cluster
    retry_for: float = 60.0  # seconds of 429/5xx/unreachable retries before requeueing
    backoffs: tuple[float, ...] = kube.DEFAULT_BACKOFFS
    stopping: Callable[[], bool] = lambda: False
    sleep: Callable[[float], object] = time.sleep  # between retries; the loop makes a stop cut it
    clock: Callable[[], float] = time.time
    _pod_apis: dict[str, PodApi] = field(default_factory=dict)

    def handle(self, job: queues.Claimed, dispatched_at: float) -> Result:
        queue, slot_pool = job.queue, self.pools.queues.get(job.queue, "")
        try:
            spec = TaskSpec.parse(queues.spec_json(job.payload))
            if spec.id != job.job_id:
                raise SpecError(f"RQ job {job.job_id} carries the TaskSpec of {spec.id}")
        except SpecError as e:
            event = self._failed(job.job_id, queue, slot_pool, Reason.MALFORMED_SPEC, str(e), None)
            return Result(Outcome.FAILED, queue, slot_pool, event)
        if job.revoked:
            event = self._spec_failed(
                spec, slot_pool, Reason.REVOKED, "revoked before its pod was created"
            )
            return Result(Outcome.REVOKED, queue, slot_pool, event)
        try:
            pool = self.pools.pool_for(spec.queue)
        except UnknownQueueError as e:
            event = self._spec_failed(spec, "", Reason.UNKNOWN_QUEUE, str(e))
            return Result(Outcome.FAILED, queue, slot_pool, event)
        if spec.queue != queue:
            message = f"TaskSpec for queue {spec.queue!r} found in RQ queue of {queue!r}"
            event = self._spec_failed(spec, pool.name, Reason.MALFORMED_SPEC, message)
            return Result(Outcome.FAILED, queue, slot_pool, event)
        if spec.expired(self.clock()):
            return self._expired(spec, pool.name)
        try:
            pod = podbuild.build_pod(spec, pool, dispatched_at=dispatched_at)
        except PodBuildError as e:
            event = self._spec_failed(
                spec, pool.name, Reason.INVALID, f"pod could not be built: {e}"
            )
            return Result(Outcome.FAILED, queue, pool.name, event)
        return self._create(spec, pool.name, pod)

    def _expired(self, spec: TaskSpec, pool: str) -> Result:
        waited = self.clock() - spec.queued_at
        message = (
            f"waited {waited:.0f}s in queue {spec.queue!r}, past its expiry "
            f"({spec.expires_at - spec.queued_at:.0f}s after queueing, when the workload's "
            "token dies); no pod was created"
        )
        event = self._spec_failed(spec, pool, Reason.EXPIRED, message)
        return Result(Outcome.EXPIRED, spec.queue, pool, event)

    def _create(self, spec: TaskSpec, pool: str, pod: dict[str, Any]) -> Result:
        api = self._api(pool)
        namespace = pod["metadata"]["namespace"]
        queued_to_sent, create_seconds = _histograms(spec.queue, pool)
        sent = self.clock()
        queued_to_sent.observe(max(sent - spec.queued_at, 0.0))

        def attempt() -> None:
            try:
                api.create(namespace, pod)
            except Exception as e:
                err = kube.api_error(e)
                metrics.API_ERRORS.labels(spec.queue, pool, str(max(err.status, 0))).inc()
                raise err from e

        try:
            kube.retry_call(
                attempt,
                attempts=None,
                deadline=self.retry_for,
                backoffs=self.backoffs,
                stop_when=lambda: self.stopping() or spec.expired(self.clock()),
                sleep=self.sleep,
                what=f"create pod {pod['metadata']['name']}",
            )
            return Result(Outcome.CREATED, spec.queue, pool, keeps_slot=True)
        except KubeAlreadyExistsError:
            return Result(Outcome.EXISTS, spec.queue, pool, keeps_slot=True)
        except KubeApiError as e:
            return self._api_failure(spec, pool, e)
        finally:
            create_seconds.observe(self.clock() - sent)

    def _api_failure(self, spec: TaskSpec, pool: str, e: KubeApiError) -> Result:
        where = f"creating its pod in pool {pool!r}"
        if isinstance(e, KubeInvalidError | KubeNotFoundError):
            message = f"the Kubernetes API rejected the pod ({e.status} {e.reason}): {e.message}"
            event = self._spec_failed(spec, pool, Reason.INVALID, message)
            return Result(Outcome.FAILED, spec.queue, pool, event)
        if isinstance(e, KubeForbiddenError):
            message = f"the Kubernetes API refused {where} ({e.status}): {e.message}"
            event = self._spec_failed(spec, pool, Reason.FORBIDDEN, message)
            return Result(Outcome.FAILED, spec.queue, pool, event)
        if spec.expired(self.clock()):
            return self._expired(spec, pool)
        if not e.retryable:
            log.error("unexpected error %s for %s; requeueing it: %s", where, spec.id, e)
        else:
            log.warning("giving %s back to queue %s after retries: %s", spec.id, spec.queue, e)
        return Result(Outcome.RETRY, spec.queue, pool, unreachable=e.status == 0)

    def _failed(
        self, qid: str, queue: str, pool: str, reason: Reason, message: str, spec: TaskSpec | None
    ) -> TaskEvent:
        return TaskEvent(
            type=EventType.FAILED,
            id=qid,
            key=spec.key if spec else None,
            queue=queue,
            pool=pool,
            at=self.clock(),
            reason=reason,
            message=truncate(message),
        )

    def _spec_failed(self, spec: TaskSpec, pool: str, reason: Reason, message: str) -> TaskEvent:
        return self._failed(spec.id, spec.queue, pool, reason, message, spec)

    def _api(self, pool: str) -> PodApi:
        api = self._pod_apis.get(pool)
        if api is None:
            api = self._pod_apis[pool] = PodApi(self.apis[pool])
        return api


@functools.cache
def _histograms(queue: str, pool: str) -> tuple[Histogram, Histogram]:
    """The (queue, pool) children of the per-create histograms. `.labels()` takes a lock and
    builds a key on every call; the children live as long as the process (nothing removes
    them), and queues and pools are the pools file's, so this stays small."""
    return (
        metrics.QUEUED_TO_CREATE_SENT.labels(queue, pool),
        metrics.CREATE_SECONDS.labels(queue, pool),
    )

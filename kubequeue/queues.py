"""RQ queues: one per Airflow queue, carrying TaskSpecs from the client to the dispatchers.

The client enqueues with RQ itself (`Queue.enqueue_many` into the caller's pipeline, JSON
serializer, never pickle; job id = the spec's queueing id), so `rq info` and RQ dashboards
show kubequeue's queues as they are. Dispatchers do not run RQ's forking Worker (one fork per
job is far too slow for a pod create); they take jobs with `claim`, a Lua script that in ONE
atomic step pops jobs off the queue, records each in RQ's StartedJobRegistry (`rq:wip:<q>`)
with a lease expiry as its score, marks the job started, and takes a slot of the pool's
in-flight semaphore (see kubequeue/inflight.py). A dispatcher extends its leases while it
works (`extend`) and removes the entry when done (`ack`). If it dies (`kill -9`), its leases
run out and any replica's `reap` puts the jobs back at the front of their queue — RQ's
abandoned-job semantics, with the deterministic pod name turning a second create into a
harmless 409. Jobs are also enqueued with `Retry(max=...)` so that RQ's own registry cleanup,
should an `rq` process run it, requeues instead of failing them.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from rq import Queue
from rq.job import Job, JobStatus, Retry
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from kubequeue.errors import SpecError, truncate
from kubequeue.keys import Keys
from kubequeue.messages import TaskSpec

# The function an RQ job names. Only the kubequeue dispatcher takes these jobs; a plain
# `rq worker` started on a kubequeue queue by mistake fails them with this explanation.
JOB_FUNC = "kubequeue.queues.run_by_kubequeue_dispatcher"
# RQ retries for the case where RQ's own StartedJobRegistry cleanup finds an abandoned job.
RQ_RETRIES = 25
# Seconds a failed RQ job (a plain rq worker took it) stays in RQ's FailedJobRegistry.
FAILURE_TTL = 24 * 3600


def run_by_kubequeue_dispatcher(spec_json: str) -> None:
    raise RuntimeError(
        "this job holds a kubequeue TaskSpec: run `kubequeue dispatcher`, not `rq worker`, "
        "on kubequeue queues"
    )


def rq_queue(client: redis.Redis, keys: Keys, queue: str) -> Queue:
    return Queue(keys.rq_queue(queue), connection=client, serializer=JSONSerializer)


def started_key(keys: Keys, queue: str) -> str:
    """RQ's StartedJobRegistry key of an Airflow queue's RQ queue."""
    return StartedJobRegistry.key_template.format(keys.rq_queue(queue))


def queue_key(keys: Keys, queue: str) -> str:
    return Queue.redis_queue_namespace_prefix + keys.rq_queue(queue)


# KEYS: the queue's list, RQ's set of queues. ARGV: job key prefix, n, then n field/value
# pairs every job of the batch shares, then per job: id, data, description.
_ENQUEUE = """
local prefix, n = ARGV[1], tonumber(ARGV[2])
local fields = {}
for i = 3, 2 + 2 * n do fields[#fields + 1] = ARGV[i] end
local base = #fields
local ids = {}
for j = 3 + 2 * n, #ARGV, 3 do
  fields[base + 1], fields[base + 2] = 'data', ARGV[j + 1]
  fields[base + 3], fields[base + 4] = 'description', ARGV[j + 2]
  redis.call('HSET', prefix .. ARGV[j], unpack(fields))
  ids[#ids + 1] = ARGV[j]
end
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('RPUSH', KEYS[1], unpack(ids))
return #ids
"""
# Jobs per script call: bounds how long one call holds Redis and the Lua stack unpack uses.
ENQUEUE_CHUNK = 500


def enqueue(
    client: redis.Redis, keys: Keys, specs: Sequence[TaskSpec], pipe: redis.client.Pipeline
) -> None:
    """Add enqueue commands for `specs` to `pipe` (the caller executes it). At-front for
    none: Airflow already orders what it queues by priority_weight.

    Writes what RQ's `Queue.enqueue_many` writes (the job hash, the queue list, the queues
    set) without building an RQ Job per spec, and through a script that takes the ~20 fields
    every job shares once per call: building Jobs, or packing every field of every HSET, is
    most of what submitting costs the scheduler. The shared fields come from RQ itself (see
    `_job_fields`), so `rq info`, `Job.fetch` and RQ's registries read these jobs as their
    own."""
    by_queue: dict[str, list[TaskSpec]] = defaultdict(list)
    for spec in specs:
        by_queue[spec.queue].append(spec)
    stamp = utcformat(now())
    script = client.register_script(_ENQUEUE)
    for queue, group in by_queue.items():
        shared = {**_job_fields(client, keys, queue), "created_at": stamp, "enqueued_at": stamp}
        head: list[Any] = [Job.redis_job_namespace_prefix, len(shared)]
        for field, value in shared.items():
            head += [field, value]
        script_keys = [queue_key(keys, queue), Queue.redis_queues_keys]
        for i in range(0, len(group), ENQUEUE_CHUNK):
            args = list(head)
            for spec in group[i : i + ENQUEUE_CHUNK]:
                # Uncompressed: zlib's per-call set-up costs more than the rest of enqueueing
                # a ~1 KB spec, and RQ reads uncompressed job data as is (Job.restore). The
                # description is not the default repr of the call: that would copy the
                # workload (and its token) into a second field.
                data = orjson.dumps([JOB_FUNC, None, [spec.to_json()], {}])
                args += [spec.id, data, str(spec.key)]
            script(keys=script_keys, args=args, client=pipe)
    ring(pipe, keys, by_queue)


_JOB_FIELDS: dict[str, dict[str, Any]] = {}


def _job_fields(client: redis.Redis, keys: Keys, queue: str) -> dict[str, Any]:
    """The fields RQ writes for every job of this queue (status, origin, timeouts, TTLs,
    retries, empty callbacks...): taken once from a Job RQ builds (never saved), so they
    follow the installed RQ."""
    name = keys.rq_queue(queue)
    fields = _JOB_FIELDS.get(name)
    if fields is None:
        job = rq_queue(client, keys, queue).create_job(
            JOB_FUNC,
            args=("{}",),
            job_id="x",
            timeout=Queue.DEFAULT_TIMEOUT,
            result_ttl=0,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=RQ_RETRIES),
            status=JobStatus.QUEUED,
        )
        job.origin = name
        fields = job.to_dict()
        for per_job in ("created_at", "enqueued_at", "data", "description"):
            fields.pop(per_job, None)
        fields["status"] = JobStatus.QUEUED.value
        _JOB_FIELDS[name] = fields
    return fields


# Bells kept per queue: enough to wake every idle replica of a typical deployment; more
# would only cause spurious wake-ups.
BELLS = 16


def ring(pipe: redis.client.Pipeline | redis.Redis, keys: Keys, names: Iterable[str]) -> None:
    """Wake idle dispatchers of these queues (one per ring); see `wait`."""
    for queue in names:
        pipe.lpush(keys.doorbell(queue), 1)
        pipe.ltrim(keys.doorbell(queue), 0, BELLS - 1)


def wait(client: redis.Redis, keys: Keys, names: Sequence[str], timeout: float) -> bool:
    """Block until one of these queues is rung or `timeout` seconds pass; True if rung. A
    ring may be stale (nobody was idle when it rang): the caller just claims again."""
    if not names:
        return False
    return client.blpop([keys.doorbell(q) for q in names], timeout=timeout) is not None


def spec_json(payload: bytes | None) -> str:
    """The TaskSpec JSON inside an RQ job's `data` field; SpecError if it is not one of ours."""
    if not payload:
        raise SpecError("RQ job has no data")
    try:
        # zlib-compressed, as RQ writes it and earlier kubequeue versions did (a zlib stream
        # starts with 0x78, a JSON call with "["), or plain JSON.
        if payload[:1] == b"x":
            payload = zlib.decompress(payload)
        func, _instance, args, _kwargs = orjson.loads(payload)
    except (zlib.error, ValueError, TypeError) as e:
        why = truncate(str(e), 200)
        raise SpecError(f"RQ job data is not a JSON-serialized call: {why}") from e
    if func != JOB_FUNC or not isinstance(args, list) or len(args) != 1:
        raise SpecError(f"RQ job is not a kubequeue TaskSpec job (function {func!r})")
    if not isinstance(args[0], str):
        raise SpecError("RQ job argument is not a TaskSpec JSON string")
    return args[0]


_CANCEL = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


def cancel(client: redis.Redis, keys: Keys, queue: str, queueing_id: str) -> bool:
    """Remove a still-queued spec. False when it is not in the queue any more (a dispatcher
    holds it or it is done)."""
    script = client.register_script(_CANCEL)
    return bool(script(keys=[queue_key(keys, queue), Job.key_for(queueing_id)], args=[queueing_id]))


def depth(client: redis.Redis, keys: Keys, queue: str) -> int:
    return int(client.llen(queue_key(keys, queue)))


def oldest_queued_at(client: redis.Redis, keys: Keys, queue: str) -> float | None:
    """queued_at of the spec at the head of the queue (None if empty or unreadable)."""
    head = client.lindex(queue_key(keys, queue), 0)
    if head is None:
        return None
    payload = client.hget(Job.key_for(head.decode()), "data")  # type: ignore[union-attr]
    try:
        return float(json.loads(spec_json(payload))["queued_at"])  # type: ignore[arg-type]
    except (SpecError, ValueError, KeyError, TypeError):
        return None


def backlog(
    client: redis.Redis, keys: Keys, names: Sequence[str]
) -> list[tuple[str, int, float | None]]:
    """(queue, depth, queued_at of its oldest spec or None) for each of `names`: one
    pipelined LLEN round trip, then one head read per queue that is not empty."""
    pipe: Any = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(queue_key(keys, name))
    depths = [int(n) for n in pipe.execute()]
    return [
        (name, n, oldest_queued_at(client, keys, name) if n else None)
        for name, n in zip(names, depths, strict=True)
    ]


# --- the dispatcher's side --------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """Claim up to `count` jobs from `queue`, whose pool allows `limit` in flight (None = no
    cap); `pool` names the in-flight semaphore."""

    queue: str
    pool: str
    count: int
    limit: int | None


@dataclass(frozen=True)
class Claimed:
    queue: str
    job_id: str  # = the spec's queueing id
    entry: str  # the StartedJobRegistry member: "<job id>:<execution>"
    payload: bytes | None  # RQ job data
    revoked: bool


# KEYS: revoked zset, then per queue: queue list, wip zset, in-flight zset.
# ARGV: job key prefix, lease, in-flight lease, execution, started_at, total, then per
#       queue: count, limit (-1 = no cap).
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease, slot_lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local total = tonumber(ARGV[6])
for i = 0, (#KEYS - 1) / 3 - 1 do
  local qkey, wip, inflight = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local want, limit = tonumber(ARGV[7 + 2 * i]), tonumber(ARGV[8 + 2 * i])
  if total < want then want = total end
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  if limit >= 0 then
    local free = limit - redis.call('ZCARD', inflight)
    if free < want then want = free end
  end
  while want > 0 do
    local id = redis.call('LPOP', qkey)
    if not id then break end
    local jkey = ARGV[1] .. id
    if redis.call('EXISTS', jkey) == 1 then
      local entry = id .. ':' .. ARGV[4]
      redis.call('ZADD', wip, now + lease, entry)
      redis.call('HSET', jkey, 'status', 'started', 'worker_name', ARGV[4],
                 'started_at', ARGV[5], 'last_heartbeat', ARGV[5])
      local revoked = 0
      if redis.call('ZSCORE', KEYS[1], id) then
        revoked = 1
      else
        redis.call('ZADD', inflight, now + slot_lease, id)
      end
      out[#out + 1] = i
      out[#out + 1] = id
      out[#out + 1] = entry
      out[#out + 1] = redis.call('HGET', jkey, 'data') or ''
      out[#out + 1] = revoked
      want = want - 1
      total = total - 1
    end
  end
end
return out
"""


def claim(
    client: redis.Redis,
    keys: Keys,
    wants: Sequence[Want],
    *,
    total: int | None = None,
    execution: str,
    lease: float,
    slot_lease: float,
) -> list[Claimed]:
    """Atomically take up to `want.count` jobs of each queue, in order, `total` at most
    (fewer when a pool is at its in-flight limit); each taken job holds a lease and, unless
    revoked, a pool slot."""
    wants = [w for w in wants if w.count > 0]
    if not wants:
        return []
    if ":" in execution:
        raise ValueError("execution name must not contain ':'")
    script_keys: list[Any] = [keys.revoked()]
    args: list[Any] = [Job.redis_job_namespace_prefix, lease, slot_lease, execution]
    args += [utcformat(now()), sum(w.count for w in wants) if total is None else total]
    for w in wants:
        script_keys += [queue_key(keys, w.queue), started_key(keys, w.queue)]
        script_keys.append(keys.in_flight(w.pool))
        args += [w.count, -1 if w.limit is None else w.limit]
    reply = client.register_script(_CLAIM)(keys=script_keys, args=args)
    out = []
    for j in range(0, len(reply), 5):
        i, job_id, entry, payload, revoked = reply[j : j + 5]
        out.append(
            Claimed(
                queue=wants[int(i)].queue,
                job_id=job_id.decode(),
                entry=entry.decode(),
                payload=payload or None,
                revoked=bool(revoked),
            )
        )
    return out


# KEYS: wip zsets; ARGV: lease, then per key: n, n entries.
_EXTEND = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local a = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  for e = a + 1, a + n do
    redis.call('ZADD', KEYS[k], 'XX', expiry, ARGV[e])
  end
  a = a + n + 1
end
return 1
"""


def extend(
    client: redis.Redis, keys: Keys, held: Mapping[str, Iterable[str]], lease: float
) -> None:
    """Push the lease of every held entry (queue -> entries) to now + lease."""
    script_keys: list[Any] = []
    args: list[Any] = [lease]
    for queue, entries in held.items():
        entries = list(entries)
        if entries:
            script_keys.append(started_key(keys, queue))
            args += [len(entries), *entries]
    if script_keys:
        client.register_script(_EXTEND)(keys=script_keys, args=args)


def ack(pipe: redis.client.Pipeline, keys: Keys, claimed: Claimed) -> None:
    """The job is done (pod created, exists, or the spec was failed with an event): drop its
    lease and its RQ job hash (result_ttl=0: results live in the events stream)."""
    pipe.zrem(started_key(keys, claimed.queue), claimed.entry)
    pipe.delete(Job.key_for(claimed.job_id))


_REQUEUE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'status', 'queued')
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def requeue(
    client: redis.Redis, keys: Keys, claimed: Claimed, pipe: redis.client.Pipeline | None = None
) -> bool:
    """Give a job back, at the front of its queue, if we still hold its lease (when the lease
    already ran out, `reap` has requeued it and pushing again would duplicate it). With
    `pipe`, the call is queued there and the result is that pipeline's."""
    script = client.register_script(_REQUEUE)
    job_keys = [
        started_key(keys, claimed.queue),
        queue_key(keys, claimed.queue),
        Job.key_for(claimed.job_id),
    ]
    return bool(script(keys=job_keys, args=[claimed.entry, claimed.job_id], client=pipe))


# KEYS: per queue: wip zset, queue list. ARGV: job key prefix, max per queue.
_REAP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #KEYS, 2 do
  local expired = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  for _, entry in ipairs(expired) do
    redis.call('ZREM', KEYS[i], entry)
    local id = string.match(entry, '^([^:]+)')
    local jkey = ARGV[1] .. id
    if redis.call('EXISTS', jkey) == 1 then
      redis.call('HSET', jkey, 'status', 'queued')
      redis.call('LPUSH', KEYS[i + 1], id)
      out[#out + 1] = id
    end
  end
end
return out
"""


def reap(client: redis.Redis, keys: Keys, queues: Iterable[str], limit: int = 1000) -> list[str]:
    """Requeue (at the front) the jobs whose lease ran out: their dispatcher died. Safe to
    run from every replica at once: each expired entry is requeued by exactly one."""
    script_keys: list[Any] = []
    for q in queues:
        script_keys += [started_key(keys, q), queue_key(keys, q)]
    if not script_keys:
        return []
    ids = client.register_script(_REAP)(
        keys=script_keys, args=[Job.redis_job_namespace_prefix, limit]
    )
    return [i.decode() for i in ids]

"""The per-pool in-flight semaphore: how many of a pool's pods exist and are not terminal,
across every dispatcher replica, so that `maxInFlight` holds cluster-wide.

One sorted set per pool (keys.in_flight(pool)): member = queueing id, score = lease expiry
(Redis server clock, so replicas' clocks do not matter).
- A dispatcher takes a slot atomically when it claims a spec (kubequeue.queues.claim), and
  gives it back with `release` when no pod results (expired, revoked, invalid, requeued).
- The watcher calls `release` when a pod reaches a terminal phase or is deleted, and `renew`
  for pods it still sees running (at least every `DEFAULT_LEASE / 3`), so a slot outlives
  any task duration while the watcher is alive.
- If nobody renews (watcher down for longer than the lease), slots expire on their own: the
  safety net that keeps a lost release from shrinking a pool forever.
Taking a slot for an id that already holds one (a spec re-dispatched after a crash) does
not take a second one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from kubequeue.keys import Keys

# Seconds a slot lives without renewal. Long enough to ride out a watcher restart and a
# full relist of a large cluster; short enough that leaked slots come back within minutes.
DEFAULT_LEASE = 900.0


def release(
    client: redis.Redis | redis.client.Pipeline, keys: Keys, pool: str, ids: Iterable[str]
) -> None:
    """Free the slots of these queueing ids (missing ones are ignored); pipeline-friendly."""
    ids = list(ids)
    if ids:
        client.zrem(keys.in_flight(pool), *ids)


_RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i])
end
return n
"""


def renew(
    client: redis.Redis, keys: Keys, pool: str, ids: Iterable[str], lease: float = DEFAULT_LEASE
) -> int:
    """Extend the slots these ids hold (ids holding none are not added); returns how many."""
    ids = list(ids)
    if not ids:
        return 0
    script = client.register_script(_RENEW)
    return int(script(keys=[keys.in_flight(pool)], args=[lease, *ids]))


_COUNT = """
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]) + tonumber(t[2]) / 1000000)
return redis.call('ZCARD', KEYS[1])
"""


def count(client: redis.Redis, keys: Keys, pool: str) -> int:
    """Slots in use now (expired ones are dropped first)."""
    return int(client.register_script(_COUNT)(keys=[keys.in_flight(pool)]))


def holders(client: redis.Redis, keys: Keys, pool: str) -> dict[str, float]:
    """queueing id -> lease expiry (epoch seconds, Redis clock) of every slot, expired included."""
    raw: list[tuple[Any, float]] = client.zrange(keys.in_flight(pool), 0, -1, withscores=True)  # type: ignore[assignment]
    return {(m.decode() if isinstance(m, bytes) else str(m)): s for m, s in raw}

"""Every Redis key kubequeue uses, in one place.

Nothing else in the code base spells a key. A `Keys` value carries the (validated,
overridable) prefix so that two kubequeue installations can share one Redis. RQ's own
keys (`rq:queue:<name>`, its registries, its job hashes) are RQ's; we only choose the
queue names, and those come from here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubequeue.errors import ConfigError

DEFAULT_PREFIX = "kubequeue"
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(
                f"redis key prefix {self.prefix!r} is invalid: use 1-63 characters of "
                "a-z, 0-9, '_', '.', '-', starting with a letter or digit"
            )

    def rq_queue(self, queue: str) -> str:
        """Name of the RQ queue that carries the TaskSpecs of one Airflow queue."""
        return f"{self.prefix}.{queue}"

    def airflow_queue(self, rq_queue: str) -> str | None:
        """Inverse of `rq_queue`; None when the RQ queue is not one of ours."""
        head = f"{self.prefix}."
        return rq_queue[len(head) :] if rq_queue.startswith(head) else None

    def events(self) -> str:
        """Stream of TaskEvents (field `e`: the event JSON), capped in length."""
        return f"{self.prefix}:events"

    def tasks(self) -> str:
        """Hash: queueing id -> JSON record of a task not yet finished (for in_flight/revoke)."""
        return f"{self.prefix}:tasks"

    def in_flight(self, pool: str) -> str:
        """Sorted set: queueing id -> lease expiry, the pods a pool has in flight
        (max_in_flight is enforced on its size across all dispatcher replicas)."""
        return f"{self.prefix}:inflight:{pool}"

    def revoked(self) -> str:
        """Sorted set: queueing id -> revoke time; dispatchers skip these specs."""
        return f"{self.prefix}:revoked"

    def published(self) -> str:
        """Hash: queueing id -> JSON of what the watcher last published for it (its last
        event type and time; no doubles after a restart or a relist)."""
        return f"{self.prefix}:published"

    def startup(self, queue: str) -> str:
        """List: the most recent task start-up latencies (seconds, queued → running) of one
        Airflow queue, newest first, capped; written by the watcher for `kubequeue queues`."""
        return f"{self.prefix}:startup:{queue}"

    def doorbell(self, queue: str) -> str:
        """List: rung (pushed to) when specs are added to an Airflow queue's RQ queue, so an
        idle dispatcher blocks on it (BLPOP) instead of polling. Entries carry no data."""
        return f"{self.prefix}:doorbell:{queue}"

    def all_shapes(self) -> dict[str, str]:
        """Every key shape, for documentation and the test that lists them."""
        return {
            "rq_queue": self.rq_queue("<queue>"),
            "events": self.events(),
            "tasks": self.tasks(),
            "in_flight": self.in_flight("<pool>"),
            "revoked": self.revoked(),
            "published": self.published(),
            "startup": self.startup("<queue>"),
            "doorbell": self.doorbell("<queue>"),
        }

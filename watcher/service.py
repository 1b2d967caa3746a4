"""The watcher process: elect, lead a term while elected, serve health and metrics.

Every replica runs the election loop; only the one holding the Lease runs a `Term` (watch
loops + publishing). A replica that loses the lease stops its term at once; a follower
takes over when the leader's lease expires or when the leader releases it on shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import kubernetes
import redis

from kubequeue import health, kube, metrics
from kubequeue.errors import KubeApiError
from kubequeue.keys import Keys
from kubequeue.pools import PoolsConfig
from kubequeue.watcher.leader import LEASE_DURATION, Elector
from kubequeue.watcher.publisher import REDIS_ERRORS, Publisher
from kubequeue.watcher.term import Term, Timing
from kubequeue.watcher.tracker import TOMBSTONE, PoolPolicy

log = logging.getLogger(__name__)


def default_identity() -> str:
    """The pod name in Kubernetes (HOSTNAME), plus the pid so two local processes differ."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


def policies(config: PoolsConfig) -> dict[str, PoolPolicy]:
    """What the watcher needs of each pool in the pools file."""
    return {
        name: PoolPolicy(
            name=name,
            namespace=pool.namespace,
            context=pool.context,
            startup_timeout=pool.startup_timeout,
            delete_worker_pods=pool.delete_worker_pods,
            delete_worker_pods_on_failure=pool.delete_worker_pods_on_failure,
        )
        for name, pool in config.pools.items()
    }


@dataclass
class Service:
    redis: redis.Redis
    keys: Keys
    pools: Mapping[str, PoolPolicy]
    queue_names: Sequence[str]
    apis: Mapping[str | None, kubernetes.client.ApiClient]  # by pool context; None = default
    lease_namespace: str
    identity: str = field(default_factory=default_identity)
    lease_duration: float = LEASE_DURATION
    events_maxlen: int = 100_000
    timing: Timing = field(default_factory=Timing)
    tombstone: float = TOMBSTONE
    term: Term | None = None

    def __post_init__(self) -> None:
        self.elector = Elector(
            kubernetes.client.CoordinationV1Api(self.apis[None]),
            self.lease_namespace,
            self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.lease_duration * 2 / 3,
            retry_period=self.lease_duration * 2 / 15,
        )
        self.publisher = Publisher(self.redis, self.keys, maxlen=self.events_maxlen)
        self._beat = time.monotonic()

    def run(self, stop: threading.Event, iterations: int | None = None) -> str:
        """The election loop; `iterations` bounds its rounds (tests). Returns why it ended."""
        metrics.export_watcher_metrics()
        rounds = 0
        why = "stopped"
        try:
            while not stop.is_set():
                if iterations is not None and rounds >= iterations:
                    why = f"iteration bound {iterations} reached"
                    break
                rounds += 1
                self._beat = time.monotonic()
                self._round()
                stop.wait(self.elector.retry_period)
        finally:
            self._stop_term("shutting down")
            self.elector.release()
            metrics.WATCHER_LEADER.set(0)
            log.info("watcher %s ended: %s", self.identity, why)
        return why

    def _round(self) -> None:
        leader = self.elector.tick()
        metrics.WATCHER_LEADER.set(1 if leader else 0)
        if not leader:
            self._stop_term("leadership lost")
            return
        if self.term is not None and not self.term.running:
            log.warning("term ended (%s); starting a new one", self.term.ended)
            self._stop_term("restarting")
        if self.term is None:
            log.info("%s leads: starting a term", self.identity)
            self.term = Term(
                self.pools, self.queue_names, self.apis, self.publisher,
                self.elector.is_leader, self.timing, self.tombstone,
            ).start()  # fmt: skip

    def _stop_term(self, why: str) -> None:
        if self.term is not None:
            log.info("stopping term: %s", why)
            self.term.stop()
            self.term = None

    # --- health --------------------------------------------------------------------------

    def alive(self) -> str | None:
        """None while the election loop turns (liveness), else why not."""
        return health.stalled(self._beat, 3 * self.elector.retry_period + 10, "the election loop")

    def not_ready(self) -> str | None:
        """None when Redis and every Kubernetes API answer, else a one-line reason."""
        try:
            self.redis.ping()
        except REDIS_ERRORS as e:
            return f"Redis does not answer: {e}"
        for ctx, api in self.apis.items():
            try:
                kube.check_api(api)
            except KubeApiError as e:
                return f"Kubernetes API of context {ctx or 'default'} does not answer: {e}"
        return None


def api_clients(
    kubeconfig: str | None, pools: Mapping[str, PoolPolicy]
) -> dict[str | None, kubernetes.client.ApiClient]:
    """One ApiClient per kube context the pools use, plus the default one (the Lease's)."""
    contexts: set[str | None] = {None} | {p.context for p in pools.values()}
    loops = {ctx: sum(1 for t in {p.target for p in pools.values()} if t[0] == ctx)
             for ctx in contexts}  # fmt: skip
    return {
        ctx: kube.api_client(kubeconfig, ctx, pool_size=loops[ctx] + Timing.action_threads + 4)
        for ctx in contexts
    }

"""Leader election through a coordination.k8s.io/v1 Lease, the way client-go does it.

Only the leader watches pods and publishes; another replica takes over when the leader's
lease expires or when the leader releases it on shutdown. Expiry is judged on this
replica's own monotonic clock — "the record has not changed for leaseDurationSeconds since I
first saw it" — never by comparing renewTime with our wall clock, so clock skew between
replicas does not matter. Writes carry the resourceVersion read, so of two replicas racing
for an expired lease exactly one wins (the other gets 409 Conflict).

A leader that cannot renew for `renew_deadline` (< lease duration) stops calling itself
leader before anyone else may acquire the lease, so two replicas never publish at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kubernetes

from kubequeue import kube
from kubequeue.errors import KubeApiError, KubeNotFoundError

log = logging.getLogger(__name__)

LEASE_NAME = "kubequeue-watcher"
# client-go's defaults (leaderelection.LeaderElectionConfig): a new leader within ~15 s of
# a crash; renewals every 2 s tolerate a few failed API calls before stepping down.
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0


def micro_time(epoch: float | None = None) -> str:
    """A MicroTime as the API writes it: 2026-11-25T10:00:00.000000Z."""
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Elector:
    api: kubernetes.client.CoordinationV1Api
    namespace: str
    identity: str
    name: str = LEASE_NAME
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD
    clock: Callable[[], float] = time.monotonic
    _observed: tuple[str, str] = ("", "")  # (holder, renewTime) last read
    _observed_at: float = 0.0
    _renewed_at: float | None = None
    _was_leader: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not self.renew_deadline < self.lease_duration:
            raise ValueError("renew_deadline must be shorter than lease_duration")

    def is_leader(self) -> bool:
        """True while our last successful acquire/renew is younger than renew_deadline."""
        held = (
            self._renewed_at is not None and self.clock() - self._renewed_at < self.renew_deadline
        )
        if held != self._was_leader:
            self._was_leader = held
            log.info("%s %s the lease %s/%s", self.identity,
                     "holds" if held else "does not hold", self.namespace, self.name)  # fmt: skip
        return held

    def tick(self) -> bool:
        """Try once to acquire or renew the lease; returns whether we lead now."""
        try:
            self._try_acquire_or_renew()
        except KubeApiError as e:
            log.warning("lease %s/%s: %s", self.namespace, self.name, e)
        return self.is_leader()

    def release(self) -> None:
        """Give the lease up at shutdown so a follower takes over at once (client-go's
        ReleaseOnCancel). Best effort: an error only means the follower waits for expiry."""
        if not self.is_leader():
            return
        try:
            lease = self._read()
            if lease is None or _spec(lease).get("holderIdentity") != self.identity:
                return
            spec = {**_spec(lease), "holderIdentity": "", "leaseDurationSeconds": 1,
                    "renewTime": micro_time()}  # fmt: skip
            self._write(lease, spec)
            log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
        except KubeApiError as e:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, e)
        finally:
            self._renewed_at = None
            self.is_leader()

    # --- internals -----------------------------------------------------------------------

    def _try_acquire_or_renew(self) -> None:
        now = self.clock()
        lease = self._read()
        if lease is None:
            self._create()
            self._renewed_at = now
            return
        spec = _spec(lease)
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            self._renewed_at = None  # someone else holds a live lease
            return
        stamp = micro_time()
        new = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "renewTime": stamp,
        }
        if holder != self.identity:
            new["acquireTime"] = stamp
            new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        self._write(lease, new)  # 409 Conflict if another replica wrote first
        self._observed, self._observed_at = (self.identity, stamp), now
        self._renewed_at = now

    def _read(self) -> dict[str, Any] | None:
        try:
            raw = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False,
                _request_timeout=kube.REQUEST_TIMEOUT,
            )  # fmt: skip
        except Exception as e:
            err = kube.api_error(e)
            if isinstance(err, KubeNotFoundError):
                return None
            raise err from e
        lease: dict[str, Any] = json.loads(raw.data)
        return lease

    def _create(self) -> None:
        stamp = micro_time()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            _finish(self.api.create_namespaced_lease(
                self.namespace, body, _preload_content=False,
                _request_timeout=kube.REQUEST_TIMEOUT,
            ))  # fmt: skip
        except Exception as e:
            raise kube.api_error(e) from e
        self._observed, self._observed_at = (self.identity, stamp), self.clock()

    def _write(self, lease: dict[str, Any], spec: dict[str, Any]) -> None:
        meta = lease.get("metadata") or {}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": meta.get("resourceVersion"),
            },
            "spec": spec,
        }
        try:
            _finish(self.api.replace_namespaced_lease(
                self.name, self.namespace, body, _preload_content=False,
                _request_timeout=kube.REQUEST_TIMEOUT,
            ))  # fmt: skip
        except Exception as e:
            raise kube.api_error(e) from e


def _finish(response: Any) -> None:
    """Read an answer we do not use to its end: urllib3 gives a connection back to the pool
    only then (left unread, it was dropped, and every renewal opened a new connection)."""
    response.drain_conn()


def _spec(lease: dict[str, Any]) -> dict[str, Any]:
    return dict(lease.get("spec") or {})

"""watcher.leader: Lease election with an in-memory Lease API and a fake clock."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubequeue.watcher.leader import Elector


class Raw:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.data = json.dumps(obj).encode()

    def drain_conn(self) -> None:
        pass


def api_exception(status: int, reason: str) -> ApiException:
    e = ApiException(status=status, reason=reason)
    e.body = json.dumps({"kind": "Status", "reason": reason, "message": reason}).encode()
    e.headers = {}
    return e


class LeaseApi:
    """One Lease with optimistic concurrency, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise api_exception(503, "ServiceUnavailable")

    def read_namespaced_lease(self, name: str, namespace: str, **kw: Any) -> Raw:
        self._check()
        if self.lease is None:
            raise api_exception(404, "NotFound")
        return Raw(self.lease)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **kw: Any) -> Raw:
        self._check()
        if self.lease is not None:
            raise api_exception(409, "AlreadyExists")
        return self._store(body)

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: dict[str, Any], **kw: Any
    ) -> Raw:
        self._check()
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise api_exception(409, "Conflict")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> Raw:
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        return Raw(self.lease)

    @property
    def holder(self) -> str:
        return str((self.lease or {}).get("spec", {}).get("holderIdentity") or "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: LeaseApi, clock: Clock, name: str) -> Elector:
    return Elector(api, "ns", name, lease_duration=15, renew_deadline=10, clock=clock)


def test_first_comer_leads_and_the_other_follows_until_the_lease_expires() -> None:
    api, clock = LeaseApi(), Clock()
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    assert a.tick() and not b.tick()
    for _ in range(5):  # a renews every 2 s: b never takes over
        clock.now += 2
        assert a.tick() and not b.tick()
    assert api.lease is not None and api.lease["spec"]["leaseTransitions"] == 0
    # a dies (stops renewing): b waits a full lease duration from when it last saw a change
    clock.now += 14
    assert not b.tick()
    clock.now += 2
    assert b.tick() and api.holder == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1
    assert not a.is_leader()  # its last renewal is older than renew_deadline


def test_a_leader_that_cannot_renew_steps_down_before_the_lease_expires() -> None:
    api, clock = LeaseApi(), Clock()
    a = elector(api, clock, "a")
    assert a.tick()
    api.down = True
    clock.now += 9
    assert a.tick()  # still within renew_deadline
    clock.now += 2
    assert not a.tick()  # 11 s without renewal > renew_deadline (10) < lease (15)


def test_release_lets_a_follower_take_over_at_once() -> None:
    api, clock = LeaseApi(), Clock()
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    assert a.tick() and not b.tick()
    a.release()
    assert api.holder == "" and not a.is_leader()
    assert b.tick() and api.holder == "b"


def test_of_two_racing_for_an_expired_lease_one_wins() -> None:
    api, clock = LeaseApi(), Clock()
    assert elector(api, clock, "old").tick()
    b, c = elector(api, clock, "b"), elector(api, clock, "c")
    assert not b.tick() and not c.tick()
    clock.now += 16
    stale = copy.deepcopy(api.lease or {})
    assert b.tick()
    # c read the lease before b wrote it: its write carries the old resourceVersion.
    real_read = api.read_namespaced_lease
    api.read_namespaced_lease = lambda *a, **k: Raw(stale)  # type: ignore[method-assign]
    assert not c.tick()
    api.read_namespaced_lease = real_read  # type: ignore[method-assign]
    assert api.holder == "b"


def test_renew_deadline_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        Elector(LeaseApi(), "ns", "a", lease_duration=5, renew_deadline=5)

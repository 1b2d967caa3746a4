"""The dispatcher loop's own rules that need no Lua (claims run Lua: see
tests/integration/test_dispatcher.py)."""

from __future__ import annotations

import time

import fakeredis
import pytest

from kubequeue.dispatcher import loop
from kubequeue.dispatcher.handle import Handler
from kubequeue.keys import Keys
from kubequeue.pools import parse

POOLS = parse("pools:\n  a: {image: img}\nqueues: {qa: a, qb: a}\n")


def test_a_saturated_replica_rings_each_queue_at_most_once_per_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    client, keys = fakeredis.FakeRedis(), Keys("kq")
    d = loop.Dispatcher(
        client, keys, POOLS, Handler(POOLS, {}), loop.Options(queues=("qa", "qb"), name="d")
    )

    def bells() -> dict[str, int]:
        return {q: client.llen(keys.doorbell(q)) for q in ("qa", "qb")}

    d._ring_others({"qa"})
    assert bells() == {"qa": 1, "qb": 0}
    now[0] += loop.RING_GAP * 0.6
    d._ring_others({"qa", "qb"})  # qa was rung a moment ago; qb was not
    assert bells() == {"qa": 1, "qb": 1}
    now[0] += loop.RING_GAP * 0.6
    d._ring_others({"qa", "qb"})  # more than a gap after qa's ring, less after qb's
    assert bells() == {"qa": 2, "qb": 1}

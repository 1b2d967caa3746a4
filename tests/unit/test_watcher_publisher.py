"""watcher.publisher: what one batch leaves in Redis (fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest

from kubequeue import stream
from kubequeue.keys import Keys
from kubequeue.messages import EventType, TaskEvent
from kubequeue.watcher import publisher
from kubequeue.watcher.publisher import Publisher
from kubequeue.watcher.tracker import Batch, Emitted

QUEUED = 1_790_000_000.0


def running(qid: str, queue: str, started: float) -> Emitted:
    event = TaskEvent(type=EventType.RUNNING, id=qid, queue=queue, pool="p", at=QUEUED + started)
    return Emitted(event, prev_at=None, queued_at=QUEUED)


def test_a_batch_writes_events_entries_and_newest_first_startup_latencies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher, "STARTUP_KEEP", 2)
    client, keys = fakeredis.FakeRedis(), Keys()
    client.lpush(keys.startup("a"), "9.000")
    batch = Batch(
        events=[running("q1", "a", 1.0), running("q2", "b", 2.0), running("q3", "a", 3.0),
                running("q4", "a", -1.0)],
        published={"q1": "{}", "gone": None},
        releases=[("p", "q1")],
    )  # fmt: skip
    client.hset(keys.published(), "gone", "{}")
    client.zadd(keys.in_flight("p"), {"q1": 1.0, "q9": 1.0})
    Publisher(client, keys).write(batch)
    assert client.lrange(keys.startup("a"), 0, -1) == [b"0.000", b"3.000"]  # clamped, trimmed
    assert client.lrange(keys.startup("b"), 0, -1) == [b"2.000"]
    events, _ = stream.read(client, keys)
    assert [e.id for e in events] == ["q1", "q2", "q3", "q4"]
    assert client.hgetall(keys.published()) == {b"q1": b"{}"}
    assert client.zrange(keys.in_flight("p"), 0, -1) == [b"q9"]

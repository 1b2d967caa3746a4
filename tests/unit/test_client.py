"""Client.submit/events/forget on fakeredis (revoke and claims, which run Lua, are covered
against real Redis in tests/integration/test_pipeline_client.py)."""

from __future__ import annotations

import time

import fakeredis
import pytest

from kubequeue import metrics, queues
from kubequeue.client import Client
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskKey, TaskSpec
from kubequeue.pools import parse

POOLS = parse("pools:\n  a: {image: img}\nqueues: {qa: a}\n", "pools.yaml")


def spec(i: int, queue: str = "qa") -> TaskSpec:
    now = time.time()
    return TaskSpec(
        id=f"id-{i}",
        key=TaskKey(dag_id="d", task_id="t", run_id="r", try_number=1),
        queue=queue,
        command=["true"],
        queued_at=now,
        expires_at=now + 600,
    )


@pytest.fixture
def client() -> Client:
    return Client(fakeredis.FakeRedis(), Keys("kq"), POOLS)


def test_submit_then_events_from_a_cursor(client: Client) -> None:
    failed = client.submit([spec(1), spec(2, "gpu"), spec(1)])  # id-1 twice: queued once
    assert [(e.id, e.type, e.reason) for e in failed] == [
        ("id-2", EventType.FAILED, Reason.UNKNOWN_QUEUE)
    ]
    assert client.redis.llen("rq:queue:kq.qa") == 1
    assert client.redis.llen("kq:doorbell:qa") == 1
    events, cursor = client.events()
    assert [e.id for e in events] == ["id-2"]
    assert client.events(cursor) == ([], cursor)
    records = client.in_flight()
    assert records["id-1"].state == "queued" and records["id-1"].pool == "a"
    assert records["id-2"].state == "failed"
    client.forget(["id-1", "id-2"])
    assert client.in_flight() == {}


def test_events_cost_does_not_grow_with_tasks_in_flight(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.submit([spec(i) for i in range(2000)])
    cursor = client.latest_cursor()
    sent: list[str] = []
    real = client.redis.execute_command

    def record(*args: object, **kw: object) -> object:
        sent.append(str(args[0]).upper())
        return real(*args, **kw)

    monkeypatch.setattr(client.redis, "execute_command", record)
    assert client.events(cursor) == ([], cursor)
    assert sent == ["XREAD"]  # one command, whatever runs; the tasks hash is not read


def test_backlog_gauges_depth_and_age_of_the_oldest_spec(client: Client) -> None:
    client.submit([spec(1), spec(2)])
    rows = queues.backlog(client.redis, client.keys, ["qa", "empty"])
    assert [(q, n) for q, n, _ in rows] == [("qa", 2), ("empty", 0)]
    oldest = rows[0][2]
    assert oldest is not None and rows[1][2] is None
    metrics.set_backlog(rows, oldest + 30)
    assert metrics.QUEUE_DEPTH.labels("qa")._value.get() == 2
    assert metrics.OLDEST_QUEUED_AGE.labels("qa")._value.get() == 30
    assert metrics.OLDEST_QUEUED_AGE.labels("empty")._value.get() == 0
    metrics.set_backlog(rows, oldest - 5)  # another host's clock ahead of ours: not negative
    assert metrics.OLDEST_QUEUED_AGE.labels("qa")._value.get() == 0

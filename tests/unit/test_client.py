"""Client.submit/events/forget on fakeredis (revoke and claims, which run Lua, are covered
against real Redis in tests/integration/test_pipeline_client.py)."""

from __future__ import annotations

import json
import time
import zlib

import fakeredis
import pytest
from rq import Queue
from rq.job import Job, JobStatus, Retry
from rq.serializers import JSONSerializer

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


def test_submitted_jobs_are_what_rq_itself_writes(client: Client) -> None:
    """The client writes RQ's job hash itself (no Job object per spec): RQ must read it as
    its own, with the same fields RQ's enqueue_many writes."""
    s = spec(1)
    client.submit([s])
    job = Job.fetch("id-1", connection=client.redis, serializer=JSONSerializer)
    assert job.func_name == queues.JOB_FUNC
    assert TaskSpec.parse(job.args[0]) == s
    assert job.get_status() == JobStatus.QUEUED
    assert (job.origin, job.description, job.retries_left) == ("kq.qa", str(s.key), 25)
    assert Queue("kq.qa", connection=client.redis).job_ids == ["id-1"]
    assert [q.name for q in Queue.all(connection=client.redis)] == ["kq.qa"]

    by_rq = fakeredis.FakeRedis()
    rq = Queue("kq.qa", connection=by_rq, serializer=JSONSerializer)
    rq.enqueue_many([
        Queue.prepare_data(
            queues.JOB_FUNC, args=(s.to_json(),), job_id="id-1", result_ttl=0,
            failure_ttl=queues.FAILURE_TTL, description=str(s.key),
            retry=Retry(max=queues.RQ_RETRIES),
        )
    ])  # fmt: skip
    ours, theirs = client.redis.hgetall("rq:job:id-1"), by_rq.hgetall("rq:job:id-1")
    assert ours.keys() == theirs.keys()
    per_job = {b"created_at", b"enqueued_at", b"data"}
    assert {k: v for k, v in ours.items() if k not in per_job} == {
        k: v for k, v in theirs.items() if k not in per_job
    }
    assert queues.spec_json(ours[b"data"]) == queues.spec_json(theirs[b"data"])


@pytest.mark.parametrize("compressed", [True, False])
def test_spec_json_reads_compressed_and_plain_job_data(compressed: bool) -> None:
    data = json.dumps([queues.JOB_FUNC, None, ['{"v":1}'], {}]).encode()
    assert queues.spec_json(zlib.compress(data) if compressed else data) == '{"v":1}'


def test_events_page_passes_over_skipped_types_and_unreadable_entries(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    cursor = client.latest_cursor()
    client.submit([spec(1, "gpu")])  # FAILED/UnknownQueue, published
    client.redis.xadd(client.keys.events(), {"e": b"{not json"})
    page = client.events_page(cursor, 10, skip={"dispatched", "failed"})
    assert (page.events, page.entries, page.full) == ([], 2, False)
    assert "skipping unreadable event" in caplog.text
    page = client.events_page(cursor, 1)
    assert [e.type for e in page.events] == [EventType.FAILED] and page.full
    assert client.events_page(page.cursor, 10).entries == 1  # only the unreadable one left

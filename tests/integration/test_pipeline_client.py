"""Client, RQ queues and in-flight semaphore against a real Redis/Valkey server."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from kubequeue import inflight, queues, stream
from kubequeue.client import Client
from kubequeue.errors import RedisUnavailableError
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskKey, TaskSpec
from kubequeue.pools import PoolsConfig, parse

pytestmark = pytest.mark.integration

POOLS = "pools:\n  a: {image: img}\n  b: {image: img, maxInFlight: 2}\nqueues: {qa: a, qb: b}\n"


def spec(i: int, queue: str = "qa", **kw: object) -> TaskSpec:
    now = time.time()
    data = {
        "id": f"id-{i}",
        "key": TaskKey(dag_id="d", task_id=f"t{i}", run_id="r", try_number=1),
        "queue": queue,
        "command": ["python", "-c", "pass"],
        "queued_at": now,
        "expires_at": now + 600,
        **kw,
    }
    return TaskSpec.model_validate(data)


def make_client(url: str, config: PoolsConfig | None = None) -> Client:
    return Client(redis.Redis.from_url(url), Keys(), config or parse(POOLS), url=url)


def test_submit_enqueues_rq_jobs_and_records_in_one_round_trip(redis_url: str) -> None:
    client = make_client(redis_url)
    r = client.redis
    before = r.info("stats")["total_commands_processed"]
    failed = client.submit([spec(i) for i in range(50)] + [spec(99, "qb")])
    after = r.info("stats")["total_commands_processed"]
    assert failed == []
    # one pipeline: ~4 commands per job plus the hset, INFO calls of RQ and ours
    assert after - before < 250
    q = Queue("kubequeue.qa", connection=r, serializer=JSONSerializer)
    assert q.count == 50 and q.job_ids[0] == "id-0"
    job = q.fetch_job("id-0")
    assert job is not None and job.func_name == queues.JOB_FUNC
    assert TaskSpec.parse(job.args[0]).key.task_id == "t0"
    records = client.in_flight()
    assert len(records) == 51 and records["id-99"].pool == "b"
    assert records["id-0"].state == "queued" and records["id-0"].queue == "qa"
    assert queues.depth(r, Keys(), "qa") == 50
    assert abs(queues.oldest_queued_at(r, Keys(), "qa") - time.time()) < 60


def test_unknown_queue_fails_at_submit_with_an_event(redis_url: str) -> None:
    client = make_client(redis_url)
    failed = client.submit([spec(1), spec(2, "gpu")])
    assert len(failed) == 1
    ev = failed[0]
    assert ev.type is EventType.FAILED and ev.reason is Reason.UNKNOWN_QUEUE and ev.id == "id-2"
    assert ev.message == ("queue 'gpu' is not in the pools file <string> (known queues: qa, qb)")
    events, cursor = client.events()
    assert [(e.id, e.reason) for e in events] == [("id-2", Reason.UNKNOWN_QUEUE)]
    assert client.events(cursor) == ([], cursor) and client.latest_cursor() == cursor
    assert client.in_flight()["id-2"].state == "failed"
    assert queues.depth(client.redis, Keys(), "qa") == 1


def test_revoke_cancels_a_queued_spec(redis_url: str) -> None:
    client = make_client(redis_url)
    client.submit([spec(1), spec(2)])
    assert client.revoke("id-1") is True
    assert queues.depth(client.redis, Keys(), "qa") == 1
    events, _ = client.events()
    assert [(e.id, e.type, e.reason) for e in events] == [
        ("id-1", EventType.FAILED, Reason.REVOKED)
    ]
    assert client.redis.exists("rq:job:id-1") == 0
    # Not queued any more (a dispatcher holds it, or unknown): marked revoked only.
    assert client.revoke("id-1") is False
    assert client.revoke("nope") is False
    assert client.redis.zscore(Keys().revoked(), "nope") is not None


def test_forget_and_ping(redis_url: str) -> None:
    client = make_client(redis_url)
    client.ping()
    client.submit([spec(1), spec(2)])
    client.forget(["id-1"])
    assert set(client.in_flight()) == {"id-2"}


def test_redis_down_gives_a_clear_error() -> None:
    client = Client(
        redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1),
        Keys(),
        parse(POOLS),
        url="redis://127.0.0.1:1/0",
    )
    with pytest.raises(RedisUnavailableError, match=r"cannot reach Redis at redis://127.0.0.1:1/0"):
        client.ping()
    with pytest.raises(RedisUnavailableError) as e:
        client.submit([spec(1)])
    assert str(e.value).startswith(
        "submitting 1 task(s) failed: cannot reach Redis at redis://127.0.0.1:1/0: "
    )
    with pytest.raises(RedisUnavailableError, match="reading events failed"):
        client.events()


def test_claim_leases_and_reap_requeues_abandoned_jobs(redis_url: str) -> None:
    client = make_client(redis_url)
    r, keys = client.redis, Keys()
    client.submit([spec(i) for i in range(5)])
    want = [queues.Want("qa", "a", 3, None)]
    got = queues.claim(r, keys, want, execution="w1", lease=0.3, slot_lease=60)
    assert [c.job_id for c in got] == ["id-0", "id-1", "id-2"]
    assert TaskSpec.parse(queues.spec_json(got[0].payload)).id == "id-0"
    assert r.hget("rq:job:id-0", "status") == b"started"
    assert r.zcard(queues.started_key(keys, "qa")) == 3
    assert inflight.count(r, keys, "a") == 3
    # the holder keeps id-0 alive and finishes id-1; id-2's lease runs out
    queues.ack(p := r.pipeline(), keys, got[1])
    p.execute()
    deadline = time.time() + 5
    reaped: list[str] = []
    while time.time() < deadline and not reaped:
        queues.extend(r, keys, {"qa": [got[0].entry]}, lease=5)
        time.sleep(0.05)
        reaped = queues.reap(r, keys, ["qa"])
    assert reaped == ["id-2"]
    assert r.lrange("rq:queue:kubequeue.qa", 0, 0) == [b"id-2"]  # back at the front
    assert r.hget("rq:job:id-2", "status") == b"queued"
    # a holder whose lease ran out must not push a second copy
    assert queues.requeue(r, keys, got[2]) is False
    assert queues.requeue(r, keys, got[0]) is True
    assert r.lrange("rq:queue:kubequeue.qa", 0, -1) == [b"id-0", b"id-2", b"id-3", b"id-4"]


def test_claim_respects_max_in_flight_across_claimers(redis_url: str) -> None:
    client = make_client(redis_url)
    r, keys = client.redis, Keys()
    client.submit([spec(i, "qb") for i in range(5)])
    want = [queues.Want("qb", "b", 5, 2)]
    first = queues.claim(r, keys, want, execution="w1", lease=30, slot_lease=60)
    second = queues.claim(r, keys, want, execution="w2", lease=30, slot_lease=60)
    assert len(first) == 2 and second == []
    inflight.release(r, keys, "b", [first[0].job_id])
    third = queues.claim(r, keys, want, execution="w2", lease=30, slot_lease=60)
    assert [c.job_id for c in third] == ["id-2"]
    assert set(inflight.holders(r, keys, "b")) == {"id-1", "id-2"}
    assert inflight.renew(r, keys, "b", ["id-1", "id-9"], lease=1000) == 1
    # expired slots come back on their own
    inflight.renew(r, keys, "b", ["id-1", "id-2"], lease=-1)
    assert inflight.count(r, keys, "b") == 0


def test_claim_flags_revoked_and_skips_cancelled(redis_url: str) -> None:
    client = make_client(redis_url)
    r, keys = client.redis, Keys()
    client.submit([spec(1), spec(2), spec(3)])
    r.zadd(keys.revoked(), {"id-1": time.time()})
    r.delete("rq:job:id-2")  # a job whose hash is gone is skipped
    got = queues.claim(
        r, keys, [queues.Want("qa", "a", 5, None)], execution="w", lease=30, slot_lease=60
    )
    assert [(c.job_id, c.revoked) for c in got] == [("id-1", True), ("id-3", False)]
    assert set(inflight.holders(r, keys, "a")) == {"id-3"}


def test_stream_publish_from_client_is_bounded(redis_url: str) -> None:
    client = make_client(redis_url)
    client.events_maxlen = 1000
    for _ in range(3):
        client.submit([spec(i, "nope") for i in range(600)])
    assert client.redis.xlen(Keys().events()) < 1800
    assert stream.latest(client.redis, Keys()) != stream.START

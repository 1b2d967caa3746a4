"""The dispatcher in process (its threads), against real Redis and the simulated cluster:
what gets created, what fails and with which message, retries, limits, Redis loss."""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kubequeue import embedded_redis, inflight, kube, metrics, naming, queues
from kubequeue.client import Client
from kubequeue.dispatcher.handle import Handler
from kubequeue.dispatcher.loop import Dispatcher, Options
from kubequeue.keys import Keys
from kubequeue.messages import Reason, TaskEvent, TaskKey, TaskSpec
from kubequeue.pools import PoolsConfig, parse
from kubequeue.sim import Sim, SimConfig
from kubequeue.sim.cluster import NodePool
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

POOLS = """\
pools:
  a: {namespace: tasks, image: img, nodeSelector: {kubequeue.io/pool: a}, maxInFlight: 1000}
  b: {namespace: tasks, image: img, nodeSelector: {kubequeue.io/pool: b}, maxInFlight: 5}
queues: {qa: a, qa2: a, qb: b}
"""


def make_spec(i: int, queue: str = "qa", **kw: Any) -> TaskSpec:
    now = time.time()
    data: dict[str, Any] = {
        "id": f"id-{i}",
        "key": TaskKey(dag_id="dag", task_id=f"t{i}", run_id="r", try_number=1),
        "queue": queue,
        "command": ["true"],
        "queued_at": now,
        "expires_at": now + 600,
        **kw,
    }
    return TaskSpec.model_validate(data)


class Harness:
    def __init__(self, sim: Sim, redis_url: str, pools: PoolsConfig) -> None:
        self.sim, self.pools, self.keys = sim, pools, Keys()
        self.redis = redis.Redis.from_url(redis_url)
        self.client = Client(self.redis, self.keys, pools)
        self.threads: list[tuple[Dispatcher, threading.Thread]] = []
        self.cursor = "0-0"

    def start(self, kubeconfig: str | None = None, **options: Any) -> Dispatcher:
        api = kube.api_client(kubeconfig or str(self.sim.kubeconfig), pool_size=20)
        apis = dict.fromkeys(self.pools.pools, api)
        handler = Handler(self.pools, apis, retry_for=options.pop("retry_for", 30.0),
                          backoffs=(0.05, 0.1, 0.2))  # fmt: skip
        opts = Options(
            queues=tuple(self.pools.queues),
            name=f"t{len(self.threads)}",
            lease=options.pop("lease", 30.0),
            reap_every=0.5,
            idle_max=0.2,
            **options,
        )
        d = Dispatcher(self.redis, self.keys, self.pools, handler, opts)
        t = threading.Thread(target=d.run, daemon=True)
        t.start()
        self.threads.append((d, t))
        return d

    def stop(self) -> None:
        for d, _ in self.threads:
            d.request_stop()
        for _, t in self.threads:
            t.join(60)
            assert not t.is_alive()
        self.threads.clear()

    def pods(self) -> dict[str, dict[str, Any]]:
        """kubequeue.io/id -> pod."""
        pods = self.sim.call(lambda: self.sim.store.list("pods", "tasks"))
        out: dict[str, dict[str, Any]] = {}
        for p in pods:
            qid = p["metadata"]["labels"][naming.LABEL_ID]
            assert qid not in out, f"two pods for {qid}"
            out[qid] = p
        return out

    def events(self) -> list[TaskEvent]:
        got, self.cursor = self.client.events(self.cursor)
        return got

    def drained(self) -> bool:
        pipe = self.redis.pipeline()
        for q in self.pools.queues:
            pipe.llen(queues.queue_key(self.keys, q))
            pipe.zcard(queues.started_key(self.keys, q))
        return not any(pipe.execute())


@pytest.fixture
def sim2(sim_factory: Callable[..., Sim]) -> Sim:
    return sim_factory(
        SimConfig(
            pools=(NodePool("a", 2, max_pods=1000), NodePool("b", 2, max_pods=1000)),
            namespaces=("default", "tasks"),
        )
    )


@pytest.fixture
def harness(sim2: Sim, redis_url: str) -> Iterator[Harness]:
    h = Harness(sim2, redis_url, parse(POOLS))
    yield h
    h.stop()


def test_one_pod_per_spec_on_its_pool(harness: Harness) -> None:
    harness.start(concurrency=8)
    specs = [make_spec(i, ["qa", "qa2"][i % 2]) for i in range(40)]
    assert harness.client.submit(specs) == []
    pods = wait_for("40 pods", lambda: len(harness.pods()) == 40 and harness.pods())
    wait_for("drained", harness.drained)
    assert set(pods) == {s.id for s in specs}
    for spec in specs:
        pod = pods[spec.id]
        assert pod["metadata"]["name"] == naming.pod_name(spec.id, "dag", spec.key.task_id)
        assert pod["metadata"]["labels"][naming.LABEL_POOL] == "a"
        assert pod["metadata"]["labels"][naming.LABEL_QUEUE] == spec.queue
    placed = wait_for(
        "pods scheduled",
        lambda: all(p["spec"].get("nodeName") for p in harness.pods().values()) and harness.pods(),
    )
    assert {p["spec"]["nodeName"].rsplit("-", 1)[0] for p in placed.values()} == {"a"}
    assert harness.events() == []  # the dispatcher publishes nothing for created pods


def test_duplicate_dispatch_is_a_harmless_409(harness: Harness) -> None:
    spec = make_spec(1)
    harness.client.submit([spec])
    harness.client.submit([spec])  # the same queueing twice (e.g. an executor retry)
    before = metrics.DISPATCHES.labels("qa", "a", "exists")._value.get()
    harness.start()
    wait_for("drained", harness.drained)
    assert list(harness.pods()) == [spec.id]
    assert metrics.DISPATCHES.labels("qa", "a", "exists")._value.get() == before + 1
    assert harness.events() == []


def _raw_job(harness: Harness, job_id: str, queue: str, payload: bytes) -> None:
    """An RQ job as something other than our client would have written it."""
    q = queues.rq_queue(harness.redis, harness.keys, queue)
    harness.redis.hset(f"rq:job:{job_id}", mapping={"data": payload, "status": "queued",
                                                    "origin": q.name})  # fmt: skip
    harness.redis.rpush(q.key, job_id)


def _call(spec_json: str) -> bytes:
    return zlib.compress(json.dumps([queues.JOB_FUNC, None, [spec_json], {}]).encode())


def test_bad_input_each_ends_with_the_message_the_user_sees(harness: Harness) -> None:
    good = make_spec(0).model_dump(mode="json")
    _raw_job(harness, "junk", "qa", b"not zlib")
    _raw_job(harness, "notjson", "qa", _call("{not json"))
    _raw_job(harness, "v2", "qa", _call(json.dumps({**good, "v": 2, "id": "v2"})))
    _raw_job(harness, "noq", "qa", _call(json.dumps({**good, "id": "noq", "queue": "gpu"})))
    past = time.time() - 700
    expired = make_spec(1, queued_at=past, expires_at=past + 600)
    too_big = {"spec": {"containers": [{"name": "base", "resources": {
        "requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}}  # fmt: skip
    invalid = make_spec(2, pod_override=too_big)
    elsewhere = make_spec(3, pod_override={"metadata": {"namespace": "kube-system"}})
    revoked = make_spec(4)
    harness.client.submit([expired, invalid, elsewhere, revoked])
    harness.redis.zadd(harness.keys.revoked(), {revoked.id: time.time()})
    harness.start()
    wait_for("drained", harness.drained)
    got: dict[str, TaskEvent] = {}

    def collect() -> bool:
        got.update((e.id, e) for e in harness.events())
        return len(got) == 8

    wait_for("8 events", collect)
    messages = {qid: (e.reason, e.message) for qid, e in got.items()}
    assert messages["junk"] == (
        Reason.MALFORMED_SPEC,
        "RQ job data is not a JSON-serialized call: invalid literal, expected 'null': line 1 "
        "column 1 (char 0)",
    )
    assert messages["notjson"][0] is Reason.MALFORMED_SPEC
    assert messages["notjson"][1].startswith("TaskSpec is not valid JSON: ")
    assert messages["v2"] == (
        Reason.MALFORMED_SPEC,
        "TaskSpec has unknown version v=2; this kubequeue reads v=1",
    )
    assert messages["noq"] == (
        Reason.UNKNOWN_QUEUE,
        "queue 'gpu' is not in the pools file <string> (known queues: qa, qa2, qb)",
    )
    assert messages[expired.id][0] is Reason.EXPIRED
    assert messages[expired.id][1].startswith("waited 700s in queue 'qa', past its expiry")
    assert messages[invalid.id] == (
        Reason.INVALID,
        "the Kubernetes API rejected the pod (422 Invalid): Pod "
        f'"{naming.pod_name(invalid.id, "dag", "t2")}" is invalid: '
        'spec.containers[0].resources.requests: Invalid value: "2": '
        "must be less than or equal to cpu limit of 1",
    )
    assert messages[elsewhere.id] == (
        Reason.INVALID,
        "pod could not be built: pod_override sets namespace 'kube-system', but pool 'a' "
        "runs its pods in 'tasks': choose the namespace with the task's queue",
    )
    assert messages[revoked.id] == (Reason.REVOKED, "revoked before its pod was created")
    assert harness.pods() == {}
    assert inflight.count(harness.redis, harness.keys, "a") == 0  # every slot given back
    records = harness.client.in_flight()
    assert records[invalid.id].state == "failed" and records[invalid.id].reason is Reason.INVALID


def test_throttling_and_5xx_storms_still_dispatch_each_task_once(harness: Harness) -> None:
    harness.sim.set_faults(throttle=0.3, retry_after=1, error=0.3, scope="pod-creates")
    throttled = metrics.API_ERRORS.labels("qa", "a", "429")._value.get()
    errors = sum(metrics.API_ERRORS.labels("qa", "a", c)._value.get() for c in ("500", "503"))
    harness.start(concurrency=16)
    specs = [make_spec(i) for i in range(60)]
    harness.client.submit(specs)
    wait_for("drained", harness.drained, timeout=120)
    assert set(harness.pods()) == {s.id for s in specs}
    assert harness.events() == []
    assert metrics.API_ERRORS.labels("qa", "a", "429")._value.get() > throttled
    assert (
        sum(metrics.API_ERRORS.labels("qa", "a", c)._value.get() for c in ("500", "503")) > errors
    )


def test_unreachable_api_leaves_specs_queued(harness: Harness, tmp_path: Path) -> None:
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: d\n"
        "clusters: [{name: d, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: d, context: {cluster: d, user: d}}]\nusers: [{name: d, user: {}}]\n"
    )
    specs = [make_spec(i) for i in range(5)]
    harness.client.submit(specs)
    unreachable = metrics.API_ERRORS.labels("qa", "a", "0")._value.get()
    harness.start(kubeconfig=str(dead), retry_for=0.3, cooldown=0.2)
    wait_for("retries", lambda: metrics.API_ERRORS.labels("qa", "a", "0")._value.get()
             >= unreachable + 10)  # fmt: skip
    harness.stop()
    assert queues.depth(harness.redis, harness.keys, "qa") == 5
    assert harness.redis.zcard(queues.started_key(harness.keys, "qa")) == 0
    assert harness.events() == []
    assert inflight.count(harness.redis, harness.keys, "a") == 0
    # the API comes back (here: a dispatcher that can reach it): everything is created
    harness.start()
    wait_for("drained", harness.drained)
    assert set(harness.pods()) == {s.id for s in specs}


def test_max_in_flight_holds_across_replicas(harness: Harness) -> None:
    harness.start(concurrency=4)
    harness.start(concurrency=4)
    specs = [make_spec(i, "qb") for i in range(12)]
    harness.client.submit(specs)
    wait_for("5 pods", lambda: len(harness.pods()) == 5)
    time.sleep(0.5)  # give an over-eager replica the chance to create a sixth
    assert len(harness.pods()) == 5
    assert queues.depth(harness.redis, harness.keys, "qb") == 7
    # the watcher frees slots as pods finish
    inflight.release(harness.redis, harness.keys, "b", list(harness.pods())[:3])
    wait_for("8 pods", lambda: len(harness.pods()) == 8)


def test_abandoned_jobs_are_requeued_and_created_once(harness: Harness) -> None:
    specs = [make_spec(i) for i in range(6)]
    harness.client.submit(specs)
    # a dispatcher that claimed three jobs and died before creating their pods
    dead = queues.claim(harness.redis, harness.keys, [queues.Want("qa", "a", 3, None)],
                        execution="dead", lease=1.0, slot_lease=600)  # fmt: skip
    assert len(dead) == 3
    harness.start(lease=5.0)
    wait_for("drained", harness.drained, timeout=30)
    assert set(harness.pods()) == {s.id for s in specs}
    assert harness.events() == []


def test_redis_lost_mid_run_reconnects(
    sim2: Sim, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO)
    server = embedded_redis.start()
    h = Harness(sim2, server.url, parse(POOLS))
    try:
        h.start()
        h.client.submit([make_spec(1)])
        wait_for("first pod", lambda: len(h.pods()) == 1)
        server.stop()
        time.sleep(1.0)  # the dispatcher notices: its claim loop fails and backs off
        server = embedded_redis.start(port=server.port, workdir=str(tmp_path))
        h.client.submit([make_spec(2)])
        wait_for("second pod", lambda: len(h.pods()) == 2, timeout=30)
    finally:
        h.stop()
        server.stop()
    text = caplog.text
    assert "claim loop: Redis unreachable" in text
    assert "claim loop: Redis is back after" in text


def test_each_pool_can_be_another_cluster(
    sim_factory: Callable[..., Sim], redis_url: str, tmp_path: Path
) -> None:
    from kubequeue.dispatcher.cli import _api_clients
    from kubequeue.sim import write_kubeconfig

    east = sim_factory(SimConfig(context="east", namespaces=("default", "tasks")))
    west = sim_factory(SimConfig(context="west", namespaces=("default", "tasks")))
    merged = tmp_path / "kubeconfig"
    write_kubeconfig(merged, [east, west], current="east")
    pools = parse(
        "pools:\n  e: {namespace: tasks, image: img, context: east}\n"
        "  w: {namespace: tasks, image: img, context: west}\nqueues: {qe: e, qw: w}\n"
    )
    apis = _api_clients(pools, ("qe", "qw"), str(merged), 4)
    r = redis.Redis.from_url(redis_url)
    d = Dispatcher(r, Keys(), pools, Handler(pools, apis), Options(queues=("qe", "qw"), name="x"))
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        Client(r, Keys(), pools).submit([make_spec(1, "qe"), make_spec(2, "qw")])

        def ids(sim: Sim) -> set[str]:
            pods = sim.call(lambda: sim.store.list("pods", "tasks"))
            return {p["metadata"]["labels"][naming.LABEL_ID] for p in pods}

        wait_for("a pod in each cluster", lambda: ids(east) and ids(west))
        assert (ids(east), ids(west)) == ({"id-1"}, {"id-2"})
    finally:
        d.request_stop()
        t.join(30)

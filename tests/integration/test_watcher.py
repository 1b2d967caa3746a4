"""The watcher against real Redis and the simulated cluster (timed kubelet).

Pods are created directly, the way a dispatcher creates them (labels and annotations from
kubequeue.naming), so these tests need nothing but the watcher."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from kubequeue import embedded_redis, health, inflight, kube, metrics, naming, settings, stream
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskEvent
from kubequeue.sim import Sim, SimConfig
from kubequeue.sim.cluster import NodePool
from kubequeue.watcher.service import Service
from kubequeue.watcher.term import Timing
from kubequeue.watcher.tracker import PoolPolicy
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration
E = EventType
NS = "default"
FULL = [E.DISPATCHED, E.POD_CREATED, E.SCHEDULED, E.STARTED, E.RUNNING]
PHASE_HISTOGRAMS = (
    metrics.QUEUED_TO_DISPATCHED,
    metrics.DISPATCHED_TO_CREATED,
    metrics.CREATED_TO_SCHEDULED,
    metrics.SCHEDULED_TO_STARTED,
    metrics.STARTUP,
)


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task_pod(
    queue: str = "default",
    pool: str = "default",
    *,
    duration: str = "300ms",
    exit_code: int = 0,
    image: str = "apache/airflow:3.3.2",
    chaos: str | None = None,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A task pod as a dispatcher builds it (only what the watcher reads, plus sim knobs)."""
    qid = str(uuid.uuid4())
    now = time.time()
    labels = {
        naming.LABEL_MANAGED: naming.MANAGED_BY,
        naming.LABEL_ID: qid,
        naming.LABEL_QUEUE: queue,
        naming.LABEL_POOL: pool,
    }
    if chaos:
        labels["kubequeue.io/sim-chaos"] = chaos
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": naming.pod_name(qid, "dag", "task"),
            "labels": labels,
            "annotations": {
                naming.ANN_QUEUED_AT: stamp(now - 0.2),
                naming.ANN_DISPATCHED_AT: stamp(now - 0.1),
                naming.ANN_KEY: '{"dag_id":"dag","task_id":"task","run_id":"r","try_number":1,'
                '"map_index":-1}',
                "kubequeue.io/sim-duration": duration,
                "kubequeue.io/sim-exit-code": str(exit_code),
                "kubequeue.io/sim-chaos-delay": "200ms",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": node_selector or {"kubequeue.io/pool": "default"},
            "containers": [{"name": "base", "image": image}],
        },
    }


def qid_of(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"][naming.LABEL_ID])


@dataclass
class Harness:
    """A watcher Service on a thread, plus handles on Redis and the simulated cluster."""

    sim: Sim
    redis_url: str
    pools: dict[str, PoolPolicy]
    identity: str = "w1"
    service: Service | None = None
    thread: threading.Thread | None = None
    stop_event: threading.Event | None = None

    def __post_init__(self) -> None:
        self.api = kube.api_client(str(self.sim.kubeconfig), None)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.redis = settings.connect_redis(self.redis_url, socket_timeout=2.0)
        self.keys = Keys()

    def start(self) -> Service:
        self.stop_event = threading.Event()
        self.service = Service(
            redis=settings.connect_redis(self.redis_url, socket_timeout=2.0),
            keys=self.keys,
            pools=self.pools,
            queue_names=sorted({"default", "etl", "metrics-q"}),
            apis={None: self.api},
            lease_namespace=NS,
            identity=self.identity,
            lease_duration=3.0,
            timing=Timing(sweep_interval=0.2, gauge_interval=0.5, watch_timeout=(5, 10)),
        )
        self.thread = threading.Thread(target=self.service.run, args=(self.stop_event,))
        self.thread.start()
        wait_for("leadership", lambda: self.service and self.service.term, 15)
        return self.service

    def stop(self) -> None:
        if self.stop_event and self.thread:
            self.stop_event.set()
            self.thread.join(30)
            assert not self.thread.is_alive()
        self.stop_event = self.thread = None

    def create(self, pod: dict[str, Any]) -> str:
        self.core.create_namespaced_pod(NS, pod)
        return qid_of(pod)

    def events(self) -> dict[str, list[TaskEvent]]:
        got: dict[str, list[TaskEvent]] = defaultdict(list)
        cursor = stream.START
        while True:
            batch, cursor = stream.read(self.redis, self.keys, cursor, 5000)
            if not batch:
                return got
            for e in batch:
                got[e.id].append(e)

    def terminal(self, qid: str) -> TaskEvent | None:
        return next((e for e in self.events().get(qid, []) if e.terminal), None)

    def wait_terminal(self, ids: list[str], timeout: float = 60.0) -> dict[str, list[TaskEvent]]:
        def done() -> dict[str, list[TaskEvent]] | None:
            got = self.events()
            return got if all(any(e.terminal for e in got.get(i, [])) for i in ids) else None

        result: dict[str, list[TaskEvent]] = wait_for(f"{len(ids)} terminals", done, timeout)
        return result

    def pods(self) -> list[str]:
        return [p.metadata.name for p in self.core.list_namespaced_pod(NS).items]


@pytest.fixture
def fast_sim(sim_factory: Callable[[SimConfig], Sim]) -> Sim:
    """Four nodes whose kubelet starts containers at once (the `fast` stage profile): the
    watcher sees the same transitions, without realistic image-pull delays."""
    return sim_factory(SimConfig(pools=(NodePool("default", 4, profile="fast"),)))


@pytest.fixture
def harness(fast_sim: Sim, redis_url: str) -> Iterator[Harness]:
    h = Harness(fast_sim, redis_url, {"default": PoolPolicy("default", NS, startup_timeout=2.0)})
    yield h
    h.stop()


def assert_exactly_once(events: dict[str, list[TaskEvent]], ids: list[str]) -> None:
    """No event type twice for a queueing, one terminal each, milestones in order."""
    for qid in ids:
        kinds = [e.type for e in events[qid]]
        assert len(kinds) == len(set(kinds)), f"{qid}: doubled events {kinds}"
        assert sum(1 for e in events[qid] if e.terminal) == 1, f"{qid}: {kinds}"
        assert kinds[-1] in (E.SUCCEEDED, E.FAILED), f"{qid}: {kinds}"


def test_every_transition_is_published_once_with_reasons(harness: Harness) -> None:
    harness.start()
    pods = [task_pod() for _ in range(20)]
    pods += [task_pod(exit_code=3), task_pod(chaos="oom", duration="10s"),
             task_pod(chaos="evict", duration="10s")]  # fmt: skip
    for pod in pods:  # each holds a slot, as a dispatcher takes one before it creates the pod
        harness.redis.zadd(harness.keys.in_flight("default"), {qid_of(pod): time.time() + 900})
    *ok, failing, oom, evicted = [harness.create(pod) for pod in pods]
    events = harness.wait_terminal([*ok, failing, oom, evicted])
    assert_exactly_once(events, [*ok, failing, oom, evicted])
    for qid in ok:
        assert [e.type for e in events[qid]] == [*FULL, E.SUCCEEDED]
        assert events[qid][0].key is not None and events[qid][-1].node
    end = events[failing][-1]
    assert (end.reason, end.exit_code) == (Reason.EXIT_CODE, 3)
    assert "container base exited with code 3" in end.message
    assert events[oom][-1].reason is Reason.OOM_KILLED
    assert events[evicted][-1].reason is Reason.EVICTED
    assert "low on resource" in events[evicted][-1].message
    # Slots released; succeeded pods deleted, failed ones kept and labelled done.
    wait_for("release", lambda: inflight.count(harness.redis, harness.keys, "default") == 0, 10)
    kept = wait_for("cleanup", lambda: len(harness.pods()) == 3 and harness.pods(), 20)
    done = harness.core.list_namespaced_pod(NS, label_selector="kubequeue.io/done=true").items
    assert sorted(p.metadata.name for p in done) == sorted(kept)
    # The published hash keeps only tombstones of finished tasks, no live entries.
    assert not harness.service.term.tracker.tasks  # type: ignore[union-attr]


def test_a_pod_deleted_while_running_fails_as_deleted(harness: Harness) -> None:
    harness.start()
    pod = task_pod(duration="60s")
    qid = harness.create(pod)
    wait_for("RUNNING", lambda: any(e.type is E.RUNNING for e in harness.events().get(qid, [])), 20)
    harness.core.delete_namespaced_pod(pod["metadata"]["name"], NS)
    end = wait_for("terminal", lambda: harness.terminal(qid), 20)
    assert end.reason is Reason.DELETED and "was deleted before the task finished" in end.message


def test_a_pod_on_a_node_that_dies_fails_as_node_lost(harness: Harness) -> None:
    harness.start()
    pod = task_pod(duration="60s")
    # The API adds a 300 s toleration of unreachable nodes by default (as DefaultToleration-
    # Seconds does); this pod tolerates none, so it is lost as soon as its node is.
    pod["spec"]["tolerations"] = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                   "effect": "NoExecute", "tolerationSeconds": 0}]  # fmt: skip
    qid = harness.create(pod)
    running = wait_for("running", lambda: next((e for e in harness.events().get(qid, [])
                                     if e.type is E.RUNNING), None), 20)  # fmt: skip
    harness.sim.set_node_ready(running.node, False)
    end = wait_for("terminal", lambda: harness.terminal(qid), 20)
    assert end.reason is Reason.NODE_LOST and f"node {running.node}" in end.message


@pytest.mark.parametrize(
    ("pod", "reason", "says"),
    [
        (lambda: task_pod(node_selector={"kubequeue.io/pool": "nowhere"}), Reason.UNSCHEDULABLE,
         "node(s) didn't match"),
        (lambda: task_pod(image="registry.example/doesnotexist:1"), Reason.IMAGE_PULL,
         "registry.example/doesnotexist:1"),
    ],
)  # fmt: skip
def test_fail_fast_ends_stuck_pods_and_deletes_them(
    harness: Harness, pod: Callable[[], dict[str, Any]], reason: Reason, says: str
) -> None:
    harness.start()
    body = pod()
    qid = harness.create(body)
    end = wait_for("fail fast", lambda: harness.terminal(qid), 30)
    assert end.reason is reason
    assert "startupTimeout 2s" in end.message and says in end.message, end.message
    wait_for("pod deleted", lambda: body["metadata"]["name"] not in harness.pods(), 20)
    assert_exactly_once(harness.events(), [qid])


def test_revoked_pods_are_deleted_and_fail_as_revoked(harness: Harness) -> None:
    harness.start()
    pod = task_pod(duration="60s")
    qid = harness.create(pod)
    wait_for("RUNNING", lambda: any(e.type is E.RUNNING for e in harness.events().get(qid, [])), 20)
    harness.redis.zadd(harness.keys.revoked(), {qid: time.time()})
    end = wait_for("revoked", lambda: harness.terminal(qid), 20)
    assert end.reason is Reason.REVOKED
    wait_for("pod deleted", lambda: pod["metadata"]["name"] not in harness.pods(), 20)
    time.sleep(0.5)  # let the pod's DELETED event arrive: it must not add a second terminal
    assert_exactly_once(harness.events(), [qid])


def test_restart_and_410_mid_run_miss_nothing_and_double_nothing(harness: Harness) -> None:
    gone_before = _sample("kubequeue_watch_restarts_total", {"reason": "gone"})
    harness.start()
    first = [harness.create(task_pod(duration=f"{200 + 50 * i}ms")) for i in range(15)]
    wait_for("first events", lambda: len(harness.events()) >= 10, 20)
    second = [harness.create(task_pod(duration="300ms")) for _ in range(10)]
    doomed = task_pod(duration="60s")
    harness.create(doomed)
    force_410(harness, gone_before)
    wait_for("the doomed pod seen", lambda: harness.events().get(qid_of(doomed)), 20)
    # Stop the watcher mid-run; while it is down pods progress, finish, and one it knew of
    # vanishes (a pod created and deleted entirely while no watcher runs is never seen).
    harness.stop()
    third = [harness.create(task_pod(duration="200ms")) for _ in range(10)]
    harness.core.delete_namespaced_pod(doomed["metadata"]["name"], NS, grace_period_seconds=0)
    time.sleep(1.5)
    harness.sim.compact()
    harness.start()
    ids = [*first, *second, *third, qid_of(doomed)]
    events = harness.wait_terminal(ids)
    assert_exactly_once(events, ids)
    for qid in [*first, *second, *third]:
        assert [e.type for e in events[qid]] == [*FULL, E.SUCCEEDED], qid
    assert events[qid_of(doomed)][-1].reason is Reason.DELETED


def force_410(harness: Harness, gone_before: float) -> None:
    """A 410 mid-run: a change the pod watch does not carry moves the cluster's RV past the
    watch's, the history is compacted and the watches are cut; the resumed watch gets 410
    Gone and the watcher relists. Repeated in the rare case a bookmark came in between."""

    def relisted() -> bool:
        return _sample("kubequeue_watch_restarts_total", {"reason": "gone"}) > gone_before

    for attempt in range(10):
        harness.core.create_namespaced_config_map(NS, {"metadata": {"name": f"bump-{attempt}"}})
        harness.sim.compact()
        harness.sim.drop_watches()
        try:
            wait_for("a 410 relist", relisted, 2)
            return
        except AssertionError:
            continue
    raise AssertionError("the watcher never saw 410 Gone")


def _sample(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_have_one_observation_per_task_per_phase(harness: Harness) -> None:
    harness.pools = {"mpool": PoolPolicy("mpool", NS, startup_timeout=30)}
    harness.start()
    server = health.serve(0, harness.service.alive, harness.service.not_ready)  # type: ignore[union-attr]
    try:
        ids = [harness.create(task_pod(queue="metrics-q", pool="mpool")) for _ in range(12)]
        failing = harness.create(task_pod(queue="metrics-q", pool="mpool", exit_code=2))
        harness.wait_terminal([*ids, failing])
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        assert urllib.request.urlopen(f"{base}/readyz").read() == b"ok\n"
    finally:
        server.stop()
    labels = 'pool="mpool",queue="metrics-q"'
    for hist in PHASE_HISTOGRAMS:
        line = f"{hist._name}_count{{{labels}}} 13.0"
        assert line in text, f"missing {line}"
    assert f'kubequeue_tasks_finished_total{{outcome="succeeded",{labels}}} 12.0' in text
    assert f'kubequeue_task_failures_total{{{labels},reason="ExitCode"}} 1.0' in text
    assert "kubequeue_watcher_leader 1.0" in text
    assert 'kubequeue_queue_depth{queue="metrics-q"} 0.0' in text
    latencies = harness.redis.lrange(harness.keys.startup("metrics-q"), 0, -1)
    assert len(latencies) == 13 and all(float(x) >= 0 for x in latencies)


def test_redis_lost_mid_run_reconnects_and_loses_nothing(fast_sim: Sim, tmp_path: Path) -> None:
    server = embedded_redis.start(workdir=str(tmp_path))
    h = Harness(fast_sim, server.url, {"default": PoolPolicy("default", NS)})
    try:
        h.start()
        before = [h.create(task_pod(duration="200ms")) for _ in range(5)]
        h.wait_terminal(before)
        h.redis.save()
        server.stop()  # Redis gone: pods keep moving, the watcher keeps retrying
        during = [h.create(task_pod(duration="200ms")) for _ in range(5)]
        assert h.service is not None
        assert (h.service.not_ready() or "").startswith("Redis does not answer")
        time.sleep(2.0)
        server = embedded_redis.start(port=server.port, workdir=str(tmp_path))
        events = h.wait_terminal([*before, *during])
        assert_exactly_once(events, [*before, *during])
        for qid in during:
            assert [e.type for e in events[qid]] == [*FULL, E.SUCCEEDED]
    finally:
        h.stop()
        server.stop()


def test_two_services_in_one_process_never_publish_twice(fast_sim: Sim, redis_url: str) -> None:
    """Both replicas run; only the lease holder publishes (checked by counts)."""
    pools = {"default": PoolPolicy("default", NS)}
    a = Harness(fast_sim, redis_url, pools, identity="a")
    b = Harness(fast_sim, redis_url, pools, identity="b")
    try:
        a.start()
        b.stop_event = threading.Event()
        b.service = Service(redis=b.redis, keys=b.keys, pools=pools, queue_names=["default"],
                            apis={None: b.api}, lease_namespace=NS, identity="b",
                            lease_duration=3.0, timing=Timing(sweep_interval=0.2))  # fmt: skip
        b.thread = threading.Thread(target=b.service.run, args=(b.stop_event,))
        b.thread.start()
        ids = [a.create(task_pod()) for _ in range(10)]
        events = a.wait_terminal(ids)
        assert b.service.term is None
        assert_exactly_once(events, ids)
        a.stop()  # releases the lease: b takes over at once
        wait_for("takeover", lambda: b.service and b.service.term, 10)
        more = [b.create(task_pod()) for _ in range(5)]
        events = b.wait_terminal([*ids, *more])
        assert_exactly_once(events, [*ids, *more])
        assert Counter(e.type for evs in events.values() for e in evs)[E.SUCCEEDED] == 15
    finally:
        a.stop()
        b.stop()


def test_one_watch_per_context_and_namespace(
    sim_factory: Callable[[SimConfig], Sim], redis_url: str, tmp_path: Path
) -> None:
    """Pools in two clusters (kube contexts) and two namespaces: every pod is followed."""
    from kubequeue import sim as simulator
    from kubequeue.watcher.service import api_clients

    fast = (NodePool("default", 2, profile="fast"),)
    east = sim_factory(SimConfig(pools=fast, context="east"))
    west = sim_factory(SimConfig(pools=fast, context="west"))
    kubeconfig = tmp_path / "kubeconfig"
    simulator.write_kubeconfig(kubeconfig, [east, west], current="east")
    pools = {
        "a": PoolPolicy("a", NS, context="east"),
        "b": PoolPolicy("b", NS, context="west"),
        "c": PoolPolicy("c", "batch", context="east"),
    }
    h = Harness(east, redis_url, pools)
    h.core.create_namespace({"metadata": {"name": "batch"}})
    apis = api_clients(str(kubeconfig), pools)
    assert set(apis) == {None, "east", "west"}
    service = Service(redis=h.redis, keys=h.keys, pools=pools, queue_names=["default"],
                      apis=apis, lease_namespace=NS, identity="multi", lease_duration=3.0,
                      timing=Timing(sweep_interval=0.2))  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        wait_for("leadership", lambda: service.term, 15)
        assert service.term is not None
        assert sorted(loop.name for loop in service.term.loops) == [
            "east/batch", "east/default", "west/default"]  # fmt: skip
        cores = {ctx: kubernetes.client.CoreV1Api(api) for ctx, api in apis.items()}
        cores["east"].create_namespaced_pod(NS, task_pod(pool="a"))
        cores["west"].create_namespaced_pod(NS, task_pod(pool="b"))
        cores["east"].create_namespaced_pod("batch", task_pod(pool="c"))

        def three_finished() -> dict[str, list[TaskEvent]] | None:
            got = h.events()
            return got if sum(e.terminal for evs in got.values() for e in evs) == 3 else None

        events = wait_for("3 tasks", three_finished, 30)
        assert sorted((evs[-1].pool, evs[-1].namespace) for evs in events.values()) == [
            ("a", NS), ("b", NS), ("c", "batch")]  # fmt: skip
        assert_exactly_once(events, list(events))
    finally:
        stop.set()
        thread.join(30)

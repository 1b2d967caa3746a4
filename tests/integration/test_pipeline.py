"""`kubequeue dispatcher` processes against real Redis and the simulated cluster: many tasks
over several queues and pools, replicas killed with SIGKILL, SIGTERM, and start-up errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kubequeue import embedded_redis, inflight, naming, queues
from kubequeue.client import Client
from kubequeue.keys import Keys
from kubequeue.messages import TaskKey, TaskSpec
from kubequeue.pools import load
from kubequeue.sim import Sim, SimConfig
from kubequeue.sim.cluster import NodePool
from tests.fixtures import waiting
from tests.fixtures.waiting import http_get

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOLS = """\
pools:
  a: {namespace: tasks, image: img, nodeSelector: {kubequeue.io/pool: a}, maxInFlight: 100000}
  b: {namespace: tasks, image: img, nodeSelector: {kubequeue.io/pool: b}, maxInFlight: 100000}
queues: {qa: a, qa2: a, qb: b}
"""
KUBEQUEUE = Path(sys.executable).with_name("kubequeue")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180.0) -> Any:
    """Processes start slowly on a loaded machine: these tests assert what happens, not when."""
    return waiting.wait_for(what, check, timeout)


def make_specs(n: int, names: list[str]) -> list[TaskSpec]:
    now = time.time()
    return [
        TaskSpec(
            id=f"id-{i}",
            key=TaskKey(dag_id="dag", task_id=f"t{i}", run_id="r", try_number=1),
            queue=names[i % len(names)],
            command=["true"],
            queued_at=now,
            expires_at=now + 600,
        )
        for i in range(n)
    ]


class Cluster:
    """A simulator, a pools file and the `kubequeue dispatcher` processes started on them."""

    def __init__(self, sim: Sim, redis_url: str, workdir: Path) -> None:
        self.sim, self.redis_url, self.workdir = sim, redis_url, workdir
        self.pools_file = workdir / "pools.yaml"
        self.pools_file.write_text(POOLS)
        self.keys = Keys()
        self.redis = redis.Redis.from_url(redis_url)
        self.client = Client(self.redis, self.keys, load(self.pools_file))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def dispatcher(self, name: str, *extra: str, port: int = 0) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [str(KUBEQUEUE), "dispatcher", "--redis-url", self.redis_url,
             "--pools", str(self.pools_file), "--kubeconfig", str(self.sim.kubeconfig),
             "--metrics-port", str(port), "--name", name, *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()

    def held_by(self, name: str) -> list[str]:
        held = []
        for q in ("qa", "qa2", "qb"):
            for entry in self.redis.zrange(queues.started_key(self.keys, q), 0, -1):
                job_id, _, owner = entry.decode().partition(":")
                if owner == name:
                    held.append(job_id)
        return held

    def drained(self) -> bool:
        pipe = self.redis.pipeline()
        for q in ("qa", "qa2", "qb"):
            pipe.llen(queues.queue_key(self.keys, q))
            pipe.zcard(queues.started_key(self.keys, q))
        return not any(pipe.execute())

    def pods(self) -> dict[str, dict[str, Any]]:
        pods = self.sim.call(lambda: self.sim.store.list("pods", "tasks"))
        out: dict[str, dict[str, Any]] = {}
        for p in pods:
            qid = p["metadata"]["labels"][naming.LABEL_ID]
            assert qid not in out, f"two pods for {qid}"
            out[qid] = p
        return out

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(sim_factory: Callable[..., Sim], redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    sim = sim_factory(
        SimConfig(
            pools=(NodePool("a", 3, max_pods=1000), NodePool("b", 3, max_pods=1000)),
            namespaces=("default", "tasks"),
        )
    )
    c = Cluster(sim, redis_url, tmp_path)
    yield c
    c.stop_all()


def test_500_tasks_3_queues_2_pools_2_dispatchers(cluster: Cluster) -> None:
    ports = [embedded_redis.free_port(), embedded_redis.free_port()]
    cluster.dispatcher("d1", "--concurrency", "8", port=ports[0])
    cluster.dispatcher("d2", "--concurrency", "8", port=ports[1])
    for port in ports:
        wait_for("ready", lambda p=port: http_get(f"http://127.0.0.1:{p}/readyz")[0] == 200)
    specs = make_specs(500, ["qa", "qa2", "qb"])
    assert cluster.client.submit(specs) == []
    wait_for("every spec dispatched", cluster.drained, timeout=120)
    pods = cluster.pods()
    assert set(pods) == {s.id for s in specs}

    def scheduled() -> dict[str, dict[str, Any]] | None:
        pods = cluster.pods()
        return pods if all(p["spec"].get("nodeName") for p in pods.values()) else None

    placed = wait_for("every pod scheduled", scheduled, timeout=120)
    nodes = cluster.sim.call(lambda: cluster.sim.store.list("nodes", None))
    pool_of = {n["metadata"]["name"]: n["metadata"]["labels"]["kubequeue.io/pool"] for n in nodes}
    for spec in specs:
        expected = "b" if spec.queue == "qb" else "a"
        assert pool_of[placed[spec.id]["spec"]["nodeName"]] == expected, spec.id
        assert placed[spec.id]["metadata"]["labels"][naming.LABEL_POOL] == expected
    assert cluster.client.events() == ([], "0-0")
    # both replicas took a share, and together created each pod once
    created = [_created(port) for port in ports]
    assert all(created) and sum(created) == 500, created
    assert "ERROR" not in cluster.log("d1") + cluster.log("d2")


def _created(port: int) -> float:
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kubequeue_dispatches_total{") and 'outcome="created"' in line
    )


def test_kill_9_repeatedly_loses_nothing_and_creates_no_duplicates(cluster: Cluster) -> None:
    # Slow pod creates so that a replica always holds work when it is killed.
    cluster.sim.set_faults(latency=0.2, scope="pod-creates")
    specs = make_specs(200, ["qa", "qb"])
    cluster.client.submit(specs)
    killed: list[str] = []
    for round_ in range(3):
        name = f"victim{round_}"
        victim = cluster.dispatcher(name, "--concurrency", "8", "--lease", "2")
        held = wait_for(f"{name} holding work", lambda n=name: cluster.held_by(n), timeout=180)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed += held
    cluster.sim.set_faults(latency=0.0)
    cluster.dispatcher("steady", "--concurrency", "8", "--lease", "2")
    wait_for("every spec dispatched", cluster.drained, timeout=180)
    pods = cluster.pods()
    assert set(pods) == {s.id for s in specs}  # 0 lost; pods() asserts one pod per id
    assert killed and set(killed) <= set(pods)
    assert cluster.client.events()[0] == []  # nothing failed
    assert set(inflight.holders(cluster.redis, cluster.keys, "a")) | set(
        inflight.holders(cluster.redis, cluster.keys, "b")
    ) == set(pods)
    assert "abandoned by a dispatcher that stopped renewing its leases" in cluster.log("steady")


def test_sigterm_finishes_in_flight_and_exits_0(cluster: Cluster) -> None:
    cluster.sim.set_faults(latency=0.3, scope="pod-creates")
    proc = cluster.dispatcher("d", "--concurrency", "8")
    specs = make_specs(60, ["qa"])
    cluster.client.submit(specs)
    wait_for("work in flight", lambda: cluster.held_by("d"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0
    log = cluster.log("d")
    assert "SIGTERM received" in log and "dispatcher d stopped" in log
    assert cluster.held_by("d") == []
    created = len(cluster.pods())
    assert 0 < created < 60
    assert queues.depth(cluster.redis, cluster.keys, "qa") == 60 - created  # nothing lost
    cluster.sim.set_faults(latency=0.0)
    cluster.dispatcher("d2")
    wait_for("the rest dispatched", cluster.drained)
    assert set(cluster.pods()) == {s.id for s in specs}


def test_health_endpoints_and_metrics(cluster: Cluster, tmp_path: Path) -> None:
    port = embedded_redis.free_port()
    cluster.dispatcher("d", port=port)
    base = f"http://127.0.0.1:{port}"
    wait_for("ready", lambda: http_get(f"{base}/readyz") == (200, "ok\n"))
    assert http_get(f"{base}/healthz") == (200, "ok\n")
    cluster.client.submit(make_specs(3, ["qa"]))
    wait_for("drained", cluster.drained)
    status, text = http_get(f"{base}/metrics")
    assert status == 200
    assert 'kubequeue_dispatches_total{outcome="created",pool="a",queue="qa"} 3.0' in text
    assert "kubequeue_queued_to_create_sent_seconds_count" in text
    # a pool whose API does not answer makes the replica unready, with the reason
    dead = tmp_path / "dead"
    dead.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: d\n"
        "clusters: [{name: d, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: d, context: {cluster: d, user: d}}]\nusers: [{name: d, user: {}}]\n"
    )
    port2 = embedded_redis.free_port()
    cluster.procs["dead"] = subprocess.Popen(
        [str(KUBEQUEUE), "dispatcher", "--redis-url", cluster.redis_url, "--pools",
         str(cluster.pools_file), "--kubeconfig", str(dead), "--metrics-port", str(port2),
         "--queues", "qb"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    status, body = wait_for(
        "unready", lambda: (r := http_get(f"http://127.0.0.1:{port2}/readyz"))[0] == 503 and r
    )
    assert body.startswith("Kubernetes API of pool 'b' does not answer: Kubernetes API error 0")

"""Pipeline figures: dispatcher throughput, added latency, and the client's events() cost.

    .venv/bin/python -m kubequeue.bench.pipeline_bench [--tasks 2000] [--replicas 1,2]

Everything is real and local: an embedded Redis, `kubequeue sim` in its own process, and
`kubequeue dispatcher` processes. Reports:
1. creates/s with 1 and with 2 dispatcher replicas (N specs queued at once; from submit to
   every job acked);
2. added latency at a steady 200 tasks/s: queued → taken by a dispatcher (pod annotations,
   exact) and queued → create request sent (the dispatcher's histogram, by bucket);
3. client.events() time with 100 vs 10,000 tasks in flight (same number of new events).
Nothing here is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import redis

from kubequeue import embedded_redis, kube, naming, queues, stream
from kubequeue.client import Client
from kubequeue.keys import Keys
from kubequeue.messages import EventType, TaskEvent, TaskKey, TaskRecord, TaskSpec
from kubequeue.pools import PoolsConfig, load
from kubequeue.tasks import put

POOLS = """\
pools:
  a: {namespace: default, image: img, nodeSelector: {kubequeue.io/pool: a}, maxInFlight: 1000000}
  b: {namespace: default, image: img, nodeSelector: {kubequeue.io/pool: b}, maxInFlight: 1000000}
queues: {qa: a, qb: b}
"""
KUBEQUEUE = [str(Path(sys.executable).with_name("kubequeue"))]


@contextlib.contextmanager
def sim_process(workdir: Path) -> Iterator[Path]:
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [*KUBEQUEUE, "sim", "--nodes", "a=4:pods=100000", "--nodes", "b=4:pods=100000",
         "--kubeconfig-out", str(kubeconfig)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 30
        while not kubeconfig.exists():
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("kubequeue sim did not start")
            time.sleep(0.05)
        api = kube.api_client(str(kubeconfig))
        while True:
            try:
                kube.check_api(api)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        yield kubeconfig
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def dispatchers(
    n: int, redis_url: str, pools: Path, kubeconfig: Path, concurrency: int
) -> Iterator[list[int]]:
    ports = [embedded_redis.free_port() for _ in range(n)]
    common = ["--redis-url", redis_url, "--pools", str(pools), "--kubeconfig", str(kubeconfig),
              "--concurrency", str(concurrency), "--log-level", "WARNING"]  # fmt: skip
    procs = [
        subprocess.Popen(
            [
                *KUBEQUEUE,
                "dispatcher",
                *common,
                "--metrics-port",
                str(port),
                "--name",
                f"bench-{i}",
            ],
            stdout=subprocess.DEVNULL,
        )
        for i, port in enumerate(ports)
    ]
    try:
        for port in ports:
            wait_ready(port)
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        url = f"http://127.0.0.1:{port}/readyz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"dispatcher on :{port} not ready")


def specs(n: int, queue_names: list[str], start: int = 0) -> list[TaskSpec]:
    now = time.time()
    return [
        TaskSpec(
            id=f"bench-{i:07d}",
            key=TaskKey(dag_id="bench", task_id=f"t{i}", run_id="r", try_number=1),
            queue=queue_names[i % len(queue_names)],
            command=["true"],
            queued_at=now,
            expires_at=now + 600,
        )
        for i in range(start, start + n)
    ]


def drained(r: redis.Redis, keys: Keys, names: list[str]) -> bool:
    pipe = r.pipeline()
    for q in names:
        pipe.llen(queues.queue_key(keys, q))
        pipe.zcard(queues.started_key(keys, q))
    return not any(pipe.execute())


def throughput(client: Client, n: int) -> float:
    names = ["qa", "qb"]
    t0 = time.perf_counter()
    client.submit(specs(n, names))
    while not drained(client.redis, client.keys, names):
        time.sleep(0.01)
    return n / (time.perf_counter() - t0)


def steady_latency(client: Client, rate: float, seconds: float) -> None:
    total, batch = int(rate * seconds), max(int(rate / 50), 1)  # 50 submits per second
    sent, start = 0, time.perf_counter()
    while sent < total:
        client.submit(specs(batch, ["qa"], start=10_000_000 + sent))
        sent += batch
        time.sleep(max(start + sent / rate - time.perf_counter(), 0))
    while not drained(client.redis, client.keys, ["qa"]):
        time.sleep(0.01)


def claim_latencies(kubeconfig: Path, prefix: str) -> list[float]:
    api = kubernetes.client.CoreV1Api(kube.api_client(str(kubeconfig)))
    out = []
    for pod in api.list_namespaced_pod("default", label_selector=naming.POD_SELECTOR).items:
        ann = pod.metadata.annotations
        if not ann["kubequeue.io/task-key"].count(prefix):
            continue
        q = ann[naming.ANN_QUEUED_AT]
        d = ann[naming.ANN_DISPATCHED_AT]
        out.append(_ts(d) - _ts(q))
    return out


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def create_sent_buckets(ports: list[int]) -> dict[float, float]:
    """Cumulative count per `le` bucket of queued→create-sent, summed over replicas."""
    buckets: dict[float, float] = {}
    pattern = re.compile(
        r'kubequeue_queued_to_create_sent_seconds_bucket\{.*le="([^"]+)".*\} (\S+)'
    )
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
            for line in r.read().decode().splitlines():
                m = pattern.match(line)
                if m:
                    le = float(m.group(1))
                    buckets[le] = buckets.get(le, 0.0) + float(m.group(2))
    return buckets


def events_cost(url: str) -> dict[int, float]:
    """Seconds per events() call reading 100 new events, with N tasks in flight."""
    out = {}
    for running in (100, 10_000):
        r = redis.Redis.from_url(url)
        r.flushall()
        keys = Keys()
        client = Client(r, keys, load_pools_text())
        records = [TaskRecord(id=f"r{i}", queue="qa", state="running") for i in range(running)]
        put(r, keys, records)
        cursor = client.latest_cursor()
        times = []
        for round_ in range(50):
            events = [
                TaskEvent(type=EventType.RUNNING, id=f"r{(round_ * 100 + i) % running}", at=0.0)
                for i in range(100)
            ]
            stream.publish(r, keys, events)
            t = time.perf_counter()
            got, cursor = client.events(cursor)
            times.append(time.perf_counter() - t)
            assert len(got) == 100
        out[running] = statistics.median(times)
    return out


def load_pools_text() -> PoolsConfig:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(POOLS)
    try:
        return load(f.name)
    finally:
        os.unlink(f.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, embedded_redis.running() as server:
        work = Path(tmp)
        (work / "pools.yaml").write_text(POOLS)
        client = Client(redis.Redis.from_url(server.url), Keys(), load(work / "pools.yaml"))
        for n in (int(x) for x in args.replicas.split(",")):
            with (
                sim_process(work) as kc,
                dispatchers(n, server.url, work / "pools.yaml", kc, args.concurrency),
            ):
                client.redis.flushall()
                client.submit(specs(50, ["qa", "qb"], start=20_000_000))  # warm up
                while not drained(client.redis, client.keys, ["qa", "qb"]):
                    time.sleep(0.01)
                rate = throughput(client, args.tasks)
                print(f"creates/s, {n} replica(s) x {args.concurrency}: {rate:.0f}")
        with (
            sim_process(work) as kc,
            dispatchers(1, server.url, work / "pools.yaml", kc, args.concurrency) as ports,
        ):
            client.redis.flushall()
            steady_latency(client, args.rate, args.seconds)
            lat = sorted(claim_latencies(kc, "t1"))
            p50, p95, p99 = (lat[int(len(lat) * q)] for q in (0.5, 0.95, 0.99))
            print(
                f"queued -> taken by dispatcher at {args.rate:.0f}/s: p50 {p50 * 1000:.1f} ms, "
                f"p95 {p95 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms "
                f"(n={len(lat)})"
            )
            buckets = create_sent_buckets(ports)
            total = buckets.get(float("inf"), 0.0)
            for le in (0.01, 0.025, 0.05):
                print(f"queued -> create sent <= {le * 1000:.0f} ms: "
                      f"{100 * buckets.get(le, 0) / total:.1f}% of {total:.0f}")  # fmt: skip
    with embedded_redis.running() as server:
        for running, seconds in events_cost(server.url).items():
            print(f"events() reading 100 new events, {running} tasks in flight: "
                  f"{seconds * 1000:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()

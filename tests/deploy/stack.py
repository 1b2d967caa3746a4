"""A whole kubequeue installation on one machine, scraped by a real Prometheus: Redis, the
simulated cluster, dispatcher and watcher processes (`kubequeue dispatcher|watcher`, as the
Deployments run them) and Debian's `prometheus` loading deploy/monitoring's rules.

Used by test_promql.py; every process started here is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from kubequeue import embedded_redis
from kubequeue.client import Client
from kubequeue.keys import Keys
from kubequeue.messages import TERMINAL, TaskKey, TaskSpec
from kubequeue.pools import parse
from kubequeue.sim import FaultConfig, SimConfig
from kubequeue.sim import start as start_sim
from kubequeue.sim.cluster import NodePool
from tests.deploy.promql import rule_groups
from tests.fixtures.waiting import http_get, wait_for

# Three queues: one that works, one whose image cannot be pulled, one whose node selector
# matches no node. startupTimeout is short so the failing ones fail fast.
POOLS = {
    "pools": {
        "default": {
            "namespace": "default",
            "image": "apache/airflow:3.3.2",
            "nodeSelector": {"kubequeue.io/pool": "default"},
            "startupTimeout": 30,
        },
        "badimage": {
            "namespace": "default",
            "image": "registry.example/doesnotexist:1",
            "nodeSelector": {"kubequeue.io/pool": "default"},
            "startupTimeout": 2,
        },
        "nowhere": {
            "namespace": "default",
            "image": "apache/airflow:3.3.2",
            "nodeSelector": {"kubequeue.io/pool": "absent"},
            "startupTimeout": 2,
        },
    },
    "queues": {"default": "default", "broken": "badimage", "nowhere": "nowhere"},
}
JOBS = {"dispatcher": "kubequeue-dispatcher", "watcher": "kubequeue-watcher"}



@dataclass
class Stack:
    workdir: Path
    redis_url: str
    prometheus_url: str
    pools: dict[str, Any] = field(default_factory=lambda: POOLS)
    components: dict[str, str] = field(default_factory=dict)  # name -> base URL
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """Run an instant query; returns Prometheus' JSON answer (status, data or error)."""
        params = {"query": expr, **({"time": str(at)} if at else {})}
        url = f"{self.prometheus_url}/api/v1/query?{urllib.parse.urlencode(params)}"
        _, body = http_get(url, timeout=30)
        answer: dict[str, Any] = json.loads(body) if body else {"status": "unreachable"}
        return answer

    def series(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def logs(self) -> str:
        parts = []
        for name, _ in self.procs:
            log = self.workdir / f"{name}.log"
            if log.exists():
                parts.append(
                    f"--- {name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-30:])
                )
        return "\n".join(parts)


def _spawn(stack: Stack, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = open(stack.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=stack.workdir)
    log.close()
    stack.procs.append((name, proc))
    return proc


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for _, proc in reversed(procs):
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fast_rules(path: Path) -> None:
    """The rule file with every group evaluated each second (the shipped one uses 30 s)."""
    groups = [{**g, "interval": "1s"} for g in rule_groups()]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))


def _prometheus_config(stack: Stack, path: Path) -> None:
    scrape = []
    for job in JOBS.values():
        targets = [
            url.removeprefix("http://")
            for name, url in stack.components.items()
            if job.endswith(name.rstrip("0123456789"))
        ]
        scrape.append(
            {"job_name": job, "scrape_interval": "1s", "static_configs": [{"targets": targets}]}
        )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": scrape,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _ready(url: str) -> bool:
    return http_get(f"{url}/readyz")[0] == 200


def start_components(stack: Stack, kubeconfig: Path, dispatchers: int = 2) -> None:
    pools_file = stack.workdir / "pools.yaml"
    pools_file.write_text(yaml.safe_dump(stack.pools))
    # The console script of this environment, as the image's ENTRYPOINT runs it.
    exe = [str(Path(sys.executable).parent / "kubequeue")]
    common = [
        "--pools",
        str(pools_file),
        "--redis-url",
        stack.redis_url,
        "--kubeconfig",
        str(kubeconfig),
    ]
    for i in range(dispatchers):
        port = embedded_redis.free_port()
        name = f"dispatcher{i + 1}"
        argv = [*exe, "dispatcher", *common, "--metrics-port", str(port), "--name", name]
        _spawn(stack, name, [*argv, "--concurrency", "8"])
        stack.components[name] = f"http://127.0.0.1:{port}"
    port = embedded_redis.free_port()
    _spawn(
        stack,
        "watcher1",
        [
            *exe,
            "watcher",
            *common,
            "--metrics-port",
            str(port),
            "--lease-namespace",
            "default",
            "--identity",
            "watcher1",
        ],
    )
    stack.components["watcher1"] = f"http://127.0.0.1:{port}"
    for name, url in stack.components.items():
        wait_for(f"{name} ready\n{stack.logs()}", functools.partial(_ready, url), 60)


def start_prometheus(stack: Stack) -> None:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus binary is not on PATH"
    _fast_rules(stack.workdir / "rules.yaml")
    _prometheus_config(stack, stack.workdir / "prometheus.yml")
    port = embedded_redis.free_port()
    stack.prometheus_url = f"http://127.0.0.1:{port}"
    _spawn(
        stack,
        "prometheus",
        [
            binary,
            f"--config.file={stack.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={stack.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
    )
    wait_for("prometheus ready", lambda: http_get(f"{stack.prometheus_url}/-/ready")[0] == 200, 60)


def spec(queue: str, i: int, exit_code: int = 0, duration: str = "300ms") -> TaskSpec:
    now = time.time()
    annotations = {
        "kubequeue.io/sim-duration": duration,
        "kubequeue.io/sim-exit-code": str(exit_code),
    }
    return TaskSpec(
        id=str(uuid.uuid4()),
        key=TaskKey(dag_id="promql", task_id=f"{queue}-{i}", run_id="r1", try_number=1),
        queue=queue,
        command=["python", "-c", "pass"],
        pod_override={"metadata": {"annotations": annotations}},
        queued_at=now,
        expires_at=now + 600,
    )


def client(stack: Stack) -> Client:
    pools = parse(yaml.safe_dump(stack.pools))
    return Client(redis.Redis.from_url(stack.redis_url), Keys(), pools)


def submit(stack: Stack, per_queue: dict[str, int], failing: int = 0) -> set[str]:
    """Queue tasks (the first `failing` of queue `default` exit 1); returns their ids."""
    specs = [
        spec(queue, i, exit_code=1 if queue == "default" and i < failing else 0)
        for queue, n in per_queue.items()
        for i in range(n)
    ]
    assert not client(stack).submit(specs)
    return {s.id for s in specs}


def run_workload(
    stack: Stack, per_queue: dict[str, int], failing: int, timeout: float = 120
) -> int:
    """Submit the tasks and wait until each has its terminal event; returns how many."""
    reader = client(stack)
    cursor = reader.latest_cursor()
    ids = submit(stack, per_queue, failing)
    done: set[str] = set()

    def all_done() -> bool:
        nonlocal cursor
        events, cursor = reader.events(cursor, 1000)
        done.update(e.id for e in events if e.type in TERMINAL)
        return ids <= done

    what = f"terminal events for {len(ids)} tasks"
    wait_for(f"{what} ({len(done)} so far)\n{stack.logs()}", all_done, timeout)
    return len(ids)


@contextlib.contextmanager
def running_stack(
    workdir: Path,
    pools: dict[str, Any] | None = None,
    nodes: tuple[NodePool, ...] = (NodePool("default", 3),),
    faults: FaultConfig | None = None,
) -> Iterator[Stack]:
    """Redis, the simulator (`nodes`; by default 20% of pod creates answered 429), two
    dispatchers, a watcher and Prometheus, for the pools file `pools` (default POOLS)."""
    server = embedded_redis.start()
    faults = faults or FaultConfig(throttle=0.2, retry_after=0, scope="pod-creates")
    cluster = start_sim(SimConfig(pools=nodes, faults=faults, seed=7), workdir / "kubeconfig")
    stack = Stack(workdir=workdir, redis_url=server.url, prometheus_url="", pools=pools or POOLS)
    try:
        start_components(stack, cluster.kubeconfig)
        start_prometheus(stack)
        yield stack
    finally:
        _stop(stack.procs)
        cluster.stop()
        server.stop()

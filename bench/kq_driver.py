"""kubequeue under test: its processes (the fleet) and its scheduler side (the driver).

The fleet is what a deployment runs beside Airflow: an embedded Redis, one watcher and N
dispatcher processes (`kubequeue dispatcher`), all started by the orchestrator so their CPU
and memory can be read per phase. The scheduler side runs in the driver process exactly as
the KubernetesExecutor does: `KubeQueueExecutor` gets the same `ExecuteTask` workloads through
`queue_workload` and the same heartbeat loop. When the executor is not installed (the
`airflow` extra), `kubequeue.client.Client` stands in for it: specs are built at queue time
and submitted in one batch per heartbeat, and events are read from the stream cursor.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kubequeue import embedded_redis
from kubequeue.bench import driver, workloads
from kubequeue.bench.plan import POOL_OF_QUEUE, Phase, Settings, System, assign_queues
from kubequeue.bench.pods import write_system_templates
from kubequeue.bench.simproc import Counters, SimInfo
from kubequeue.errors import KubeQueueError

READY_TIMEOUT = 60.0
EXECUTOR = "kubequeue.executor.KubeQueueExecutor"


@dataclass
class Fleet:
    redis: embedded_redis.EmbeddedRedis
    pools_file: Path
    kubeconfig: str
    watcher: subprocess.Popen[bytes]
    dispatchers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def pids(self) -> dict[str, list[int]]:
        return {
            "dispatcher": [p.pid for p in self.dispatchers],
            "watcher": [self.watcher.pid],
            "redis": [self.redis.process.pid],
        }

    def stop(self) -> None:
        for proc in [*self.dispatchers, self.watcher]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.dispatchers, self.watcher]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.redis.stop()


def _command() -> list[str]:
    script = Path(sys.executable).with_name("kubequeue")
    if script.exists():
        return [str(script)]
    found = shutil.which("kubequeue")
    return [found] if found else [sys.executable, "-c", "from kubequeue.cli import main; main()"]


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([*_command(), *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:]
            raise KubeQueueError(f"{' '.join(proc.args)} exited at start:\n{tail}")  # type: ignore[arg-type]
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise KubeQueueError(f"{url} did not answer 200 within {READY_TIMEOUT:.0f}s (see {log})")


def start_fleet(system: System, settings: Settings, sim: SimInfo, workdir: Path) -> Fleet:
    """Redis, a watcher and `system.replicas` dispatchers against the simulator; returns
    once every one of them answers /readyz."""
    from kubequeue.bench.pods import write_pools_file

    in_flight = settings.n + max(settings.levels, default=0) + 1000
    pools_file = write_pools_file(workdir, settings.task_seconds, in_flight)
    redis = embedded_redis.start(workdir=str(workdir))
    env = dict(os.environ)
    env.update(
        KUBEQUEUE_REDIS_URL=redis.url,
        KUBEQUEUE_POOLS_FILE=str(pools_file),
        KUBEQUEUE_KUBECONFIG=sim.kubeconfig,
    )
    fleet: Fleet | None = None
    try:
        port = embedded_redis.free_port()
        log = workdir / "watcher.log"
        watcher = _spawn(["watcher", "--metrics-port", str(port)], log, env)
        fleet = Fleet(redis, pools_file, sim.kubeconfig, watcher, logs=[log])
        waits = [(port, watcher, log)]
        queues = ",".join(POOL_OF_QUEUE)
        for i in range(system.replicas):
            port = embedded_redis.free_port()
            log = workdir / f"dispatcher-{i}.log"
            args = ["dispatcher", "--queues", queues, "--metrics-port", str(port)]
            args += ["--concurrency", str(settings.dispatcher_concurrency), "--name", f"d{i}"]
            proc = _spawn(args, log, env)
            fleet.dispatchers.append(proc)
            fleet.logs.append(log)
            waits.append((port, proc, log))
        for port, proc, log in waits:
            _wait_ready(port, proc, log)
        return fleet
    except BaseException:
        if fleet is not None:
            fleet.stop()
        else:
            redis.stop()
        raise


def executor_available() -> bool:
    try:
        import kubequeue.executor.executor  # noqa: F401
    except ImportError:
        return False
    return True


class ClientSide:
    """The stand-in scheduler side when the executor is absent: build a spec per task at
    queue time, submit pending specs in one pipeline per heartbeat, read new events."""

    def __init__(
        self, system: System, settings: Settings, redis_url: str, pools_file: str, workdir: Path
    ) -> None:
        from kubequeue.client import Client

        self.settings = settings
        self.client = Client.from_settings(redis_url, "kubequeue", pools_file)
        self.cursor = self.client.latest_cursor()
        self.templates = write_system_templates(workdir, settings.task_seconds, system.phases)
        self.rows: list[tuple[str, str, str | None]] = []  # (id, queue, template) per index
        self.pending: list[Any] = []
        self.tracked: set[str] = set()
        self.dag_id = ""

    def prepare(self, phase: Phase) -> None:
        queues = assign_queues(phase.total, self.settings.mix)
        self.dag_id = phase.dag_id
        self.rows = []
        for i, queue in enumerate(queues):
            seconds = phase.seconds_of(i)
            template = None
            if seconds != self.settings.task_seconds:
                template = str(self.templates[(POOL_OF_QUEUE[queue], seconds)])
            self.rows.append((str(uuid.uuid4()), queue, template))

    def queue(self, phase: Phase, indices: Sequence[int]) -> None:
        from kubequeue.bench.pods import workload_json_stub
        from kubequeue.messages import TaskKey, TaskSpec

        now = time.time()
        for i in indices:
            qid, queue, template = self.rows[i]
            task_id = f"t_{queue}"
            arg = workload_json_stub(self.dag_id, task_id, i)
            self.pending.append(
                TaskSpec(
                    id=qid,
                    key=TaskKey(
                        dag_id=self.dag_id,
                        task_id=task_id,
                        run_id="bench",
                        try_number=1,
                        map_index=i,
                    ),
                    queue=queue,
                    command=[
                        "python",
                        "-m",
                        "airflow.sdk.execution_time.execute_workload",
                        "--json-string",
                        arg,
                    ],
                    pod_template_file=template,
                    queued_at=now,
                    expires_at=now + 600.0,
                )
            )
            self.tracked.add(qid)

    def heartbeat(self) -> None:
        if self.pending:
            self.client.submit(self.pending)
            self.pending = []
        events, self.cursor = self.client.events(self.cursor, 1000)
        done = [e.id for e in events if e.terminal and e.id in self.tracked]
        if done:
            self.tracked.difference_update(done)
            self.client.forget(done)

    def busy(self) -> int:
        return len(self.tracked) + len(self.pending)

    def helper_cpu(self) -> float:
        return 0.0  # kubequeue's own processes are measured by the orchestrator

    def close(self) -> None:
        self.client.close()


class ExecutorSide(workloads.ExecutorFeed):
    """KubeQueueExecutor, fed and heartbeaten exactly as the KubernetesExecutor is."""

    def __init__(
        self,
        system: System,
        settings: Settings,
        redis_url: str,
        pools_file: str,
        workdir: Path,
        db: Path,
    ) -> None:

        self.settings = settings
        self.templates = write_system_templates(workdir, settings.task_seconds, system.phases)
        env = workloads.airflow_env(settings, workdir, db, EXECUTOR)
        k = "AIRFLOW__KUBEQUEUE__"
        env.update(
            {
                f"{k}REDIS_URL": redis_url,
                f"{k}POOLS_FILE": pools_file,
                f"{k}PARALLELISM": str(workloads.in_flight_cap(settings)),
            }
        )
        os.environ.update(env)
        from kubequeue.executor import KubeQueueExecutor

        self.executor = KubeQueueExecutor()
        self.executor.job_id = "bench-scheduler"
        self.executor.start()
        self.workloads: list[Any] = []

    def prepare(self, phase: Phase) -> None:

        def config_for(queue: str, seconds: float) -> dict[str, Any] | None:
            # The pool's template sets the usual run time; others pick a template per task.
            if seconds == self.settings.task_seconds:
                return None
            return {"pod_template_file": str(self.templates[(POOL_OF_QUEUE[queue], seconds)])}

        self.workloads = workloads.build(phase, self.settings, config_for, with_id=True)

    def helper_cpu(self) -> float:
        return 0.0  # the executor starts no processes; kubequeue's own are measured apart


def main(
    system: System,
    settings: Settings,
    sim: SimInfo,
    workdir: str,
    counters: Counters,
    conn: Connection,
    redis_url: str = "",
    pools_file: str = "",
    db: str = "",
) -> None:
    """Process entry point (spawned by the orchestrator): the executor when a migrated
    Airflow database is given and the executor is installed, else the client."""
    driver.become_scheduler(Path(workdir))
    side: driver.SchedulerSide
    if db and executor_available():
        side = ExecutorSide(system, settings, redis_url, pools_file, Path(workdir), Path(db))
    else:
        side = ClientSide(system, settings, redis_url, pools_file, Path(workdir))
    driver.serve(side, system, counters, conn, settings.phase_timeout)

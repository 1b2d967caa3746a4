"""The KubernetesExecutor, driven in-process the way Airflow's scheduler drives it.

This module runs in a fresh process per KE system ("the scheduler process"): Airflow reads its
configuration when it is imported and the executor reads its own in `__init__`, so every
setting goes into the environment first. What is pinned, and why:

- `[core] parallelism` is raised above the largest number of tasks in flight: its default,
  32, caps how many pods KE will ever have running, which is not what is measured here.
- `[kubernetes_executor] in_cluster=False` with `config_file`/`cluster_context` pointing at
  the simulator (the default, True, needs a service account).
- The pod template is the pool's pod (bench/pods.py); the second pool and the long-running
  ladder tasks are selected per task with `executor_config={"pod_template_file": ...}`,
  which KE supports natively. No `pod_override` is used, so no deep copies of one.
- KE default: sequential creation, `worker_pods_creation_batch_size=1`. KE tuned:
  `async_pod_creation=True` with a raised batch size and `pod_creation_max_concurrency`.
- `job_id` is not numeric, so KE skips its per-pod `SELECT` on task_instance (no DAG rows
  exist); that check costs KE 1-4 ms per pod with a real database, so skipping it favours KE.
- Log level WARNING: KE logs a line per task at INFO, which would cost it time here.
Workloads (bench/workloads.py) are built before a phase starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kubequeue.bench import driver, workloads
from kubequeue.bench.plan import POOL_OF_QUEUE, Phase, Settings, System
from kubequeue.bench.pods import IMAGE_REPOSITORY, IMAGE_TAG, NAMESPACE, write_system_templates
from kubequeue.bench.simproc import Counters, SimInfo
from kubequeue.errors import KubeQueueError

JOB_ID = "bench-scheduler"  # not numeric: KE skips its per-pod task_instance query


def migrate_db(root: Path) -> Path:
    """An empty, migrated Airflow database (SQLite), made once per benchmark run: KE looks a
    finished pod's task up in it. Each KE system starts from a copy."""
    home = root / "airflow-db"
    home.mkdir(parents=True, exist_ok=True)
    db = home / "airflow.db"
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{db}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    )
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 or not db.exists():
        raise KubeQueueError(f"airflow db migrate failed: {done.stderr.strip()[-600:]}")
    return db


def ke_env(
    system: System, settings: Settings, sim: SimInfo, workdir: Path, db: Path
) -> dict[str, str]:
    """The Airflow configuration of one KE system, as environment variables."""
    k = "AIRFLOW__KUBERNETES_EXECUTOR__"
    env = workloads.airflow_env(settings, workdir, db, "KubernetesExecutor")
    env.update(
        {
            f"{k}IN_CLUSTER": "False",
            f"{k}CONFIG_FILE": sim.kubeconfig,
            f"{k}CLUSTER_CONTEXT": sim.context,
            f"{k}NAMESPACE": NAMESPACE,
            f"{k}POD_TEMPLATE_FILE": str(workdir / "pod-default-template.yaml"),
            f"{k}WORKER_CONTAINER_REPOSITORY": IMAGE_REPOSITORY,
            f"{k}WORKER_CONTAINER_TAG": IMAGE_TAG,
            f"{k}DELETE_WORKER_PODS": "True",
            f"{k}WORKER_PODS_CREATION_BATCH_SIZE": str(system.ke_batch),
            f"{k}ASYNC_POD_CREATION": str(system.ke_async),
            f"{k}POD_CREATION_MAX_CONCURRENCY": str(system.ke_concurrency),
        }
    )
    return env


class KESide(workloads.ExecutorFeed):
    """The KubernetesExecutor behind the driver's SchedulerSide protocol."""

    def __init__(
        self, system: System, settings: Settings, sim: SimInfo, workdir: Path, db: Path
    ) -> None:
        self.templates = write_system_templates(workdir, settings.task_seconds, system.phases)
        default = self.templates[("default", settings.task_seconds)]
        (workdir / "pod-default-template.yaml").write_text(default.read_text())
        os.environ.update(ke_env(system, settings, sim, workdir, db))
        # Imported only now: Airflow reads its configuration at import time.
        from airflow.providers.cncf.kubernetes.executors.kubernetes_executor import (
            KubernetesExecutor,
        )

        self.settings = settings
        self.executor = KubernetesExecutor()
        self.executor.job_id = JOB_ID
        self.executor.start()
        self.workloads: list[Any] = []

    def prepare(self, phase: Phase) -> None:
        def config_for(queue: str, seconds: float) -> dict[str, Any]:
            # KE has one pod template; another pool or run time is chosen per task.
            return {"pod_template_file": str(self.templates[(POOL_OF_QUEUE[queue], seconds)])}

        self.workloads = workloads.build(phase, self.settings, config_for, with_id=False)

    def helper_cpu(self) -> float:
        return children_cpu()


def children_cpu() -> float:
    """CPU seconds of this process's live children (KE's watcher and Manager processes)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def main(
    system: System,
    settings: Settings,
    sim: SimInfo,
    workdir: str,
    counters: Counters,
    conn: Connection,
    db: str,
) -> None:
    """Process entry point (spawned by the orchestrator)."""
    driver.become_scheduler(Path(workdir))
    side = KESide(system, settings, sim, Path(workdir), Path(db))
    driver.serve(side, system, counters, conn, settings.phase_timeout)

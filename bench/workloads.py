"""Airflow 3 workloads for the executor drivers: what the scheduler hands an executor.

One `ExecuteTask` per task, with a `TaskInstanceDTO` for a mapped task per queue
(`dag_id = bench_<phase>`, `task_id = t_<queue>`, `map_index = <task index>`), so every
task has a unique key and its pod carries the index. Imported only inside driver processes,
after the Airflow configuration is in the environment.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubequeue.bench.plan import RUN_ID, Phase, Settings, assign_queues

# (queue, seconds the task runs) -> executor_config for that task
ConfigFor = Callable[[str, float], dict[str, Any] | None]


def in_flight_cap(settings: Settings) -> int:
    """`[core] parallelism` for every executor: above the most tasks a run has in flight, so
    no executor is capped by it (KE's default, 32, would be)."""
    return settings.n + max(settings.levels, default=0) + 1000


def airflow_env(settings: Settings, workdir: Path, db: Path, executor: str) -> dict[str, str]:
    """The Airflow settings every executor under test shares, as environment variables, with
    a private AIRFLOW_HOME holding a copy of the migrated database."""
    home = workdir / "airflow"
    tmp = workdir / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    shutil.copy(db, home / "airflow.db")
    return {
        "AIRFLOW_HOME": str(home),
        "TMPDIR": str(tmp),
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": str(in_flight_cap(settings)),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # Executors log a line per task at INFO; that would cost them time here.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-only-secret",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/execution/",
    }


def build(phase: Phase, settings: Settings, config_for: ConfigFor, with_id: bool) -> list[Any]:
    """Every workload of the phase, by task index. `with_id` pre-assigns
    `external_executor_id`, as the scheduler does for executors that ask for it."""
    from airflow.executors.workloads import BundleInfo, ExecuteTask, TaskInstanceDTO

    version = uuid.uuid4()
    out = []
    for i, queue in enumerate(assign_queues(phase.total, settings.mix)):
        ti = TaskInstanceDTO(
            id=uuid.uuid4(),
            dag_id=phase.dag_id,
            task_id=f"t_{queue}",
            run_id=RUN_ID,
            try_number=1,
            map_index=i,
            dag_version_id=version,
            queue=queue,
            pool_slots=1,
            priority_weight=1,
            executor_config=config_for(queue, phase.seconds_of(i)),
            external_executor_id=str(uuid.uuid4()) if with_id else None,
        )
        out.append(
            ExecuteTask(
                token="",
                ti=ti,
                dag_rel_path=Path("bench.py"),
                bundle_info=BundleInfo(name="dags-folder"),
                log_path=None,
            )
        )
    return out


class ExecutorFeed:
    """Plays the scheduler's side of an Airflow executor, identically for the
    KubernetesExecutor and KubeQueueExecutor: queue prepared workloads, heartbeat, drain the
    event buffer (the scheduler does so right after every heartbeat). Subclasses set
    `executor` and fill `workloads` in `prepare`."""

    executor: Any
    workloads: list[Any]

    def queue(self, phase: Phase, indices: Sequence[int]) -> None:
        queue_workload = self.executor.queue_workload
        for i in indices:
            queue_workload(self.workloads[i], session=None)

    def heartbeat(self) -> None:
        self.executor.heartbeat()
        self.executor.get_event_buffer()

    def busy(self) -> int:
        return len(self.executor.running) + len(self.executor.queued_tasks)

    def close(self) -> None:
        self.executor.end()

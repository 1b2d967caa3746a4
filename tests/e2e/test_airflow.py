"""End to end: a real Airflow 3 scheduler with the KubeQueueExecutor, kubequeue's
dispatchers and watcher, and the simulated cluster running the real task processes.

One Airflow for the whole module (starting it is the expensive part). The independent DAGs
are triggered together at the start; the tests that restart the scheduler come last.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest

from kubequeue import embedded_redis, kube
from kubequeue.executor import airflow_env as af
from kubequeue.executor import stack as st
from kubequeue.executor.config import ExecutorSettings
from kubequeue.executor.demo_report import all_events
from kubequeue.executor.logs import read_task_log
from kubequeue.executor.procs import Proc, Processes, wait_for
from kubequeue.keys import Keys
from kubequeue.messages import EventType, TaskEvent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAGS = Path(__file__).parent / "dags"
RUN_TIMEOUT = 300.0


@dataclass
class Env:
    group: Processes
    stack: st.Stack
    setup: af.AirflowSetup
    api: af.AirflowApi
    airflow: dict[str, Proc]
    runs: dict[str, str] = field(default_factory=dict)  # dag_id -> run id

    def watch(self) -> list[Proc]:
        return list(self.airflow.values())

    def wait_run(self, dag_id: str) -> str:
        run_id = self.runs[dag_id]
        wait_for(f"run of {dag_id}", lambda: self.api.run_state(dag_id, run_id) in
                 ("success", "failed"), RUN_TIMEOUT, self.watch())  # fmt: skip
        return self.api.run_state(dag_id, run_id)

    def tis(self, dag_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        tis = self.api.task_instances(dag_id, self.runs[dag_id])
        return {(ti["task_id"], ti["map_index"]): ti for ti in tis}

    def events(self, dag_id: str) -> list[TaskEvent]:
        return [
            e
            for e in all_events(self.stack.redis(), Keys())
            if e.key is not None and e.key.dag_id == dag_id and e.key.run_id == self.runs[dag_id]
        ]

    def log(self, dag_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        return self.api.log(dag_id, self.runs[dag_id], task_id, try_number, map_index)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("e2e")
    with Processes(work / "logs") as group:
        stack = st.start_stack(
            group, st.StackSetup(work / "kubequeue", dispatchers=1, startup_timeout=10)
        )
        setup = af.AirflowSetup(
            home=work / "airflow",
            dags_folder=DAGS,
            api_port=embedded_redis.free_port(),
            # kubequeue by its alias and the default, LocalExecutor beside it
            executor=f"KubeQueue:{af.EXECUTOR},LocalExecutor",
            kubequeue={**st.kubequeue_options(stack), "parallelism": "64"},
            extra={
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__CORE__PARALLELISM": "2",  # LocalExecutor's worker processes
            },
        )
        af.migrate(setup)
        api = af.AirflowApi(setup.url)
        airflow = {
            "api-server": af.start_api_server(group, setup),
            "scheduler": af.start_scheduler(group, setup),
            "dag-processor": af.start_dag_processor(group, setup),
        }
        af.wait_healthy(api, list(airflow.values()))
        e = Env(group, stack, setup, api, airflow)
        for dag_id in ("e2e_two_queues", "e2e_failing", "e2e_bad_input"):
            wait_for(f"{dag_id} parsed", lambda d=dag_id: bool(api.get(f"/api/v2/dags/{d}")),
                     120, e.watch())  # fmt: skip
            e.runs[dag_id] = api.trigger(dag_id)
        yield e


def test_config_list_shows_the_kubequeue_section(env: Env) -> None:
    out = subprocess.run(
        [
            af.airflow_bin(),
            "config",
            "list",
            "--section",
            "kubequeue",
            "--include-descriptions",
            "--show-values",
        ],
        env=env.setup.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "[kubequeue]" in out
    assert "# The pools file (YAML) that maps each Airflow queue to a node pool." in out
    assert "launch_retries = 1" in out
    check = subprocess.run(
        [af.airflow_bin(), "kubequeue", "check"],
        env=env.setup.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "redis:        reachable" in check


def test_tasks_on_two_queues_run_in_their_own_pods_on_their_pools(env: Env) -> None:
    assert env.wait_run("e2e_two_queues") == "success"
    events = env.events("e2e_two_queues")
    placed = {(e.key.task_id, e.pool, e.pod, e.node) for e in events
              if e.type is EventType.SCHEDULED and e.key}  # fmt: skip
    # sim nodes are named <node pool>-<n>
    assert {(task, pool, node.rsplit("-", 1)[0]) for task, pool, _, node in placed} == {
        ("on_default", "default", "default"),
        ("on_gpu", "gpu", "gpu"),
    }
    assert len({pod for _, _, pod, _ in placed}) == 2
    # the LocalExecutor task of the same DAG ran without kubequeue
    assert "on_local" not in {e.key.task_id for e in events if e.key}
    for task_id in ("on_default", "on_gpu", "on_local"):
        assert f"kubequeue-e2e-output from {task_id}" in env.log("e2e_two_queues", task_id, 1)


def test_a_failed_try_is_retried_in_a_new_pod(env: Env) -> None:
    assert env.wait_run("e2e_failing") == "failed"
    ti = env.tis("e2e_failing")[("always_fails", -1)]
    assert (ti["state"], ti["try_number"]) == ("failed", 2)
    pods = {e.key.try_number: e.pod for e in env.events("e2e_failing")
            if e.type is EventType.POD_CREATED and e.key}  # fmt: skip
    assert set(pods) == {1, 2} and pods[1] != pods[2]
    for try_number in (1, 2):
        log = env.log("e2e_failing", "always_fails", try_number)
        assert f"kubequeue-e2e failure on try {try_number}" in log


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        ("unknown_queue", ["UnknownQueue", "'no-such-queue'", "did not start"]),
        ("override_not_a_pod", ["must be a kubernetes.client.models.V1Pod, got dict"]),
        ("override_rejected", ["Invalid", "400 BadRequest", "quantities must match"]),
        ("missing_template", ["/nonexistent/pod.yaml"]),
        ("unschedulable", ["Unschedulable", "did not start"]),
    ],
)
def test_bad_input_fails_the_task_with_a_clear_message(
    env: Env, task_id: str, expected: list[str]
) -> None:
    assert env.wait_run("e2e_bad_input") == "failed"
    tis = env.tis("e2e_bad_input")
    assert tis[(task_id, -1)]["state"] == "failed"
    log = env.log("e2e_bad_input", task_id, 1)
    for text in expected:
        assert text in log, log
    # the scheduler kept going: the good task of the same run succeeded
    assert tis[("still_fine", -1)]["state"] == "success"


def _pods_of(env: Env, queueing_id: str) -> list[Any]:
    api = kubernetes.client.CoreV1Api(kube.api_client(str(env.stack.kubeconfig)))
    pods = api.list_namespaced_pod("default", label_selector=f"kubequeue.io/id={queueing_id}")
    return list(pods.items)


def test_running_log_then_marking_failed_deletes_the_pod(env: Env) -> None:
    env.runs["e2e_sleepy"] = env.api.trigger("e2e_sleepy")
    wait_for("sleeps running", lambda: env.tis("e2e_sleepy")[("sleeps", -1)]["state"] ==
             "running", RUN_TIMEOUT, env.watch())  # fmt: skip
    wait_for("some output", lambda: "still sleeping 2" in env.log("e2e_sleepy", "sleeps", 1),
             60, env.watch())  # fmt: skip
    log = env.log("e2e_sleepy", "sleeps", 1)
    assert "kubequeue: pod default/" in log and ": running" in log  # get_task_log's status
    # The pod's log and the shared log file say the same: the UI shows each line once.
    assert log.count("kubequeue-e2e still sleeping 2") == 1, log
    (qid,) = {e.id for e in env.events("e2e_sleepy") if e.type is EventType.RUNNING}
    assert len(_pods_of(env, qid)) == 1
    # Where the log folder is not shared, get_task_log reads the pod's log from the cluster.
    settings = ExecutorSettings(
        redis_url=env.stack.redis_url,
        pools_file=str(env.stack.pools_file),
        kubeconfig=str(env.stack.kubeconfig),
    )
    ti = SimpleNamespace(external_executor_id=qid, try_number=1)
    messages, (pod_log,) = read_task_log(settings, ti, 1)
    assert "kubequeue-e2e still sleeping 2" in pod_log and len(messages) == 2
    env.api.set_state("e2e_sleepy", env.runs["e2e_sleepy"], "sleeps", "failed")
    wait_for("the pod deleted", lambda: _pods_of(env, qid) == [], 90, env.watch())
    assert env.tis("e2e_sleepy")[("sleeps", -1)]["state"] == "failed"


def test_scheduler_killed_mid_run_its_tasks_are_adopted_and_run_once(env: Env) -> None:
    env.runs["e2e_adopt"] = env.api.trigger("e2e_adopt")
    wait_for("a task running", lambda: any(ti["state"] == "running" for ti in
             env.tis("e2e_adopt").values()), RUN_TIMEOUT, env.watch())  # fmt: skip
    env.group.kill(env.airflow["scheduler"])
    env.airflow["scheduler"] = af.start_scheduler(env.group, env.setup, name="scheduler-2")
    assert env.wait_run("e2e_adopt") == "success"
    tis = env.tis("e2e_adopt")
    assert {k: ti["try_number"] for k, ti in tis.items()} == {("work", i): 1 for i in range(3)}
    ids: dict[int, set[str]] = {}
    for e in env.events("e2e_adopt"):
        if e.key is not None:
            ids.setdefault(e.key.map_index, set()).add(e.id)
    assert {m: len(s) for m, s in ids.items()} == {0: 1, 1: 1, 2: 1}  # one pod each, ever
    assert "Adopted" in env.airflow["scheduler"].log_path.read_text()


def test_redis_unreachable_at_start_is_logged_and_the_scheduler_runs_on(env: Env) -> None:
    env.group.stop(env.airflow.pop("scheduler"))
    dead = f"redis://127.0.0.1:{embedded_redis.free_port()}/0"
    setup = dataclasses.replace(env.setup, kubequeue={**env.setup.kubequeue, "redis_url": dead})
    scheduler = af.start_scheduler(env.group, setup, name="scheduler-no-redis")
    wanted = f"cannot reach Redis at {dead}"
    wait_for("the Redis message", lambda: wanted in scheduler.log_path.read_text(), 120,
             [scheduler])  # fmt: skip
    # It keeps scheduling (heartbeating) rather than crashing.
    wait_for("scheduler healthy", lambda: env.api.get("/api/v2/monitor/health")["scheduler"][
        "status"] == "healthy", 60, [scheduler])  # fmt: skip
    scheduler.check_alive()
    env.group.stop(scheduler)

"""KubeQueueExecutor against the real kubequeue Client over fakeredis: what it submits, what
it reports to Airflow for each event, adoption, revocation and Redis outages."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from airflow.executors.workloads import BundleInfo, ExecuteTask, TaskInstanceDTO
from airflow.utils.state import TaskInstanceState
from kubernetes.client import models as k8s

from kubequeue import stream
from kubequeue.client import Client
from kubequeue.errors import RedisUnavailableError
from kubequeue.executor import config
from kubequeue.executor.executor import KubeQueueExecutor
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskEvent, TaskKey, TaskSpec
from kubequeue.pools import parse

POOLS = (
    "pools:\n  default: {image: img}\n  gpu: {image: img}\nqueues: {default: default, gpu: gpu}\n"
)


def workload(
    task_id: str = "t",
    *,
    queue: str = "default",
    qid: str | None = None,
    try_number: int = 1,
    executor_config: dict[str, Any] | None = None,
) -> ExecuteTask:
    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        dag_id="d",
        task_id=task_id,
        run_id="r",
        try_number=try_number,
        dag_version_id=uuid.uuid4(),
        queue=queue,
        pool_slots=1,
        priority_weight=7,
        external_executor_id=qid if qid is not None else str(uuid.uuid4()),
        executor_config=executor_config,
    )
    return ExecuteTask(
        ti=ti,
        dag_rel_path=Path("d.py"),
        bundle_info=BundleInfo(name="dags-folder"),
        log_path=f"dag_id=d/task_id={task_id}/attempt={try_number}.log",
        token="tok",
    )


class Harness:
    """The executor plus what the watcher and dispatchers would publish."""

    def __init__(self, executor: KubeQueueExecutor, client: Client) -> None:
        self.executor = executor
        self.client = client

    def queue(self, *workloads: ExecuteTask) -> None:
        for w in workloads:
            self.executor.queue_workload(w, session=None)

    def heartbeat(self) -> dict[Any, Any]:
        self.executor.heartbeat()
        return self.executor.get_event_buffer()

    def publish(self, w: ExecuteTask, type_: EventType, qid: str | None = None, **kw: Any) -> None:
        ti = w.ti
        key = TaskKey(dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, try_number=1)
        event = TaskEvent(
            type=type_,
            id=qid or str(ti.external_executor_id),
            key=key,
            queue=ti.queue,
            pool=ti.queue,
            at=time.time(),
            pod=f"pod-{ti.task_id}",
            namespace="ns",
            **kw,
        )
        stream.publish(self.client.redis, self.client.keys, [event])

    def specs(self, queue: str = "default") -> list[TaskSpec]:
        r = self.client.redis
        out = []
        for job_id in r.lrange(f"rq:queue:kubequeue.{queue}", 0, -1):
            raw = r.hget(f"rq:job:{job_id.decode()}", "data")  # type: ignore[union-attr]
            out.append(TaskSpec.parse(json.loads(_decompress(raw))[2][0]))
        return out


def _decompress(raw: Any) -> bytes:
    import zlib

    try:
        return zlib.decompress(raw)
    except zlib.error:
        return raw


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def harness(
    monkeypatch: pytest.MonkeyPatch, fake_redis: fakeredis.FakeRedis, tmp_path: Path
) -> Iterator[Harness]:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "kubequeue.executor.KubeQueueExecutor")
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(tmp_path / "logs"))
    client = Client(fake_redis, Keys(), parse(POOLS))
    monkeypatch.setattr(config, "make_client", lambda settings: client)
    executor = KubeQueueExecutor()
    executor.start()
    yield Harness(executor, client)
    executor.end()


def test_one_heartbeat_submits_every_queued_task_as_a_spec(harness: Harness) -> None:
    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(labels={"team": "a"}))
    a, b = workload("a"), workload("b", queue="gpu", executor_config={"pod_override": pod})
    harness.queue(a, b)
    assert harness.heartbeat() == {}
    (spec_a,) = harness.specs("default")
    (spec_b,) = harness.specs("gpu")
    assert spec_a.id == a.ti.external_executor_id and spec_a.priority == 7
    assert spec_a.command[:3] == ["python", "-m", "airflow.sdk.execution_time.execute_workload"]
    assert json.loads(spec_a.command[-1])["ti"]["task_id"] == "a"
    assert spec_a.env["AIRFLOW__CORE__EXECUTOR"] == "kubequeue.executor.KubeQueueExecutor"
    assert spec_a.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith("/execution/")
    assert spec_a.expires_at - spec_a.queued_at == 600
    assert spec_b.pod_override == {"metadata": {"labels": {"team": "a"}}}
    assert harness.executor.running == {a.ti.key, b.ti.key}


def test_events_become_airflow_states(harness: Harness) -> None:
    a, b = workload("a"), workload("b")
    harness.queue(a, b)
    harness.heartbeat()
    harness.publish(a, EventType.DISPATCHED)
    harness.publish(a, EventType.RUNNING)
    harness.publish(b, EventType.RUNNING)
    assert harness.heartbeat() == {
        a.ti.key: (TaskInstanceState.RUNNING, a.ti.external_executor_id),
        b.ti.key: (TaskInstanceState.RUNNING, b.ti.external_executor_id),
    }
    harness.publish(a, EventType.SUCCEEDED)
    harness.publish(b, EventType.FAILED, reason=Reason.EXIT_CODE, exit_code=3)
    events = harness.heartbeat()
    assert events[a.ti.key] == (TaskInstanceState.SUCCESS, None)
    state, info = events[b.ti.key]
    assert state == TaskInstanceState.FAILED and "ExitCode (exit code 3)" in info
    assert harness.executor.running == set()
    assert harness.client.in_flight() == {}  # forgotten once handled


def test_events_of_other_schedulers_are_ignored(harness: Harness) -> None:
    harness.publish(workload("x"), EventType.SUCCEEDED)
    assert harness.heartbeat() == {}


def test_unknown_queue_fails_the_try_with_the_reason_in_its_log(
    harness: Harness, tmp_path: Path
) -> None:
    w = workload("a", queue="nope")
    harness.queue(w)
    state, info = harness.heartbeat()[w.ti.key]
    assert state == TaskInstanceState.FAILED
    assert "UnknownQueue" in info and "'nope'" in info
    log_file = tmp_path / "logs" / str(w.log_path)
    line = json.loads(log_file.read_text().splitlines()[-1])
    assert line["level"] == "error" and "did not start" in line["event"] and "nope" in line["event"]
    assert harness.executor.running == set()


@pytest.mark.parametrize(
    ("executor_config", "message"),
    [
        ({"pod_override": {"spec": {}}}, "must be a kubernetes.client.models.V1Pod, got dict"),
        ({"KubernetesExecutor": {"image": "x"}}, "is the Airflow 1 form"),
        ({"pod_template_file": ""}, "pod_template_file'] must be a path"),
    ],
)
def test_invalid_executor_config_fails_at_once_with_a_clear_message(
    harness: Harness, executor_config: dict[str, Any], message: str
) -> None:
    w = workload("a", executor_config=executor_config)
    harness.queue(w)
    state, info = harness.heartbeat()[w.ti.key]
    assert state == TaskInstanceState.FAILED and message in info
    assert harness.specs() == []


def test_pod_lost_before_start_is_relaunched_once_without_a_try(harness: Harness) -> None:
    w = workload("a")
    qid = str(w.ti.external_executor_id)
    harness.queue(w)
    harness.heartbeat()
    harness.publish(w, EventType.FAILED, reason=Reason.EVICTED)
    events = harness.heartbeat()
    assert events == {w.ti.key: (TaskInstanceState.QUEUED, f"{qid}-r1")}
    assert [s.id for s in harness.specs()] == [qid, f"{qid}-r1"]
    # the second launch fails the same way: no launch left, the try fails
    harness.publish(w, EventType.FAILED, qid=f"{qid}-r1", reason=Reason.EVICTED)
    state, info = harness.heartbeat()[w.ti.key]
    assert state == TaskInstanceState.FAILED and "Evicted" in info


def test_pod_lost_after_start_uses_the_try(harness: Harness) -> None:
    w = workload("a")
    harness.queue(w)
    harness.heartbeat()
    harness.publish(w, EventType.RUNNING)
    harness.publish(w, EventType.FAILED, reason=Reason.EVICTED)
    assert harness.heartbeat()[w.ti.key][0] == TaskInstanceState.FAILED


def test_unschedulable_is_not_relaunched(harness: Harness) -> None:
    w = workload("a")
    harness.queue(w)
    harness.heartbeat()
    harness.publish(w, EventType.FAILED, reason=Reason.UNSCHEDULABLE, message="0/4 nodes fit")
    state, info = harness.heartbeat()[w.ti.key]
    assert state == TaskInstanceState.FAILED
    assert info.endswith("pod ns/pod-a: Unschedulable: 0/4 nodes fit")


def test_a_restarted_executor_adopts_from_the_tasks_hash(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued, running, done, never_sent = (workload(n) for n in ("q", "r", "d", "n"))
    harness.queue(queued, running, done)
    harness.heartbeat()
    harness.publish(running, EventType.RUNNING)
    harness.publish(done, EventType.SUCCEEDED)
    # the old scheduler dies here; a new executor starts with a fresh cursor
    second = KubeQueueExecutor()
    second.start()
    tis = [_ti_like(w) for w in (queued, running, done, never_sent)]
    not_adopted = second.try_adopt_task_instances(tis)
    assert [t.key for t in not_adopted] == [never_sent.ti.key]
    assert second.get_event_buffer() == {
        running.ti.key: (TaskInstanceState.RUNNING, running.ti.external_executor_id),
        done.ti.key: (TaskInstanceState.SUCCESS, None),
    }
    assert second.running == {queued.ti.key, running.ti.key}
    assert len(harness.specs()) == 3  # nothing submitted again
    harness.publish(queued, EventType.SUCCEEDED)
    second.sync()
    assert second.get_event_buffer() == {queued.ti.key: (TaskInstanceState.SUCCESS, None)}
    second.end()


class _TI:
    def __init__(self, w: ExecuteTask) -> None:
        self.key = w.ti.key
        self.external_executor_id = w.ti.external_executor_id


def _ti_like(w: ExecuteTask) -> _TI:
    return _TI(w)


def test_revoke_drops_a_queued_spec_and_reports_nothing(harness: Harness) -> None:
    w = workload("a")
    harness.queue(w)
    harness.heartbeat()
    harness.executor.revoke_task(ti=_ti_like(w))
    assert harness.executor.running == set()
    assert harness.specs() == []
    assert harness.heartbeat() == {}  # the Revoked event is not reported to Airflow
    assert harness.client.in_flight() == {}


def test_redis_down_at_start_keeps_tasks_until_it_answers(
    monkeypatch: pytest.MonkeyPatch, fake_redis: fakeredis.FakeRedis, capsys: Any
) -> None:
    client = Client(fake_redis, Keys(), parse(POOLS))
    up = {"value": False}
    real_ping = client.ping

    def ping() -> None:
        if not up["value"]:
            raise RedisUnavailableError("cannot reach Redis at redis://127.0.0.1:1/0: refused")
        real_ping()

    monkeypatch.setattr(client, "ping", ping)
    monkeypatch.setattr(config, "make_client", lambda settings: client)
    executor = KubeQueueExecutor()
    executor.start()
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in capsys.readouterr().out
    w = workload("a")
    executor.queue_workload(w, session=None)
    executor.heartbeat()
    assert executor.running == {w.ti.key} and client.in_flight() == {}
    up["value"] = True
    executor.heartbeat()
    assert list(client.in_flight()) == [w.ti.external_executor_id]
    assert "reachable again" in capsys.readouterr().out
    executor.end()


def test_stream_gap_is_filled_from_the_tasks_hash(harness: Harness) -> None:
    w = workload("a")
    harness.queue(w)
    harness.heartbeat()
    harness.publish(w, EventType.RUNNING)
    harness.publish(w, EventType.SUCCEEDED)
    # Trimmed past the cursor, as happens when a reader falls maxlen events behind: the
    # stream then still holds at least MIN_MAXLEN newer entries (here, of another task).
    r = harness.client.redis
    r.xtrim(harness.client.keys.events(), maxlen=0)
    for _ in range(stream.MIN_MAXLEN):
        harness.publish(workload("other"), EventType.DISPATCHED)
    assert harness.heartbeat() == {w.ti.key: (TaskInstanceState.SUCCESS, None)}


def test_a_reader_that_keeps_up_does_not_check_for_trimming(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = workload("a")
    harness.queue(w)
    harness.heartbeat()
    harness.publish(w, EventType.RUNNING)
    checked: list[str] = []
    client = harness.executor._client
    assert client is not None
    monkeypatch.setattr(client, "trimmed_past", lambda cursor: checked.append(cursor) or False)
    assert harness.heartbeat() == {
        w.ti.key: (TaskInstanceState.RUNNING, str(w.ti.external_executor_id))
    }
    assert checked == []

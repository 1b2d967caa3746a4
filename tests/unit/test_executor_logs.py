"""get_task_log's answers from the tasks hash, and notes in a try's log file."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from kubequeue import tasks
from kubequeue.client import Client
from kubequeue.executor import config, logs
from kubequeue.keys import Keys
from kubequeue.messages import Reason, TaskKey, TaskRecord
from kubequeue.pools import parse

POOLS = "pools:\n  gpu: {image: img, namespace: ml}\nqueues: {gpu: gpu}\n"
KEY = TaskKey(dag_id="d", task_id="t", run_id="r", try_number=1)


class TI:
    def __init__(self, qid: str | None, try_number: int = 1) -> None:
        self.external_executor_id = qid
        self.try_number = try_number


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Client:
    c = Client(fakeredis.FakeRedis(), Keys(), parse(POOLS))
    monkeypatch.setattr(logs, "make_client", lambda settings: c)
    return c


def put(client: Client, **kw: Any) -> str:
    qid = str(uuid.uuid4())
    record = TaskRecord(id=qid, key=KEY, queue="gpu", pool="gpu", at=time.time(), **kw)
    tasks.put(client.redis, client.keys, [record])
    return qid


def read(qid: str | None, try_number: int = 1) -> tuple[list[str], list[str]]:
    return logs.read_task_log(config.ExecutorSettings(), TI(qid), try_number)


def test_pod_that_cannot_start_shows_why(client: Client) -> None:
    qid = put(
        client,
        state="scheduled",
        pod="d-t-1",
        namespace="ml",
        reason=Reason.IMAGE_PULL,
        message='Back-off pulling image "nope:1"',
    )
    messages, text = read(qid)
    assert messages == [
        "kubequeue: pod ml/d-t-1 on pool gpu: scheduled: ImagePullBackOff: Back-off pulling "
        'image "nope:1"'
    ]
    assert text == []


def test_queued_try_says_where_it_waits(client: Client) -> None:
    messages, _ = read(put(client))
    assert messages == ["kubequeue: queue 'gpu' on pool gpu: queued"]


def test_running_pod_log_is_read_through_the_pool(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def pod_log(settings: Any, c: Client, record: TaskRecord) -> str:
        seen.append((record.pod, record.namespace, c.pools.pools[record.pool].namespace))
        return "line 1\nline 2\n"

    monkeypatch.setattr(logs, "_pod_log", pod_log)
    messages, text = read(put(client, state="running", pod="d-t-1", namespace="ml"))
    assert text == ["line 1\nline 2\n"]
    assert seen == [("d-t-1", "ml", "ml")]
    assert messages[-1] == "kubequeue: last 100 lines of the log of pod ml/d-t-1"


def test_cluster_errors_become_messages(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> str:
        raise RuntimeError("connection refused")

    monkeypatch.setattr(logs, "_pod_log", broken)
    messages, text = read(put(client, state="running", pod="p", namespace="ml"))
    assert text == [] and "cannot read the pod's log: connection refused" in messages[-1]


def test_unknown_and_old_tries(client: Client) -> None:
    assert "no queueing id" in read(None)[0][0]
    assert "no record of" in read(str(uuid.uuid4()))[0][0]
    assert "earlier tries" in read(put(client), try_number=0)[0][0]


def test_note_is_a_structured_line_in_the_try_log(tmp_path: Path) -> None:
    path = logs.write_note(str(tmp_path), "dag_id=d/run_id=r/task_id=t/attempt=1.log", "why")
    assert path == tmp_path / "dag_id=d/run_id=r/task_id=t/attempt=1.log"
    line = json.loads(path.read_text())
    assert line["event"] == "why" and line["level"] == "error" and line["timestamp"]


def test_note_never_leaves_the_log_folder(tmp_path: Path) -> None:
    assert logs.write_note(str(tmp_path / "logs"), "../../etc/x.log", "why") is None
    assert logs.write_note(str(tmp_path), None, "why") is None

from __future__ import annotations

import json

import pytest

from kubequeue.errors import SpecError
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskEvent, TaskKey, TaskSpec
from kubequeue.naming import pod_name, safe_label_value


def make_spec(**over: object) -> TaskSpec:
    data: dict[str, object] = dict(
        id="0b3f1c1e-6a8e-4a57-9b0e-1f2d3c4b5a69",
        key=TaskKey(dag_id="etl", task_id="load", run_id="manual__2026-11-25", try_number=1),
        queue="default",
        command=["python", "-c", "print('hi')"],
        queued_at=1000.0,
        expires_at=1600.0,
    )
    data.update(over)
    return TaskSpec.model_validate(data)


def test_spec_round_trips_through_json() -> None:
    spec = make_spec(pod_override={"spec": {"containers": [{"name": "base"}]}}, priority=5)
    assert TaskSpec.parse(spec.to_json()) == spec


def test_spec_expiry() -> None:
    spec = make_spec()
    assert not spec.expired(now=1599.9)
    assert spec.expired(now=1600.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"v": 2, "id": "x"}', "unknown version v=2"),
        (b'{"id": "x"}', "unknown version v=None"),
        (b'{"v": 1, "id": "x"}', "TaskSpec is invalid: key: Field required"),
    ],
)
def test_malformed_spec_gives_a_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TaskSpec.parse(raw)


def test_spec_rejects_unknown_fields() -> None:
    data = json.loads(make_spec().to_json())
    data["surprise"] = 1
    with pytest.raises(SpecError, match="surprise"):
        TaskSpec.parse(json.dumps(data))


def test_event_round_trip() -> None:
    ev = TaskEvent(
        type=EventType.FAILED,
        id="abc",
        at=1.5,
        reason=Reason.UNSCHEDULABLE,
        message="0/4 nodes are available",
    )
    assert TaskEvent.parse(ev.to_json()) == ev
    assert ev.terminal


def test_pod_name_is_deterministic_per_queueing() -> None:
    a = pod_name("id-1", "My_DAG", "task.one")
    assert a == pod_name("id-1", "My_DAG", "task.one")
    assert a != pod_name("id-2", "My_DAG", "task.one")
    assert len(pod_name("x", "d" * 200, "t" * 200)) <= 63
    assert a.startswith("my-dag-task-one-")


def test_safe_label_value() -> None:
    assert safe_label_value("manual__2026") == "manual__2026"
    long = safe_label_value("scheduled__2026-11-25T00:00:00+00:00" * 3)
    assert len(long) <= 63 and long[0].isalnum() and long[-1].isalnum()
    assert safe_label_value("a:b") != safe_label_value("a;b")


def test_every_key_shape_is_listed_and_prefixed() -> None:
    keys = Keys("kq-test")
    shapes = keys.all_shapes()
    assert all(v.startswith("kq-test") for v in shapes.values())
    assert keys.airflow_queue(keys.rq_queue("gpu")) == "gpu"


@pytest.mark.parametrize("bad", ["x" * 64, "-abc", "abc-", "a_b", ""])
def test_spec_id_must_be_a_valid_label_value(bad: str) -> None:
    with pytest.raises(ValueError, match="id"):
        make_spec(id=bad)

"""The demo's closing table: rows per try, phases from events and Airflow's queued time."""

from __future__ import annotations

from kubequeue.executor.demo_report import build_rows, render, summary
from kubequeue.messages import EventType, TaskEvent, TaskKey

T0 = 1_764_000_000.0


def ev(
    type_: EventType, at: float, try_number: int = 1, qid: str = "a", node: str = ""
) -> TaskEvent:
    key = TaskKey(dag_id="d", task_id="t", run_id="r", try_number=try_number)
    return TaskEvent(type=type_, id=qid, key=key, queue="gpu", pool="gpu", at=T0 + at, node=node)


def test_phases_per_try_from_events_and_airflows_queued_time() -> None:
    events = [
        ev(EventType.DISPATCHED, 1.0),
        ev(EventType.POD_CREATED, 1.5),
        ev(EventType.SCHEDULED, 2.0, node="gpu-0"),
        ev(EventType.RUNNING, 4.0, node="gpu-0"),
        ev(EventType.SUCCEEDED, 9.0),
        ev(EventType.DISPATCHED, 20.0, try_number=2, qid="b"),
    ]
    tries = {
        ("t", -1, 1): {"state": "failed", "queued_when": "2025-11-24T16:00:00+00:00"},
        ("t", -1, 2): {"state": "running", "queued_when": None},
    }
    first, second = build_rows(events, tries)
    assert (first.task, first.try_number, first.node, first.state) == ("t", 1, "gpu-0", "failed")
    assert first.span("queued", EventType.DISPATCHED) == 1.0
    assert first.startup == 4.0 and first.run == 5.0
    assert second.try_number == 2 and second.startup is None and second.run is None
    assert summary([first, second]) == [
        "pool gpu: 1 pods, start-up median 4.0s, max 4.0s (queued in Airflow → pod Running)"
    ]
    assert render([first, second]).row_count == 2

"""watcher.transitions: pod JSON → milestones and outcome, one table row at a time."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubequeue import naming
from kubequeue.messages import EventType, Reason
from kubequeue.watcher import transitions as tr

E = EventType
T0 = "2026-11-25T10:00:00Z"
T1 = "2026-11-25T10:00:01Z"
T2 = "2026-11-25T10:00:02Z"
T5 = "2026-11-25T10:00:05Z"


def make_pod(
    stage: str = "pending",
    *,
    qid: str = "q1",
    name: str = "pod-q1",
    namespace: str = "tasks",
    queue: str = "default",
    pool: str = "default",
    dispatched_at: float = 1_790_000_000.0,
    queued_at: float = 1_789_999_999.0,
    **status: Any,
) -> dict[str, Any]:
    """A task pod as the API returns it. `stage`: pending | scheduled | running | succeeded |
    failed (exit 1); `status` keys override/extend the status (e.g. reason="Evicted")."""
    pod: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": T0,
            "labels": {
                naming.LABEL_MANAGED: naming.MANAGED_BY,
                naming.LABEL_ID: qid,
                naming.LABEL_QUEUE: queue,
                naming.LABEL_POOL: pool,
            },
            "annotations": {
                naming.ANN_QUEUED_AT: str(queued_at),
                naming.ANN_DISPATCHED_AT: str(dispatched_at),
                naming.ANN_KEY: '{"dag_id":"d","task_id":"t","run_id":"r","try_number":1}',
            },
        },
        "spec": {"containers": [{"name": "base", "image": "apache/airflow:3.3.2"}]},
        "status": {"phase": "Pending"},
    }
    st = pod["status"]
    if stage != "pending":
        pod["spec"]["nodeName"] = "node-1"
        st["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": T1}]
        st["containerStatuses"] = [
            {"name": "base", "image": "apache/airflow:3.3.2", "state": {"waiting": {}}}
        ]
    if stage == "running":
        st["phase"] = "Running"
        st["containerStatuses"][0]["state"] = {"running": {"startedAt": T2}}
    if stage in ("succeeded", "failed"):
        code = 0 if stage == "succeeded" else 1
        st["phase"] = "Succeeded" if code == 0 else "Failed"
        st["containerStatuses"][0]["state"] = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": T2,
                "finishedAt": T5,
            }
        }
    st.update(status)
    return pod


def types(steps: list[tr.Step]) -> list[EventType]:
    return [s.type for s in steps]


def at(stamp: str) -> float:
    t = tr.parse_time(stamp)
    assert t is not None
    return t


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("pending", [E.DISPATCHED, E.POD_CREATED]),
        ("scheduled", [E.DISPATCHED, E.POD_CREATED, E.SCHEDULED]),
        ("running", [E.DISPATCHED, E.POD_CREATED, E.SCHEDULED, E.STARTED, E.RUNNING]),
        (
            "succeeded",
            [E.DISPATCHED, E.POD_CREATED, E.SCHEDULED, E.STARTED, E.RUNNING, E.SUCCEEDED],
        ),
        ("failed", [E.DISPATCHED, E.POD_CREATED, E.SCHEDULED, E.STARTED, E.RUNNING, E.FAILED]),
    ],
)
def test_a_pod_seen_for_the_first_time_reports_every_milestone_it_proves(
    stage: str, expected: list[EventType]
) -> None:
    assert types(tr.steps(make_pod(stage))) == expected


@pytest.mark.parametrize(
    ("last", "stage", "expected"),
    [
        (E.POD_CREATED, "pending", []),
        (E.POD_CREATED, "running", [E.SCHEDULED, E.STARTED, E.RUNNING]),
        (E.SCHEDULED, "scheduled", []),
        (E.RUNNING, "running", []),
        (E.RUNNING, "succeeded", [E.SUCCEEDED]),
        (E.SUCCEEDED, "succeeded", []),
        (E.FAILED, "succeeded", []),  # one terminal per queueing, whatever comes after
    ],
)
def test_only_milestones_beyond_the_last_published_one_are_new(
    last: EventType, stage: str, expected: list[EventType]
) -> None:
    assert types(tr.steps(make_pod(stage), last)) == expected


@pytest.mark.parametrize("stage", ["pending", "scheduled", "running", "succeeded", "failed"])
def test_steps_beyond_a_milestone_are_the_full_list_cut_there(stage: str) -> None:
    full = tr.steps(make_pod(stage))
    for last in (E.DISPATCHED, E.POD_CREATED, E.SCHEDULED, E.STARTED, E.RUNNING):
        expected = [s for s in full if tr.RANK[s.type] > tr.RANK[last]]
        assert tr.steps(make_pod(stage), last) == expected


def test_steps_carry_the_pods_own_timestamps() -> None:
    got = {s.type: s.at for s in tr.steps(make_pod("succeeded"))}
    assert got[E.DISPATCHED] == 1_790_000_000.0
    assert got[E.POD_CREATED] == at(T0)
    assert got[E.SCHEDULED] == at(T1)
    assert got[E.STARTED] == got[E.RUNNING] == at(T2)
    assert got[E.SUCCEEDED] == at(T5)


def test_phase_running_with_a_container_not_started_is_not_running_yet() -> None:
    pod = make_pod("running")
    pod["spec"]["containers"].append({"name": "sidecar", "image": "x"})
    pod["status"]["containerStatuses"].append({"name": "sidecar", "state": {"waiting": {}}})
    assert types(tr.steps(pod, E.SCHEDULED)) == []


def test_a_container_that_never_ran_is_not_started() -> None:
    pod = make_pod("scheduled", phase="Failed")
    pod["metadata"]["deletionTimestamp"] = T5
    pod["status"]["containerStatuses"][0]["state"] = {
        "terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}
    }
    assert types(tr.steps(pod, E.SCHEDULED)) == [E.FAILED]
    assert tr.outcome(pod) == tr.steps(pod, E.SCHEDULED)[0]


def test_exit_code_failure_names_the_container_and_code() -> None:
    (end,) = tr.steps(make_pod("failed"), E.RUNNING)
    assert (end.type, end.reason, end.exit_code) == (E.FAILED, Reason.EXIT_CODE, 1)
    assert "container base exited with code 1" in end.message


def _terminated(pod: dict[str, Any], **term: Any) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["status"]["containerStatuses"][0]["state"]["terminated"].update(term)
    return pod


@pytest.mark.parametrize(
    ("pod", "deleted", "reason", "says"),
    [
        (_terminated(make_pod("failed"), reason="OOMKilled", exitCode=137), False,
         Reason.OOM_KILLED, "limits.memory"),
        (make_pod("failed", reason="Evicted", message="The node was low on resource: memory."),
         False, Reason.EVICTED, "low on resource"),
        (make_pod("running", phase="Unknown", reason="NodeLost"), False, Reason.NODE_LOST,
         "node node-1 stopped reporting"),
        (make_pod("running", conditions=[{"type": "DisruptionTarget", "status": "True",
                                          "reason": "DeletionByTaintManager"}]), True,
         Reason.NODE_LOST, "node node-1"),
        (make_pod("running"), True, Reason.DELETED, "pod tasks/pod-q1 was deleted"),
        (make_pod("pending"), True, Reason.DELETED, "was deleted before the task finished"),
        (_terminated(make_pod("failed"), exitCode=143), True, Reason.DELETED, "deleted"),
        (make_pod("failed", containerStatuses=[]), False, Reason.EXIT_CODE, "pod failed"),
    ],
)  # fmt: skip
def test_failure_table(pod: dict[str, Any], deleted: bool, reason: Reason, says: str) -> None:
    end = tr.outcome(pod, deleted)
    assert end is not None and end.type is E.FAILED
    assert end.reason is reason
    assert says in end.message


def test_a_pod_that_succeeded_and_was_then_deleted_still_succeeded() -> None:
    end = tr.outcome(make_pod("succeeded"), deleted=True)
    assert end is not None and end.type is E.SUCCEEDED


def test_a_running_pod_has_no_outcome_yet() -> None:
    assert tr.outcome(make_pod("running")) is None
    assert tr.outcome(make_pod("pending")) is None


def test_unschedulable_block_carries_the_schedulers_message() -> None:
    msg = "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
    pod = make_pod(
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}
        ]
    )
    assert tr.pending_block(pod) == tr.Block(Reason.UNSCHEDULABLE, msg)


@pytest.mark.parametrize("why", ["ImagePullBackOff", "ErrImagePull", "InvalidImageName"])
def test_image_pull_block_names_the_image_and_the_kubelets_message(why: str) -> None:
    pod = make_pod("scheduled")
    pod["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": why, "message": 'pull access denied for "nope"'}
    }
    block = tr.pending_block(pod)
    assert block is not None and block.reason is Reason.IMAGE_PULL
    assert "apache/airflow:3.3.2" in block.message and "pull access denied" in block.message


def test_a_pod_waiting_for_other_reasons_is_not_blocked() -> None:
    pod = make_pod("scheduled")
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    assert tr.pending_block(pod) is None
    assert tr.pending_block(make_pod("running")) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1790000000.5", 1_790_000_000.5), (T0, at(T0)), ("2026-11-25T10:00:00.250000Z",
     at(T0) + 0.25), ("", None), (None, None), ("yesterday", None)],
)  # fmt: skip
def test_parse_time(raw: object, expected: float | None) -> None:
    assert tr.parse_time(raw) == expected


def test_parse_time_remembers_what_it_parsed_within_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tr, "_TIMES", {})
    monkeypatch.setattr(tr, "TIMES_KEPT", 3)
    stamps = [f"2026-11-25T10:00:0{i}Z" for i in range(5)]
    for _ in range(2):  # the second round is answered from memory, or parsed again if dropped
        assert [tr.parse_time(x) for x in stamps] == [at(T0) + i for i in range(5)]
        assert (
            tr.parse_time("yesterday") is None and tr.parse_time("1790000000.5") == 1_790_000_000.5
        )
        assert len(tr._TIMES) <= 3


@pytest.mark.parametrize("stage", ["pending", "scheduled", "running", "succeeded", "failed"])
def test_reading_a_pod_leaves_it_as_it_was(stage: str) -> None:
    pod = make_pod(stage, reason="Evicted")
    before = copy.deepcopy(pod)
    for deleted in (False, True):
        tr.steps(pod, deleted=deleted)
    tr.pending_block(pod)
    assert pod == before

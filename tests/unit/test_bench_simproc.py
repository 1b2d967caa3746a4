from __future__ import annotations

from kubequeue.bench.simproc import CREATED, DELETED, FINISHED, RUNNING, Recorder, task_ref


def pod(uid: str, phase: str = "Pending", **annotations: str) -> dict:
    return {
        "metadata": {"uid": uid, "labels": {"app": "x"}, "annotations": annotations},
        "status": {"phase": phase},
    }


def test_task_ref_reads_annotations_then_labels() -> None:
    assert task_ref(
        {"dag_id": "cut", "map_index": "1"}, {"dag_id": "bench_b", "map_index": "7"}
    ) == (
        "bench_b",
        7,
    )
    assert task_ref({"dag_id": "bench_b", "map_index": "3"}, None) == ("bench_b", 3)
    assert task_ref({"dag_id": "bench_b"}, {}) == ("", -1)
    assert task_ref(None, {"dag_id": "d", "map_index": "x"}) == ("", -1)


def test_recorder_times_each_transition_once_and_counts() -> None:
    counters = [0, 0, 0, 0]
    rec = Recorder(counters)
    rec("ADDED", "pods", pod("u1", dag_id="bench_b", map_index="4"))
    rec("ADDED", "nodes", pod("n1"))  # not a pod: ignored
    rec("MODIFIED", "pods", pod("u1", "Running"))
    rec("MODIFIED", "pods", pod("u1", "Running"))  # the same phase again: no second count
    rec("MODIFIED", "pods", pod("u1", "Succeeded"))
    rec("DELETED", "pods", pod("u1", "Succeeded"))
    rec("MODIFIED", "pods", pod("unknown", "Running"))  # created before the recorder: ignored
    assert counters[CREATED] == counters[RUNNING] == counters[FINISHED] == counters[DELETED] == 1
    (times,) = rec.take()
    assert (times.dag_id, times.index) == ("bench_b", 4)
    assert 0 < times.created <= times.running <= times.finished
    assert rec.take() == []  # taken once


def test_recorder_drops_pods_that_are_not_benchmark_tasks() -> None:
    rec = Recorder([0, 0, 0, 0])
    rec("ADDED", "pods", pod("u1"))
    assert rec.take() == []


def test_dispatched_at_annotation_is_read_as_epoch_seconds() -> None:
    from kubequeue.bench.simproc import DISPATCHED_AT, annotation_time

    ann = {DISPATCHED_AT: "2026-11-25T10:00:00.250000Z"}
    assert annotation_time(ann, DISPATCHED_AT) == 1795600800.25
    assert annotation_time({DISPATCHED_AT: "soon"}, DISPATCHED_AT) == 0.0
    assert annotation_time(None, DISPATCHED_AT) == 0.0
    rec = Recorder([0, 0, 0, 0])
    rec("ADDED", "pods", pod("u1", dag_id="bench_b", map_index="1", **ann))
    assert rec.take()[0].dispatched == 1795600800.25

"""watcher.tracker: observations → events, published entries, releases and pod actions."""

from __future__ import annotations

import copy
from typing import Any

from kubequeue import naming
from kubequeue.messages import EventType, Reason
from kubequeue.watcher import transitions as tr
from kubequeue.watcher.tracker import Batch, PoolPolicy, Tracked, Tracker
from tests.unit.test_transitions import T0, T2, T5, make_pod

E = EventType
NOW = 1_790_000_100.0


def tracker(**kw: Any) -> Tracker:
    return Tracker({"default": PoolPolicy("default", "tasks", **kw)})


def kinds(batch: Batch) -> list[EventType]:
    return [e.event.type for e in batch.events]


def test_first_sight_publishes_dispatched_and_created_with_their_times() -> None:
    t = tracker()
    b = t.seen(make_pod("pending"), NOW)
    assert kinds(b) == [E.DISPATCHED, E.POD_CREATED]
    dispatched, created = (e.event for e in b.events)
    assert dispatched.at == 1_790_000_000.0  # the dispatcher's annotation
    assert created.at == NOW  # seen live: the watch's clock
    assert dispatched.key is not None and dispatched.key.dag_id == "d"
    assert (created.queue, created.pool, created.pod, created.namespace) == (
        "default", "default", "pod-q1", "tasks")  # fmt: skip
    assert b.events[1].prev_at == 1_790_000_000.0 and b.events[1].queued_at == 1_789_999_999.0
    assert Tracked.from_json(b.published["q1"] or "").last is E.POD_CREATED
    assert not b.releases and not b.actions


def test_each_transition_is_published_once_and_terminal_releases_and_cleans_up() -> None:
    t = tracker()
    t.seen(make_pod("pending"), NOW)
    assert kinds(t.seen(make_pod("pending"), NOW + 1)) == []
    b = t.seen(make_pod("running"), NOW + 2)
    assert kinds(b) == [E.SCHEDULED, E.STARTED, E.RUNNING]
    assert kinds(t.seen(make_pod("running"), NOW + 3)) == []
    b = t.seen(make_pod("succeeded"), NOW + 4)
    assert kinds(b) == [E.SUCCEEDED]
    assert b.releases == [("default", "q1")]
    assert [(a.kind, a.pod) for a in b.actions] == [("delete", "pod-q1")]
    # More updates of the finished pod (its deletion starting) publish nothing more.
    assert not t.seen(make_pod("succeeded"), NOW + 5)
    gone = t.seen(make_pod("succeeded"), NOW + 6, deleted=True)
    assert kinds(gone) == [] and Tracked.from_json(gone.published["q1"] or "").gone
    assert t.in_flight() == {}


def test_a_relist_after_a_gap_reports_missed_transitions_with_the_pods_times() -> None:
    first = tracker()
    b = first.seen(make_pod("pending"), NOW)
    restarted = tracker()
    restarted.load({"q1": b.published["q1"]})
    b = restarted.relisted((None, "tasks"), [make_pod("succeeded")], NOW + 50)
    assert kinds(b) == [E.SCHEDULED, E.STARTED, E.RUNNING, E.SUCCEEDED]
    ats = [e.event.at for e in b.events]
    assert ats == [tr.parse_time(x) for x in ("2026-11-25T10:00:01Z", T2, T2, T5)]
    # The same list again (another relist): nothing new.
    assert kinds(restarted.relisted((None, "tasks"), [make_pod("succeeded")], NOW + 60)) == []


def test_a_pod_that_vanished_unwatched_fails_as_deleted_once() -> None:
    t = tracker()
    t.seen(make_pod("running"), NOW)
    b = t.relisted((None, "tasks"), [], NOW + 10)
    assert kinds(b) == [E.FAILED]
    assert b.events[0].event.reason is Reason.DELETED
    assert "while the watcher was not watching" in b.events[0].event.message
    assert b.releases == [("default", "q1")]
    assert kinds(t.relisted((None, "tasks"), [], NOW + 20)) == []


def test_a_relist_of_another_namespace_leaves_other_pods_alone() -> None:
    t = tracker()
    t.seen(make_pod("running"), NOW)
    assert not t.relisted((None, "elsewhere"), [], NOW)


def test_a_finished_pod_that_vanished_is_not_reported_again() -> None:
    t = tracker()
    t.seen(make_pod("succeeded"), NOW)
    b = t.relisted((None, "tasks"), [], NOW + 10)
    assert kinds(b) == []


def test_revoked_pod_fails_as_revoked_and_is_deleted() -> None:
    t = tracker()
    t.seen(make_pod("running"), NOW)
    b = t.revoke(["q1", "unknown"], NOW + 1)
    assert kinds(b) == [E.FAILED] and b.events[0].event.reason is Reason.REVOKED
    assert [a.kind for a in b.actions] == ["delete"] and b.releases == [("default", "q1")]
    assert not t.revoke(["q1"], NOW + 2)
    # Its deletion shows up in the watch: still only one terminal event.
    assert kinds(t.seen(make_pod("running"), NOW + 3, deleted=True)) == []


def test_a_pod_created_after_its_revocation_is_ended_at_first_sight() -> None:
    t = tracker()
    t.revoke(["q1"], NOW)
    b = t.seen(make_pod("pending"), NOW + 1)
    assert kinds(b) == [E.FAILED] and b.events[0].event.reason is Reason.REVOKED


def _unschedulable() -> dict:
    return make_pod(
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]
    )  # fmt: skip


def test_fail_fast_after_startup_timeout_with_the_schedulers_message() -> None:
    t = tracker(startup_timeout=60)
    t.seen(_unschedulable(), NOW)
    assert not t.sweep(NOW + 59)
    b = t.sweep(NOW + 61)
    assert kinds(b) == [E.FAILED]
    event = b.events[0].event
    assert event.reason is Reason.UNSCHEDULABLE
    assert "Insufficient nvidia.com/gpu" in event.message and "startupTimeout 60s" in event.message
    assert [a.kind for a in b.actions] == ["delete"] and b.releases == [("default", "q1")]
    assert not t.sweep(NOW + 120)


def test_a_pod_that_gets_unstuck_is_not_failed() -> None:
    t = tracker(startup_timeout=60)
    t.seen(_unschedulable(), NOW)
    t.seen(make_pod("running"), NOW + 30)
    assert not t.sweep(NOW + 100)


def test_failed_pods_are_kept_and_labelled_unless_delete_on_failure() -> None:
    keep = tracker()
    b = keep.seen(make_pod("failed"), NOW)
    assert [a.kind for a in b.actions] == ["mark_done"]
    done = keep.marked_done("q1")
    assert Tracked.from_json(done.published["q1"] or "").gone
    delete = tracker(delete_worker_pods_on_failure=True)
    assert [a.kind for a in delete.seen(make_pod("failed"), NOW).actions] == ["delete"]
    never = tracker(delete_worker_pods=False)
    assert [a.kind for a in never.seen(make_pod("succeeded"), NOW).actions] == ["mark_done"]


def test_a_pod_recreated_for_a_finished_queueing_is_deleted_silently() -> None:
    t = tracker()
    t.seen(make_pod("succeeded"), NOW)
    t.seen(make_pod("succeeded"), NOW, deleted=True)
    b = t.seen(make_pod("pending"), NOW + 5)
    assert kinds(b) == [] and [a.why for a in b.actions] == ["duplicate pod of a finished queueing"]
    assert t.expire(NOW + 10_000).published == {"q1": None}
    assert not t.tombstones


def test_published_entries_round_trip_and_bad_ones_are_skipped() -> None:
    t = tracker()
    b = t.seen(make_pod("running"), NOW)
    again = tracker()
    again.load({b"q1": (b.published["q1"] or "").encode(), b"bad": b"{"})
    assert again.tasks["q1"] == t.tasks["q1"]
    assert again.in_flight() == {("default", "default"): 1}


def test_pods_without_kubequeue_labels_are_ignored() -> None:
    pod = copy.deepcopy(make_pod())
    pod["metadata"]["labels"] = {}
    assert not tracker().seen(pod, NOW)


def test_created_at_comes_from_the_pod_when_it_was_not_seen_live() -> None:
    t = tracker()
    t.relisted((None, "tasks"), [_unschedulable()], NOW)
    assert t.tasks["q1"].created_at == tr.parse_time(T0)


def test_events_carry_the_task_key_also_after_a_restart() -> None:
    first = tracker()
    b = first.seen(make_pod("pending"), NOW)
    key = b.events[0].event.key
    assert key is not None and (key.dag_id, key.task_id, key.try_number) == ("d", "t", 1)
    restarted = tracker()
    restarted.load({"q1": b.published["q1"]})
    again = restarted.seen(make_pod("running"), NOW + 1)
    assert kinds(again) == [E.SCHEDULED, E.STARTED, E.RUNNING]
    assert all(e.event.key == key for e in again.events)


def test_a_known_pod_keeps_the_identity_it_was_first_seen_with() -> None:
    t = tracker()
    t.seen(make_pod("pending"), NOW)
    changed = make_pod("running", queue="other", pool="other")
    changed["metadata"]["annotations"][naming.ANN_KEY] = "{"
    b = t.seen(changed, NOW + 1)
    assert {(e.event.queue, e.event.pool) for e in b.events} == {("default", "default")}
    assert all(e.event.key is not None for e in b.events)

"""The events stream and tasks hash against a real Redis/Valkey server."""

from __future__ import annotations

import pytest
import redis

from kubequeue import stream, tasks
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskEvent, TaskKey, TaskRecord

pytestmark = pytest.mark.integration
KEY = TaskKey(dag_id="d", task_id="t", run_id="r", try_number=1)


def ev(qid: str, kind: EventType = EventType.RUNNING, **kw: object) -> TaskEvent:
    return TaskEvent.model_validate({"type": kind, "id": qid, "key": KEY, "at": 1.0, **kw})


def test_read_returns_only_new_events_after_cursor(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    keys = Keys()
    stream.publish(r, keys, [ev("a"), ev("b")])
    got, cursor = stream.read(r, keys)
    assert [e.id for e in got] == ["a", "b"]
    stream.publish(r, keys, [ev("c", EventType.SUCCEEDED)])
    got, cursor2 = stream.read(r, keys, cursor)
    assert [e.id for e in got] == ["c"] and cursor2 != cursor
    assert stream.read(r, keys, cursor2) == ([], cursor2)
    assert stream.latest(r, keys) == cursor2


def test_publish_updates_task_records(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    keys = Keys()
    stream.publish(r, keys, [ev("a", EventType.FAILED, reason=Reason.UNSCHEDULABLE)])
    record = tasks.get(r, keys, ["a"])["a"]
    assert record.state == "failed" and record.reason is Reason.UNSCHEDULABLE and record.terminal
    tasks.forget(r, keys, ["a"])
    assert tasks.all_records(r, keys) == {}


def test_unreadable_entries_are_skipped_not_raised(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    keys = Keys()
    r.xadd(keys.events(), {"e": b"{garbage"})
    r.hset(keys.tasks(), "bad", b"[]")
    stream.publish(r, keys, [ev("ok")])
    got, _ = stream.read(r, keys)
    assert [e.id for e in got] == ["ok"]
    assert set(tasks.all_records(r, keys)) == {"ok"}


def test_trimming_past_the_cursor_is_detected(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    keys = Keys()
    stream.publish(r, keys, [ev("a")])
    _, cursor = stream.read(r, keys)
    assert not stream.trimmed_past(r, keys, cursor)
    stream.publish(r, keys, [ev(f"x{i}") for i in range(50)], maxlen=5)
    r.xtrim(keys.events(), maxlen=5, approximate=False)
    assert stream.trimmed_past(r, keys, cursor)
    assert not stream.trimmed_past(r, keys, stream.latest(r, keys))


def test_queued_record_from_spec() -> None:
    from tests.unit.test_messages import make_spec

    rec = TaskRecord.queued(make_spec())
    assert rec.state == "queued" and not rec.terminal
    assert TaskRecord.parse(rec.to_json()) == rec

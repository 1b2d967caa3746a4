"""The tasks hash: queueing id -> TaskRecord of every task not yet forgotten by the executor.

Written by the client on submit and alongside every published event (same pipeline), deleted
by the executor once it has handled a terminal event. Its size is O(tasks in flight), and only
adoption and gap recovery read it whole; the executor's heartbeat never does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis

from kubequeue.errors import SpecError
from kubequeue.keys import Keys
from kubequeue.messages import TaskRecord

log = logging.getLogger(__name__)

Pipeline = redis.client.Pipeline


def put(pipe: Pipeline | redis.Redis, keys: Keys, records: Iterable[TaskRecord]) -> None:
    mapping: dict[Any, Any] = {r.id: r.to_json() for r in records}
    if mapping:
        pipe.hset(keys.tasks(), mapping=mapping)


def get(client: redis.Redis, keys: Keys, ids: Iterable[str]) -> dict[str, TaskRecord]:
    ids = list(ids)
    if not ids:
        return {}
    raws = client.hmget(keys.tasks(), ids)
    return {i: r for i, raw in zip(ids, raws, strict=True) if (r := _parse(i, raw)) is not None}


def all_records(client: redis.Redis, keys: Keys) -> dict[str, TaskRecord]:
    out: dict[str, TaskRecord] = {}
    for field, raw in client.hscan_iter(keys.tasks(), count=1000):
        qid = field.decode() if isinstance(field, bytes) else field
        record = _parse(qid, raw)
        if record is not None:
            out[qid] = record
    return out


def forget(pipe: Pipeline | redis.Redis, keys: Keys, ids: Iterable[str]) -> None:
    ids = list(ids)
    if ids:
        pipe.hdel(keys.tasks(), *ids)


def _parse(qid: str, raw: bytes | str | None) -> TaskRecord | None:
    if raw is None:
        return None
    try:
        return TaskRecord.parse(raw)
    except SpecError as e:
        # A record another version wrote: skip it rather than fail a whole adoption.
        log.warning("ignoring unreadable task record %s: %s", qid, e)
        return None

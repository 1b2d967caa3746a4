"""The events stream: TaskEvents from dispatchers and the watcher to the executor.

One Redis stream, capped at about `maxlen` entries (XADD MAXLEN ~). A reader keeps a cursor
(the last entry id it handled), so each read costs O(new events) however many tasks run.
Publishing also updates the task's record in the tasks hash in the same pipeline, so the
record and the stream never disagree for long and a reader that fell behind the cap can
recover every task's last state from the hash (see `trimmed_past`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from kubequeue import tasks
from kubequeue.errors import SpecError
from kubequeue.keys import Keys
from kubequeue.messages import TaskEvent, TaskRecord

log = logging.getLogger(__name__)

FIELD = "e"
DEFAULT_MAXLEN = 100_000
# The least maxlen kubequeue accepts (KUBEQUEUE_EVENTS_MAXLEN): readers rely on it to know
# when they may have fallen behind a trim (see `Page.behind`).
MIN_MAXLEN = 1000
START = "0-0"


def publish(
    client: redis.Redis,
    keys: Keys,
    events: Iterable[TaskEvent],
    *,
    maxlen: int = DEFAULT_MAXLEN,
    pipe: redis.client.Pipeline | None = None,
) -> None:
    """Append events and update their task records; one round trip unless `pipe` is given
    (then the caller executes it, e.g. together with other writes)."""
    own = pipe is None
    p = client.pipeline(transaction=False) if pipe is None else pipe
    events = list(events)
    for event in events:
        p.xadd(keys.events(), {FIELD: event.to_json()}, maxlen=maxlen, approximate=True)
    # One record per task: the hash keeps only the last one written anyway.
    latest = {e.id: e for e in events if e.id}
    tasks.put(p, keys, [TaskRecord.from_event(e) for e in latest.values()])
    if own and events:
        p.execute()


@dataclass(frozen=True)
class Page:
    """One read of the stream."""

    events: list[TaskEvent]
    cursor: str  # pass it to the next read
    entries: int  # entries read, including skipped and unreadable ones
    count: int  # the most that were asked for

    @property
    def full(self) -> bool:
        """More may be waiting."""
        return self.entries >= self.count

    @property
    def behind(self) -> bool:
        """Entries after the cursor this page started from may have been trimmed unread
        (confirm with `trimmed_past`). Trimming keeps at least MIN_MAXLEN entries, all newer
        than anything it removed: had it removed one after the cursor, this read would have
        found at least min(count, MIN_MAXLEN) entries. Any page with fewer is proof enough,
        so a reader that keeps up never pays for the check."""
        return self.entries >= min(self.count, MIN_MAXLEN)


def read(
    client: redis.Redis, keys: Keys, cursor: str = START, count: int = 1000
) -> tuple[list[TaskEvent], str]:
    """Events after `cursor` (at most `count`), and the cursor to pass next time."""
    page = read_page(client, keys, cursor, count)
    return page.events, page.cursor


def read_page(
    client: redis.Redis,
    keys: Keys,
    cursor: str = START,
    count: int = 1000,
    *,
    skip: Collection[str] = (),
) -> Page:
    """The entries after `cursor`, at most `count`. Events whose type is in `skip` are passed
    over without being validated (a reader that ignores progress events pays for a JSON peek,
    not a model). An entry that cannot be parsed is logged and skipped, never raised: one bad
    entry must not stop the executor from seeing the rest."""
    reply = client.xread({keys.events(): cursor}, count=count)
    if not reply:
        return Page([], cursor, 0, count)
    events: list[TaskEvent] = []
    entries: Sequence[Any] = reply[0][1]  # type: ignore[index]
    for entry_id, fields in entries:
        cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        raw = fields.get(FIELD.encode()) or fields.get(FIELD) or b""
        try:
            if skip:
                data = orjson.loads(raw)
                if isinstance(data, dict) and data.get("type") in skip:
                    continue
                events.append(TaskEvent.from_dict(data))
            else:
                events.append(TaskEvent.parse(raw))
        except orjson.JSONDecodeError:
            log.warning("skipping unreadable event %s: not valid JSON", cursor)
        except SpecError as e:
            log.warning("skipping unreadable event %s: %s", cursor, e)
    return Page(events, cursor, len(entries), count)


def latest(client: redis.Redis, keys: Keys) -> str:
    """The id of the newest entry ("0-0" when empty): a reader starting here sees only
    what is published from now on."""
    last = client.xrevrange(keys.events(), count=1)
    if not last:
        return START
    entry_id = last[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def trimmed_past(client: redis.Redis, keys: Keys, cursor: str) -> bool:
    """True when entries after `cursor` may have been trimmed away unread (the reader fell
    about `maxlen` events behind); the caller then reconciles from the tasks hash.

    A caught-up reader's cursor is the newest entry, which trimming never removes; so the
    cursor's own entry being gone (the first entry is newer) is the sign. It can say True
    when nothing between was lost; reconciling then is merely wasted work."""
    try:
        info = client.xinfo_stream(keys.events())
    except redis.ResponseError:  # no stream yet: nothing was trimmed
        return False
    if cursor == START:
        return int(info.get("entries-added", 0)) > int(info.get("length", 0))
    first = info.get("first-entry")
    return first is not None and _id_tuple(first[0]) > _id_tuple(cursor)


def _id_tuple(entry_id: str | bytes) -> tuple[int, int]:
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)

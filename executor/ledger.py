"""What the executor remembers about each queueing it submitted or adopted, keyed by id.

Only the executor's own queueings are here: events of other schedulers' tasks (the stream is
shared) find no entry and are ignored. The spec is kept until the task's container starts,
because only a task that has not started can be relaunched (see states.py); dropping it then
bounds memory by what is waiting, not by what runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubequeue.messages import TaskSpec

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey


@dataclass
class Entry:
    key: TaskInstanceKey
    spec: TaskSpec | None  # None once started, or when adopted after a restart
    log_path: str | None  # the workload's relative log file name, for notes in the task log
    started: bool = False
    relaunches: int = 0


class Ledger:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, queueing_id: object) -> bool:
        return queueing_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def add(self, queueing_id: str, entry: Entry) -> None:
        self._entries[queueing_id] = entry

    def get(self, queueing_id: str) -> Entry | None:
        return self._entries.get(queueing_id)

    def pop(self, queueing_id: str) -> Entry | None:
        return self._entries.pop(queueing_id, None)

    def mark_started(self, queueing_id: str) -> None:
        entry = self._entries.get(queueing_id)
        if entry is not None:
            entry.started = True
            entry.spec = None

    def ids_for(self, key: TaskInstanceKey) -> list[str]:
        """Every id tracked for one task instance: O(tracked), for the rare revoke only."""
        return [i for i, e in self._entries.items() if e.key == key]

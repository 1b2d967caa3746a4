"""The demo's closing table: one row per try — queue, pool, node, state, and how long each
start-up phase took, from the events stream (watcher and dispatcher clocks) and Airflow's
own queued time."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from rich.table import Table

from kubequeue import stream
from kubequeue.keys import Keys
from kubequeue.messages import EventType, TaskEvent

# Start-up phases as (column, from, to); "queued" is Airflow's queued_when for the try.
PHASES: tuple[tuple[str, str, EventType], ...] = (
    ("wait", "queued", EventType.DISPATCHED),  # in Airflow's executor and the RQ queue
    ("create", EventType.DISPATCHED, EventType.POD_CREATED),  # dispatcher's pod create
    ("sched", EventType.POD_CREATED, EventType.SCHEDULED),  # Kubernetes scheduler
    ("start", EventType.SCHEDULED, EventType.RUNNING),  # kubelet: pull, start containers
)
LEGEND = (
    "wait = Airflow queued → dispatcher took the spec (includes waiting for a free slot: the "
    "demo caps each pool's pods in flight with maxInFlight so 2 cores keep up); create = → pod "
    "seen; sched = → PodScheduled; start = → phase Running; start-up = queued → Running; "
    "run = Running → pod finished"
)


@dataclass
class TryRow:
    task: str  # task_id, with [map_index] when mapped
    try_number: int
    queue: str = ""
    pool: str = ""
    node: str = ""
    state: str = ""
    times: dict[str, float] = field(default_factory=dict)  # event type / "queued" -> epoch

    def span(self, start: str, end: str) -> float | None:
        a, b = self.times.get(start), self.times.get(end)
        return None if a is None or b is None else max(b - a, 0.0)

    @property
    def startup(self) -> float | None:
        return self.span("queued", EventType.RUNNING)

    @property
    def run(self) -> float | None:
        end = self.times.get(EventType.SUCCEEDED) or self.times.get(EventType.FAILED)
        start = self.times.get(EventType.RUNNING)
        return None if end is None or start is None else max(end - start, 0.0)


def all_events(client: redis.Redis, keys: Keys) -> list[TaskEvent]:
    events: list[TaskEvent] = []
    cursor = stream.START
    while True:
        batch, cursor = stream.read(client, keys, cursor, 1000)
        events.extend(batch)
        if len(batch) < 1000:
            return events


def build_rows(
    events: Iterable[TaskEvent], tries: Mapping[tuple[str, int, int], Mapping[str, Any]]
) -> list[TryRow]:
    """`tries`: (task_id, map_index, try_number) -> Airflow's record of that try."""
    by_try: dict[tuple[str, int, int], TryRow] = {}
    for event in events:
        if event.key is None:
            continue
        k = (event.key.task_id, event.key.map_index, event.key.try_number)
        row = by_try.get(k)
        if row is None:
            label = event.key.task_id + (f"[{k[1]}]" if k[1] >= 0 else "")
            row = by_try[k] = TryRow(label, k[2])
        row.queue, row.pool = event.queue or row.queue, event.pool or row.pool
        row.node = event.node or row.node
        row.times[event.type] = event.at  # a relaunch's later events win
    for k, row in by_try.items():
        airflow_try = tries.get(k) or {}
        row.state = str(airflow_try.get("state") or "")
        queued = _epoch(airflow_try.get("queued_when"))
        if queued is not None:
            row.times["queued"] = queued
    return sorted(by_try.values(), key=_order)


def _order(row: TryRow) -> tuple[float, str, int]:
    return (row.times.get("queued", float("inf")), row.task, row.try_number)


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def render(rows: Sequence[TryRow]) -> Table:
    table = Table(title="Tasks (one row per try)", header_style="bold", caption=LEGEND)
    for column in ("task", "try", "queue", "pool", "node", "state"):
        table.add_column(column, no_wrap=True, overflow="fold")
    for name, _, _ in PHASES:
        table.add_column(name, justify="right")
    table.add_column("start-up", justify="right", style="bold")
    table.add_column("run", justify="right")
    for r in rows:
        phases = [_s(r.span(a, b)) for _, a, b in PHASES]
        style = {"success": "green", "failed": "red", "up_for_retry": "yellow"}.get(r.state)
        state = f"[{style}]{r.state}[/]" if style else r.state
        table.add_row(r.task, str(r.try_number), r.queue, r.pool, r.node, state, *phases,
                      _s(r.startup), _s(r.run))  # fmt: skip
    return table


def summary(rows: Sequence[TryRow]) -> list[str]:
    """Median start-up per pool, and the slowest phase overall."""
    lines = []
    by_pool: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.startup is not None:
            by_pool[r.pool].append(r.startup)
    for pool, values in sorted(by_pool.items()):
        lines.append(
            f"pool {pool}: {len(values)} pods, start-up median {statistics.median(values):.1f}s, "
            f"max {max(values):.1f}s (queued in Airflow → pod Running)"
        )
    return lines

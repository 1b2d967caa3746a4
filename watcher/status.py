"""`kubequeue queues`: one screen showing how each Airflow queue is doing, read from Redis.

Per queue: specs waiting (RQ queue length) and the age of the oldest; tasks past the queue
(dispatched, pod pending, running) from the tasks hash; successes and failures among the
last `--tail` events of the stream, with the commonest failure reason; and the recent task
start-up latency (queued → running), p50/p95 of the last start-ups the watcher recorded.
Per pool: in-flight slots used of maxInFlight. Nothing here talks to Kubernetes.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import click
import redis
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kubequeue import inflight, settings, stream, tasks
from kubequeue import pools as pools_file
from kubequeue import queues as rq_queues
from kubequeue.errors import KubeQueueError
from kubequeue.keys import Keys
from kubequeue.messages import EventType, TaskEvent
from kubequeue.pools import PoolsConfig
from kubequeue.watcher.publisher import STARTUP_KEEP

sleep = time.sleep  # between --watch refreshes (a seam for tests)
PENDING_STATES = frozenset({"dispatched", "pod_created", "scheduled", "started", "requeued"})


@dataclass
class QueueRow:
    queue: str
    pool: str
    depth: int = 0
    oldest_age: float | None = None
    pending: int = 0  # past the queue, pod not running yet
    running: int = 0
    succeeded: int = 0  # among the stream's tail
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    startup: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        if not self.startup:
            return None
        if len(self.startup) == 1:
            return self.startup[0]
        return statistics.quantiles(self.startup, n=100, method="inclusive")[int(q) - 1]


@dataclass
class Snapshot:
    rows: list[QueueRow]
    slots: dict[str, tuple[int, int | None]]  # pool → (used, maxInFlight)
    tail: int
    taken_at: float


def collect(client: redis.Redis, keys: Keys, config: PoolsConfig, tail: int) -> Snapshot:
    now = time.time()
    rows = {q: QueueRow(q, p) for q, p in sorted(config.queues.items())}
    for row in rows.values():
        row.depth = rq_queues.depth(client, keys, row.queue)
        oldest = rq_queues.oldest_queued_at(client, keys, row.queue)
        row.oldest_age = None if oldest is None else max(now - oldest, 0.0)
        raw: list[Any] = client.lrange(keys.startup(row.queue), 0, STARTUP_KEEP - 1)
        row.startup = [float(x) for x in raw]
    for record in tasks.all_records(client, keys).values():
        found = rows.get(record.queue)
        if found is None or record.terminal:
            continue
        if record.state == EventType.RUNNING:
            found.running += 1
        elif record.state in PENDING_STATES:
            found.pending += 1
    for event in _tail(client, keys, tail):
        found = rows.get(event.queue)
        if found is None:
            continue
        if event.type is EventType.SUCCEEDED:
            found.succeeded += 1
        elif event.type is EventType.FAILED:
            found.failed += 1
            found.reasons[event.reason.value if event.reason else "Unknown"] += 1
    slots = {name: (inflight.count(client, keys, name), pool.max_in_flight)
             for name, pool in sorted(config.pools.items())}  # fmt: skip
    return Snapshot(list(rows.values()), slots, tail, now)


def _tail(client: redis.Redis, keys: Keys, count: int) -> list[TaskEvent]:
    """The last `count` events of the stream (unreadable entries skipped)."""
    entries: list[Any] = client.xrevrange(keys.events(), count=count)  # type: ignore[assignment]
    out: list[TaskEvent] = []
    for _, fields in entries:
        raw = fields.get(stream.FIELD.encode()) or fields.get(stream.FIELD)
        try:
            out.append(TaskEvent.parse(raw or b""))
        except KubeQueueError:
            continue
    return out


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.1f}s"
    return f"{value / 60:.1f}m"


def render(snap: Snapshot) -> Group:
    table = Table(title="kubequeue queues", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)  # fmt: skip
    for name, justify in [
        ("queue", "left"), ("pool", "left"), ("queued", "right"), ("oldest", "right"),
        ("pending", "right"), ("running", "right"), ("ok", "right"),
        ("failed", "right"), ("top failure", "left"), ("p50", "right"),
        ("p95", "right"), ("n", "right"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in snap.rows:
        top = ", ".join(f"{reason} {n}" for reason, n in r.reasons.most_common(1))
        table.add_row(
            r.queue, r.pool, str(r.depth), _seconds(r.oldest_age), str(r.pending),
            str(r.running), str(r.succeeded), Text(str(r.failed), style="red" if r.failed else ""),
            top or "-", _seconds(r.percentile(50)), _seconds(r.percentile(95)),
            str(len(r.startup)),
        )  # fmt: skip
    slots = "  ".join(
        f"{pool} {used}/{'∞' if cap is None else cap}" for pool, (used, cap) in snap.slots.items()
    )
    footer = Text(
        f"in-flight slots: {slots}\n"
        f"ok/failed: among the last {snap.tail} events; p50/p95: task start-up latency "
        f"(queued → running) of the last n ≤ {STARTUP_KEEP} start-ups; "
        f"{time.strftime('%H:%M:%S', time.localtime(snap.taken_at))}",
        style="dim",
    )
    return Group(table, footer)


@click.command("queues")
@click.option(
    "--redis-url",
    envvar="KUBEQUEUE_REDIS_URL",
    default=None,
    help=f"Redis/Valkey URL [default: {settings.DEFAULT_REDIS_URL}]",
)
@click.option(
    "--redis-prefix",
    envvar="KUBEQUEUE_REDIS_PREFIX",
    default=None,
    help="prefix of every Redis key [default: kubequeue]",
)
@click.option(
    "--pools",
    "pools_path",
    envvar="KUBEQUEUE_POOLS_FILE",
    default=None,
    help=f"pools file [default: {settings.DEFAULT_POOLS_FILE}]",
)
@click.option("--watch", "watch_", is_flag=True, help="refresh until interrupted (Ctrl-C)")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="seconds between refreshes with --watch",
)
@click.option("--tail", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="how many recent events to count successes and failures in")  # fmt: skip
def queues_command(
    redis_url: str | None,
    redis_prefix: str | None,
    pools_path: str | None,
    watch_: bool,
    interval: float,
    tail: int,
) -> None:
    """Show each queue's depth, in-flight pods, failures and start-up latency."""
    try:
        s = settings.Settings.from_env(redis_url=redis_url, redis_prefix=redis_prefix,
                                       pools_file=pools_path)  # fmt: skip
        config = pools_file.load(s.pools_file)
        client = s.redis()
        settings.ping_redis(client, s.redis_url)
    except KubeQueueError as e:
        raise click.ClickException(str(e)) from e
    console = Console()
    if not watch_:
        console.print(_screen(client, s.keys, config, tail))
        return
    try:
        with Live(_screen(client, s.keys, config, tail), console=console,
                  auto_refresh=False) as live:  # fmt: skip
            while True:
                sleep(interval)
                live.update(_screen(client, s.keys, config, tail), refresh=True)
    except KeyboardInterrupt:
        pass


def _screen(client: redis.Redis, keys: Keys, config: PoolsConfig, tail: int) -> Any:
    try:
        return render(collect(client, keys, config, tail))
    except (redis.ConnectionError, redis.TimeoutError) as e:
        return Text(f"Redis does not answer: {e}; retrying", style="bold red")


queues = queues_command  # the name kubequeue.cli registers

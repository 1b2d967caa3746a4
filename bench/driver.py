"""The loop that plays the Airflow scheduler, shared by every executor under test.

A driver runs in a process of its own (the "scheduler process"): it hands each task to the
executor when the phase says it is queued (`queue_workload`, stamping that moment), then calls
`heartbeat()` as the scheduler loop does — back to back (tight) or one every `loop_ms`
(paced). It times every heartbeat and counts the process CPU spent inside the executor's
calls (`time.process_time`, which covers every thread of this process and nothing of the
simulator's or the dispatchers'). A phase ends when the simulator has seen every task's pod
Running; the driver then keeps heartbeating, unmeasured, until the executor has let go of every
task and the cluster is empty, so the next phase starts clean.
"""

from __future__ import annotations

import bisect
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from kubequeue.bench.plan import Phase, System, arrival_offsets
from kubequeue.bench.simproc import CREATED, DELETED, RUNNING, Counters

LADDER_IDLE_SECONDS = 1.0
DRAIN_TIMEOUT = 120.0


class SchedulerSide(Protocol):
    """What a driver needs of an executor under test."""

    def prepare(self, phase: Phase) -> None:
        """Build the phase's workloads ahead of time (not measured: a scheduler builds them
        the same way for every executor)."""
        ...

    def queue(self, phase: Phase, indices: Sequence[int]) -> None: ...

    def heartbeat(self) -> None: ...

    def busy(self) -> int:
        """Tasks the executor still tracks (queued or running)."""
        ...

    def helper_cpu(self) -> float:
        """CPU seconds so far of processes the executor starts beside the scheduler."""
        ...

    def close(self) -> None: ...


@dataclass
class PhaseResult:
    system: str
    phase: str
    tasks: int
    queued_at: list[float]  # epoch seconds per task index; 0.0 = never queued
    heartbeat_ms: list[float]
    cpu_s: float  # scheduler-process CPU inside queue_workload/heartbeat calls
    wall_s: float
    complete: bool
    helper_cpu_s: float = 0.0  # CPU of the executor's helper processes during the phase
    levels: dict[int, dict[str, float]] = field(default_factory=dict)  # ladder only
    note: str = ""


@dataclass
class _Clock:
    """Times heartbeats and sums the CPU spent inside the executor's calls."""

    heartbeat_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    @property
    def elapsed_s(self) -> float:
        return sum(self.heartbeat_ms) / 1000.0

    def call(self, fn: Callable[[], None], timed: bool) -> None:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t1, c1 = time.perf_counter(), time.process_time()
        self.cpu_s += c1 - c0
        if timed:
            self.heartbeat_ms.append((t1 - t0) * 1000.0)


def _pace(started: float, loop_ms: float) -> None:
    if loop_ms > 0:
        left = started + loop_ms / 1000.0 - time.perf_counter()
        if left > 0:
            time.sleep(left)


def run_flow(
    side: SchedulerSide, system: str, phase: Phase, counters: Counters, timeout: float
) -> PhaseResult:
    """A burst or open-loop phase: queue on schedule, heartbeat, stop when all run."""
    offsets = arrival_offsets(phase)
    queued_at = [0.0] * phase.tasks
    clock = _Clock()
    base = counters[RUNNING]
    t0 = time.time()
    deadline = t0 + timeout
    nxt = 0
    while True:
        started = time.perf_counter()
        now = time.time()
        due = bisect.bisect_right(offsets, now - t0)
        if due > nxt:
            _queue_stamped(side, clock, phase, range(nxt, due), queued_at)
            nxt = due
        clock.call(side.heartbeat, timed=True)
        done = counters[RUNNING] - base >= phase.tasks
        if done or time.time() > deadline:
            break
        _pace(started, phase.loop_ms)
    return PhaseResult(
        system, phase.name, phase.tasks, queued_at, clock.heartbeat_ms, clock.cpu_s,
        time.time() - t0, done, note="" if done else f"timed out after {timeout:.0f}s",
    )  # fmt: skip


def run_ladder(
    side: SchedulerSide, system: str, phase: Phase, counters: Counters, timeout: float
) -> PhaseResult:
    """Add long-running tasks until each level is in flight; at each level time heartbeats
    idle for a second, then while a batch of short tasks starts (phase.busy_at(level))."""
    queued_at = [0.0] * phase.total
    clock = _Clock()
    base = counters[RUNNING]
    t0 = time.time()
    deadline = t0 + timeout
    levels: dict[int, dict[str, float]] = {}
    placed = 0  # long-running tasks queued so far
    busy_next = phase.tasks  # index of the next short task
    complete = True
    for level in phase.levels:
        _queue_stamped(side, clock, phase, range(placed, level), queued_at)
        placed = level
        # the running counter is cumulative: earlier levels' short tasks count too
        started = level + busy_next - phase.tasks
        if not _heartbeat_until(side, clock, counters, base + started, deadline, timed=False):
            complete = False
            break
        batch = range(busy_next, busy_next + phase.busy_at(level))
        busy_next = batch.stop
        idle, busy = _Clock(), _Clock()
        while len(idle.heartbeat_ms) < 20 or idle.elapsed_s < LADDER_IDLE_SECONDS:
            idle.call(side.heartbeat, timed=True)
        _queue_stamped(side, busy, phase, batch, queued_at)
        ok = _heartbeat_until(side, busy, counters, base + started + len(batch), deadline, True)
        levels[level] = _level_figures(idle, busy, len(batch))
        clock.cpu_s += idle.cpu_s + busy.cpu_s
        clock.heartbeat_ms += idle.heartbeat_ms + busy.heartbeat_ms
        if not ok:
            complete = False
            break
    return PhaseResult(
        system, phase.name, phase.total, queued_at, clock.heartbeat_ms, clock.cpu_s,
        time.time() - t0, complete, levels=levels, note="" if complete else "timed out",
    )  # fmt: skip


def _queue_stamped(
    side: SchedulerSide,
    clock: _Clock,
    phase: Phase,
    batch: range,
    queued_at: list[float],
) -> None:
    if not batch:
        return
    now = time.time()
    for i in batch:
        queued_at[i] = now
    clock.call(lambda: side.queue(phase, batch), timed=False)


def _heartbeat_until(
    side: SchedulerSide,
    clock: _Clock,
    counters: Counters,
    running: int,
    deadline: float,
    timed: bool,
) -> bool:
    while counters[RUNNING] < running:
        if time.time() > deadline:
            return False
        clock.call(side.heartbeat, timed=timed)
    return True


def _level_figures(idle: _Clock, busy: _Clock, n_busy: int) -> dict[str, float]:
    def q(values: list[float], p: float) -> float:
        if len(values) < 2:
            return values[0] if values else 0.0
        return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]

    return {
        "idle_ms_mean": statistics.fmean(idle.heartbeat_ms),
        "idle_ms_p99": q(idle.heartbeat_ms, 99),
        "idle_heartbeats": float(len(idle.heartbeat_ms)),
        "busy_ms_mean": statistics.fmean(busy.heartbeat_ms) if busy.heartbeat_ms else 0.0,
        "busy_ms_p99": q(busy.heartbeat_ms, 99),
        # the heartbeat that hands the batch over (KE: builds and creates its pods)
        "busy_ms_max": max(busy.heartbeat_ms, default=0.0),
        "busy_heartbeats": float(len(busy.heartbeat_ms)),
        "busy_tasks": float(n_busy),
        "busy_cpu_ms_per_task": busy.cpu_s * 1000.0 / max(1, n_busy),
        "idle_cpu_ms_per_heartbeat": idle.cpu_s * 1000.0 / max(1, len(idle.heartbeat_ms)),
    }


def drain(side: SchedulerSide, counters: Counters, loop_ms: float) -> bool:
    """Heartbeat (unmeasured) until the executor tracks nothing and every pod is gone."""
    deadline = time.time() + DRAIN_TIMEOUT
    while time.time() < deadline:
        started = time.perf_counter()
        side.heartbeat()
        if side.busy() == 0 and counters[CREATED] == counters[DELETED]:
            return True
        _pace(started, max(loop_ms, 10.0))
    return False


def phase_timeout(phase: Phase, timeout: float) -> float:
    """The phase's time limit: `timeout`, or more for big phases (at least 20 tasks/s)."""
    return max(timeout, phase.total / 20.0)


def become_scheduler(workdir: Path) -> None:
    """Set up a driver process like a scheduler's: its output (and its children's) goes to
    a file, so the executors' logging does not garble the progress display, and processes it
    starts are forked, as Airflow's scheduler forks them on Linux (the driver itself was
    spawned, and spawned processes spawn their own children by default)."""
    multiprocessing.set_start_method("fork", force=True)
    path = workdir / "driver.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(side: SchedulerSide, system: System, counters: Counters, conn: Connection,
          timeout: float) -> None:  # fmt: skip
    """Run the system's phases one by one as the orchestrator says "go"; send each result."""
    try:
        for phase in system.phases:
            side.prepare(phase)
            conn.send(("prepared", phase.name))
            if conn.recv() != "go":
                return
            run = run_ladder if phase.ladder else run_flow
            helpers = side.helper_cpu()
            result = run(side, system.name, phase, counters, phase_timeout(phase, timeout))
            result.helper_cpu_s = side.helper_cpu() - helpers
            conn.send(("result", result))
            if not phase.ladder:
                drained = drain(side, counters, phase.loop_ms)
                conn.send(("drained", drained))
    finally:
        side.close()

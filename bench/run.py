"""Run every system of the plan, one after the other, each on a fresh simulated cluster.

For each system: start the simulator (its own process, same settings every time), start
kubequeue's fleet when the system is kubequeue, spawn the driver process that plays the
scheduler, then run the phases in order. Between "go" and the phase's result the orchestrator
only reads the simulator's shared counters (for the progress display) and samples the CPU and
memory of the simulator and of kubequeue's processes; it does no work of its own that could
disturb the measurement.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from kubequeue.bench import measure
from kubequeue.bench.driver import PhaseResult, phase_timeout
from kubequeue.bench.plan import POOL_OF_QUEUE, WARMUP, Phase, Settings, System
from kubequeue.bench.simproc import CREATED, RUNNING, SimProcess, SimSettings, group_by_dag
from kubequeue.errors import KubeQueueError

POLL = 0.1  # seconds between progress reads


class Sink(Protocol):
    """Where progress goes (the CLI's rich display, or nothing)."""

    def phase_started(self, system: str, phase: str, total: int) -> None: ...

    def progress(self, created: int, running: int) -> None: ...

    def phase_done(self, system: str, phase: str, figures: dict[str, Any]) -> None: ...

    def message(self, text: str) -> None: ...


class QuietSink:
    def phase_started(self, system: str, phase: str, total: int) -> None:
        pass

    def progress(self, created: int, running: int) -> None:
        pass

    def phase_done(self, system: str, phase: str, figures: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class Usage:
    """CPU seconds and RSS of a set of processes, read with psutil."""

    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)

    @classmethod
    def read(cls, groups: dict[str, list[int]]) -> Usage:
        usage = cls()
        for name, pids in groups.items():
            cpu = rss = 0.0
            for pid in pids:
                try:
                    proc = psutil.Process(pid)
                    t = proc.cpu_times()
                    cpu += t.user + t.system
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            usage.cpu[name], usage.rss[name] = cpu, rss
        return usage


def _driver_target(system: System) -> Callable[..., None]:
    if system.kind == "limit":
        from kubequeue.bench import limit

        return limit.main
    if system.kind == "ke":
        from kubequeue.bench import ke_driver

        return ke_driver.main
    from kubequeue.bench import kq_driver

    return kq_driver.main


def _recv(conn: Any, proc: Any, want: str, timeout: float, on_wait: Callable[[], None]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(POLL):
            try:
                kind, value = conn.recv()
            except EOFError:
                break  # the driver exited: say so below
            if kind != want:
                raise KubeQueueError(f"driver sent {kind!r} while {want!r} was expected")
            return value
        if not proc.is_alive():
            break
        on_wait()
    if not proc.is_alive():
        proc.join(5)
        raise KubeQueueError(
            f"the driver process exited (code {proc.exitcode}) before sending {want!r}; "
            "its log is driver.log in the system's working directory (see --keep)"
        )
    raise KubeQueueError(f"no {want!r} from the driver within {timeout:.0f}s")


def run_system(
    system: System, settings: Settings, root: Path, sink: Sink, airflow_db: Path | None = None
) -> dict[str, Any]:
    """Every phase of one system; returns {phase: figures}."""
    workdir = root / system.name
    workdir.mkdir(parents=True)
    sim = SimProcess(
        SimSettings(
            pools=tuple(sorted(set(POOL_OF_QUEUE.values()))),
            nodes_per_pool=settings.nodes_per_pool,
            max_pods_per_node=settings.max_pods_per_node,
            api_latency_ms=settings.api_latency_ms,
        ),
        str(workdir),
    )
    fleet = None
    proc = None
    try:
        extra: tuple[str, ...] = (str(airflow_db),) if system.kind == "ke" else ()
        groups = {"sim": [sim.info.pid]}
        if system.kind == "kubequeue":
            from kubequeue.bench import kq_driver

            sink.message(
                f"{system.name}: starting Redis, a watcher, {system.replicas} dispatcher(s)"
            )
            fleet = kq_driver.start_fleet(system, settings, sim.info, workdir)
            extra = (fleet.redis.url, str(fleet.pools_file), str(airflow_db or ""))
            groups |= fleet.pids()
        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe()
        proc = ctx.Process(
            target=_driver_target(system),
            args=(system, settings, sim.info, str(workdir), sim.counters, child, *extra),
            name=f"bench-{system.name}",
        )
        proc.start()
        child.close()
        groups["scheduler"] = [proc.pid or 0]
        results = {}
        for phase in system.phases:
            results[phase.name] = _run_phase(system, phase, settings, sim, conn, proc, groups, sink)
        pods = group_by_dag(sim.take())
        results.pop(WARMUP, None)
        for phase in system.phases:
            if phase.name == WARMUP:
                continue
            raw = results[phase.name]
            results[phase.name] = _figures(raw, pods.get(phase.dag_id, []))
            sink.phase_done(system.name, phase.name, results[phase.name])
        proc.join(30)
        return results
    finally:
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(10)
        if fleet is not None:
            fleet.stop()
        sim.stop()


def _run_phase(
    system: System,
    phase: Phase,
    settings: Settings,
    sim: SimProcess,
    conn: Any,
    proc: Any,
    groups: dict[str, list[int]],
    sink: Sink,
) -> dict[str, Any]:
    noop: Callable[[], None] = lambda: None  # noqa: E731
    _recv(conn, proc, "prepared", 300.0, noop)
    base = sim.snapshot()
    sink.phase_started(system.name, phase.name, phase.total)
    before, t0 = Usage.read(groups), time.monotonic()
    rss_start = before.rss.get("dispatcher", 0.0)
    conn.send("go")

    def tick() -> None:
        now = sim.snapshot()
        sink.progress(now[CREATED] - base[CREATED], now[RUNNING] - base[RUNNING])

    limit = phase_timeout(phase, settings.phase_timeout) + 60
    result: PhaseResult = _recv(conn, proc, "result", limit, tick)
    tick()
    after, wall = Usage.read(groups), time.monotonic() - t0
    if not phase.ladder and not _recv(conn, proc, "drained", 300.0, noop):
        sink.message(f"{system.name}/{phase.name}: the cluster did not drain in time")
    return {
        "result": result,
        "wall_s": wall,
        "cpu_s": {k: after.cpu[k] - before.cpu.get(k, 0.0) for k in after.cpu},
        "rss_start": rss_start,
        "rss_end": after.rss.get("dispatcher", 0.0),
    }


def _figures(raw: dict[str, Any], pods: list[Any]) -> dict[str, Any]:
    result: PhaseResult = raw["result"]
    figures = measure.phase_figures(
        result.queued_at, pods, result.heartbeat_ms, result.cpu_s, result.helper_cpu_s
    )
    n = max(1, figures["tasks"])
    wall = max(raw["wall_s"], 1e-9)
    cpu = raw["cpu_s"]
    figures.update(
        complete=result.complete,
        note=result.note,
        wall_s=wall,
        sim_cpu_share=cpu.get("sim", 0.0) / wall,  # cores the simulator used
        sim_cpu_ms_per_task=cpu.get("sim", 0.0) * 1000.0 / n,
        fleet_cpu_ms_per_task={
            k: v * 1000.0 / n for k, v in cpu.items() if k in ("dispatcher", "watcher", "redis")
        },
        dispatcher_rss_mib={"start": raw["rss_start"] / 2**20, "end": raw["rss_end"] / 2**20},
    )
    if result.levels:
        figures["levels"] = {str(k): v for k, v in result.levels.items()}
    return figures


def run_all(
    settings: Settings, plan: list[System], sink: Sink, keep: Path | None = None
) -> dict[str, Any]:
    """Run every system; working files (logs of every process, kubeconfigs, pools file,
    templates) go to a temporary directory, or to `keep` to look at them afterwards."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kubequeue-bench-") as tmp:
        root = Path(tmp)
        if keep is not None:
            root = keep
            root.mkdir(parents=True)
        airflow_db = None
        if any(s.kind != "limit" for s in plan):
            from kubequeue.bench.ke_driver import migrate_db

            sink.message("preparing an Airflow database for the executors")
            airflow_db = migrate_db(root)
        for system in plan:
            started = time.monotonic()
            results[system.name] = run_system(system, settings, root, sink, airflow_db)
            sink.message(f"{system.name}: done in {time.monotonic() - started:.0f}s")
    return results

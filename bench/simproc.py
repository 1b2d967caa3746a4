"""The simulated cluster in a process of its own, with a recorder on its store.

Every system under test talks HTTP to the same kind of simulator, started fresh for it with
the same settings. Running it in its own process keeps its CPU out of the process that plays
the scheduler (whose CPU per task is one of the figures) and off that process's GIL.

The recorder is a store listener, so it runs synchronously inside the simulator's event loop
as each change is stored: `created` is when the API server stored the pod (the create request
has arrived and been accepted), `running` when the kubelet set phase Running, `finished` when
it set Succeeded/Failed. A pod's creationTimestamp has only second precision; these are
`time.time()` floats. Four shared counters (created, running, finished, deleted) let the
orchestrator and the drivers follow progress without a round trip.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kubequeue.errors import KubeQueueError

CREATED, RUNNING, FINISHED, DELETED = range(4)
Counters = Any  # multiprocessing.Array("q", 4): typed loosely, mp's stubs are not generic here


# The kubelet's stages for every benchmark pod: the `general` profile's lifecycle with its
# jitter and image pulls taken out, so every system sees the same fixed delays from binding
# to Running (admit 20 ms, sandbox 200 ms, container start 100 ms = 320 ms) and every task
# runs for its kubequeue.io/sim-duration annotation.
BENCH_PROFILE = """
stages:
  - name: admit
    selector: {phase: Pending, container: none, deleting: false}
    delay: 20ms
    next: {admit: true, sandbox: false, containers: {state: waiting, reason: ContainerCreating}}
  - name: sandbox
    selector:
      container: 'waiting:ContainerCreating'
      condition.PodReadyToStartContainers: 'False'
      deleting: false
    delay: 200ms
    next: {sandbox: true}
  - name: start
    selector:
      container: 'waiting:ContainerCreating'
      condition.PodReadyToStartContainers: 'True'
      deleting: false
    delay: 100ms
    next: {containers: {state: running}}
  - name: complete
    kubelet: timed
    selector: {container: running, deleting: false}
    delay: {annotation: kubequeue.io/sim-duration, default: 2s}
    next: {containers: {state: terminated, exit_code: 0, reason: Completed}}
  - name: kill
    kubelet: timed
    selector: {deleting: true, container: running}
    delay: 50ms
    next: {containers: {state: terminated, exit_code: 143, reason: Error}}
  - name: kill-waiting
    selector: {deleting: true, phase: Pending}
    delay: 0
    next: {containers: {state: terminated, exit_code: 137, reason: ContainerStatusUnknown}}
  - name: remove
    selector: {deleting: true, phase: [Succeeded, Failed]}
    delay: 0
    next: {delete: true}
"""
PROFILE_DELAYS_MS = {"admit": 20, "sandbox": 200, "start": 100}


@dataclass(frozen=True)
class SimSettings:
    pools: tuple[str, ...]
    nodes_per_pool: int
    max_pods_per_node: int
    api_latency_ms: float = 0.0
    seed: int = 1


@dataclass(frozen=True)
class SimInfo:
    url: str
    kubeconfig: str
    context: str
    pid: int


@dataclass(frozen=True)
class PodTimes:
    """What the recorder saw of one task's pod. Times are epoch seconds, 0.0 = not seen."""

    dag_id: str
    index: int
    created: float
    running: float
    finished: float
    dispatched: float = 0.0  # kubequeue pods: when a dispatcher claimed the task


DISPATCHED_AT = "kubequeue.io/dispatched-at"


def annotation_time(annotations: dict[str, str] | None, name: str) -> float:
    """An RFC 3339 annotation (kubequeue writes microseconds) as epoch seconds; 0.0 if absent
    or unreadable."""
    raw = (annotations or {}).get(name)
    if not raw:
        return 0.0
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def task_ref(labels: dict[str, str] | None, annotations: dict[str, str] | None) -> tuple[str, int]:
    """(dag_id, map_index) of a benchmark pod, from its labels or annotations; ("", -1) for
    pods that are not benchmark tasks. Annotations carry the raw values (labels may be cut)."""
    for source in (annotations or {}, labels or {}):
        dag_id, index = source.get("dag_id"), source.get("map_index")
        if dag_id and index is not None:
            try:
                return dag_id, int(index)
            except ValueError:
                continue
    return "", -1


class Recorder:
    """Store listener: one list [created, running, finished, labels, annotations] per pod."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.pods: dict[str, list[Any]] = {}

    def __call__(self, kind: str, resource: str, obj: dict) -> None:
        if resource != "pods":
            return
        meta = obj["metadata"]
        uid = meta.get("uid", "")
        now = time.time()
        if kind == "ADDED":
            self.pods[uid] = [now, 0.0, 0.0, meta.get("labels"), meta.get("annotations")]
            self.counters[CREATED] += 1
            return
        rec = self.pods.get(uid)
        if rec is None:
            return
        if kind == "DELETED":
            self.counters[DELETED] += 1
            return
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Running" and not rec[1]:
            rec[1] = now
            self.counters[RUNNING] += 1
        elif phase in ("Succeeded", "Failed") and not rec[2]:
            rec[2] = now
            self.counters[FINISHED] += 1

    def take(self) -> list[PodTimes]:
        pods, self.pods = self.pods, {}
        out = []
        for created, running, finished, labels, annots in pods.values():
            dag_id, index = task_ref(labels, annots)
            if index >= 0:
                dispatched = annotation_time(annots, DISPATCHED_AT)
                out.append(PodTimes(dag_id, index, created, running, finished, dispatched))
        return out


def _serve(settings: SimSettings, workdir: str, counters: Counters, conn: Connection) -> None:
    """Child process: start the simulator, attach the recorder, answer the parent's requests."""
    from kubequeue.sim import SimConfig, start
    from kubequeue.sim.cluster import NodePool
    from kubequeue.sim.faults import FaultConfig

    profile = Path(workdir) / "bench-profile.yaml"
    profile.write_text(BENCH_PROFILE)
    pools = tuple(
        NodePool(
            name,
            settings.nodes_per_pool,
            cpu="1000",
            memory="4000Gi",
            max_pods=settings.max_pods_per_node,
            profile=str(profile),
        )
        for name in settings.pools
    )
    config = SimConfig(
        pools=pools,
        seed=settings.seed,
        faults=FaultConfig(latency=settings.api_latency_ms / 1000.0),
    )
    sim = start(config, kubeconfig=Path(workdir) / "kubeconfig")
    recorder = Recorder(counters)
    # The store belongs to the simulator's event loop: touch it only from there.
    sim.call(lambda: sim.store.add_listener(recorder))
    conn.send(SimInfo(sim.url, str(sim.kubeconfig), sim.context, mp.current_process().pid or 0))
    try:
        while True:
            request = conn.recv()
            if request == "take":
                conn.send(sim.call(recorder.take, timeout=120.0))
            elif request == "stop":
                break
    except EOFError:
        pass  # the parent went away: stop too
    finally:
        sim.stop()
        conn.close()


class SimProcess:
    """Start with `SimProcess(settings, workdir)`, read `.info` and `.counters`, call
    `take()` for the recorded pods and `stop()` at the end (also on errors)."""

    def __init__(self, settings: SimSettings, workdir: str, start_timeout: float = 30.0) -> None:
        ctx = mp.get_context("spawn")
        self.counters: Counters = ctx.Array("q", 4, lock=False)
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(settings, workdir, self.counters, child), name="bench-sim"
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(start_timeout):
            self.stop()
            raise KubeQueueError(f"the simulated cluster did not start within {start_timeout}s")
        try:
            self.info: SimInfo = self._conn.recv()
        except EOFError:
            self.stop()
            raise KubeQueueError("the simulated cluster exited at start (see its output)") from None

    def snapshot(self) -> tuple[int, int, int, int]:
        c = self.counters
        return (c[CREATED], c[RUNNING], c[FINISHED], c[DELETED])

    def take(self) -> list[PodTimes]:
        self._conn.send("take")
        times: list[PodTimes] = self._conn.recv()
        return times

    def stop(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send("stop")
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()


def group_by_dag(times: Sequence[PodTimes]) -> dict[str, list[PodTimes]]:
    out: dict[str, list[PodTimes]] = {}
    for t in times:
        out.setdefault(t.dag_id, []).append(t)
    return out

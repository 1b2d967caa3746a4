"""The limit: the same pods created as fast as the simulated API server accepts them.

No queue, no executor: one process with an asyncio HTTP client keeps `CONCURRENCY` create
requests in flight (a pool of concurrent clients) with pod bodies serialised before the
phase starts. In a burst every task is "queued" at the start; at a rate, task i is queued at
start + i/rate and its create is sent at that moment. What this reaches is the ceiling that
any system driving this simulator on this machine can reach.
"""

from __future__ import annotations

import asyncio
import json
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

from kubequeue.bench import driver
from kubequeue.bench.driver import PhaseResult
from kubequeue.bench.plan import Phase, Settings, System, arrival_offsets, assign_queues
from kubequeue.bench.pods import NAMESPACE, limit_pod, workload_json_stub
from kubequeue.bench.simproc import FINISHED, RUNNING, Counters, SimInfo

CONCURRENCY = 64


def bodies(phase: Phase, settings: Settings) -> list[bytes]:
    queues = assign_queues(phase.total, settings.mix)
    out = []
    for i, queue in enumerate(queues):
        arg = workload_json_stub(phase.dag_id, f"t_{queue}", i)
        pod = limit_pod(phase.dag_id, queue, i, phase.seconds_of(i), arg)
        out.append(json.dumps(pod).encode())
    return out


async def _create_all(
    url: str, phase: Phase, payloads: list[bytes], queued_at: list[float], counters: Counters,
    timeout: float,
) -> bool:  # fmt: skip
    endpoint = f"{url}/api/v1/namespaces/{NAMESPACE}/pods"
    offsets = arrival_offsets(phase)
    todo: asyncio.Queue[int] = asyncio.Queue()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    headers = {"Content-Type": "application/json"}
    base = counters[RUNNING]
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while True:
                i = await todo.get()
                async with session.post(endpoint, data=payloads[i], headers=headers) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        raise RuntimeError(f"limit run: create answered {resp.status}")
                todo.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        t0 = time.time()
        for i, offset in enumerate(offsets):
            wait = t0 + offset - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            queued_at[i] = t0 + offset
            todo.put_nowait(i)
        await todo.join()
        for w in workers:
            w.cancel()
        deadline = t0 + timeout
        while counters[RUNNING] - base < phase.total and time.time() < deadline:
            await asyncio.sleep(0.02)
    return counters[RUNNING] - base >= phase.total


def run_phase(
    system: System, phase: Phase, settings: Settings, sim: SimInfo, counters: Counters,
    payloads: list[bytes],
) -> PhaseResult:  # fmt: skip
    queued_at = [0.0] * phase.total
    c0, t0 = time.process_time(), time.time()
    ok = asyncio.run(
        _create_all(
            sim.url,
            phase,
            payloads,
            queued_at,
            counters,
            driver.phase_timeout(phase, settings.phase_timeout),
        )
    )
    return PhaseResult(
        system.name, phase.name, phase.total, queued_at, [], time.process_time() - c0,
        time.time() - t0, ok, note="" if ok else "timed out",
    )  # fmt: skip


def _wait_finished(counters: Counters, target: int, timeout: float = 120.0) -> bool:
    deadline = time.time() + timeout
    while counters[FINISHED] < target:
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def main(
    system: System,
    settings: Settings,
    sim: SimInfo,
    workdir: str,
    counters: Counters,
    conn: Connection,
) -> None:
    """Process entry point, speaking the same protocol as the executor drivers."""
    driver.become_scheduler(Path(workdir))
    for phase in system.phases:
        payloads = bodies(phase, settings)
        conn.send(("prepared", phase.name))
        if conn.recv() != "go":
            return
        finished_before = counters[FINISHED]
        result = run_phase(system, phase, settings, sim, counters, payloads)
        conn.send(("result", result))
        # Nobody deletes these pods; wait until they have run so the next phase starts
        # on an idle cluster.
        conn.send(("drained", _wait_finished(counters, finished_before + phase.total)))

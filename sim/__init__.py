"""`kubequeue sim`: a simulated Kubernetes cluster (API server, scheduler, kubelet).

In process (tests, tools)::

    from kubequeue import sim
    with sim.running(sim.SimConfig()) as cluster:
        ...  # cluster.url, cluster.kubeconfig, cluster.context

The simulator runs in its own thread and event loop; `Sim.call(fn)` runs `fn` in that loop
(the store is not thread-safe: read it only through `call`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubequeue.sim import kubeconfig as _kubeconfig
from kubequeue.sim.config import SimConfig
from kubequeue.sim.faults import FaultConfig
from kubequeue.sim.server import Running, boot, shutdown
from kubequeue.sim.store import Store

__all__ = ["FaultConfig", "Sim", "SimConfig", "running", "start", "write_kubeconfig"]

T = TypeVar("T")
START_TIMEOUT = 10.0
# Full (generation 2) collections 100x rarer than CPython's default: they walk every object
# alive, and with 10,000 pods in the store they took ~40 % of the loop's CPU while finding
# nothing to free (pods are trees of dicts, not cycles). Young collections stay as they are.
GC_THRESHOLDS = (700, 10, 1000)


def tune_gc(freeze: bool = False) -> None:
    """Process-wide garbage-collector settings for a process that serves a simulator.
    `freeze` also moves everything alive now (modules, the booted server) out of the
    collector's sight for good: only for the `kubequeue sim` process, not for a test run
    that starts many simulators (frozen cycles are never freed)."""
    gc.set_threshold(*GC_THRESHOLDS)
    if freeze:
        gc.collect()
        gc.freeze()


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (about a third faster here), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


@dataclass
class Sim:
    """A running simulator (its own thread and event loop)."""

    url: str
    kubeconfig: Path
    context: str
    config: SimConfig
    _running: Running
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _tmpdir: tempfile.TemporaryDirectory | None = None
    _stopped: bool = field(default=False)

    @property
    def store(self) -> Store:
        return self._running.api.store

    @property
    def cluster(self) -> Any:
        return self._running.api.cluster

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` inside the simulator's loop and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def set_faults(self, **changes: Any) -> FaultConfig:
        faults = self._running.api.faults

        def apply() -> FaultConfig:
            faults.config = faults.config.replace(**changes)
            return faults.config

        return self.call(apply)

    def compact(self) -> None:
        self.call(self.store.compact)

    def drop_watches(self) -> int:
        return self.call(self._running.api.hub.drop_all)

    def set_node_ready(self, node: str, ready: bool) -> None:
        from kubequeue.sim import admin

        self.call(lambda: admin.set_node_ready(self._running.api, node, ready))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        future = asyncio.run_coroutine_threadsafe(shutdown(self._running), self._loop)
        try:
            future.result(START_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT)
            if self._tmpdir is not None:
                self._tmpdir.cleanup()


def start(config: SimConfig | None = None, kubeconfig: Path | None = None) -> Sim:
    """Start a simulator in a background thread; returns once it listens."""
    config = config or SimConfig()
    loop = new_loop()
    booted: concurrent.futures.Future[Running] = concurrent.futures.Future()

    def main() -> None:
        tune_gc()
        asyncio.set_event_loop(loop)

        async def go() -> None:
            try:
                booted.set_result(await boot(config))
            except BaseException as e:
                booted.set_exception(e)

        loop.create_task(go())
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=main, name=f"kubequeue-sim-{config.context}", daemon=True)
    thread.start()
    try:
        run = booted.result(START_TIMEOUT)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)
        raise
    tmpdir = None
    if kubeconfig is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="kubequeue-sim-")
        kubeconfig = Path(tmpdir.name) / "kubeconfig"
    _kubeconfig.write(kubeconfig, [(config.context, run.url)])
    return Sim(run.url, Path(kubeconfig), config.context, config, run, loop, thread, tmpdir)


@contextlib.contextmanager
def running(config: SimConfig | None = None, kubeconfig: Path | None = None) -> Iterator[Sim]:
    sim = start(config, kubeconfig)
    try:
        yield sim
    finally:
        sim.stop()


def write_kubeconfig(path: Path, sims: Sequence[Sim], current: str | None = None) -> None:
    """One kubeconfig with a context per simulator (for multi-cluster setups)."""
    _kubeconfig.write(path, [(s.context, s.url) for s in sims], current)

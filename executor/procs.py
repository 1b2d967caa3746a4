"""Start, health-check and stop groups of local processes (the demo and the e2e tests).

Each process runs in its own session (process group), with stdout+stderr in a log file, so
that stopping it also stops whatever it started (task processes of the simulated kubelet,
Airflow's gunicorn/uvicorn workers). `Processes` stops everything it started, newest first,
SIGTERM then SIGKILL after a grace period, whatever way its `with` block is left (Ctrl-C
included). Waits poll a condition and fail fast, with the tail of the log, when the process
they wait for has died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kubequeue.errors import KubeQueueError


class ProcessError(KubeQueueError):
    """A process exited early or did not become healthy in time."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    # SIGTERM goes once: a second one means "exit now" to the dispatcher, as to most servers
    term_sent: bool = False

    def terminate(self) -> None:
        if self.alive and not self.term_sent:
            self.term_sent = True
            _signal_group(self.popen.pid, signal.SIGTERM)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive:
            raise ProcessError(
                f"{self.name} exited with code {self.popen.returncode}; last lines of "
                f"{self.log_path}:\n{self.tail()}"
            )


@dataclass
class Processes:
    """A group of started processes that is stopped as a whole."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    grace: float = 10.0
    started: list[Proc] = field(default_factory=list)
    _stops: list[Callable[[], object]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # unbuffered: a process's log file is current when a wait shows its tail
                env={**(env if env is not None else self.env), "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # its own group: stop() reaches its children too
            )
        proc = Proc(name, list(argv), log_path, popen)
        self.started.append(proc)
        self._stops.append(lambda: self.stop(proc))
        return proc

    def defer(self, stop: Callable[[], object]) -> None:
        """Run `stop` when the group stops, in reverse order of registration like the
        processes (e.g. an embedded Redis started elsewhere)."""
        self._stops.append(stop)

    def stop(self, proc: Proc, grace: float | None = None) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; returns the code."""
        grace = self.grace if grace is None else grace
        if proc.alive:
            proc.terminate()
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        # Whatever the leader left behind in its group goes too.
        _signal_group(proc.popen.pid, signal.SIGKILL)
        return proc.popen.returncode

    def kill(self, proc: Proc) -> None:
        """SIGKILL at once, like a crash (the adoption tests)."""
        _signal_group(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(5)

    def stop_all(self) -> None:
        """SIGTERM every process at once (stopping them one by one would add their
        shutdown times up), then stop each in reverse order; then the deferred stops."""
        for proc in self.started:
            proc.terminate()
        while self._stops:
            with contextlib.suppress(Exception):
                self._stops.pop()()
        self.started.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Ctrl-C twice must not leave processes behind: ignore SIGINT while stopping.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGINT, previous)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def wait_for(
    what: str,
    condition: Callable[[], bool],
    timeout: float,
    watch: Sequence[Proc] = (),
    interval: float = 0.25,
) -> None:
    """Poll `condition` until true; ProcessError if a watched process dies or time runs out.
    Exceptions from `condition` count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in watch:
            proc.check_alive()
        with contextlib.suppress(Exception):
            if condition():
                return
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {p.name} ({p.log_path}):\n{p.tail()}" for p in watch)
            raise ProcessError(f"{what}: not ready after {timeout:.0f} s{logs}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False

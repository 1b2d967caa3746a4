"""Two `kubequeue watcher` processes: one leader, takeover after the leader dies, and every
transition still published exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubequeue import embedded_redis
from kubequeue.sim import Sim
from kubequeue.watcher.tracker import PoolPolicy
from tests.fixtures.waiting import wait_for
from tests.integration.test_watcher import (
    NS,
    Harness,
    assert_exactly_once,
    fast_sim,
    task_pod,
)

pytestmark = pytest.mark.integration
__all__ = ["fast_sim"]  # a fixture, imported to be used here
POOLS = """
pools:
  default: {namespace: default, image: apache/airflow:3.3.2, startupTimeout: 30}
queues:
  default: default
"""


class Replica:
    def __init__(self, name: str, sim: Sim, redis_url: str, pools: Path, log: Path) -> None:
        self.name = name
        self.port = embedded_redis.free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "kubequeue"), "watcher", "--redis-url", redis_url,
             "--pools", str(pools), "--kubeconfig", str(sim.kubeconfig),
             "--metrics-port", str(self.port), "--lease-namespace", NS, "--identity", name,
             "--lease-duration", "2"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def leader(self) -> bool | None:
        """The replica's kubequeue_watcher_leader gauge (None while it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        return "kubequeue_watcher_leader 1.0" in text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def replicas(fast_sim: Sim, redis_url: str, tmp_path: Path) -> Iterator[list[Replica]]:
    pools = tmp_path / "pools.yaml"
    pools.write_text(POOLS)
    started = [Replica(n, fast_sim, redis_url, pools, tmp_path / f"{n}.log") for n in ("a", "b")]
    yield started
    for r in started:
        r.stop()


def test_one_leader_and_takeover_after_the_leader_is_killed(
    fast_sim: Sim, redis_url: str, replicas: list[Replica]
) -> None:
    h = Harness(fast_sim, redis_url, {"default": PoolPolicy("default", NS)})

    def roles() -> list[bool | None]:
        return [r.leader() for r in replicas]

    wait_for("one leader, one follower", lambda: sorted(roles(), key=str) == [False, True], 30)
    leader = next(r for r in replicas if r.leader())
    follower = next(r for r in replicas if r is not leader)
    first = [h.create(task_pod()) for _ in range(10)]
    h.wait_terminal(first)
    assert follower.leader() is False  # still following: it published nothing

    os.kill(leader.proc.pid, signal.SIGKILL)  # no lease release: the follower waits it out
    leader.proc.wait(10)
    second = [h.create(task_pod()) for _ in range(10)]
    wait_for("takeover", lambda: follower.leader(), 30)
    events = h.wait_terminal([*first, *second])
    assert_exactly_once(events, [*first, *second])

    follower.proc.send_signal(signal.SIGTERM)
    assert follower.proc.wait(30) == 0
    log = Path(follower.log.name).read_text()
    assert "released the lease" in log and f"watcher {follower.name} ended: stopped" in log

"""`kubequeue queues` and `kubequeue watcher` from the command line: the screen, and the
errors a user sees for bad input."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from kubequeue import embedded_redis, inflight, stream
from kubequeue.cli import main
from kubequeue.client import Client
from kubequeue.keys import Keys
from kubequeue.messages import EventType, Reason, TaskEvent, TaskKey, TaskSpec
from kubequeue.pools import parse
from kubequeue.watcher import status

pytestmark = pytest.mark.integration
POOLS = """
pools:
  default: {namespace: default, image: apache/airflow:3.3.2, maxInFlight: 50}
  gpu: {namespace: default, image: apache/airflow:3.3.2, maxInFlight: 4}
queues:
  default: default
  etl: default
  gpu: gpu
"""


def spec(queue: str) -> TaskSpec:
    now = time.time()
    return TaskSpec(
        id=str(uuid.uuid4()), key=TaskKey(dag_id="d", task_id="t", run_id="r", try_number=1),
        queue=queue, command=["true"], queued_at=now - 30, expires_at=now + 600,
    )  # fmt: skip


def event(kind: EventType, queue: str, **kw: object) -> TaskEvent:
    return TaskEvent.model_validate(
        {"type": kind, "id": str(uuid.uuid4()), "queue": queue, "pool": "default",
         "at": time.time(), **kw}
    )  # fmt: skip


@pytest.fixture
def pools_path(tmp_path: Path) -> Path:
    path = tmp_path / "pools.yaml"
    path.write_text(POOLS)
    return path


def test_queues_screen_shows_depth_in_flight_failures_and_latency(
    redis_url: str, pools_path: Path
) -> None:
    r = redis.Redis.from_url(redis_url)
    keys = Keys()
    Client(r, keys, parse(POOLS)).submit([spec("etl") for _ in range(3)])
    running = event(EventType.RUNNING, "default")
    stream.publish(r, keys, [
        running,
        event(EventType.SUCCEEDED, "default"),
        event(EventType.FAILED, "default", reason=Reason.OOM_KILLED),
        event(EventType.FAILED, "default", reason=Reason.OOM_KILLED),
        event(EventType.FAILED, "gpu", reason=Reason.UNSCHEDULABLE),
    ])  # fmt: skip
    r.lpush(keys.startup("default"), *[f"{x / 10:.3f}" for x in range(1, 21)])
    r.zadd(keys.in_flight("gpu"), {"a": time.time() + 900, "b": time.time() + 900})
    assert inflight.count(r, keys, "gpu") == 2
    snap = status.collect(r, keys, parse(POOLS), tail=100)
    rows = {row.queue: row for row in snap.rows}
    etl, default, gpu = rows["etl"], rows["default"], rows["gpu"]
    assert etl.depth == 3 and etl.oldest_age is not None and etl.oldest_age >= 30
    assert etl.pending == etl.running == 0  # still queued
    assert (default.running, default.succeeded, default.failed) == (1, 1, 2)
    assert default.reasons == {"OOMKilled": 2} and gpu.reasons == {"Unschedulable": 1}
    assert (default.percentile(50), default.percentile(95), len(default.startup)) == (
        pytest.approx(1.05), pytest.approx(1.905), 20)  # fmt: skip
    assert snap.slots == {"default": (0, 50), "gpu": (2, 4)}
    result = CliRunner().invoke(
        main, ["queues", "--redis-url", redis_url, "--pools", str(pools_path)],
        env={"COLUMNS": "120"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    default_line = next(x for x in result.output.splitlines() if x.strip().startswith("default"))
    assert default_line.split() == [
        "default", "default", "0", "-", "0", "1", "1", "2", "OOMKilled", "2", "1.1s", "1.9s", "20"
    ]  # fmt: skip
    assert "gpu 2/4" in result.output


def test_queues_with_redis_down_says_so(pools_path: Path) -> None:
    port = embedded_redis.free_port()
    result = CliRunner().invoke(
        main, ["queues", "--redis-url", f"redis://127.0.0.1:{port}/0", "--pools", str(pools_path)]
    )
    assert result.exit_code == 1
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in result.output


def test_watcher_with_redis_down_at_start_exits_with_a_clear_error(pools_path: Path) -> None:
    port = embedded_redis.free_port()
    result = CliRunner().invoke(main, [
        "watcher", "--redis-url", f"redis://127.0.0.1:{port}/0", "--pools", str(pools_path),
        "--metrics-port", "0",
    ])  # fmt: skip
    assert result.exit_code == 1
    assert f"Error: cannot reach Redis at redis://127.0.0.1:{port}/0" in result.output


def test_watcher_with_a_bad_pools_file_names_the_line(redis_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "pools.yaml"
    bad.write_text(POOLS.replace("maxInFlight: 4", "maxInFlight: -1"))
    result = CliRunner().invoke(main, [
        "watcher", "--redis-url", redis_url, "--pools", str(bad), "--metrics-port", "0",
    ])  # fmt: skip
    assert result.exit_code == 1
    assert f"{bad}:4: pools.gpu.maxInFlight" in result.output, result.output


def test_queues_watch_refreshes_until_interrupted(
    redis_url: str, pools_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(status, "sleep", sleep)
    result = CliRunner().invoke(main, [
        "queues", "--redis-url", redis_url, "--pools", str(pools_path), "--watch",
        "--interval", "0.5",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sleeps == [0.5, 0.5] and "kubequeue queues" in result.output

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
    result = CliRunner().invoke(
        main, ["queues", "--redis-url", redis_url, "--pools", str(pools_path)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines()
             if line.count("│") > 5}  # fmt: skip
    etl = [c.strip() for c in lines["etl"].split("│")]
    assert etl[3] == "3" and float(etl[4].rstrip("s")) >= 30  # queued, oldest age
    default = [c.strip() for c in lines["default"].split("│")]
    assert default[6:10] == ["1", "1", "2", "OOMKilled 2"]  # running, succeeded, failed, top
    assert default[10:13] == ["1.1s", "1.9s", "20"]  # p50, p95, n
    assert "Unschedulable 1" in lines["gpu"]
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
    from kubequeue.watcher import status

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

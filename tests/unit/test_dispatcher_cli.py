"""What `kubequeue dispatcher` says when it cannot start (exit code 1, one clear line)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kubequeue.dispatcher.cli import dispatcher

POOLS = """\
pools:
  a: {namespace: tasks, image: img, maxInFlight: 100}
  b: {namespace: tasks, image: img}
queues: {qa: a, qa2: a, qb: b}
"""


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(dispatcher, [*args, "--metrics-port", "0"], env=env)
    return result.exit_code, result.output


@pytest.fixture
def pools(tmp_path: Path) -> Path:
    path = tmp_path / "pools.yaml"
    path.write_text(POOLS)
    return path


KUBECONFIG = (
    "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
    "clusters: [{name: a, cluster: {server: 'http://127.0.0.1:1'}}]\n"
    "contexts: [{name: a, context: {cluster: a, user: a}}]\nusers: [{name: a, user: {}}]\n"
)


def test_redis_down_at_start(pools: Path, tmp_path: Path) -> None:
    (tmp_path / "kc").write_text(KUBECONFIG)
    code, out = run("--pools", str(pools), "--redis-url", "redis://:secret@127.0.0.1:1/0",
                    "--kubeconfig", str(tmp_path / "kc"))  # fmt: skip
    assert code == 1
    assert out.startswith(
        "Error: cannot reach Redis at redis://***@127.0.0.1:1/0: Error 111 connecting to "
        "127.0.0.1:1. Connection refused."
    )
    assert "secret" not in out


def test_invalid_pools_file(pools: Path) -> None:
    pools.write_text(POOLS.replace("maxInFlight: 100", "maxInFlight: 0"))
    assert run("--pools", str(pools)) == (
        1,
        f"Error: invalid pools file {pools}:\n"
        f"{pools}:2: pools.a.maxInFlight: Input should be greater than or equal to 1\n",
    )


def test_missing_pools_file(tmp_path: Path) -> None:
    assert run("--pools", str(tmp_path / "nope.yaml")) == (
        1,
        f"Error: cannot read pools file {tmp_path}/nope.yaml: No such file or directory\n",
    )


def test_unknown_queue_in_queues_flag(pools: Path) -> None:
    assert run("--pools", str(pools), "--queues", "qa,gpu") == (
        1,
        f"Error: --queues: gpu not in the pools file {pools} (known queues: qa, qa2, qb)\n",
    )


def test_bad_settings_from_the_environment(pools: Path) -> None:
    code, out = run("--pools", str(pools), env={"KUBEQUEUE_REDIS_URL": "http://x"})
    assert code == 1
    assert out.startswith("Error: redis URL 'http://x' is invalid: use redis://")
    code, out = run("--pools", str(pools), env={"KUBEQUEUE_REDIS_PREFIX": "Bad Prefix"})
    assert code == 1 and "redis key prefix 'Bad Prefix' is invalid" in out


def test_missing_kubeconfig(pools: Path, tmp_path: Path) -> None:
    code, out = run("--pools", str(pools), "--kubeconfig", str(tmp_path / "kc"))
    assert code == 1
    assert out.startswith(f"Error: cannot load kubeconfig {tmp_path}/kc")


def test_no_kubeconfig_outside_a_pod(pools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert run("--pools", str(pools)) == (
        1,
        "Error: cannot load in-cluster config: Service host/port is not set. (outside a pod, "
        "set KUBEQUEUE_KUBECONFIG or --kubeconfig)\n",
    )

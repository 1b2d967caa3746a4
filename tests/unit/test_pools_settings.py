"""Settings: environment, flags over environment, and what a bad value says."""

from __future__ import annotations

import pytest

from kubequeue.errors import ConfigError
from kubequeue.settings import Settings, _safe_url


def test_defaults_and_environment() -> None:
    s = Settings.from_env({})
    assert (s.redis_url, s.redis_prefix, s.pools_file, s.kubeconfig) == (
        "redis://127.0.0.1:6379/0",
        "kubequeue",
        "/etc/kubequeue/pools.yaml",
        None,
    )
    env = {
        "KUBEQUEUE_REDIS_URL": "redis://r:1/2",
        "KUBEQUEUE_REDIS_PREFIX": "kq2",
        "KUBEQUEUE_POOLS_FILE": "/p.yaml",
        "KUBEQUEUE_KUBECONFIG": "/kc",
        "KUBEQUEUE_METRICS_PORT": "9200",
        "KUBEQUEUE_EVENTS_MAXLEN": "5000",
    }
    s = Settings.from_env(env, redis_url="redis://flag:1/0", kubeconfig=None)
    assert s.redis_url == "redis://flag:1/0"  # a flag wins over the environment
    assert (s.redis_prefix, s.pools_file, s.kubeconfig, s.metrics_port, s.events_maxlen) == (
        "kq2",
        "/p.yaml",
        "/kc",
        9200,
        5000,
    )
    assert s.keys.events() == "kq2:events"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUBEQUEUE_METRICS_PORT": "x"}, "KUBEQUEUE_METRICS_PORT='x' is not an integer"),
        ({"KUBEQUEUE_METRICS_PORT": "70000"}, "metrics port 70000 is not in 0..65535"),
        ({"KUBEQUEUE_EVENTS_MAXLEN": "10"}, "KUBEQUEUE_EVENTS_MAXLEN=10 is too small"),
        ({"KUBEQUEUE_REDIS_URL": "localhost:6379"}, "redis URL 'localhost:6379' is invalid"),
        ({"KUBEQUEUE_REDIS_PREFIX": "A B"}, "redis key prefix 'A B' is invalid"),
    ],
)
def test_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        Settings.from_env(env)
    assert str(e.value).startswith(message)


def test_passwords_stay_out_of_messages() -> None:
    assert _safe_url("redis://:pw@h:1/0", None) == "redis://***@h:1/0"  # type: ignore[arg-type]
    assert _safe_url("redis://h:1/0", None) == "redis://h:1/0"  # type: ignore[arg-type]

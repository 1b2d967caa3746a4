"""Settings shared by every kubequeue process, read in one place.

Each setting is an environment variable (KUBEQUEUE_*) and also a CLI flag of the commands
that use it; a flag wins over the variable, the variable over the default. The defaults are
those a Deployment in `deploy/` expects, so a pod needs only KUBEQUEUE_REDIS_URL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import click
import redis

from kubequeue import stream
from kubequeue.errors import ConfigError, RedisUnavailableError
from kubequeue.keys import DEFAULT_PREFIX, Keys

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POOLS_FILE = "/etc/kubequeue/pools.yaml"
DISPATCHER_METRICS_PORT = 9100
WATCHER_METRICS_PORT = 9101
# About 100k events: ~1 h of history at 30 tasks/s (each task publishes ~7 events), enough
# for an executor restart to resume from its cursor; memory stays ~50 MB.
DEFAULT_EVENTS_MAXLEN = 100_000
# Seconds a Redis call may take before we call Redis unreachable. Generous enough for a
# loaded server, short enough that readiness flips within one probe period.
REDIS_SOCKET_TIMEOUT = 10.0

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    redis_prefix: str = DEFAULT_PREFIX
    pools_file: str = DEFAULT_POOLS_FILE
    kubeconfig: str | None = None  # None = in-cluster service account
    metrics_port: int | None = None  # None = the component's default
    events_maxlen: int = DEFAULT_EVENTS_MAXLEN

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from KUBEQUEUE_* variables; `overrides` (e.g. CLI flags) win when not None."""
        env = os.environ if env is None else env
        s = cls(
            redis_url=env.get("KUBEQUEUE_REDIS_URL") or DEFAULT_REDIS_URL,
            redis_prefix=env.get("KUBEQUEUE_REDIS_PREFIX") or DEFAULT_PREFIX,
            pools_file=env.get("KUBEQUEUE_POOLS_FILE") or DEFAULT_POOLS_FILE,
            kubeconfig=env.get("KUBEQUEUE_KUBECONFIG") or None,
            metrics_port=_int(env, "KUBEQUEUE_METRICS_PORT"),
            events_maxlen=_int(env, "KUBEQUEUE_EVENTS_MAXLEN") or DEFAULT_EVENTS_MAXLEN,
        )
        s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
        s.validate()
        return s

    def validate(self) -> None:
        Keys(self.redis_prefix)  # raises ConfigError naming the problem
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"redis URL {self.redis_url!r} is invalid: use redis://host:port/db, "
                "rediss://... or unix:///path"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics port {self.metrics_port} is not in 0..65535")
        if self.events_maxlen < stream.MIN_MAXLEN:
            raise ConfigError(
                f"KUBEQUEUE_EVENTS_MAXLEN={self.events_maxlen} is too small "
                f"(minimum {stream.MIN_MAXLEN}): "
                "a reader that falls that far behind must reconcile from the tasks hash"
            )

    @property
    def keys(self) -> Keys:
        return Keys(self.redis_prefix)

    def redis(self, **kw: Any) -> redis.Redis:
        return connect_redis(self.redis_url, **kw)


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def connect_redis(url: str, **kw: Any) -> redis.Redis:
    """A Redis client (bytes replies) with timeouts, so a dead server is an error, not a hang.
    It does not connect yet; call `ping_redis` to fail fast."""
    options: dict[str, Any] = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        **kw,
    }
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as e:
        raise ConfigError(f"redis URL {url!r} is invalid: {e}") from e


def ping_redis(client: redis.Redis, url: str | None = None) -> None:
    """Raise RedisUnavailableError with a message naming the server when it does not answer."""
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise RedisUnavailableError(f"cannot reach Redis at {_safe_url(url, client)}: {e}") from e
    except redis.AuthenticationError as e:
        raise RedisUnavailableError(
            f"Redis at {_safe_url(url, client)} refused our credentials: {e}"
        ) from e


def _safe_url(url: str | None, client: redis.Redis) -> str:
    """The URL without its password, for messages."""
    if url is None:
        kw = client.connection_pool.connection_kwargs
        return f"{kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}"
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


def options(*, metrics_port_default: int) -> Callable[[F], F]:
    """The click options every long-running command shares, bound to their env variables."""

    def decorate(fn: F) -> F:
        for opt in reversed(
            [
                click.option(
                    "--redis-url",
                    envvar="KUBEQUEUE_REDIS_URL",
                    default=None,
                    help=f"Redis/Valkey URL [default: {DEFAULT_REDIS_URL}]",
                ),
                click.option(
                    "--redis-prefix",
                    envvar="KUBEQUEUE_REDIS_PREFIX",
                    default=None,
                    help=f"prefix of every Redis key [default: {DEFAULT_PREFIX}]",
                ),
                click.option(
                    "--pools",
                    "pools_file",
                    envvar="KUBEQUEUE_POOLS_FILE",
                    default=None,
                    help=f"pools file [default: {DEFAULT_POOLS_FILE}]",
                ),
                click.option(
                    "--kubeconfig",
                    envvar="KUBEQUEUE_KUBECONFIG",
                    default=None,
                    help="kubeconfig path; unset = in-cluster service account",
                ),
                click.option(
                    "--metrics-port",
                    envvar="KUBEQUEUE_METRICS_PORT",
                    type=int,
                    default=metrics_port_default,
                    show_default=True,
                    help="port of /metrics, /healthz, /readyz (0 = off)",
                ),
            ]
        ):
            fn = opt(fn)
        return fn

    return decorate

"""The `[kubequeue]` section, read once into a typed value (defaults live in provider.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kubequeue.errors import ConfigError
from kubequeue.executor.provider import OPTIONS, SECTION
from kubequeue.messages import Reason

if TYPE_CHECKING:
    from kubequeue.client import Client


class ConfSource(Protocol):
    """What `BaseExecutor.conf` (an ExecutorConf) and `airflow.configuration.conf` offer."""

    def get(self, section: str, key: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class ExecutorSettings:
    redis_url: str = str(OPTIONS["redis_url"]["default"])
    redis_prefix: str = str(OPTIONS["redis_prefix"]["default"])
    pools_file: str = str(OPTIONS["pools_file"]["default"])
    kubeconfig: str = ""
    event_batch_size: int = 1000
    max_event_batches: int = 10
    launch_retries: int = 1
    launch_retry_reasons: frozenset[Reason] = frozenset(
        {Reason.EVICTED, Reason.NODE_LOST, Reason.DELETED}
    )
    execution_api_server_url: str = ""
    worker_env: dict[str, str] = field(default_factory=dict)
    running_pod_log_lines: int = 100
    parallelism: int = 0


def _get(source: ConfSource, key: str) -> str:
    value = source.get(SECTION, key, fallback=OPTIONS[key]["default"])
    return "" if value is None else str(value).strip()


def _int(source: ConfSource, key: str, minimum: int) -> int:
    raw = _get(source, key)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"[{SECTION}] {key} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"[{SECTION}] {key} must be >= {minimum}, got {value}")
    return value


def _reasons(raw: str) -> frozenset[Reason]:
    out = set()
    for name in filter(None, (part.strip() for part in raw.split(","))):
        try:
            out.add(Reason(name))
        except ValueError:
            known = ", ".join(r.value for r in Reason)
            raise ConfigError(
                f"[{SECTION}] launch_retry_reasons: unknown reason {name!r} (known: {known})"
            ) from None
    return frozenset(out)


def _env(raw: str) -> dict[str, str]:
    try:
        data = json.loads(raw or "{}")
    except ValueError as e:
        raise ConfigError(f"[{SECTION}] worker_env is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"[{SECTION}] worker_env must be a JSON object of name -> value")
    return {str(k): str(v) for k, v in data.items()}


def read(source: ConfSource) -> ExecutorSettings:
    """Read and validate the section; every problem names the option it is about."""
    return ExecutorSettings(
        redis_url=_get(source, "redis_url"),
        redis_prefix=_get(source, "redis_prefix"),
        pools_file=_get(source, "pools_file"),
        kubeconfig=_get(source, "kubeconfig"),
        event_batch_size=_int(source, "event_batch_size", 1),
        max_event_batches=_int(source, "max_event_batches", 1),
        launch_retries=_int(source, "launch_retries", 0),
        launch_retry_reasons=_reasons(_get(source, "launch_retry_reasons")),
        execution_api_server_url=_get(source, "execution_api_server_url"),
        worker_env=_env(_get(source, "worker_env")),
        running_pod_log_lines=_int(source, "running_pod_log_lines", 1),
        parallelism=_int(source, "parallelism", 0),
    )


def make_client(settings: ExecutorSettings) -> Client:
    """The one place the executor builds its kubequeue Client (it never talks to Kubernetes
    to run a task). Raises ConfigError for a bad pools file; does not contact Redis."""
    from kubequeue.client import Client

    return Client.from_settings(settings.redis_url, settings.redis_prefix, settings.pools_file)


def redact(url: str) -> str:
    """A Redis URL without its password, for log lines."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"

"""kubequeue as an Airflow provider: the `[kubequeue]` config section, the executor and its CLI.

Airflow finds this through the `apache_airflow_provider` entry point declared in
pyproject.toml. Registering the options here is what makes `airflow config list --section
kubequeue` show them with their defaults and `AIRFLOW__KUBEQUEUE__<OPTION>` work. This module
must stay import-light: Airflow imports it while discovering providers.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

SECTION = "kubequeue"
VERSION_ADDED = "0.1.0"


def _opt(
    description: str,
    default: str,
    kind: str = "string",
    example: str | None = None,
    sensitive: bool = False,
) -> dict[str, Any]:
    option: dict[str, Any] = {
        "description": description,
        "version_added": VERSION_ADDED,
        "type": kind,
        "example": example,
        "default": default,
    }
    if sensitive:
        option["sensitive"] = True
    return option


OPTIONS: dict[str, dict[str, Any]] = {
    "redis_url": _opt(
        "Redis/Valkey that carries the task queues and the events stream (the same URL the "
        "dispatchers and the watcher use, KUBEQUEUE_REDIS_URL there).",
        "redis://127.0.0.1:6379/0",
        example="redis://:password@redis.kubequeue.svc:6379/0",
        sensitive=True,
    ),
    "redis_prefix": _opt(
        "Prefix of every kubequeue key, so that several installations can share one Redis. "
        "Must match KUBEQUEUE_REDIS_PREFIX of the dispatchers and the watcher.",
        "kubequeue",
    ),
    "pools_file": _opt(
        "The pools file (YAML) that maps each Airflow queue to a node pool. The executor reads "
        "it to reject tasks on unknown queues at once and to find a pool's namespace and kube "
        "context when it reads a pod's log.",
        "/etc/kubequeue/pools.yaml",
    ),
    "kubeconfig": _opt(
        "Kubeconfig used only to read pods' logs for the UI (get_task_log). Empty: in-cluster "
        "config. A pool's `context` selects a context in this file.",
        "",
        example="/opt/airflow/.kube/config",
    ),
    "event_batch_size": _opt(
        "Events read from the stream per round trip in the executor's sync(). Each heartbeat "
        "costs O(new events), never O(running tasks).",
        "1000",
        kind="integer",
    ),
    "max_event_batches": _opt(
        "At most this many batches are read per heartbeat, so that a large backlog (after a "
        "restart) cannot stall one scheduler loop; the rest is read on the next heartbeats.",
        "10",
        kind="integer",
    ),
    "launch_retries": _opt(
        "How many times a task whose pod failed before its task process started is launched "
        "again without using one of the task's retries (the KubernetesExecutor's "
        "pod_launch_failure_retries). 0 disables it.",
        "1",
        kind="integer",
    ),
    "launch_retry_reasons": _opt(
        "Comma-separated failure reasons that count as a transient launch failure (see "
        "launch_retries). Unschedulable and ImagePullBackOff are left out on purpose: a "
        "second pod would wait just as long for the same fix.",
        "Evicted,NodeLost,Deleted",
    ),
    "execution_api_server_url": _opt(
        "Execution API URL the task pods call. Empty: the scheduler's own "
        "[core] execution_api_server_url.",
        "",
        example="http://airflow-api-server.airflow.svc:8080/execution/",
    ),
    "worker_env": _opt(
        "Extra environment for every task container, as a JSON object, on top of what "
        "kubequeue sets itself ([core] executor and the execution API URL). Empty: none.",
        "",
        example='{"AIRFLOW__LOGGING__REMOTE_LOGGING": "True"}',
    ),
    "running_pod_log_lines": _opt(
        "Lines of a running pod's log shown in the UI while its task runs.",
        "100",
        kind="integer",
    ),
    "parallelism": _opt(
        "How many tasks this executor keeps queued or running at once. 0: [core] parallelism. "
        "Pools cap pods per node pool on their own (maxInFlight in the pools file).",
        "0",
        kind="integer",
    ),
}


def _version() -> str:
    try:
        return version("kubequeue")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "kubequeue",
        "name": "kubequeue",
        "description": "Runs each Airflow task in its own Kubernetes pod, dispatched through "
        "Redis queues to the node pool each queue maps to.",
        "versions": [_version()],
        "executors": ["kubequeue.executor.KubeQueueExecutor"],
        "cli": ["kubequeue.executor.cli.get_cli_commands"],
        "config": {
            SECTION: {
                "description": "The KubeQueueExecutor (kubequeue.executor.KubeQueueExecutor).",
                "options": OPTIONS,
            }
        },
    }

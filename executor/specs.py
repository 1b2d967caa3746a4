"""Airflow workload -> TaskSpec: everything a dispatcher needs to create the task's pod.

The workload's JSON (what the pod runs) excludes `executor_config` and
`external_executor_id`, so both travel beside it in the spec: the id as the spec's identity,
the config as a serialized `pod_override` and a `pod_template_file` path. A `pod_override`
is accepted exactly as the KubernetesExecutor accepts it (a `kubernetes.client.models.V1Pod`)
and serialized the way the Kubernetes API takes it (camelCase, no nulls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubequeue.errors import SpecError, truncate
from kubequeue.messages import TaskKey, TaskSpec

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecuteTask

WORKER_MODULE = "airflow.sdk.execution_time.execute_workload"
# A relaunch (see launch_retries) gets the id `<id>-r<n>`: deterministic, so a relaunch sent
# twice still makes one pod, and readable after a restart. UUIDs never contain an `r`.
_RELAUNCH = re.compile(r"^(?P<base>.+?)-r(?P<n>\d+)$")


@dataclass(frozen=True)
class SpecDefaults:
    """What every spec of one executor shares."""

    core_executor: str  # [core] executor, verbatim: the worker re-parses the DAG with it
    execution_api_url: str
    task_queued_timeout: float  # the workload token's lifetime, seconds
    worker_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            **self.worker_env,
            "AIRFLOW__CORE__EXECUTOR": self.core_executor,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": self.execution_api_url,
        }


def command(workload: ExecuteTask) -> list[str]:
    """The same argv the KubernetesExecutor gives its pods (pod_generator's
    workload_to_command_args)."""
    return ["python", "-m", WORKER_MODULE, "--json-string", workload.model_dump_json()]


def serialize_pod_override(executor_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """`executor_config["pod_override"]` as the API takes it; SpecError says what is wrong."""
    if not executor_config:
        return None
    if not isinstance(executor_config, dict):
        raise SpecError(f"executor_config must be a dict, got {type(executor_config).__name__}")
    if executor_config.get("KubernetesExecutor"):
        raise SpecError(
            'executor_config={"KubernetesExecutor": {...}} is the Airflow 1 form; use '
            '{"pod_override": k8s.V1Pod(...)}'
        )
    override = executor_config.get("pod_override")
    if override is None:
        return None
    from kubernetes.client import ApiClient
    from kubernetes.client.models import V1Pod

    if not isinstance(override, V1Pod):
        raise SpecError(
            "executor_config['pod_override'] must be a kubernetes.client.models.V1Pod, got "
            f"{type(override).__name__}: {truncate(repr(override), 120)}"
        )
    try:
        data: dict[str, Any] = ApiClient().sanitize_for_serialization(override)
    except (TypeError, ValueError, AttributeError) as e:
        raise SpecError(f"executor_config['pod_override'] cannot be serialized: {e}") from e
    return data


def pod_template_file(executor_config: dict[str, Any] | None) -> str | None:
    path = (executor_config or {}).get("pod_template_file")
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise SpecError(f"executor_config['pod_template_file'] must be a path, got {path!r}")
    return path


def task_key(workload: ExecuteTask) -> TaskKey:
    ti = workload.ti
    return TaskKey(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        try_number=ti.try_number,
        map_index=ti.map_index if ti.map_index is not None else -1,
    )


def build(workload: ExecuteTask, queueing_id: str, defaults: SpecDefaults, now: float) -> TaskSpec:
    """One TaskSpec per queueing. Raises SpecError for bad executor_config."""
    ti = workload.ti
    config = ti.executor_config
    try:
        return TaskSpec(
            id=queueing_id,
            key=task_key(workload),
            queue=ti.queue or "default",
            command=command(workload),
            env=defaults.env(),
            pod_override=serialize_pod_override(config),
            pod_template_file=pod_template_file(config),
            priority=ti.priority_weight,
            queued_at=now,
            expires_at=now + defaults.task_queued_timeout,
        )
    except ValueError as e:  # pydantic's ValidationError, e.g. an id with odd characters
        raise SpecError(f"cannot build the task spec: {truncate(str(e), 300)}") from e


def relaunch_id(queueing_id: str) -> tuple[str, int]:
    """The id for launching a queueing again, and how many relaunches that one makes."""
    m = _RELAUNCH.match(queueing_id)
    base, n = (m["base"], int(m["n"])) if m else (queueing_id, 0)
    return f"{base}-r{n + 1}", n + 1


def relaunches(queueing_id: str) -> int:
    m = _RELAUNCH.match(queueing_id)
    return int(m["n"]) if m else 0

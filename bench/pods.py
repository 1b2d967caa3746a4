"""The pods every system creates, kept as alike as the systems allow.

One description per node pool (image, resource requests, node selector) is turned into the
KubernetesExecutor's pod template files, kubequeue's pools file and the limit run's pod
bodies. How long a pod's container "runs" on the simulator's timed kubelet is set with an
annotation the kubelet reads; the template (KE) or pool template (kubequeue) carries it, and
long-running ladder tasks pick a second template, as a KE user picks one with
`executor_config={"pod_template_file": ...}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kubequeue.bench.plan import BUSY_SECONDS, POOL_OF_QUEUE

Templates = dict[tuple[str, float], Path]  # (pool, run time) -> pod template file

IMAGE_REPOSITORY = "apache/airflow"
IMAGE_TAG = "3.3.2"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
NAMESPACE = "default"
POOL_LABEL = "kubequeue.io/pool"
REQUESTS = {"cpu": "100m", "memory": "256Mi"}
# The simulator's timed kubelet takes a container's run time from this annotation.
DURATION_ANNOTATION = "kubequeue.io/sim-duration"


def duration_annotations(seconds: float) -> dict[str, str]:
    return {DURATION_ANNOTATION: f"{seconds:g}s"}


def base_pod(pool: str, seconds: float) -> dict[str, Any]:
    """The pool's pod, as a template: what every system starts from."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"annotations": duration_annotations(seconds)},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {POOL_LABEL: pool},
            "containers": [
                {
                    "name": "base",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": dict(REQUESTS)},
                }
            ],
        },
    }


def template_path(workdir: Path, pool: str, seconds: float) -> Path:
    return workdir / f"pod-{pool}-{seconds:g}s.yaml"


def write_templates(workdir: Path, seconds: tuple[float, ...]) -> Templates:
    """One pod template file per (pool, run time)."""
    out = {}
    for pool in sorted(set(POOL_OF_QUEUE.values())):
        for s in seconds:
            path = template_path(workdir, pool, s)
            path.write_text(yaml.safe_dump(base_pod(pool, s), sort_keys=False))
            out[(pool, s)] = path
    return out


def write_system_templates(workdir: Path, task_seconds: float, phases: Sequence[Any]) -> Templates:
    """Templates for every run time a system's phases use (each phase has a `seconds_of`)."""
    seconds = {task_seconds, BUSY_SECONDS}
    for phase in phases:
        seconds |= {phase.seconds_of(i) for i in (0, phase.total - 1)}
    return write_templates(workdir, tuple(sorted(seconds)))


def write_pools_file(workdir: Path, seconds: float, max_in_flight: int) -> Path:
    """kubequeue's pools file: the same image, requests, selector and run time per pool."""
    templates = write_templates(workdir, (seconds,))
    pools = {}
    for pool in sorted(set(POOL_OF_QUEUE.values())):
        pools[pool] = {
            "namespace": NAMESPACE,
            "image": IMAGE,
            "nodeSelector": {POOL_LABEL: pool},
            "resources": {"requests": dict(REQUESTS)},
            "podTemplateFile": str(templates[(pool, seconds)]),
            "maxInFlight": max_in_flight,
            "deleteWorkerPods": True,
        }
    path = workdir / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": pools, "queues": dict(POOL_OF_QUEUE)}))
    return path


def task_labels(dag_id: str, task_id: str, index: int) -> dict[str, str]:
    return {"dag_id": dag_id, "task_id": task_id, "map_index": str(index), "run_id": "bench"}


def limit_pod(dag_id: str, queue: str, index: int, seconds: float, arg: str) -> dict[str, Any]:
    """A pod as a dispatcher would send it: the pool's pod plus identity and the command."""
    pool = POOL_OF_QUEUE[queue]
    pod = base_pod(pool, seconds)
    labels = task_labels(dag_id, f"t_{queue}", index)
    pod["metadata"] = {
        "name": f"{dag_id.replace('_', '-')}-{queue}-{index}",
        "namespace": NAMESPACE,
        "labels": labels,
        "annotations": {**pod["metadata"]["annotations"], **labels},
    }
    container = pod["spec"]["containers"][0]
    container["args"] = [
        "python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", arg,
    ]  # fmt: skip
    return pod


def workload_json_stub(dag_id: str, task_id: str, index: int) -> str:
    """A stand-in of Airflow's ~1 KB workload JSON, so every pod body has its real size."""
    return json.dumps(
        {
            "token": "x" * 600,
            "ti": {"dag_id": dag_id, "task_id": task_id, "map_index": index, "run_id": "bench"},
            "dag_rel_path": "bench.py",
            "bundle_info": {"name": "dags-folder"},
            "type": "ExecuteTask",
        }
    )

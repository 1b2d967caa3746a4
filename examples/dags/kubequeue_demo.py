"""The kubequeue demo DAG: tasks on two queues (two node pools), a pod_override, a task
mapped over 20 inputs, and a task whose first try fails on purpose and whose retry succeeds.

Every task runs in its own pod. DAG authors write exactly what they wrote for the
KubernetesExecutor: `queue=` picks the node pool (through kubequeue's pools file) and
`executor_config={"pod_override": k8s.V1Pod(...)}` adjusts the pod.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task
from kubernetes.client import models as k8s

# What a KubernetesExecutor user writes to ask for a GPU, more memory and a label.
GPU_POD = k8s.V1Pod(
    metadata=k8s.V1ObjectMeta(labels={"team": "ml"}, annotations={"example.com/owner": "ml"}),
    spec=k8s.V1PodSpec(
        containers=[
            k8s.V1Container(
                name="base",
                env=[k8s.V1EnvVar(name="MODEL_NAME", value="tiny-resnet")],
                resources=k8s.V1ResourceRequirements(
                    requests={"cpu": "500m", "memory": "512Mi"},
                    limits={"nvidia.com/gpu": "1"},
                ),
            )
        ]
    ),
)


@dag(
    dag_id="kubequeue_demo",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["kubequeue", "example"],
    default_args={"retries": 0},
)
def kubequeue_demo() -> None:
    @task(queue="default")
    def extract() -> list[int]:
        """Runs on the default pool."""
        return list(range(20))

    @task(queue="default")
    def square(x: int) -> int:
        """Mapped over extract's 20 values: 20 pods, one per map index."""
        print(f"square({x}) = {x * x}")
        return x * x

    @task(queue="gpu", executor_config={"pod_override": GPU_POD})
    def train(squares: list[int]) -> int:
        """Runs on the gpu pool, with the pod_override above merged into its pod."""
        import os

        total = sum(squares)
        print(f"training {os.environ.get('MODEL_NAME')} on {len(squares)} values, sum={total}")
        return total

    @task(queue="default", retries=1, retry_delay=timedelta(seconds=2))
    def flaky() -> str:
        """Fails on its first try on purpose; the retry gets a new pod and succeeds."""
        try_number = get_current_context()["ti"].try_number
        if try_number == 1:
            raise RuntimeError("first try fails on purpose, to show a retry in a new pod")
        print(f"succeeded on try {try_number}")
        return "ok"

    @task(queue="default")
    def report(total: int, status: str) -> None:
        print(f"kubequeue demo finished: total={total}, flaky={status}")

    report(train(square.expand(x=extract())), flaky())


kubequeue_demo()

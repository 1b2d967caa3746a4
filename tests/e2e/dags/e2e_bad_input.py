"""Bad input: each task fails with a clear reason in its log; the scheduler carries on."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task
from kubernetes.client import models as k8s

START = datetime(2026, 1, 1)


BAD_QUANTITY = k8s.V1Pod(
    spec=k8s.V1PodSpec(
        containers=[
            k8s.V1Container(
                name="base", resources=k8s.V1ResourceRequirements(requests={"cpu": "lots"})
            )
        ]
    )
)


NO_NODE_FITS = k8s.V1Pod(
    spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name="base")],
        node_selector={"example.com/no-such-node": "x"},
    )
)


@dag(schedule=None, start_date=START, catchup=False, default_args={"retries": 0})
def e2e_bad_input() -> None:
    @task(queue="no-such-queue")
    def unknown_queue() -> None:
        print("never runs")

    @task(queue="default", executor_config={"pod_override": {"spec": {}}})
    def override_not_a_pod() -> None:
        print("never runs")

    @task(queue="default", executor_config={"pod_override": BAD_QUANTITY})
    def override_rejected() -> None:
        print("never runs")

    @task(queue="default", executor_config={"pod_template_file": "/nonexistent/pod.yaml"})
    def missing_template() -> None:
        print("never runs")

    @task(queue="default", executor_config={"pod_override": NO_NODE_FITS})
    def unschedulable() -> None:
        print("never runs")

    @task(queue="default")
    def still_fine() -> None:
        print("kubequeue-e2e-output still fine")

    unknown_queue()
    override_not_a_pod()
    override_rejected()
    missing_template()
    unschedulable()
    still_fine()


e2e_bad_input()

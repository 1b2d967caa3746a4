"""DAGs the end-to-end tests run through a real scheduler and kubequeue."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task

START = datetime(2026, 1, 1)


@dag(schedule=None, start_date=START, catchup=False, default_args={"retries": 0})
def e2e_two_queues() -> None:
    @task(queue="default")
    def on_default() -> None:
        print("kubequeue-e2e-output from on_default")

    @task(queue="gpu", executor="KubeQueue")  # the alias from [core] executor
    def on_gpu() -> None:
        print("kubequeue-e2e-output from on_gpu")

    @task(queue="default", executor="LocalExecutor")
    def on_local() -> None:
        print("kubequeue-e2e-output from on_local")

    on_default() >> on_gpu() >> on_local()


@dag(schedule=None, start_date=START, catchup=False)
def e2e_failing() -> None:
    @task(queue="default", retries=1, retry_delay=timedelta(seconds=1))
    def always_fails() -> None:
        ti = get_current_context()["ti"]
        raise RuntimeError(f"kubequeue-e2e failure on try {ti.try_number}")

    always_fails()


@dag(schedule=None, start_date=START, catchup=False, default_args={"retries": 0})
def e2e_sleepy() -> None:
    @task(queue="default")
    def sleeps() -> None:
        for i in range(120):
            print(f"kubequeue-e2e still sleeping {i}", flush=True)
            time.sleep(1)

    sleeps()


@dag(schedule=None, start_date=START, catchup=False, default_args={"retries": 0})
def e2e_adopt() -> None:
    @task(queue="default")
    def work(n: int) -> int:
        time.sleep(20)
        print(f"kubequeue-e2e adopt {n} done")
        return n

    work.expand(n=[0, 1, 2])


e2e_two_queues()
e2e_failing()
e2e_sleepy()
e2e_adopt()

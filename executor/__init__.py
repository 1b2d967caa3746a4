"""The Airflow side of kubequeue: the only code that imports Airflow.

`kubequeue.executor.KubeQueueExecutor` is what `[core] executor` names. It is resolved
lazily so that Airflow can import `kubequeue.executor.provider` while it discovers providers
without pulling in the executor (and Airflow's executor machinery) half-initialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubequeue.executor.executor import KubeQueueExecutor

__all__ = ["KubeQueueExecutor"]


def __getattr__(name: str) -> Any:
    if name == "KubeQueueExecutor":
        from kubequeue.executor.executor import KubeQueueExecutor

        return KubeQueueExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

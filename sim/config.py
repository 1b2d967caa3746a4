"""Settings of one simulated cluster."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubequeue.sim.faults import FaultConfig


def _default_pools() -> tuple[Any, ...]:
    """Four nodes in pool `default` (NodePool comes with the scheduler/kubelet side)."""
    try:
        cluster = importlib.import_module("kubequeue.sim.cluster")
    except ImportError:  # pragma: no cover - only while that side is absent
        return ()
    return (cluster.NodePool("default", 4),)


@dataclass
class SimConfig:
    pools: Sequence[Any] = field(default_factory=_default_pools)  # Sequence[NodePool]
    port: int = 0  # 0: any free port
    host: str = "127.0.0.1"
    context: str = "kubequeue-sim"  # kubeconfig context (and cluster/user) name
    watch_window: int = 10_000  # changes kept for watch resume; older RVs get 410 Gone
    seed: int | None = None  # seeds faults and the cluster's randomness
    faults: FaultConfig = field(default_factory=FaultConfig)
    bookmark_interval: float = 5.0  # seconds between BOOKMARK events (if a watch asks)
    default_watch_timeout: float = 1800.0  # a watch without timeoutSeconds ends after this
    namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")

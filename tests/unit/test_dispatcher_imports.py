"""Imports go one way: the dispatcher image carries no Airflow, and kubequeue/ knows nothing
of the parts built on it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PARTS = ("dispatcher", "watcher", "executor", "sim", "bench")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_dispatcher_does_not_import_airflow_or_its_siblings() -> None:
    for path in (ROOT / "dispatcher").glob("*.py"):
        for name in imported(path):
            assert not name.startswith("airflow"), f"{path.name} imports {name}"
            assert not name.startswith(("kubequeue.watcher", "kubequeue.executor", "kubequeue.sim"))


def test_shared_pipeline_modules_import_only_kubequeue_core() -> None:
    for module in ("settings", "pools", "queues", "inflight", "client", "kube"):
        for name in imported(ROOT / "kubequeue" / f"{module}.py"):
            assert not name.startswith("airflow"), f"{module} imports {name}"
            parts = name.split(".")
            above = parts[0] == "kubequeue" and len(parts) > 1 and parts[1] in PARTS
            assert not above, f"{module} imports {name}"

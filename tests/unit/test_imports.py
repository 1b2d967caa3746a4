"""Imports go one way: kubequeue/ knows nothing of the parts built on it, and only the
executor imports Airflow (the dispatcher and watcher images carry none)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PARTS = ("dispatcher", "watcher", "executor", "sim", "bench")


def imported(path: Path) -> set[str]:
    """Every module `path` imports, `from kubequeue import sim` counted as kubequeue.sim."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import (use kubequeue.…)"
            if node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / folder).glob("*.py"))
        for name in sorted(imported(path))
        if name.split(".")[0] == "airflow"
        or any(name == f or name.startswith(f"{f}.") for f in forbidden)
    ]


def test_kubequeue_core_imports_no_airflow_and_no_part_built_on_it() -> None:
    assert violations("kubequeue", tuple(f"kubequeue.{p}" for p in PARTS)) == []


@pytest.mark.parametrize(
    ("part", "sibling"), [("dispatcher", "watcher"), ("watcher", "dispatcher")]
)
def test_dispatcher_and_watcher_import_no_airflow_and_not_each_other(
    part: str, sibling: str
) -> None:
    forbidden = tuple(f"kubequeue.{p}" for p in (sibling, "executor", "sim", "bench"))
    assert violations(part, forbidden) == []


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import airflow.models\nfrom kubequeue import sim\n")
    assert {"airflow.models", "kubequeue.sim"} <= imported(bad)

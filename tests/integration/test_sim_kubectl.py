"""kubectl (1.32) against the kubeconfig the simulator writes."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kubequeue.sim import Sim, SimConfig
from kubequeue.sim.cluster import NodePool
from tests.fixtures.sim import SimFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: demo}}
spec:
  restartPolicy: Never
  nodeSelector: {{kubequeue.io/pool: {pool}}}
  containers:
  - name: base
    image: python:3.11
    command: ["python", "-c", "print('hi from the pod')"]
"""

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cluster(sim_factory: SimFactory) -> Sim:
    pools = (NodePool("default", 2), NodePool("proc", 1, kubelet="process"))
    return sim_factory(SimConfig(pools=pools))


@pytest.fixture
def env(cluster: Sim, tmp_path: Path) -> dict[str, str]:
    # A private HOME keeps kubectl's discovery cache out of the user's.
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(tmp_path)}


@pytest.fixture
def kubectl(env: dict[str, str]) -> Kubectl:
    def run(
        *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


def wait_for(kubectl: Kubectl, name: str, phase: str) -> None:
    result = kubectl(
        "wait", f"pod/{name}", f"--for=jsonpath={{.status.phase}}={phase}", "--timeout=30s"
    )
    assert "condition met" in result.stdout


def test_get_nodes_show_labels(kubectl: Kubectl) -> None:
    out = kubectl("get", "nodes", "--show-labels").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "LABELS"]
    assert len(lines) == 4
    assert "kubequeue.io/pool=proc" in out and "kubernetes.io/hostname=default-0" in out
    assert all(" Ready " in line for line in lines[1:])


def test_create_get_wide_describe_logs_delete(kubectl: Kubectl) -> None:
    created = kubectl("create", "-f", "-", stdin=POD.format(name="hello", pool="proc"))
    assert created.stdout.strip() == "pod/hello created"
    wait_for(kubectl, "hello", "Succeeded")

    wide = kubectl("get", "pods", "-A", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:8] == [
        "NAMESPACE",
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
    ]
    row = wide[1].split()
    assert row[:4] == ["default", "hello", "0/1", "Completed"] and row[7] == "proc-0"

    described = kubectl("describe", "pod", "hello").stdout
    assert re.search(r"^Node:\s+proc-0/", described, re.MULTILINE)
    assert "Events:" in described and "Scheduled" in described

    assert kubectl("logs", "hello").stdout == "hi from the pod\n"

    deleted = kubectl("delete", "pod", "hello")
    assert deleted.stdout.strip() == 'pod "hello" deleted'
    left = kubectl("get", "pods")
    assert left.stdout == "" and "No resources found" in left.stderr


def test_get_pods_watch_shows_the_phases(kubectl: Kubectl, env: dict[str, str]) -> None:
    watcher = subprocess.Popen(
        ["kubectl", "get", "pods", "-w"], env=env, stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in watcher.stdout or []:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        kubectl("create", "-f", "-", stdin=POD.format(name="watched", pool="proc"))
        statuses: list[str] = []
        deadline = time.monotonic() + 30
        while "Completed" not in statuses and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("watched"):
                statuses.append(line.split()[2])
        assert statuses[0] in ("Pending", "ContainerCreating")
        assert statuses[-1] == "Completed"
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_kubectl_shows_the_servers_errors(kubectl: Kubectl) -> None:
    bad = POD.format(name="Bad_Name", pool="proc")
    result = kubectl("create", "-f", "-", stdin=bad, check=False)
    assert result.returncode != 0
    assert 'The Pod "Bad_Name" is invalid' in result.stderr
    assert "metadata.name: Invalid value" in result.stderr
    missing = kubectl("get", "pod", "nothere", check=False)
    assert 'pods "nothere" not found' in missing.stderr
    kubectl("create", "-f", "-", stdin=POD.format(name="twice", pool="default"))
    again = kubectl(
        "create", "-f", "-", stdin=POD.format(name="twice", pool="default"), check=False
    )
    assert 'pods "twice" already exists' in again.stderr


def test_label_and_delete_by_selector(kubectl: Kubectl) -> None:
    for name in ("a", "b"):
        kubectl("create", "-f", "-", stdin=POD.format(name=name, pool="default"))
    kubectl("label", "pod", "a", "team=x")
    assert kubectl("get", "pods", "-l", "team=x", "-o", "name").stdout == "pod/a\n"
    kubectl("delete", "pods", "-l", "app=demo", "--wait=true")
    assert kubectl("get", "pods", "-o", "name").stdout == ""

"""Scheduling behind the real API server: taints, node selectors, capacity that frees up,
and nodes going NotReady, seen through the official client."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.fixtures.waiting import wait_for
from tests.integration.test_sim_kubelet import NS, Make, events_of, make, phase, pod

pytestmark = pytest.mark.integration
__all__ = ["make"]  # the fixture, shared with the kubelet tests


def scheduled(api: client.CoreV1Api, name: str) -> dict[str, Any]:
    found = api.read_namespaced_pod(name, NS)
    cond = next((c for c in found.status.conditions or () if c.type == "PodScheduled"), None)
    if cond is None:
        return {}
    return {"status": cond.status, "reason": cond.reason, "message": cond.message}


def unschedulable(api: client.CoreV1Api, name: str) -> Any:
    return lambda: scheduled(api, name).get("reason") == "Unschedulable" and scheduled(api, name)


def test_taint_without_toleration_stays_pending(make: Make) -> None:
    _, api = make("gpu=2:taint=gpu=true:NoSchedule", "default=2:cpu=1")
    api.create_namespaced_pod(NS, pod("needs-cpu", container=_requests(cpu="2")))
    cond = wait_for("Unschedulable", unschedulable(api, "needs-cpu"), 15.0)
    assert cond["status"] == "False"
    assert cond["message"].startswith(
        "0/4 nodes are available: 2 Insufficient cpu, 2 node(s) had untolerated taint {gpu: true}."
    )
    assert ("FailedScheduling", cond["message"]) in events_of(api, "needs-cpu")
    assert api.read_namespaced_pod("needs-cpu", NS).status.phase == "Pending"
    tolerant = pod(
        "tolerant",
        container=_requests(cpu="2"),
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    api.create_namespaced_pod(NS, tolerant)
    bound = wait_for("bind", lambda: api.read_namespaced_pod("tolerant", NS).spec.node_name, 15.0)
    assert bound.startswith("gpu-")


def _requests(**amounts: str) -> dict:
    return {"resources": {"requests": amounts}}


def test_node_selector_sends_the_pod_to_its_pool(make: Make) -> None:
    _, api = make("default=3", "big=1:cpu=64:mem=256Gi")
    for i in range(3):
        api.create_namespaced_pod(NS, pod(f"big-{i}", nodeSelector={"kubequeue.io/pool": "big"}))
    for i in range(3):
        done = wait_for(f"big-{i} to succeed", phase(api, f"big-{i}", "Succeeded"), 15.0)
        assert done.spec.node_name == "big-0"
    nodes = api.list_node(label_selector="kubequeue.io/pool=big").items
    assert [n.metadata.name for n in nodes] == ["big-0"]


def test_requests_beyond_capacity_wait_then_schedule_when_a_pod_finishes(make: Make) -> None:
    _, api = make("small=1:cpu=1:mem=1Gi:profile=fast")
    first = pod(
        "first", container=_requests(cpu="800m"), annotations={"kubequeue.io/sim-duration": "1s"}
    )
    api.create_namespaced_pod(NS, first)
    wait_for("first to run", phase(api, "first", "Running"), 15.0)
    api.create_namespaced_pod(NS, pod("second", container=_requests(cpu="500m")))
    cond = wait_for("second to wait", unschedulable(api, "second"), 15.0)
    assert "1 Insufficient cpu" in cond["message"]
    done = wait_for("second to run after first", phase(api, "second", "Succeeded"), 15.0)
    first_end = api.read_namespaced_pod("first", NS).status.container_statuses[0]
    second_start = done.status.container_statuses[0].state.terminated.started_at
    assert first_end.state.terminated.finished_at <= second_start
    assert scheduled(api, "second")["status"] == "True"


def test_node_not_ready_loses_its_pods_and_stops_scheduling(make: Make) -> None:
    instance, api = make("one=1:profile=fast")
    # The API adds kube-apiserver's default 300 s toleration; this pod asks for none.
    at_once: dict[str, Any] = {"key": "node.kubernetes.io/unreachable", "operator": "Exists"}
    at_once.update(effect="NoExecute", tolerationSeconds=0)
    running = pod("victim", annotations={"kubequeue.io/sim-duration": "1h"}, tolerations=[at_once])
    api.create_namespaced_pod(NS, running)
    wait_for("victim to run", phase(api, "victim", "Running"), 15.0)

    instance.set_node_ready("one-0", False)
    node = api.read_node("one-0")
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
    assert {(t.key, t.effect) for t in node.spec.taints} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    lost = wait_for("victim to be lost", phase(api, "victim", "Failed"), 15.0)
    assert lost.status.reason == "NodeLost"
    term = lost.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (137, "ContainerStatusUnknown")
    api.create_namespaced_pod(NS, pod("later"))
    cond = wait_for("later to wait", unschedulable(api, "later"), 15.0)
    assert "untolerated taint {node.kubernetes.io/unreachable: }" in cond["message"]

    instance.set_node_ready("one-0", True)
    assert not api.read_node("one-0").spec.taints
    wait_for("later to run once the node is back", phase(api, "later", "Succeeded"), 15.0)


def test_toleration_seconds_delay_the_loss(make: Make) -> None:
    instance, api = make("one=1:profile=fast")
    tolerations = [
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 3600,
        }
    ]
    body = pod("patient", annotations={"kubequeue.io/sim-duration": "1h"}, tolerations=tolerations)
    api.create_namespaced_pod(NS, body)
    wait_for("patient to run", phase(api, "patient", "Running"), 15.0)
    instance.set_node_ready("one-0", False)
    not_ready = wait_for(
        "the pod to lose readiness",
        lambda: any(
            c.type == "Ready" and c.status == "False"
            for c in api.read_namespaced_pod("patient", NS).status.conditions
        ),
        15.0,
    )
    assert not_ready
    assert api.read_namespaced_pod("patient", NS).status.phase == "Running"
    instance.set_node_ready("one-0", True)  # back, but its containers died with it
    lost = wait_for("patient to be lost", phase(api, "patient", "Failed"), 15.0)
    assert lost.status.reason == "NodeLost"

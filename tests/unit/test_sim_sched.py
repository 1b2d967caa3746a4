"""The scheduler's decisions, on a real Store with no event loop: tests call schedule()."""

from __future__ import annotations

from typing import Any

import pytest

from kubequeue.sim.cluster import NodePool, Taint, node_object
from kubequeue.sim.fit import pod_requests, tolerates
from kubequeue.sim.scheduler import Scheduler
from kubequeue.sim.store import Store


def cluster(*pools: NodePool) -> tuple[Store, Scheduler]:
    store = Store()
    number = 0
    for pool in pools:
        for i in range(pool.count):
            store.create("nodes", node_object(pool, i, number))
            number += 1
    sched = Scheduler(store)
    sched.load()
    store.add_listener(sched.on_change)
    return store, sched


def pod(name: str, cpu: str = "100m", memory: str = "64Mi", **spec: Any) -> dict:
    container: dict[str, Any] = {"name": "base", "image": "busybox"}
    if cpu or memory:
        container["resources"] = {"requests": {"cpu": cpu, "memory": memory}}
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"containers": [container], **spec},
    }


def node_of(store: Store, name: str) -> str | None:
    found = store.get("pods", "ns", name)
    assert found is not None
    return found["spec"].get("nodeName")


def condition(store: Store, name: str) -> dict:
    found = store.get("pods", "ns", name)
    assert found is not None
    return next(c for c in found["status"]["conditions"] if c["type"] == "PodScheduled")


def events(store: Store, reason: str) -> list[dict]:
    return [e for e in store.list("events") if e["reason"] == reason]


def finish(store: Store, name: str) -> None:
    found = store.get("pods", "ns", name)
    assert found is not None
    store.update("pods", {**found, "status": {**found["status"], "phase": "Succeeded"}})


GPU = NodePool("gpu", 2, taints=(Taint("gpu", "true", "NoSchedule"),))


def test_binds_with_condition_and_scheduled_event() -> None:
    store, sched = cluster(NodePool("default", 2))
    store.create("pods", pod("a"))
    assert sched.schedule() == 1
    assert node_of(store, "a") in ("default-0", "default-1")
    assert condition(store, "a")["status"] == "True"
    (event,) = events(store, "Scheduled")
    assert event["message"] == f"Successfully assigned ns/a to {node_of(store, 'a')}"
    assert event["involvedObject"]["name"] == "a" and event["action"] == "Binding"


def test_untolerated_taint_stays_pending_with_reason_and_event() -> None:
    store, sched = cluster(GPU, NodePool("default", 2, cpu="100m"))
    store.create("pods", pod("a", cpu="1"))
    assert sched.schedule() == 0
    cond = condition(store, "a")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert cond["message"] == (
        "0/4 nodes are available: 2 Insufficient cpu, 2 node(s) had untolerated taint "
        "{gpu: true}. preemption: 0/4 nodes are available: 2 No preemption victims found "
        "for incoming pod, 2 Preemption is not helpful for scheduling."
    )
    (event,) = events(store, "FailedScheduling")
    assert event["type"] == "Warning" and event["message"] == cond["message"]
    assert sched.schedule() == 0 and len(events(store, "FailedScheduling")) == 1  # no repeats


@pytest.mark.parametrize(
    ("toleration", "fits"),
    [
        ({"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, True),
        ({"key": "gpu", "value": "true"}, True),  # Equal is the default; any effect
        ({"key": "gpu", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # empty key + Exists tolerates everything
        ({"key": "gpu", "value": "false"}, False),
        ({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}, False),
    ],
)
def test_tolerations(toleration: dict, fits: bool) -> None:
    store, sched = cluster(GPU)
    store.create("pods", pod("a", tolerations=[toleration]))
    assert sched.schedule() == int(fits)


def test_prefer_no_schedule_does_not_filter() -> None:
    store, sched = cluster(NodePool("soft", 1, taints=(Taint("x", "", "PreferNoSchedule"),)))
    store.create("pods", pod("a"))
    assert sched.schedule() == 1
    assert tolerates({"key": "x", "operator": "Exists"}, {"key": "x", "effect": "NoExecute"})


def test_node_selector_picks_the_pool() -> None:
    store, sched = cluster(NodePool("default", 3), NodePool("big", 1, cpu="64"))
    for i in range(3):
        store.create("pods", pod(f"p{i}", nodeSelector={"kubequeue.io/pool": "big"}))
    assert sched.schedule() == 3
    assert {node_of(store, f"p{i}") for i in range(3)} == {"big-0"}
    store.create("pods", pod("lost", nodeSelector={"kubequeue.io/pool": "nowhere"}))
    sched.schedule()
    assert (
        "4 node(s) didn't match Pod's node affinity/selector" in condition(store, "lost")["message"]
    )


def _affinity(*exprs: dict) -> dict:
    terms = [{"matchExpressions": list(exprs)}]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    return {"nodeAffinity": required}


@pytest.mark.parametrize(
    ("expr", "nodes"),
    [
        ({"key": "kubequeue.io/pool", "operator": "In", "values": ["big"]}, {"big-0"}),
        ({"key": "kubequeue.io/pool", "operator": "NotIn", "values": ["big"]}, {"default-0"}),
        ({"key": "disk", "operator": "Exists"}, {"big-0"}),
        ({"key": "disk", "operator": "DoesNotExist"}, {"default-0"}),
        ({"key": "kubequeue.io/pool", "operator": "In", "values": ["none"]}, set()),
    ],
)
def test_required_node_affinity(expr: dict, nodes: set[str]) -> None:
    store, sched = cluster(NodePool("default", 1), NodePool("big", 1, labels={"disk": "ssd"}))
    for i in range(4):
        store.create("pods", pod(f"p{i}", affinity=_affinity(expr)))
    sched.schedule()
    assert {node_of(store, f"p{i}") for i in range(4)} - {None} == nodes


def test_affinity_terms_are_ored_and_match_fields_by_name() -> None:
    store, sched = cluster(NodePool("default", 3))
    terms = [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["default-2"]}]},
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["default-0"]}
            ]
        },
    ]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    for i in range(6):
        store.create("pods", pod(f"p{i}", affinity={"nodeAffinity": required}))
    sched.schedule()
    assert {node_of(store, f"p{i}") for i in range(6)} == {"default-0", "default-2"}


def test_requests_beyond_capacity_wait_until_a_pod_finishes() -> None:
    store, sched = cluster(NodePool("default", 2, cpu="2", memory="4Gi"))
    for i in range(5):
        store.create("pods", pod(f"p{i}", cpu="1", memory="1Gi"))
    assert sched.schedule() == 4
    assert node_of(store, "p4") is None
    assert condition(store, "p4")["message"].startswith(
        "0/2 nodes are available: 2 Insufficient cpu."
    )
    finish(store, "p1")
    assert sched.schedule() == 1
    assert node_of(store, "p4") == node_of(store, "p1")
    assert condition(store, "p4")["status"] == "True"


def test_deleting_a_pod_frees_its_capacity() -> None:
    store, sched = cluster(NodePool("default", 1, memory="1Gi"))
    store.create("pods", pod("a", memory="1Gi"))
    store.create("pods", pod("b", memory="600Mi"))
    sched.schedule()
    assert "Insufficient memory" in condition(store, "b")["message"]
    store.remove("pods", "ns", "a")
    assert sched.schedule() == 1


def test_max_pods_per_node() -> None:
    store, sched = cluster(NodePool("default", 2, max_pods=3))
    for i in range(7):
        store.create("pods", pod(f"p{i}", cpu="", memory=""))
    assert sched.schedule() == 6
    assert condition(store, "p6")["message"].startswith("0/2 nodes are available: 2 Too many pods.")


def test_extended_resources_and_limits_standing_in_for_requests() -> None:
    store, sched = cluster(
        NodePool("default", 1), NodePool("gpu", 1, resources={"nvidia.com/gpu": "1"})
    )
    gpu = {"name": "base", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    store.create(
        "pods", {"metadata": {"name": "g1", "namespace": "ns"}, "spec": {"containers": [gpu]}}
    )
    store.create(
        "pods", {"metadata": {"name": "g2", "namespace": "ns"}, "spec": {"containers": [gpu]}}
    )
    assert sched.schedule() == 1
    assert node_of(store, "g1") == "gpu-0"
    assert "2 Insufficient nvidia.com/gpu." in condition(store, "g2")["message"]


def test_pod_requests_add_containers_and_take_the_largest_init_container() -> None:
    def c(cpu: str) -> dict:
        return {"resources": {"requests": {"cpu": cpu}}}

    spec: dict[str, Any] = {"containers": [c("250m"), c("0.5")]}
    spec["initContainers"] = [c("1"), c("100m")]
    assert pod_requests(spec) == {"cpu": 1000}
    spec["overhead"] = {"cpu": "10m", "memory": "1Ki"}
    assert pod_requests(spec) == {"cpu": 1010, "memory": 1024}
    assert pod_requests({"containers": [{"resources": {"requests": {"cpu": "lots"}}}]}) == {}


def test_node_going_unreachable_and_back() -> None:
    store, sched = cluster(NodePool("default", 1))
    node = store.get("nodes", None, "default-0")
    assert node is not None
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
    tainted = store.update("nodes", {**node, "spec": {**node["spec"], "taints": [taint]}})
    store.create("pods", pod("a"))
    sched.schedule()
    assert (
        "untolerated taint {node.kubernetes.io/unreachable: }" in condition(store, "a")["message"]
    )
    store.update("nodes", {**tainted, "spec": node["spec"]})
    assert sched.schedule() == 1


def test_pods_for_other_schedulers_or_bound_already_are_left_alone() -> None:
    store, sched = cluster(NodePool("default", 1, max_pods=1))
    store.create("pods", pod("mine", schedulerName="my-scheduler"))
    store.create("pods", pod("pinned", nodeName="default-0"))
    store.create("pods", pod("late"))
    assert sched.schedule() == 0
    assert node_of(store, "mine") is None
    assert "status" not in (store.get("pods", "ns", "mine") or {})
    assert "Too many pods" in condition(store, "late")["message"]  # pinned counts


def test_a_full_cluster_costs_one_try_per_group_not_per_pod() -> None:
    """10,000 pods of one shape wait; each freed slot binds one with a handful of writes."""
    store, sched = cluster(NodePool("default", 4, max_pods=25))
    for i in range(10_000):
        store.create("pods", pod(f"p{i}"))
    assert sched.schedule(budget=20_000) == 100
    before = store.resource_version
    finish(store, "p0")
    assert sched.schedule() == 1
    # finish + bind + Scheduled event (+ at most the head's refreshed message and event)
    assert store.resource_version - before <= 5
    assert node_of(store, "p100") is not None and node_of(store, "p101") is None
    assert len(events(store, "FailedScheduling")) == 9_900  # every waiting pod told once


def test_bursts_bind_in_rounds_of_the_budget_and_spread() -> None:
    store, sched = cluster(NodePool("default", 20, cpu="16", max_pods=110))
    for i in range(2_000):
        store.create("pods", pod(f"p{i}"))
    rounds = 0
    while sched.schedule(budget=500):
        rounds += 1
    assert rounds == 4 and sched.binds == 2_000
    per_node = {n.name: n.used["pods"] for n in sched.nodes.values()}
    assert set(per_node.values()) == {100}  # round-robin spreads evenly


def test_oldest_pod_first_across_groups() -> None:
    store, sched = cluster(NodePool("default", 1, max_pods=3))
    for i in range(3):
        store.create("pods", pod(f"small-{i}", cpu="100m"))
        store.create("pods", pod(f"large-{i}", cpu="1"))
    assert sched.schedule() == 3
    bound = {p["metadata"]["name"] for p in store.list("pods") if p["spec"].get("nodeName")}
    assert bound == {"small-0", "large-0", "small-1"}

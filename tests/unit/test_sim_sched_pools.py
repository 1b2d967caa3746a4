"""Node pools: the `--nodes` spec strings, the errors a bad one gives, the Node objects a
pool registers, and resource quantities."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kubequeue.errors import ConfigError
from kubequeue.sim.cluster import Cluster, NodePool, Taint, node_object, parse_pool
from kubequeue.sim.quantity import QuantityError, milli, parse_quantity, units
from kubequeue.sim.store import Store


def test_full_spec() -> None:
    pool = parse_pool(
        "gpu=2:cpu=8:mem=32Gi:taint=gpu=true:NoSchedule:kubelet=process:label=team=ml"
        ":res=nvidia.com/gpu=1:pods=20:profile=fast:taint=spot:NoExecute"
    )
    assert pool == NodePool(
        name="gpu",
        count=2,
        cpu="8",
        memory="32Gi",
        max_pods=20,
        taints=(Taint("gpu", "true", "NoSchedule"), Taint("spot", "", "NoExecute")),
        labels={"team": "ml"},
        kubelet="process",
        profile="fast",
        resources={"nvidia.com/gpu": "1"},
    )


def test_defaults() -> None:
    assert parse_pool("default=4") == NodePool("default", 4)
    assert parse_pool("solo").count == 1


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("gpu=two", "count must be a whole number, got 'two'"),
        ("GPU=1", "name 'GPU' must be a DNS label"),
        ("gpu=1:cpu=lots", "cpu=lots: quantities must match the regular expression"),
        ("gpu=1:mem=0", "mem=0 must be positive"),
        ("gpu=1:taint=gpu=true", "taint=gpu=true needs an effect: taint=key=value:NoSchedule"),
        ("gpu=1:taint=gpu=true:Never", "needs an effect"),
        ("gpu=1:kubelet=docker", "kubelet must be timed or process, not 'docker'"),
        ("gpu=1:profile=slow", "unknown profile 'slow'"),
        ("gpu=1:colour=red", "unknown option 'colour' \\(options: cpu, mem, pods"),
        ("gpu=1:cpu", "an option needs key=value, got 'cpu'"),
        ("gpu=1:label=team", "label needs key=value, got 'team'"),
        ("gpu=1:label=te am=x", "bad label/taint te am=x"),
        ("gpu=1:pods=0", "pods >= 1"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error) as info:
        parse_pool(spec)
    assert str(info.value).startswith(f"node pool {spec!r}: ")


def test_pool_names_must_be_unique() -> None:
    with pytest.raises(ConfigError, match="node pool names must be unique: a given twice"):
        Cluster(Store(), [NodePool("a", 1), NodePool("b", 1), NodePool("a", 2)])


def test_node_object() -> None:
    pool = parse_pool("gpu=2:cpu=4:mem=16Gi:taint=gpu=true:NoSchedule:label=team=ml")
    node = node_object(pool, 1, 5)
    meta, spec, status = node["metadata"], node["spec"], node["status"]
    assert meta["name"] == "gpu-1"
    assert meta["labels"]["kubequeue.io/pool"] == "gpu"
    assert meta["labels"]["kubernetes.io/hostname"] == "gpu-1"
    assert meta["labels"]["node.kubernetes.io/instance-type"] == "sim.4cpu.16Gi"
    assert meta["labels"]["team"] == "ml"
    assert spec["taints"] == [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
    assert status["allocatable"] == status["capacity"]
    assert {k: status["allocatable"][k] for k in ("cpu", "memory", "pods")} == {
        "cpu": "4",
        "memory": "16Gi",
        "pods": "110",
    }
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert status["addresses"][0] == {"type": "InternalIP", "address": "10.0.0.7"}
    assert "taints" not in node_object(NodePool("plain", 1), 0, 0)["spec"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("1.5", Fraction(3, 2)),
        ("32Gi", 32 * 2**30),
        ("1e3", 1000),
        ("1E-3", Fraction(1, 1000)),
        (".5", Fraction(1, 2)),
        ("128974848", 128974848),
        ("100M", 10**8),
        ("1k", 1000),
        ("2Ki", 2048),
        ("10u", Fraction(1, 10**5)),
    ],
)
def test_quantities(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_quantity_units_round_up() -> None:
    assert milli("100m") == 100 and milli("0.0001") == 1 and milli(2) == 2000
    assert units("1.5Ki") == 1536 and units("0.5") == 1


@pytest.mark.parametrize("text", ["1K", "abc", "", "1.2.3", "Mi", "1 Gi", "1Gb"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(QuantityError, match="quantities must match the regular expression"):
        parse_quantity(text)


def test_install_registers_nodes_and_leases_once() -> None:
    store = Store()
    Cluster(store, [NodePool("a", 2)]).install()
    Cluster(store, [NodePool("a", 2)]).install()  # a restart keeps what is there
    assert sorted(n["metadata"]["name"] for n in store.list("nodes")) == ["a-0", "a-1"]
    lease = store.get("leases", "kube-node-lease", "a-1")
    assert lease is not None and lease["spec"]["holderIdentity"] == "a-1"


def test_old_events_expire_and_their_number_is_capped() -> None:
    store = Store()
    cluster = Cluster(store, [NodePool("a", 1)])
    cluster.install()
    for i in range(5):
        store.create("events", {"metadata": {"name": f"e{i}", "namespace": "ns"}, "reason": "X"})
    assert cluster.expire_events(keep=2) == 3
    assert sorted(e["metadata"]["name"] for e in store.list("events")) == ["e3", "e4"]
    assert cluster.expire_events(ttl=-1) == 2 and store.list("events") == []

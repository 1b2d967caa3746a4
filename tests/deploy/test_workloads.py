"""The rendered workloads keep the components contract: env names kubequeue reads, probes
on the metrics port, graceful termination, leader election flags, non-root; and the objects
that point at each other (Services, ServiceMonitor, PDBs, NetworkPolicy, volumes, pools
file) actually meet."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click
import pytest

from kubequeue import kube, pools, settings
from tests.deploy.manifests import (
    HOME_TARGETS,
    Obj,
    container,
    of_kind,
    one,
    pod_labels,
    render,
    selects,
)

COMPONENTS = {
    "dispatcher": settings.DISPATCHER_METRICS_PORT,
    "watcher": settings.WATCHER_METRICS_PORT,
}
# Every KUBEQUEUE_* variable kubequeue.settings reads; a typo in a manifest is silently unused.
KNOWN_ENV = set(re.findall(r"KUBEQUEUE_[A-Z_]+", Path(settings.__file__).read_text()))
# Secrets an overlay expects to exist (created out of band, never committed).
EXTERNAL_SECRETS = {
    "base": {"kubequeue-redis"},
    "overlays/dev": set(),
    "overlays/production": {"kubequeue-redis", "kubequeue-redis-tls"},
    "overlays/remote-cluster": {
        "kubequeue-redis",
        "kubequeue-redis-tls",
        "kubequeue-kubeconfig-dispatcher",
        "kubequeue-kubeconfig-watcher",
    },
}


def _env(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


def _deployment(target: str, component: str) -> Obj:
    return one(render(target), "Deployment", f"kubequeue-{component}")


@pytest.mark.parametrize("target", HOME_TARGETS)
@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_component_contract(target: str, component: str) -> None:
    dep = _deployment(target, component)
    spec = dep["spec"]["template"]["spec"]
    c = container(dep)
    env = _env(c)
    port = COMPONENTS[component]
    assert c["args"][0] == component
    assert {n for n in env if n.startswith("KUBEQUEUE_")} <= KNOWN_ENV
    literal = {n: e["value"] for n, e in env.items() if "value" in e}
    parsed = settings.Settings.from_env({**literal, "KUBEQUEUE_REDIS_URL": "redis://r:6379/0"})
    assert parsed.metrics_port == port
    assert parsed.pools_file == "/etc/kubequeue/pools.yaml"
    assert "secretKeyRef" in env["KUBEQUEUE_REDIS_URL"]["valueFrom"], "Redis URL not secret"
    assert env["KUBEQUEUE_METRICS_PORT"]["value"] == str(port)
    assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert spec["serviceAccountName"] == f"kubequeue-{component}"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "memory" in c["resources"]["limits"]


def _command(component: str) -> click.Command:
    module = importlib.import_module(f"kubequeue.{component}.cli")
    command: click.Command = getattr(module, component)
    return command


def _option(command: click.Command, flag: str) -> click.Parameter:
    (param,) = [p for p in command.params if flag in p.opts]
    return param


@pytest.mark.parametrize("target", HOME_TARGETS)
@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_args_are_options_of_the_command(target: str, component: str) -> None:
    command = _command(component)
    for arg in container(_deployment(target, component))["args"][1:]:
        if arg.startswith("--"):
            assert _option(command, arg), f"kubequeue {component} has no option {arg}"


@pytest.mark.parametrize("target", HOME_TARGETS)
def test_dispatcher_outlives_its_longest_create(target: str) -> None:
    spec = _deployment(target, "dispatcher")["spec"]["template"]["spec"]
    args = container(_deployment(target, "dispatcher"))["args"]
    lease = _option(_command("dispatcher"), "--lease").default
    if "--lease" in args:
        lease = float(args[args.index("--lease") + 1])
    # After SIGTERM: one create request (read timeout), then recording it (up to --lease).
    assert isinstance(lease, float)
    assert spec["terminationGracePeriodSeconds"] > kube.REQUEST_TIMEOUT[1] + lease


@pytest.mark.parametrize("target", HOME_TARGETS)
def test_watcher_leader_election(target: str) -> None:
    dep = _deployment(target, "watcher")
    args = container(dep)["args"]
    assert args[args.index("--lease-namespace") + 1] == "$(POD_NAMESPACE)"
    assert args[args.index("--identity") + 1] == "$(POD_NAME)"
    env = _env(container(dep))
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    expected = 1 if target == "overlays/dev" else 2
    assert dep["spec"]["replicas"] == expected


@pytest.mark.parametrize("target", HOME_TARGETS)
@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_volumes_and_files_exist(target: str, component: str) -> None:
    objs = render(target)
    dep = _deployment(target, component)
    configmaps = {o["metadata"]["name"]: o for o in of_kind(objs, "ConfigMap")}
    secrets = {o["metadata"]["name"] for o in of_kind(objs, "Secret")}
    secrets |= EXTERNAL_SECRETS[target]
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container(dep)["volumeMounts"]}
    for volume in volumes.values():
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secrets
    for e in container(dep).get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        assert ref is None or ref["name"] in secrets
    env = _env(container(dep))
    for name in ("KUBEQUEUE_POOLS_FILE", "KUBEQUEUE_KUBECONFIG"):
        if name in env:
            directory, _, filename = env[name]["value"].rpartition("/")
            volume = mounts.get(directory)
            assert volume, f"{name}: nothing is mounted at {directory}"
            items = (volume.get("configMap") or volume.get("secret") or {}).get("items", [])
            assert filename in {i["path"] for i in items}, f"{name}: no {filename} in volume"


@pytest.mark.parametrize("target", HOME_TARGETS)
def test_pools_file_is_valid(target: str) -> None:
    (cm,) = [o for o in of_kind(render(target), "ConfigMap") if "pools.yaml" in o["data"]]
    config = pools.parse(cm["data"]["pools.yaml"], source=f"deploy/{target} pools.yaml")
    assert config.queues
    if target == "overlays/remote-cluster":
        assert any(p.context == "remote" for p in config.pools.values())


@pytest.mark.parametrize("target", HOME_TARGETS)
def test_services_pdbs_and_policies_select_the_components(target: str) -> None:
    objs = render(target)
    for component, port in COMPONENTS.items():
        labels = pod_labels(_deployment(target, component))
        svc = one(objs, "Service", f"kubequeue-{component}")
        assert selects({"matchLabels": svc["spec"]["selector"]}, labels)
        assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
        assert svc["spec"]["ports"][0]["port"] == port
        pdb = one(objs, "PodDisruptionBudget", f"kubequeue-{component}")
        assert selects(pdb["spec"]["selector"], labels)
        netpol = one(objs, "NetworkPolicy", "kubequeue")
        assert selects(netpol["spec"]["podSelector"], labels)
        ingress_ports = {p["port"] for r in netpol["spec"]["ingress"] for p in r["ports"]}
        assert port in ingress_ports
        # the PDB selects only this component
        others = [
            d
            for d in of_kind(objs, "Deployment")
            if d["metadata"]["name"] != svc["metadata"]["name"]
        ]
        assert not any(selects(pdb["spec"]["selector"], pod_labels(d)) for d in others)


@pytest.mark.parametrize("target", ["overlays/production", "overlays/remote-cluster"])
def test_servicemonitor_scrapes_both_services(target: str) -> None:
    objs = render(target)
    sm = one(objs, "ServiceMonitor", "kubequeue")
    selected = [
        s["metadata"]["name"]
        for s in of_kind(objs, "Service")
        if selects(sm["spec"]["selector"], s["metadata"]["labels"])
        and s["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    ]
    # The Service names become the `job` label the alerts select on.
    assert sorted(selected) == ["kubequeue-dispatcher", "kubequeue-watcher"]
    for s in of_kind(objs, "Service"):
        if s["metadata"]["name"] in selected:
            assert {p["name"] for p in s["spec"]["ports"]} >= {sm["spec"]["endpoints"][0]["port"]}

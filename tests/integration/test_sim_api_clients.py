"""Other clients and features: pod logs (and follow), leases, kubernetes_asyncio, the
DynamicClient with metadata-only lists (as the KubernetesExecutor's adoption uses), faults."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio import config as aconfig

from kubequeue.sim import Sim, SimConfig
from kubequeue.sim.cluster import NodePool
from kubequeue.sim.faults import FaultConfig
from tests.fixtures.sim import SimFactory, kube_client

pytestmark = pytest.mark.integration


def pod(name: str, **container: object) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="base", image="busybox", **container)]
        ),
    )


def read_log(core: client.CoreV1Api, name: str, **query: object) -> str:
    """The log as text. kubernetes 36.0 returns the repr of the bytes from
    read_namespaced_pod_log (kubernetes-client/python#2596), real cluster or not; reading
    the raw response works with every client version."""
    response = core.read_namespaced_pod_log(name, "default", _preload_content=False, **query)
    return str(response.data.decode())


def running_pod(core: client.CoreV1Api, sim: Sim, name: str) -> None:
    """A pod bound to a node with a running container (no kubelet in `api_sim`)."""
    core.create_namespaced_pod("default", pod(name))

    def start() -> None:
        stored = sim.store.get("pods", "default", name)
        assert stored is not None
        running = {"name": "base", "ready": True, "restartCount": 0, "state": {"running": {}}}
        sim.store.update(
            "pods",
            {
                **stored,
                "spec": {**stored["spec"], "nodeName": "n1"},
                "status": {"phase": "Running", "containerStatuses": [running]},
            },
        )

    sim.call(start)


def test_pod_log_read_tail_and_errors(core: client.CoreV1Api, api_sim: Sim) -> None:
    core.create_namespaced_pod("default", pod("waiting"))
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("waiting", "default")
    assert err.value.status == 400
    assert json.loads(err.value.body)["message"] == "pod waiting does not have a host assigned"

    running_pod(core, api_sim, "p")
    api_sim.call(lambda: api_sim.store.append_log("default", "p", "base", "one\ntwo\nthree\n"))
    assert read_log(core, "p") == "one\ntwo\nthree\n"
    assert read_log(core, "p", tail_lines=1) == "three\n"
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("p", "default", container="sidecar")
    assert json.loads(err.value.body)["message"] == "container sidecar is not valid for pod p"


def test_pod_log_follow_streams_until_the_container_ends(
    core: client.CoreV1Api, api_sim: Sim
) -> None:
    running_pod(core, api_sim, "p")
    api_sim.call(lambda: api_sim.store.append_log("default", "p", "base", "first\n"))
    lines: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for line in watch.Watch().stream(
            core.read_namespaced_pod_log, name="p", namespace="default", follow=True
        ):
            lines.append(line)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    deadline = time.monotonic() + 10
    while not lines and time.monotonic() < deadline:
        time.sleep(0.02)
    api_sim.call(lambda: api_sim.store.append_log("default", "p", "base", "second\n"))
    api_sim.call(lambda: api_sim.store.close_log("default", "p", "base"))
    assert done.wait(10)
    assert lines == ["first", "second"]


def test_process_pod_log_end_to_end(sim_factory: SimFactory) -> None:
    cluster = sim_factory(SimConfig(pools=(NodePool("proc", 1, kubelet="process"),)))
    for api_client in kube_client(cluster):
        core = client.CoreV1Api(api_client)
        script = "print('hi'); raise SystemExit(3)"
        body = pod("proc", command=["python", "-c", script])
        body.spec.restart_policy = "Never"
        core.create_namespaced_pod("default", body)
        for event in watch.Watch().stream(
            core.list_namespaced_pod,
            "default",
            field_selector="metadata.name=proc",
            timeout_seconds=30,
        ):
            if event["object"].status.phase in ("Succeeded", "Failed"):
                break
        assert core.read_namespaced_pod("proc", "default").status.phase == "Failed"
        assert read_log(core, "proc") == "hi\n"


def test_leases_for_leader_election(api_sim: Sim) -> None:
    for api_client in kube_client(api_sim):
        leases = client.CoordinationV1Api(api_client)
        spec = client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15)
        body = client.V1Lease(metadata=client.V1ObjectMeta(name="watcher"), spec=spec)
        leases.create_namespaced_lease("default", body)
        with pytest.raises(ApiException) as err:
            leases.create_namespaced_lease("default", body)
        assert err.value.status == 409  # the second candidate loses the race to create
        mine = leases.read_namespaced_lease("watcher", "default")
        theirs = leases.read_namespaced_lease("watcher", "default")
        mine.spec.holder_identity = "a"
        mine.spec.renew_time = "2026-01-01T00:00:00.000000Z"
        leases.replace_namespaced_lease("watcher", "default", mine)
        theirs.spec.holder_identity = "b"
        with pytest.raises(ApiException) as err:
            leases.replace_namespaced_lease("watcher", "default", theirs)
        assert err.value.status == 409  # a stale takeover is refused
        assert leases.read_namespaced_lease("watcher", "default").spec.holder_identity == "a"
        listed = leases.list_namespaced_lease("default").items
        assert [lease.metadata.name for lease in listed] == ["watcher"]


def test_kubernetes_asyncio_creates_and_lists(api_sim: Sim) -> None:
    async def scenario() -> list[str]:
        api_client = await aconfig.new_client_from_config(
            config_file=str(api_sim.kubeconfig), context=api_sim.context
        )
        async with api_client:
            core = aclient.CoreV1Api(api_client)
            bodies = [
                aclient.V1Pod(
                    metadata=aclient.V1ObjectMeta(name=f"async-{i}"),
                    spec=aclient.V1PodSpec(containers=[aclient.V1Container(name="b", image="x")]),
                )
                for i in range(20)
            ]
            await asyncio.gather(*(core.create_namespaced_pod("default", b) for b in bodies))
            listed = await core.list_namespaced_pod("default")
            return sorted(p.metadata.name for p in listed.items)

    assert asyncio.run(scenario()) == sorted(f"async-{i}" for i in range(20))


def test_dynamic_client_metadata_only_list(core: client.CoreV1Api, api_sim: Sim) -> None:
    core.create_namespaced_pod("default", pod("p"))
    dyn = dynamic.DynamicClient(core.api_client)
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    result = dyn.get(resource=pods, namespace="default", header_params={"Accept": accept})
    assert result.kind == "PartialObjectMetadataList"
    assert [item.metadata.name for item in result.items] == ["p"]
    leases = dyn.resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    assert leases.namespaced


def test_faults_on_pod_creates_are_seeded(sim_factory: SimFactory) -> None:
    faults = FaultConfig(throttle=0.5, retry_after=3, scope="pod-creates")

    def outcomes() -> list[int]:
        instance = sim_factory(SimConfig(pools=(), seed=42, faults=faults))
        codes = []
        for api_client in kube_client(instance):
            core = client.CoreV1Api(api_client)
            assert core.list_namespaced_pod("default").items == []  # reads are not faulted
            for i in range(12):
                try:
                    core.create_namespaced_pod("default", pod(f"p{i}"))
                    codes.append(201)
                except ApiException as e:
                    codes.append(e.status)
                    assert e.headers["Retry-After"] == "3"
                    assert json.loads(e.body)["details"]["retryAfterSeconds"] == 3
        return codes

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {201, 429}


def test_admin_endpoint_changes_faults(api_sim: Sim) -> None:
    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            api_sim.url + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    assert post("/_sim/faults", {"error": 1.0, "error_codes": [503]})["error"] == 1.0
    for api_client in kube_client(api_sim):
        core = client.CoreV1Api(api_client)
        with pytest.raises(ApiException) as err:
            core.create_namespaced_pod("default", pod("p"))
        assert err.value.status == 503
        post("/_sim/faults", {"error": 0.0})
        assert core.create_namespaced_pod("default", pod("p")).metadata.name == "p"
    with pytest.raises(urllib.error.HTTPError) as http_error:
        post("/_sim/faults", {"throttle": 7})
    assert http_error.value.code == 400


def test_node_not_ready_fault(sim: Sim) -> None:
    request = urllib.request.Request(
        sim.url + "/_sim/nodes/default-0/ready", data=b'{"ready": false}', method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()
    for api_client in kube_client(sim):
        node = client.CoreV1Api(api_client).read_node("default-0")
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status != "True"

"""The simulated kubelet behind the real API server, driven by the official client: pods
move through their phases, conditions and container states as a kubelet moves them, in
timed mode and in process mode (real local processes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kubequeue.sim import Sim, SimConfig
from kubequeue.sim.cluster import parse_pool
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration
T = TypeVar("T")
NS = "default"
Make = Callable[..., tuple[Sim, client.CoreV1Api]]


@pytest.fixture
def make(sim_factory: Callable[..., Sim]) -> Iterator[Make]:
    """make("default=2", "proc=1:kubelet=process") → (sim, CoreV1Api)."""
    clients: list[client.ApiClient] = []

    def start(*pools: str, seed: int = 1) -> tuple[Sim, client.CoreV1Api]:
        cfg = SimConfig(pools=tuple(parse_pool(p) for p in pools), seed=seed)
        instance = sim_factory(cfg)
        api = config.new_client_from_config(str(instance.kubeconfig), context=instance.context)
        clients.append(api)
        return instance, client.CoreV1Api(api)

    yield start
    for api in clients:
        api.close()


def pod(
    name: str,
    *,
    command: list[str] | None = None,
    image: str = "busybox:1.36",
    annotations: dict | None = None,
    labels: dict | None = None,
    **spec: Any,
) -> dict:
    container: dict[str, Any] = {"name": "base", "image": image}
    if command:
        container["command"] = command
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def phase(api: client.CoreV1Api, name: str, *phases: str) -> Callable[[], Any]:
    def check() -> Any:
        found = api.read_namespaced_pod(name, NS)
        return found if found.status.phase in phases else None

    return check


def gone(api: client.CoreV1Api, name: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            api.read_namespaced_pod(name, NS)
        except ApiException as e:
            return e.status == 404
        return False

    return check


def events_of(api: client.CoreV1Api, name: str) -> list[tuple[str, str]]:
    items = api.list_namespaced_event(NS).items
    return [(e.reason, e.message) for e in items if e.involved_object.name == name]


def log_of(api: client.CoreV1Api, name: str) -> str:
    # The client (v32+) returns str(bytes) for logs; read the body itself.
    response = api.read_namespaced_pod_log(name, NS, _preload_content=False)
    return str(response.data.decode())


def conditions(found: client.V1Pod) -> dict[str, tuple[str, str | None]]:
    return {c.type: (c.status, c.reason) for c in found.status.conditions}


# -- timed mode ---------------------------------------------------------------------------
def test_timed_pod_runs_to_succeeded_like_a_kubelet(make: Make) -> None:
    _, api = make("default=1:profile=general")
    stream = watch.Watch()
    start_rv = api.list_namespaced_pod(NS).metadata.resource_version
    api.create_namespaced_pod(NS, pod("t1", annotations={"kubequeue.io/sim-duration": "300ms"}))
    seen: list[tuple] = []
    for event in stream.stream(
        api.list_namespaced_pod, NS, resource_version=start_rv, timeout_seconds=20
    ):
        p = event["object"]
        state = p.status.container_statuses[0].state if p.status.container_statuses else None
        step = (p.status.phase, p.spec.node_name is not None, state and _state(state))
        if not seen or seen[-1] != step:
            seen.append(step)
        if p.status.phase == "Succeeded":
            stream.stop()
    assert seen == [
        ("Pending", False, None),
        ("Pending", True, None),
        ("Pending", True, "waiting:ContainerCreating"),
        ("Running", True, "running"),
        ("Succeeded", True, "terminated:Completed"),
    ]
    done = api.read_namespaced_pod("t1", NS)
    assert conditions(done) == {
        "PodReadyToStartContainers": ("False", None),
        "Initialized": ("True", None),
        "Ready": ("False", "PodCompleted"),
        "ContainersReady": ("False", "PodCompleted"),
        "PodScheduled": ("True", None),
    }
    status = done.status
    term = status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (0, "Completed")
    assert term.started_at <= term.finished_at and status.start_time <= term.started_at
    assert status.pod_ip.startswith("10.64.") and status.host_ip.startswith("10.0.")
    reasons = [r for r, _ in events_of(api, "t1")]
    assert reasons[0] == "Scheduled" and reasons[-3:] == ["Pulled", "Created", "Started"]


def _state(state: client.V1ContainerState) -> str:
    if state.waiting:
        return f"waiting:{state.waiting.reason}"
    if state.terminated:
        return f"terminated:{state.terminated.reason}"
    return "running"


def test_exit_code_annotation_fails_the_pod(make: Make) -> None:
    _, api = make("default=1:profile=fast")
    api.create_namespaced_pod(NS, pod("t2", annotations={"kubequeue.io/sim-exit-code": "4"}))
    failed = wait_for("t2 to end", phase(api, "t2", "Failed", "Succeeded"), 15.0)
    term = failed.status.container_statuses[0].state.terminated
    assert (failed.status.phase, term.exit_code, term.reason) == ("Failed", 4, "Error")


def test_image_pull_failure_backs_off(make: Make) -> None:
    _, api = make("default=1:profile=general")
    api.create_namespaced_pod(NS, pod("bad", image="registry.local/app:missing"))

    def waiting(reason: str) -> Callable[[], Any]:
        def check() -> Any:
            statuses = api.read_namespaced_pod("bad", NS).status.container_statuses or []
            return (
                statuses
                and statuses[0].state.waiting
                and (statuses[0].state.waiting.reason == reason)
            )

        return check

    wait_for("ErrImagePull", waiting("ErrImagePull"), 15.0)
    wait_for("ImagePullBackOff", waiting("ImagePullBackOff"), 15.0)
    found = api.read_namespaced_pod("bad", NS)
    assert found.status.phase == "Pending"
    assert found.status.container_statuses[0].state.waiting.message == (
        'Back-off pulling image "registry.local/app:missing"'
    )
    reasons = [r for r, _ in events_of(api, "bad")]
    assert {"Pulling", "Failed", "BackOff"} <= set(reasons)
    assert ("Failed", "Error: ImagePullBackOff") in events_of(api, "bad")


def test_chaos_label_oom_kills(make: Make) -> None:
    _, api = make("default=1:profile=fast")
    labels = {"kubequeue.io/sim-chaos": "oom"}
    annotations = {"kubequeue.io/sim-chaos-delay": "100ms", "kubequeue.io/sim-duration": "1h"}
    api.create_namespaced_pod(NS, pod("oom", labels=labels, annotations=annotations))
    failed = wait_for("OOMKilled", phase(api, "oom", "Failed"), 15.0)
    term = failed.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (137, "OOMKilled")


def test_deleting_a_running_timed_pod_fails_it_then_removes_it(make: Make) -> None:
    _, api = make("default=1:profile=fast")
    api.create_namespaced_pod(NS, pod("long", annotations={"kubequeue.io/sim-duration": "1h"}))
    running = wait_for("Running", phase(api, "long", "Running"), 15.0)
    stream = watch.Watch()
    rv = running.metadata.resource_version
    api.delete_namespaced_pod("long", NS)
    seen = []
    for event in stream.stream(
        api.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=20
    ):
        p = event["object"]
        seen.append((event["type"], p.status.phase, p.metadata.deletion_timestamp is not None))
        if event["type"] == "DELETED":
            stream.stop()
    assert seen[0] == ("MODIFIED", "Running", True)
    assert ("MODIFIED", "Failed", True) in seen and seen[-1][0] == "DELETED"
    assert ("Killing", "Stopping container base") in events_of(api, "long")


# -- process mode -------------------------------------------------------------------------
def test_process_exit_code_and_log(make: Make) -> None:
    _, api = make("proc=1:kubelet=process:profile=fast")
    command = ["python", "-c", "print('hi'); raise SystemExit(3)"]
    api.create_namespaced_pod(NS, pod("p3", command=command))
    failed = wait_for("p3 to end", phase(api, "p3", "Failed", "Succeeded"), 15.0)
    term = failed.status.container_statuses[0].state.terminated
    assert (failed.status.phase, term.exit_code, term.reason) == ("Failed", 3, "Error")
    assert log_of(api, "p3") == "hi\n"


def test_process_env_expansion_and_references(make: Make) -> None:
    _, api = make("proc=1:kubelet=process:profile=fast")
    api.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}, "data": {"COLOUR": "red"}})
    script = "import os; print(os.environ['GREETING'], os.environ['POD'], os.environ['COLOUR'])"
    container = {
        "args": ["$(GREETING)", "$$(GREETING)"],
        "env": [
            {"name": "WHO", "value": "world"},
            {"name": "GREETING", "value": "hello-$(WHO)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
    }
    command = ["python", "-c", script + "; import sys; print(*sys.argv[1:])"]
    api.create_namespaced_pod(NS, pod("env", command=command, container=container))
    done = wait_for("env to end", phase(api, "env", "Succeeded", "Failed"), 15.0)
    assert done.status.phase == "Succeeded"
    assert log_of(api, "env") == "hello-world env red\nhello-world $(GREETING)\n"


def test_process_pod_with_two_containers(make: Make) -> None:
    _, api = make("proc=1:kubelet=process:profile=general")
    body = pod("pair", command=["python", "-c", "print('quick')"])
    slow = {
        "name": "slow",
        "image": "x",
        "command": ["python", "-c", "import time; time.sleep(0.5)"],
    }
    body["spec"]["containers"].append(slow)
    api.create_namespaced_pod(NS, body)
    done = wait_for("pair to end", phase(api, "pair", "Succeeded", "Failed"), 15.0)
    states = {cs.name: cs.state.terminated for cs in done.status.container_statuses}
    assert {name: (t.exit_code, t.reason) for name, t in states.items()} == {
        "base": (0, "Completed"),
        "slow": (0, "Completed"),
    }
    assert done.status.phase == "Succeeded"
    started = [m for r, m in events_of(api, "pair") if r == "Started"]
    assert sorted(started) == ["Started container base", "Started container slow"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (None, 'container "base" has no command'),
        (["no-such-tool"], 'exec: "no-such-tool": executable file not found in $PATH'),
    ],
)
def test_process_that_cannot_start_fails(
    make: Make, command: list[str] | None, message: str
) -> None:
    _, api = make("proc=1:kubelet=process:profile=fast")
    api.create_namespaced_pod(NS, pod("nocmd", command=command))
    failed = wait_for("StartError", phase(api, "nocmd", "Failed"), 15.0)
    term = failed.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (128, "StartError")
    assert message in term.message
    assert any(r == "Failed" and message in m for r, m in events_of(api, "nocmd"))


_TRAP = """
import os, signal, sys, time
out = sys.argv[1]
def on_term(*_):
    open(out, "a").write("SIGTERM\\n")
    if sys.argv[2] == "exit":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(out, "a").write(f"pid {os.getpid()}\\n")
while True:
    time.sleep(0.05)
"""


def _pid(path: Path) -> int:
    return int(path.read_text().split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("behaviour", ["exit", "ignore"])
def test_delete_sends_sigterm_then_sigkill(make: Make, tmp_path: Path, behaviour: str) -> None:
    _, api = make("proc=1:kubelet=process:profile=fast")
    out = tmp_path / "trace"
    command = [sys.executable, "-c", _TRAP, str(out), behaviour]
    api.create_namespaced_pod(NS, pod("trap", command=command))
    wait_for("the process to start", lambda: out.exists() and "pid" in out.read_text(), 15.0)
    pid = _pid(out)
    api.delete_namespaced_pod("trap", NS, grace_period_seconds=1)
    wait_for("the pod to be removed", gone(api, "trap"), 15.0)
    assert "SIGTERM" in out.read_text()
    wait_for("the process to end", lambda: not _alive(pid), 5)
    assert ("Killing", "Stopping container base") in events_of(api, "trap")


def test_stopping_the_simulator_kills_its_processes(make: Make, tmp_path: Path) -> None:
    instance, api = make("proc=1:kubelet=process:profile=fast")
    out = tmp_path / "trace"
    api.create_namespaced_pod(
        NS, pod("stay", command=[sys.executable, "-c", _TRAP, str(out), "ignore"])
    )
    wait_for("the process to start", lambda: out.exists() and "pid" in out.read_text(), 15.0)
    pid = _pid(out)
    instance.stop()
    wait_for("the process to be killed", lambda: not _alive(pid), 5)


def test_many_processes_run_at_once(make: Make, tmp_path: Path) -> None:
    """Twenty containers that each wait for all the others to have started: they can only
    finish if the kubelet runs them side by side."""
    _, api = make("proc=2:kubelet=process:profile=fast")
    n = 20
    script = (
        "import pathlib, sys, time; d = pathlib.Path(sys.argv[1]); (d / sys.argv[2]).touch()\n"
        f"while len(list(d.iterdir())) < {n}: time.sleep(0.02)\n"
        "print('all', flush=True)"
    )
    for i in range(n):
        api.create_namespaced_pod(
            NS, pod(f"c{i}", command=["python", "-c", script, str(tmp_path), str(i)])
        )
    for i in range(n):
        done = wait_for(f"c{i}", phase(api, f"c{i}", "Succeeded", "Failed"), 60)
        assert done.status.phase == "Succeeded"
        assert log_of(api, f"c{i}") == "all\n"

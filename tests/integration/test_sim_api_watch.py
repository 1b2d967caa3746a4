"""Watches as the official client sees them: resume from a resourceVersion, ordering,
selector transitions, bookmarks, timeouts, 410 Gone, dropped connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubequeue.sim import Sim, SimConfig
from tests.fixtures.sim import SimFactory, kube_client

pytestmark = pytest.mark.integration


def pod(name: str, labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="base", image="busybox")]),
    )


def events(core: client.CoreV1Api, count: int, **kwargs: object) -> list[tuple[str, str]]:
    """The first `count` (type, name) events of a watch (bounded by a timeout)."""
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, "default", timeout_seconds=10, **kwargs):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name if obj.metadata else ""))
        if len(seen) >= count:
            w.stop()
    return seen


def test_watch_resumes_after_a_resource_version_in_order(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_pod("default", pod("a"))
    core.create_namespaced_pod("default", pod("b"))
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_pod("b", "default")
    got = events(core, 3, resource_version=first.metadata.resource_version)
    assert got == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_without_version_starts_with_current_objects(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("a"))
    core.create_namespaced_pod("default", pod("b"))
    assert sorted(events(core, 2)) == [("ADDED", "a"), ("ADDED", "b")]


def test_label_selector_transitions_are_added_and_deleted(core: client.CoreV1Api) -> None:
    start = core.create_namespaced_pod("default", pod("a", {"done": "False"}))
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"done": "True"}}})
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"done": "False"}}})
    got = events(
        core, 2, resource_version=start.metadata.resource_version, label_selector="done!=True"
    )
    # Leaving the selection is DELETED for this watcher; coming back is ADDED.
    assert got == [("DELETED", "a"), ("ADDED", "a")]


def test_timeout_seconds_ends_the_watch(core: client.CoreV1Api) -> None:
    stream = watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=1)
    assert list(stream) == []


def test_compaction_gives_410_gone(core: client.CoreV1Api, api_sim: Sim) -> None:
    old = core.create_namespaced_pod("default", pod("a")).metadata.resource_version
    core.create_namespaced_pod("default", pod("b"))
    api_sim.compact()
    with pytest.raises(ApiException) as err:
        events(core, 1, resource_version=old)
    assert err.value.status == 410
    assert "Expired: too old resource version" in str(err.value.reason)
    # A list gives the current version, and watching from there works again.
    current = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod("c"))
    assert events(core, 1, resource_version=current) == [("ADDED", "c")]


def test_watch_window_expires_old_versions(sim_factory: SimFactory) -> None:
    small = sim_factory(SimConfig(pools=(), watch_window=5))
    for api_client in kube_client(small):
        core = client.CoreV1Api(api_client)
        old = core.create_namespaced_pod("default", pod("p0")).metadata.resource_version
        for i in range(1, 12):
            core.create_namespaced_pod("default", pod(f"p{i}"))
        with pytest.raises(ApiException) as err:
            events(core, 1, resource_version=old)
        assert err.value.status == 410


def test_exact_list_of_an_old_version_is_http_410(core: client.CoreV1Api) -> None:
    old = core.create_namespaced_pod("default", pod("a")).metadata.resource_version
    core.create_namespaced_pod("default", pod("b"))
    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod("default", resource_version=old, resource_version_match="Exact")
    assert err.value.status == 410


def raw_watch(core: client.CoreV1Api, **query: object) -> Iterator[dict]:
    w = watch.Watch()
    yield from w.stream(
        core.list_namespaced_pod, "default", timeout_seconds=10, deserialize=False, **query
    )


def test_bookmarks_carry_the_current_version(sim_factory: SimFactory) -> None:
    quick = sim_factory(SimConfig(pools=(), bookmark_interval=0.2))
    for api_client in kube_client(quick):
        core = client.CoreV1Api(api_client)
        rv = core.create_namespaced_pod("default", pod("a")).metadata.resource_version
        for event in raw_watch(core, resource_version=rv, allow_watch_bookmarks=True):
            assert event["type"] == "BOOKMARK"
            assert event["object"]["kind"] == "Pod"
            assert int(event["object"]["metadata"]["resourceVersion"]) >= int(rv)
            break


def test_dropped_watches_end_the_stream(core: client.CoreV1Api, api_sim: Sim) -> None:
    started = threading.Event()
    finished = threading.Event()

    def follow() -> None:
        for _ in watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=30):
            started.set()
        finished.set()

    core.create_namespaced_pod("default", pod("a"))
    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert started.wait(10)
    assert api_sim.drop_watches() == 1
    assert finished.wait(10), "the client saw its watch end"
    thread.join(5)


def test_watch_drop_fault_ends_watches_after_events(sim_factory: SimFactory) -> None:
    from kubequeue.sim.faults import FaultConfig

    dropping = sim_factory(SimConfig(pools=(), seed=1, faults=FaultConfig(watch_drop=1.0)))
    for api_client in kube_client(dropping):
        core = client.CoreV1Api(api_client)
        core.create_namespaced_pod("default", pod("a"))
        stream = watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=20)
        assert [e["type"] for e in stream] == ["ADDED"]  # then the server hung up

from __future__ import annotations

import asyncio

import pytest

from kubequeue.sim.status import ApiError
from kubequeue.sim.store import Store


def pod(name: str = "p", namespace: str = "default", **meta: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {"containers": [{"name": "base", "image": "busybox"}]},
    }


def test_create_sets_identity_and_bumps_the_global_resource_version() -> None:
    store = Store()
    a = store.create("pods", pod("a"))
    b = store.create("nodes", {"metadata": {"name": "n1", "namespace": "ignored"}})
    assert a["metadata"]["resourceVersion"] == "1"
    assert b["metadata"]["resourceVersion"] == "2"
    assert store.resource_version == 2
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert a["metadata"]["creationTimestamp"].endswith("Z")
    assert "namespace" not in b["metadata"]
    assert store.get("pods", "default", "a") is a
    assert store.get("nodes", None, "n1") is b


def test_create_defaults_the_namespace_and_fills_generate_name() -> None:
    store = Store()
    obj = {"metadata": {"generateName": "task-"}, "spec": {}}
    created = store.create("pods", obj)
    name = created["metadata"]["name"]
    assert name.startswith("task-") and len(name) == len("task-") + 5
    assert created["metadata"]["namespace"] == "default"
    assert "uid" not in obj["metadata"], "the caller's dict is not changed"


def test_create_twice_is_409_already_exists() -> None:
    store = Store()
    store.create("pods", pod("a"))
    with pytest.raises(ApiError) as err:
        store.create("pods", pod("a"))
    assert err.value.code == 409
    assert err.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "a" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "a", "kind": "pods"},
        "code": 409,
    }
    store.create("pods", pod("a", namespace="other"))  # another namespace is fine


def test_update_replaces_and_rejects_a_stale_resource_version() -> None:
    store = Store()
    first = store.create("pods", pod("a"))
    changed = {**first, "status": {"phase": "Running"}}
    second = store.update("pods", changed)
    assert second["metadata"]["resourceVersion"] == "2"
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert first.get("status") is None, "stored objects are never changed in place"
    with pytest.raises(ApiError) as err:
        store.update("pods", changed)  # still carries RV 1
    assert err.value.code == 409 and err.value.reason == "Conflict"
    assert "the object has been modified" in err.value.message


def test_update_without_resource_version_and_noop_update() -> None:
    store = Store()
    store.create("pods", pod("a"))
    updated = store.update("pods", {**pod("a"), "status": {"phase": "Pending"}})
    assert updated["metadata"]["resourceVersion"] == "2"
    again = store.update("pods", {**pod("a"), "status": {"phase": "Pending"}})
    assert again is updated and store.resource_version == 2


def test_update_of_a_missing_object_is_404() -> None:
    with pytest.raises(ApiError) as err:
        Store().update("pods", pod("ghost"))
    assert err.value.code == 404
    assert err.value.message == 'pods "ghost" not found'


def test_remove_emits_deleted_with_a_new_resource_version() -> None:
    store = Store()
    seen: list[tuple[str, str, str]] = []
    store.add_listener(lambda t, r, o: seen.append((t, r, o["metadata"]["resourceVersion"])))
    store.create("pods", pod("a"))
    gone = store.remove("pods", "default", "a")
    assert gone is not None and gone["metadata"]["resourceVersion"] == "2"
    assert store.remove("pods", "default", "a") is None
    assert store.get("pods", "default", "a") is None
    assert seen == [("ADDED", "pods", "1"), ("DELETED", "pods", "2")]


def test_list_by_namespace_and_across_namespaces() -> None:
    store = Store()
    store.create("pods", pod("a", "x"))
    store.create("pods", pod("b", "y"))
    store.create("nodes", {"metadata": {"name": "n"}})
    assert [p["metadata"]["name"] for p in store.list("pods", "x")] == ["a"]
    assert sorted(p["metadata"]["name"] for p in store.list("pods")) == ["a", "b"]
    assert [n["metadata"]["name"] for n in store.list("nodes", "x")] == ["n"]
    assert store.list("pods", "nowhere") == []
    assert store.count("pods") == 2


def test_unknown_resource_is_404() -> None:
    with pytest.raises(ApiError) as err:
        Store().list("widgets")
    assert err.value.code == 404


def test_history_resumes_and_compaction_gives_410() -> None:
    store = Store()
    for i in range(5):
        store.create("pods", pod(f"p{i}"))
    assert [c.rv for c in store.changes_since(3)] == [4, 5]
    assert store.changes_since(5) == []
    store.compact()
    assert store.changes_since(5) == []
    with pytest.raises(ApiError) as err:
        store.changes_since(4)
    assert err.value.code == 410 and err.value.reason == "Expired"
    assert err.value.message == "too old resource version: 4 (5)"


def test_history_window_forgets_old_changes() -> None:
    store = Store(watch_window=3)
    for i in range(10):
        store.create("pods", pod(f"p{i}"))
    assert store.changes_since(9)[0].rv == 10
    with pytest.raises(ApiError):
        store.changes_since(1)
    resumable = store.oldest_resumable
    assert [c.rv for c in store.changes_since(resumable)] == list(range(resumable + 1, 11))


def test_logs_append_read_and_wait() -> None:
    async def scenario() -> list[str]:
        store = Store()
        store.create("pods", pod("a"))
        got: list[str] = []

        async def follow() -> None:
            offset = 0
            while True:
                await store.wait_log("default", "a", "base", offset)
                text = store.read_log("default", "a", "base", offset)
                offset += len(text)
                if text:
                    got.append(text)
                if store.log_closed("default", "a", "base") and not text:
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0)
        store.append_log("default", "a", "base", "hello\n")
        await asyncio.sleep(0)
        store.append_log("default", "a", "base", "world\n")
        store.close_log("default", "a", "base")
        await asyncio.wait_for(task, 5)
        assert store.read_log("default", "a", "base") == "hello\nworld\n"
        store.remove("pods", "default", "a")
        assert store.read_log("default", "a", "base") == ""
        return got

    assert "".join(asyncio.run(scenario())) == "hello\nworld\n"


def test_removing_a_pod_wakes_log_followers() -> None:
    async def scenario() -> None:
        store = Store()
        store.create("pods", pod("a"))
        waiter = asyncio.create_task(store.wait_log("default", "a", "base", 0))
        await asyncio.sleep(0)
        store.remove("pods", "default", "a")
        await asyncio.wait_for(waiter, 5)

    asyncio.run(scenario())

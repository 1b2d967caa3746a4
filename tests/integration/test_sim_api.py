"""The simulated API server driven by the official `kubernetes` client (and raw HTTP where a
client would hide what the server sent): CRUD, errors as Status objects, paging, patches,
deletes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubequeue.sim import Sim

pytestmark = pytest.mark.integration


def pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> client.V1Pod:
    container = client.V1Container(name="base", image="busybox")
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[container], **spec),
    )


def raw(
    sim: Sim, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict]:
    """(status code, JSON body) of one plain HTTP request."""
    request = urllib.request.Request(sim.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_create_read_list_replace_delete(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("web-1", {"app": "web"}))
    meta = created.metadata
    assert meta.uid and meta.resource_version and meta.creation_timestamp
    assert created.status.phase == "Pending" and created.status.qos_class == "BestEffort"
    assert created.spec.service_account_name == "default"
    assert created.spec.restart_policy == "Always"

    read = core.read_namespaced_pod("web-1", "default")
    assert read.metadata.uid == meta.uid
    core.create_namespaced_pod("default", pod("db-1", {"app": "db"}))
    listed = core.list_namespaced_pod("default", label_selector="app in (web)")
    assert [p.metadata.name for p in listed.items] == ["web-1"]
    assert int(listed.metadata.resource_version) >= int(meta.resource_version)

    read.metadata.labels["tier"] = "front"
    replaced = core.replace_namespaced_pod("web-1", "default", read)
    assert replaced.metadata.labels == {"app": "web", "tier": "front"}
    assert int(replaced.metadata.resource_version) > int(meta.resource_version)

    deleted = core.delete_namespaced_pod("web-1", "default")
    assert deleted.metadata.name == "web-1"  # an unbound pod goes at once
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("web-1", "default")
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'pods "web-1" not found'


def test_generate_name_and_already_exists(core: client.CoreV1Api) -> None:
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(generate_name="task-"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="base", image="x")]),
    )
    first = core.create_namespaced_pod("default", body)
    assert first.metadata.name.startswith("task-") and len(first.metadata.name) == 10
    core.create_namespaced_pod("default", pod("same"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod("same"))
    assert err.value.status == 409
    assert json.loads(err.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "same" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "same", "kind": "pods"},
        "code": 409,
    }


def test_stale_resource_version_is_a_conflict(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("p"))
    first, second = (
        core.read_namespaced_pod("p", "default"),
        core.read_namespaced_pod("p", "default"),
    )
    first.metadata.labels = {"by": "first"}
    core.replace_namespaced_pod("p", "default", first)
    second.metadata.labels = {"by": "second"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_pod("p", "default", second)
    status = json.loads(err.value.body)
    assert err.value.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on pods "p": the object has been modified; please apply '
        "your changes to the latest version and try again"
    )


def test_patches_for_labels_annotations_and_status(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("p", {"a": "1", "b": "2"}))
    # The client sends strategic merge patch for a dict body.
    patched = core.patch_namespaced_pod(
        "p", "default", {"metadata": {"labels": {"a": None, "c": "3"}}}
    )
    assert patched.metadata.labels == {"b": "2", "c": "3"}
    merged = core.patch_namespaced_pod(
        "p",
        "default",
        {"metadata": {"annotations": {"note": "x"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged.metadata.annotations == {"note": "x"}
    condition = {"type": "Ready", "status": "False"}
    status = core.patch_namespaced_pod_status(
        "p", "default", {"status": {"phase": "Running", "conditions": [condition]}}
    )
    assert status.status.phase == "Running"
    # A spec/metadata patch never changes status, and status patches never change labels.
    again = core.patch_namespaced_pod("p", "default", {"status": {"phase": "Failed"}})
    assert again.status.phase == "Running"
    ops = [{"op": "add", "path": "/metadata/labels/d", "value": "4"}]
    jsonpatched = core.patch_namespaced_pod(
        "p", "default", ops, _content_type="application/json-patch+json"
    )
    assert jsonpatched.metadata.labels["d"] == "4"


def test_pod_spec_is_immutable(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("p"))
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("p", "default", {"spec": {"restartPolicy": "Never"}})
    status = json.loads(err.value.body)
    assert err.value.status == 422 and status["details"]["causes"][0]["field"] == "spec"
    image = core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "base", "image": "busybox:2"}]}}
    )
    assert image.spec.containers[0].image == "busybox:2"


def test_limit_and_continue_page_through_everything(core: client.CoreV1Api) -> None:
    for i in range(7):
        core.create_namespaced_pod("default", pod(f"p{i}"))
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_pod("default", limit=3, _continue=token)
        names += [p.metadata.name for p in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(names)
    assert names == [f"p{i}" for i in range(7)] and pages == 3


def test_field_selectors(core: client.CoreV1Api, api_sim: Sim) -> None:
    core.create_namespaced_pod("default", pod("a"))
    core.create_namespaced_pod("default", pod("b"))
    core.patch_namespaced_pod_status("b", "default", {"status": {"phase": "Running"}})
    running = core.list_pod_for_all_namespaces(field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["b"]
    unbound = core.list_namespaced_pod("default", field_selector="spec.nodeName=,metadata.name!=b")
    assert [p.metadata.name for p in unbound.items] == ["a"]
    code, status = raw(api_sim, "GET", "/api/v1/pods?fieldSelector=spec.image%3Dx")
    assert code == 400 and status["message"] == "field label not supported: spec.image"


def test_binding_sets_the_node_once(core: client.CoreV1Api, api_sim: Sim) -> None:
    core.create_namespaced_pod("default", pod("p"))
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"},
    }
    code, _ = raw(
        api_sim,
        "POST",
        "/api/v1/namespaces/default/pods/p/binding",
        json.dumps(body).encode(),
        **{"Content-Type": "application/json"},
    )
    assert code == 201
    bound = core.read_namespaced_pod("p", "default")
    assert bound.spec.node_name == "node-a"
    assert [(c.type, c.status) for c in bound.status.conditions] == [("PodScheduled", "True")]
    code, status = raw(
        api_sim,
        "POST",
        "/api/v1/namespaces/default/pods/p/binding",
        json.dumps(body).encode(),
        **{"Content-Type": "application/json"},
    )
    assert code == 409 and status["message"] == (
        'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node '
        '"node-a"'
    )


def test_graceful_delete_then_fallback_removal(core: client.CoreV1Api, api_sim: Sim) -> None:
    core.create_namespaced_pod("default", pod("p"))
    core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    api_sim.call(lambda: _bind(api_sim, "p"))
    terminating = core.delete_namespaced_pod("p", "default", grace_period_seconds=1)
    assert terminating.metadata.deletion_timestamp is not None
    assert terminating.metadata.deletion_grace_period_seconds == 1
    # No kubelet here: the fallback removes it after the grace period (+1 s).
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_pod,
        "default",
        field_selector="metadata.name=p",
        resource_version=terminating.metadata.resource_version,
        timeout_seconds=10,
    ):
        seen.append(event["type"])
        if event["type"] == "DELETED":
            break
    assert seen == ["DELETED"]


def _bind(sim: Sim, name: str) -> None:
    stored = sim.store.get("pods", "default", name)
    assert stored is not None
    sim.store.update("pods", {**stored, "spec": {**stored["spec"], "nodeName": "n1"}})


def test_deletecollection_by_label(core: client.CoreV1Api) -> None:
    for i, app in enumerate(["a", "a", "b"]):
        core.create_namespaced_pod("default", pod(f"p{i}", {"app": app}))
    core.delete_collection_namespaced_pod("default", label_selector="app=a")
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["p2"]


def test_namespaces_configmaps_secrets_serviceaccounts(core: client.CoreV1Api) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team")))
    ns = core.read_namespace("team")
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "team"
    assert core.read_namespaced_service_account("default", "team").metadata.name == "default"
    core.create_namespaced_config_map(
        "team", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"})
    )
    core.create_namespaced_secret(
        "team", client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v"})
    )
    assert core.read_namespaced_config_map("c", "team").data == {"k": "v"}
    status = core.delete_namespaced_config_map("c", "team")
    assert status.status == "Success" and status.details.name == "c"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("nowhere", pod("p"))
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'namespaces "nowhere" not found'
    body = pod("p", service_account_name="robot")
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("team", body)
    assert err.value.status == 403
    assert json.loads(err.value.body)["message"] == (
        'pods "p" is forbidden: error looking up service account team/robot: '
        'serviceaccount "robot" not found'
    )
    core.delete_namespace("team")
    with pytest.raises(ApiException) as err:
        core.read_namespace("team")
    assert err.value.status == 404


def test_bad_input_gets_status_objects_and_the_server_keeps_serving(
    core: client.CoreV1Api, api_sim: Sim
) -> None:
    headers = {"Content-Type": "application/json"}
    code, status = raw(api_sim, "POST", "/api/v1/namespaces/default/pods", b"{not json", **headers)
    assert code == 400 and status["kind"] == "Status" and status["reason"] == "BadRequest"
    assert "json parse error" in status["message"]

    code, status = raw(api_sim, "GET", "/api/v1/namespaces/default/widgets")
    assert (code, status["reason"]) == (404, "NotFound")
    assert status["message"] == "the server could not find the requested resource"

    invalid = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "Bad_Name"},
        "spec": {"containers": []},
    }
    code, status = raw(
        api_sim, "POST", "/api/v1/namespaces/default/pods", json.dumps(invalid).encode(), **headers
    )
    assert code == 422 and status["reason"] == "Invalid"
    assert {c["field"] for c in status["details"]["causes"]} == {"metadata.name", "spec.containers"}

    quantity = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "q"},
        "spec": {
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "-1"}}}]
        },
    }
    code, status = raw(
        api_sim, "POST", "/api/v1/namespaces/default/pods", json.dumps(quantity).encode(), **headers
    )
    assert code == 422
    assert status["details"]["causes"][0]["field"] == "spec.containers[0].resources.requests[cpu]"

    code, status = raw(api_sim, "POST", "/api/v1/namespaces/default/pods", b"[1, 2]", **headers)
    assert code == 400
    # ...and the server still answers.
    assert core.create_namespaced_pod("default", pod("fine")).metadata.name == "fine"


def test_discovery_documents(api_sim: Sim) -> None:
    code, version = raw(api_sim, "GET", "/version")
    assert code == 200 and version["major"] == "1"
    _, core_list = raw(api_sim, "GET", "/api/v1")
    names = {r["name"] for r in core_list["resources"]}
    assert {
        "pods",
        "pods/log",
        "pods/status",
        "pods/binding",
        "nodes",
        "namespaces",
        "events",
    } <= names
    _, groups = raw(api_sim, "GET", "/apis")
    assert [g["name"] for g in groups["groups"]] == ["coordination.k8s.io"]
    _, leases = raw(api_sim, "GET", "/apis/coordination.k8s.io/v1")
    assert leases["resources"][0]["kind"] == "Lease"


def test_table_and_metadata_only_lists(core: client.CoreV1Api, api_sim: Sim) -> None:
    core.create_namespaced_pod("default", pod("p", {"app": "x"}))
    table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, table = raw(api_sim, "GET", "/api/v1/pods", Accept=table_accept)
    assert table["kind"] == "Table" and table["rows"][0]["cells"][0] == "p"
    assert table["rows"][0]["object"]["metadata"]["labels"] == {"app": "x"}
    meta_accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    _, partial = raw(api_sim, "GET", "/api/v1/namespaces/default/pods", Accept=meta_accept)
    assert partial["kind"] == "PartialObjectMetadataList"
    item = partial["items"][0]
    assert set(item) == {"kind", "apiVersion", "metadata"}
    assert (item["kind"], item["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
    assert item["metadata"]["uid"] == core.read_namespaced_pod("p", "default").metadata.uid

"""The simulator's pure parts: selectors, patches, validation messages, tables, faults,
content negotiation and kubeconfig documents."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubequeue.errors import ConfigError
from kubequeue.sim import kubeconfig, patch, selectors, tables, validation
from kubequeue.sim.faults import FaultConfig, Faults
from kubequeue.sim.status import ApiError
from kubequeue.sim.wire import go_json_error, negotiate, parse_json, parse_path


def obj(labels: dict[str, str] | None = None, **fields: object) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "labels": labels or {}}, **fields}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app in (web, db),tier", {"app": "db", "tier": "x"}, True),
        ("app notin (web)", {"app": "web"}, False),
        ("!done", {"done": "True"}, False),
        ("airflow-worker=1,airflow_executor_done!=True", {"airflow-worker": "1"}, True),
        ("", {}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    match = selectors.label_matcher(selector)
    assert (match is None or match(obj(labels))) is expected


def test_malformed_label_selector_is_400() -> None:
    with pytest.raises(ApiError) as err:
        selectors.label_matcher("app in web")
    assert err.value.code == 400


def test_field_selectors_and_unsupported_fields() -> None:
    pod = obj(spec={"nodeName": "n1"}, status={"phase": "Running"})
    match = selectors.field_matcher("pods", "status.phase=Running,spec.nodeName!=n2")
    assert match is not None and match(pod)
    unbound = selectors.field_matcher("pods", "spec.nodeName=")
    assert unbound is not None and not unbound(pod)
    with pytest.raises(ApiError) as err:
        selectors.field_matcher("pods", "spec.image=x")
    assert err.value.code == 400 and err.value.message == "field label not supported: spec.image"
    event = {"metadata": {"name": "e"}, "involvedObject": {"name": "p", "uid": "u"}}
    by_object = selectors.field_matcher("events", "involvedObject.name=p,involvedObject.uid=u")
    assert by_object is not None and by_object(event)


def test_merge_patch_deletes_with_null_and_never_mutates() -> None:
    target: dict = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}}
    result = patch.merge_patch(target, {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert result["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert target["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert result["spec"] is target["spec"]


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    target = {
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X"}]},
        "metadata": {"finalizers": ["a"]},
    }
    result = patch.strategic_merge_patch(
        target,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "X", "$patch": "delete"},
                ]
            },
            "metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
        },
    )
    assert result["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert result["metadata"]["finalizers"] == ["b"]


def test_strategic_merge_patch_replace_directive() -> None:
    target = {"metadata": {"labels": {"a": "1"}}}
    result = patch.strategic_merge_patch(
        target, {"metadata": {"labels": {"$patch": "replace", "b": "2"}}}
    )
    assert result["metadata"]["labels"] == {"b": "2"}


def test_json_patch_operations_and_failures() -> None:
    target = {"metadata": {"labels": {"a": "1"}}, "list": [1, 2]}
    ops = [
        {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "test", "path": "/list/0", "value": 1},
        {"op": "copy", "from": "/list/0", "path": "/first"},
    ]
    result = patch.json_patch(target, ops)
    assert result == {"metadata": {"labels": {"b/c": "2"}}, "list": [1, 2, 3], "first": 1}
    assert target["list"] == [1, 2]
    with pytest.raises(ApiError) as err:
        patch.json_patch(target, [{"op": "test", "path": "/list/0", "value": 9}])
    assert err.value.code == 422
    with pytest.raises(ApiError) as err:
        patch.apply("application/xml", target, {})
    assert err.value.code == 415


def test_invalid_pod_lists_every_cause_in_kube_apiserver_words() -> None:
    pod = {"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}}
    with pytest.raises(ApiError) as err:
        validation.validate("pods", pod)
    status = err.value.status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Pod" and status["details"]["name"] == "Bad_Name"
    fields = [(c["field"], c["reason"]) for c in status["details"]["causes"]]
    assert fields == [
        ("metadata.name", "FieldValueInvalid"),
        ("spec.containers", "FieldValueRequired"),
    ]
    assert status["message"].startswith(
        'Pod "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": a lowercase RFC '
        "1123 subdomain must consist of"
    )
    assert status["message"].endswith("spec.containers: Required value]")


def test_resources_negative_and_above_limit_are_invalid() -> None:
    container = {
        "name": "base",
        "image": "x",
        "resources": {"requests": {"cpu": "2", "memory": "-1"}, "limits": {"cpu": "1"}},
    }
    with pytest.raises(ApiError) as err:
        validation.validate(
            "pods", {"metadata": {"name": "p"}, "spec": {"containers": [container]}}
        )
    causes = {c["field"]: c["message"] for c in err.value.status()["details"]["causes"]}
    assert causes["spec.containers[0].resources.requests[memory]"] == (
        'Invalid value: "-1": must be greater than or equal to 0'
    )
    assert causes["spec.containers[0].resources.requests"] == (
        'Invalid value: "2": must be less than or equal to cpu limit of 1'
    )


def test_unparseable_quantity_is_a_decode_error_400() -> None:
    container = {"name": "base", "image": "x", "resources": {"requests": {"cpu": "lots"}}}
    with pytest.raises(ApiError) as err:
        validation.decode_check("Pod", {"spec": {"containers": [container]}})
    assert err.value.code == 400
    assert err.value.message.startswith(
        'Pod in version "v1" cannot be handled as a Pod: quantities must match'
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("1Gi", str(2**30)), ("2", "2"), ("1e3", "1000"), (0.25, "0.25")],
)
def test_quantities(text: object, value: str) -> None:
    assert validation.parse_quantity(text) == validation.Decimal(value)


def test_malformed_json_gets_go_words() -> None:
    with pytest.raises(ApiError) as err:
        parse_json(b"{not json", "Pod")
    assert err.value.code == 400 and err.value.reason == "BadRequest"
    assert err.value.message == (
        "the object provided is unrecognized (must be of type Pod): couldn't get version/kind; "
        "json parse error: invalid character 'n' looking for beginning of object key string "
        "({not json)"
    )
    assert go_json_error(b'{"a": 1', _decode_error(b'{"a": 1')) == "unexpected end of JSON input"


def _decode_error(body: bytes) -> Exception:
    import json

    try:
        json.loads(body)
    except json.JSONDecodeError as e:
        return e
    raise AssertionError("expected a decode error")


def test_paths() -> None:
    target = parse_path("/api/v1/namespaces/ns/pods/p/log")
    assert target is not None and (target.namespace, target.name, target.sub) == ("ns", "p", "log")
    ns = parse_path("/api/v1/namespaces/ns")
    assert ns is not None and ns.info.name == "namespaces" and ns.name == "ns"
    status = parse_path("/api/v1/namespaces/ns/status")
    assert status is not None and status.sub == "status"
    lease = parse_path("/apis/coordination.k8s.io/v1/namespaces/x/leases")
    assert lease is not None and lease.info.kind == "Lease"
    for unknown in ("/api/v1/widgets", "/api/v1/nodes/n/log", "/apis/apps/v1/deployments", "/x"):
        assert parse_path(unknown) is None


def test_negotiation() -> None:
    kubectl = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
        "g=meta.k8s.io,application/json"
    )
    assert negotiate(kubectl).kind == "table"
    meta = negotiate("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")
    assert meta.kind == "meta"
    assert negotiate("application/vnd.kubernetes.protobuf,application/json").kind == "json"
    assert negotiate(None).kind == "json"


def test_pod_table_status_column() -> None:
    pod = {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "base"}], "nodeName": "n"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "base",
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 3, "reason": "Error"}},
                }
            ],
        },
    }
    table = tables.table("pods", [pod], {"resourceVersion": "1"})
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert table["rows"][0]["cells"][:4] == ["p", "0/1", "Error", "0"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (130, "2m10s"), (600, "10m"), (4 * 3600 + 60, "4h1m"), (3 * 86400, "3d")],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_faults_are_seeded_and_validated() -> None:
    config = FaultConfig(throttle=0.3, error=0.2, retry_after=2)
    first = [type(f).__name__ if f else None for f in _failures(Faults(config, seed=7))]
    again = [type(f).__name__ if f else None for f in _failures(Faults(config, seed=7))]
    assert first == again and any(first) and None in first
    codes = {f.code for f in _failures(Faults(config, seed=1)) if f}
    assert codes <= {429, 500, 503} and 429 in codes
    throttled = next(f for f in _failures(Faults(config, seed=1)) if f and f.code == 429)
    assert throttled.headers == {"Retry-After": "2"}
    with pytest.raises(ConfigError):
        FaultConfig(throttle=1.5)
    with pytest.raises(ConfigError, match="unknown fault setting"):
        config.replace(nonsense=1)


def _failures(faults: Faults) -> list[ApiError | None]:
    return [faults.failure() for _ in range(50)]


def test_kubeconfig_document(tmp_path: Path) -> None:
    path = kubeconfig.write(
        tmp_path / "kc", [("a", "http://127.0.0.1:1"), ("b", "http://127.0.0.1:2")], "b"
    )
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "b"
    assert [c["cluster"]["server"] for c in doc["clusters"]] == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
    ]
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        kubeconfig.document([("a", "x"), ("a", "y")])


def test_wrongly_shaped_objects_are_decode_errors() -> None:
    with pytest.raises(ApiError) as err:
        validation.decode_check("Pod", {"metadata": {"labels": ["a"]}})
    assert err.value.code == 400
    assert "cannot unmarshal array into Go struct field ObjectMeta.metadata.labels" in str(
        err.value.message
    )
    with pytest.raises(ApiError) as err:
        validation.decode_check("Pod", {"spec": {"containers": {"name": "x"}}})
    assert "PodSpec.spec.containers of type []v1.Container" in err.value.message
    with pytest.raises(ApiError) as err:
        validation.decode_check("Pod", [1])
    assert err.value.message.startswith("the object provided is unrecognized (must be of type Pod)")

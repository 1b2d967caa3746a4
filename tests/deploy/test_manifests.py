"""Every kustomize target in deploy/ renders, and every object it renders is valid: built-in
kinds against the Kubernetes 1.32 schemas, KEDA and Prometheus Operator kinds against their
vendored CRD schemas — both strict, so a misspelt field is an error, not silently dropped."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.manifests import (
    TARGETS,
    Obj,
    crd_schemas,
    of_kind,
    one,
    render,
    validation_errors,
)


@pytest.mark.parametrize("target", TARGETS)
def test_target_renders(target: str) -> None:
    objs = render(target)
    assert objs, f"deploy/{target} rendered nothing"
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names)), f"deploy/{target} renders duplicates"


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates(target: str) -> None:
    errors = [e for obj in render(target) for e in validation_errors(obj)]
    assert not errors, "\n".join(errors)


def test_crd_kinds_have_vendored_schemas() -> None:
    kinds = {(o["apiVersion"], o["kind"].lower()) for t in TARGETS for o in render(t)}
    crd_kinds = {k for k in kinds if "." in k[0].split("/")[0] and "k8s.io" not in k[0]}
    assert crd_kinds <= set(crd_schemas()), crd_kinds - set(crd_schemas())
    assert {k for k, _ in crd_kinds} >= {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}


def _errors_after(target: str, kind: str, name: str, edit: str, value: object) -> list[str]:
    obj: Obj = copy.deepcopy(one(render(target), kind, name))
    node = obj
    *path, last = edit.split(".")
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return list(validation_errors(obj))


@pytest.mark.parametrize(
    ("kind", "name", "edit", "value", "expected"),
    [
        # misspelt field in a CRD object: rejected as unknown
        ("ScaledObject", "kubequeue-dispatcher", "spec.cooldownPeriods", 300, "cooldownPeriods"),
        ("ScaledObject", "kubequeue-dispatcher", "spec.minReplicaCount", "2", "not of type"),
        ("ServiceMonitor", "kubequeue", "spec.endpoints.0.intervall", "15s", "intervall"),
        ("PrometheusRule", "kubequeue", "spec.groups.0.rules.0.recordd", "x", "recordd"),
        # misspelt field in a built-in object
        ("Deployment", "kubequeue-dispatcher", "spec.template.spec.terminationGrace", 60, "Grace"),
        ("Deployment", "kubequeue-watcher", "spec.replicas", "two", "not of type"),
    ],
)
def test_validation_rejects_broken_objects(
    kind: str, name: str, edit: str, value: object, expected: str
) -> None:
    errors = _errors_after("overlays/production", kind, name, edit, value)
    assert errors, f"{kind}/{name} with {edit}={value!r} validated"
    assert any(expected in e for e in errors), errors


def test_each_overlay_has_its_parts() -> None:
    def kinds(target: str) -> set[str]:
        return {o["kind"] for o in render(target)}

    core = {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"}
    core |= {"PodDisruptionBudget", "NetworkPolicy"}
    assert core <= kinds("base")
    assert len(of_kind(render("overlays/dev"), "Deployment")) == 3  # + Redis
    for target in ("overlays/production", "overlays/remote-cluster"):
        assert {"ScaledObject", "TriggerAuthentication"} <= kinds(target)
        assert {"ServiceMonitor", "PrometheusRule"} <= kinds(target)
    assert "Deployment" not in kinds("overlays/remote-cluster/remote")

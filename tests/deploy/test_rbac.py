"""Least privilege, checked three ways against deploy/permissions.yaml (the one table of
what each component may do on the Kubernetes API):

- the Roles every overlay renders grant exactly the table, per namespace (each pool
  namespace, the component's own namespace), and nothing cluster-wide;
- the code in dispatcher/ and watcher/ (and kubequeue/, shared by both) calls nothing the
  table lacks — so a new API call without a grant fails here, not in a cluster;
- everything the table grants is called by the code, so a grant cannot outlive its call.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from kubequeue import pools
from tests.deploy.manifests import DEPLOY, HOME_TARGETS, ROOT, Obj, of_kind, render

COMPONENTS = ("dispatcher", "watcher")
OWN_NAMESPACE = "kubequeue"


class Grant(NamedTuple):
    group: str
    resource: str
    verb: str


def table(component: str, scope: str | None = None) -> set[Grant]:
    rows = yaml.safe_load((DEPLOY / "permissions.yaml").read_text())[component]
    return {
        Grant(r["group"], r["resource"], r["verb"])
        for r in rows
        if scope is None or r["scope"] == scope
    }


# --- what the Roles grant ---------------------------------------------------------------


def granted(objs: tuple[Obj, ...], component: str) -> dict[str, set[Grant]]:
    """namespace -> grants bound to the component's ServiceAccount."""
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in of_kind(objs, "Role")}
    result: dict[str, set[Grant]] = {}
    for binding in of_kind(objs, "RoleBinding"):
        subjects = binding.get("subjects", [])
        if not any(
            s["kind"] == "ServiceAccount"
            and s["name"] == f"kubequeue-{component}"
            and s.get("namespace") == OWN_NAMESPACE
            for s in subjects
        ):
            continue
        ns = binding["metadata"]["namespace"]
        assert binding["roleRef"]["kind"] == "Role", "no ClusterRole for kubequeue"
        role = roles[(ns, binding["roleRef"]["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), f"wildcard in {ns} {rule}"
                        result.setdefault(ns, set()).add(Grant(group, resource, verb))
    return result


def pool_namespaces(target: str, remote: bool) -> set[str]:
    (cm,) = [o for o in of_kind(render(target), "ConfigMap") if "pools.yaml" in o["data"]]
    config = pools.parse(cm["data"]["pools.yaml"])
    return {p.namespace for p in config.pools.values() if (p.context is not None) == remote}


@pytest.mark.parametrize("target", HOME_TARGETS)
@pytest.mark.parametrize("component", COMPONENTS)
def test_roles_grant_exactly_the_table(target: str, component: str) -> None:
    objs = render(target)
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")
    expected = {ns: table(component, "pool") for ns in pool_namespaces(target, remote=False)}
    if table(component, "own"):
        expected.setdefault(OWN_NAMESPACE, set()).update(table(component, "own"))
    assert granted(objs, component) == expected


@pytest.mark.parametrize("component", COMPONENTS)
def test_remote_cluster_roles_grant_exactly_the_pool_part(component: str) -> None:
    objs = render("overlays/remote-cluster/remote")
    namespaces = pool_namespaces("overlays/remote-cluster", remote=True)
    assert namespaces, "the remote-cluster overlay has no pool with a context"
    expected = {ns: table(component, "pool") for ns in namespaces}
    assert granted(objs, component) == expected


# --- what the code calls ----------------------------------------------------------------

_VERBS = {
    "create": "create",
    "read": "get",
    "list": "list",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
    "delete_collection": "deletecollection",
}
_GROUPS = {"leases": "coordination.k8s.io"}
_CALL = re.compile(
    r"\b(create|read|list|replace|patch|delete_collection|delete)_namespaced_([a-z_]+?)"
    r"(_status|_log|_binding|_eviction|_ephemeralcontainers)?\b"
)
_CLUSTER_WIDE = re.compile(r"\b\w+_for_all_namespaces\b")
_WATCHES = re.compile(r"\bWatch\(|\bwatch=True\b|\.stream\(")
_LEADERELECTION = re.compile(r"\bleaderelection\b")
_RAW = re.compile(r"\bcall_api\(")


def _plural(snake: str) -> str:
    word = snake.replace("_", "")
    return word if word.endswith("s") else word + "s"


def calls_in(path: Path, root: Path = ROOT) -> set[Grant]:
    text = path.read_text()
    where = path.relative_to(root)
    assert not _CLUSTER_WIDE.search(text), f"{where}: cluster-wide call; grants are per namespace"
    assert not _RAW.search(text), f"{where}: raw call_api; add its grant to permissions.yaml"
    found: set[Grant] = set()
    for verb, kind, sub in _CALL.findall(text):
        resource = _plural(kind) + (f"/{sub[1:]}" if sub else "")
        found.add(Grant(_GROUPS.get(resource, ""), resource, _VERBS[verb]))
        if verb == "list" and _WATCHES.search(text):
            found.add(Grant(_GROUPS.get(resource, ""), resource, "watch"))
    if _LEADERELECTION.search(text) and "import" in text:
        found |= {Grant("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    return found


def code_calls(component: str) -> set[Grant]:
    """What the component's code (its folder, plus the shared kubequeue/ package) calls."""
    files = [*(ROOT / component).rglob("*.py"), *(ROOT / "kubequeue").rglob("*.py")]
    return {grant for f in files for grant in calls_in(f)}


def _complete(component: str) -> bool:
    """The component's command exists, so all of its API calls should be in place."""
    return (ROOT / component / "cli.py").exists()


@pytest.mark.parametrize("component", COMPONENTS)
def test_code_calls_nothing_the_roles_lack(component: str) -> None:
    missing = code_calls(component) - table(component)
    assert not missing, (
        f"{component} calls the Kubernetes API for {sorted(missing)} but deploy/permissions.yaml "
        "and the Roles do not grant it"
    )


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_grant_is_used_by_the_code(component: str) -> None:
    if not _complete(component):
        pytest.skip(f"{component}/cli.py does not exist yet: {component} is still being written")
    unused = table(component) - code_calls(component)
    assert not unused, f"{component} is granted {sorted(unused)} but never calls it"


def test_call_scanner_reads_client_calls(tmp_path: Path) -> None:
    """The scanner itself: the call shapes the official clients use map to RBAC verbs."""
    source = tmp_path / "x.py"
    source.write_text(
        "api.create_namespaced_pod(ns, body)\n"
        "w = watch.Watch(); w.stream(api.list_namespaced_pod, ns)\n"
        "coord.replace_namespaced_lease(name, ns, lease)\n"
        "api.read_namespaced_pod_log(name, ns)\n"
        "api.delete_collection_namespaced_pod(ns)\n"
    )
    assert calls_in(source, tmp_path) == {
        Grant("", "pods", "create"),
        Grant("", "pods", "list"),
        Grant("", "pods", "watch"),
        Grant("coordination.k8s.io", "leases", "update"),
        Grant("", "pods/log", "get"),
        Grant("", "pods", "deletecollection"),
    }
    source.write_text("core.list_pod_for_all_namespaces()\n")
    with pytest.raises(AssertionError, match="cluster-wide"):
        calls_in(source, tmp_path)


def test_lease_grant_names_the_watchers_lease() -> None:
    leader = pytest.importorskip("kubequeue.watcher.leader")
    (role,) = [
        r for r in of_kind(render("base"), "Role") if r["metadata"]["namespace"] == OWN_NAMESPACE
    ]
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert named and all(rule["resourceNames"] == [leader.LEASE_NAME] for rule in named)

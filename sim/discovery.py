"""What the simulated API serves, as discovery documents (`/version`, `/api`, `/apis`, the
group/version resource lists) in the legacy (non-aggregated) form that kubectl, client-go and
the Python client's DynamicClient fall back to when a server does not aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-kubequeue-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    name: str  # plural
    kind: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _ALL
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo(
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        subresources=("status", "finalize"),
    ),
    ResourceInfo(
        "nodes",
        "Node",
        namespaced=False,
        short_names=("no",),
        subresources=("status",),
    ),
    ResourceInfo(
        "pods",
        "Pod",
        short_names=("po",),
        subresources=("status", "log", "binding"),
        categories=("all",),
    ),
    ResourceInfo("events", "Event", short_names=("ev",)),
    ResourceInfo("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    ResourceInfo("configmaps", "ConfigMap", short_names=("cm",)),
    ResourceInfo("secrets", "Secret"),
    ResourceInfo("leases", "Lease", group="coordination.k8s.io"),
)
BY_PATH: dict[tuple[str, str, str], ResourceInfo] = {
    (r.group, r.version, r.name): r for r in RESOURCES
}
BY_NAME: dict[str, ResourceInfo] = {r.name: r for r in RESOURCES}

_SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"),
    "log": ("get",),
    "binding": ("create",),
    "finalize": ("update",),
}
_SUBRESOURCE_KINDS = {"log": "Pod", "binding": "Binding"}


def version() -> dict[str, Any]:
    return dict(VERSION)


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _groups() -> list[str]:
    return sorted({r.group for r in RESOURCES if r.group})


def api_group(group: str) -> dict[str, Any]:
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [version],
        "preferredVersion": version,
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for group in _groups():
        entry = api_group(group)
        entry.pop("kind")
        entry.pop("apiVersion")
        groups.append(entry)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _resource_entry(r: ResourceInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": r.name,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    return entry


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of one group/version, or None if it is not served."""
    chosen = [r for r in RESOURCES if r.group == group and r.version == version]
    if not chosen:
        return None
    resources: list[dict[str, Any]] = []
    for r in chosen:
        resources.append(_resource_entry(r))
        for sub in r.subresources:
            resources.append(
                {
                    "name": f"{r.name}/{sub}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": _SUBRESOURCE_KINDS.get(sub, r.kind),
                    "verbs": list(_SUBRESOURCE_VERBS[sub]),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }

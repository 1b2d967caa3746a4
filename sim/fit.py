"""Whether a pod fits a node, as kube-scheduler's filter plugins decide it: taints and
tolerations, nodeSelector and required node affinity, requests against allocatable."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubequeue.sim.quantity import QuantityError, amount


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """core/v1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if toleration.get("operator") == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(taints: list[dict], tolerations: list[dict]) -> dict | None:
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue  # PreferNoSchedule only lowers a node's score
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _requirement(expr: Mapping[str, Any], value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            mine, theirs = int(value), int(values[0])
        except ValueError:
            return False
        return mine > theirs if op == "Gt" else mine < theirs
    return False


def matches_term(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    """A nodeSelectorTerm: all its expressions hold; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    return all(_requirement(e, labels.get(e.get("key", ""))) for e in exprs) and all(
        _requirement(f, name if f.get("key") == "metadata.name" else None) for f in fields
    )


def node_affinity_terms(spec: Mapping[str, Any]) -> list[dict] | None:
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    return required.get("nodeSelectorTerms") if required else None


def _container_requests(container: Mapping[str, Any]) -> dict[str, int]:
    res = container.get("resources") or {}
    merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    out = {}
    for name, qty in merged.items():
        try:
            out[name] = amount(name, qty)
        except QuantityError:
            continue  # the API rejects bad quantities; never crash on one here
    return out


def pod_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """Effective requests: containers summed, the largest init container, plus overhead;
    a limit stands in for a missing request (the API defaults requests to limits)."""
    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        for name, value in _container_requests(c).items():
            total[name] = total.get(name, 0) + value
    for c in spec.get("initContainers") or ():
        for name, value in _container_requests(c).items():
            total[name] = max(total.get(name, 0), value)
    if spec.get("overhead"):
        overhead = _container_requests({"resources": {"requests": spec["overhead"]}})
        for name, value in overhead.items():
            total[name] = total.get(name, 0) + value
    return {k: v for k, v in total.items() if v}


@dataclass
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    taints: list[dict]
    allocatable: dict[str, int]
    unschedulable: bool = False
    used: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> NodeInfo:
        alloc = {}
        for name, qty in ((node.get("status") or {}).get("allocatable") or {}).items():
            try:
                alloc[name] = amount(name, qty)
            except QuantityError:
                continue
        spec = node.get("spec") or {}
        return cls(
            name=node["metadata"]["name"],
            labels=node["metadata"].get("labels") or {},
            taints=list(spec.get("taints") or ()),
            allocatable=alloc,
            unschedulable=bool(spec.get("unschedulable")),
        )

    def static_reason(self, demand: Demand) -> str | None:
        """Why the pod can never go here while the node stays as it is; None if it may."""
        if self.unschedulable:
            return "node(s) were unschedulable"
        taint = untolerated_taint(self.taints, demand.tolerations)
        if taint is not None:
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
        selector = demand.node_selector
        if any(self.labels.get(k) != v for k, v in selector.items()) or (
            demand.terms is not None
            and not any(matches_term(t, self.labels, self.name) for t in demand.terms)
        ):
            return "node(s) didn't match Pod's node affinity/selector"
        return None

    def lacks(self, requests: Mapping[str, int]) -> list[str]:
        """NodeResourcesFit: every resource the node is short of."""
        out = []
        if self.used["pods"] + 1 > self.allocatable.get("pods", 0):
            out.append("Too many pods")
        for name, want in requests.items():
            if self.used[name] + want > self.allocatable.get(name, 0):
                out.append(f"Insufficient {name}")
        return out


@dataclass
class Demand:
    """What the pods of one group need; the group key is its JSON."""

    requests: dict[str, int]
    node_selector: dict[str, str]
    terms: list[dict] | None
    tolerations: list[dict]

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> tuple[str, Demand]:
        demand = cls(
            pod_requests(spec),
            dict(spec.get("nodeSelector") or {}),
            node_affinity_terms(spec),
            list(spec.get("tolerations") or ()),
        )
        parts = [demand.requests, demand.node_selector, demand.terms, demand.tolerations]
        # orjson: the same canonical JSON as json.dumps(sort_keys=True), 20x cheaper (this
        # runs for every new pod)
        return orjson.dumps(parts, option=orjson.OPT_SORT_KEYS).decode(), demand

"""Label and field selectors, parsed as kube-apiserver parses them and cached by their text
(watchers and list loops send the same few selectors over and over)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from kubequeue.sim import status

Matcher = Callable[[dict], bool]

# Requirement operators of the label selector grammar (k8s.io/apimachinery/pkg/labels).
_SET_OP = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\((.*)\)\s*$")
_EQ_OP = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "=":
            return value is not None and value in self.values
        if self.op == "!=":
            return value is None or value not in self.values
        if self.op == "in":
            return value is not None and value in self.values
        if self.op == "notin":
            return value is None or value not in self.values
        if self.op == "exists":
            return value is not None
        return value is None  # "!"


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( ... )` value sets."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _requirement(part: str) -> Requirement:
    m = _SET_OP.match(part)
    if m:
        if m.group(1):
            raise ValueError(f"unable to parse requirement: '!' cannot be used with {m.group(3)}")
        values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
        return Requirement(m.group(2), m.group(3), values)
    m = _EQ_OP.match(part)
    if m:
        op = "!=" if m.group(2) == "!=" else "="
        return Requirement(m.group(1), op, frozenset({m.group(3)}))
    m = _EXISTS.match(part)
    if m:
        return Requirement(m.group(2), "!" if m.group(1) else "exists")
    raise ValueError(f"unable to parse requirement: invalid label selector {part.strip()!r}")


@lru_cache(maxsize=256)
def parse_labels(selector: str) -> tuple[Requirement, ...]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` → requirements; ValueError when malformed."""
    if not selector.strip():
        return ()
    return tuple(_requirement(part) for part in _split_top_level(selector))


def label_matcher(selector: str | None) -> Matcher | None:
    """A predicate on objects, or None when the selector selects everything."""
    if not selector:
        return None
    try:
        reqs = parse_labels(selector)
    except ValueError as e:
        raise status.bad_request(f"unable to parse requirement: {e}") from e
    if not reqs:
        return None

    def matches(obj: dict) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return all(r.matches(labels) for r in reqs)

    return matches


# -- field selectors ---------------------------------------------------------------------------
def _get(obj: dict, path: str) -> str:
    node: object = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


_COMMON = ("metadata.name", "metadata.namespace")
FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        *_COMMON,
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "nodes": (*_COMMON, "spec.unschedulable"),
    "namespaces": (*_COMMON, "status.phase"),
    "events": (
        *_COMMON,
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "secrets": (*_COMMON, "type"),
}
# Field names whose value lives at another path.
_PATHS = {"source": "source.component"}


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


@lru_cache(maxsize=256)
def parse_fields(resource: str, selector: str) -> tuple[tuple[str, bool, str], ...]:
    """`a=b,c!=d` → ((path, equal, value), ...); ValueError names what is wrong."""
    allowed = FIELDS.get(resource, _COMMON)
    out: list[tuple[str, bool, str]] = []
    for part in re.split(r"(?<!\\),", selector):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9._-]+)\s*(==|=|!=)(.*)$", part)
        if not m:
            raise ValueError(f"invalid selector: '{selector}'; can't understand '{part}'")
        field, op, value = m.group(1), m.group(2), _unescape(m.group(3).strip())
        if field not in allowed:
            raise ValueError(f"field label not supported: {field}")
        out.append((_PATHS.get(field, field), op != "!=", value))
    return tuple(out)


def field_matcher(resource: str, selector: str | None) -> Matcher | None:
    if not selector:
        return None
    try:
        terms = parse_fields(resource, selector)
    except ValueError as e:
        raise status.bad_request(str(e)) from e
    if not terms:
        return None

    def matches(obj: dict) -> bool:
        return all((_get(obj, path) == value) == equal for path, equal, value in terms)

    return matches


def combine(*matchers: Matcher | None) -> Matcher | None:
    present = [m for m in matchers if m is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return lambda obj: all(m(obj) for m in present)

"""Validation as kube-apiserver does it, with its exact messages: names (DNS-1123), labels,
the pod spec (containers, images, restart policy, resource quantities).

Two stages, as on a real server: a body that cannot be decoded into the type at all (a
quantity that is not a quantity, a list where an object belongs) is a 400 BadRequest;
a decodable object that breaks a rule is a 422 Invalid listing every cause."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from kubequeue.sim import status
from kubequeue.sim.status import Cause

_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + "(\\." + _LABEL_FMT + ")*"
_LABEL_RE = re.compile(f"^{_LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(f"^{_SUBDOMAIN_FMT}$")
_LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_QUALIFIED_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_RE = re.compile(f"^{_QUALIFIED_FMT}$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    f"used for validation is '{_SUBDOMAIN_FMT}')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    f"used for validation is '{_LABEL_FMT}')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE_FMT}')"
)
QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
    f"for validation is '{_QUALIFIED_FMT}')"
)

# Quantity grammar of k8s.io/apimachinery/pkg/api/resource.
QUANTITY_RE = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
QUANTITY_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
NAME_RULES = {"namespaces": "label"}  # every other resource here: DNS-1123 subdomain


def parse_quantity(value: Any) -> Decimal:
    """`500m` → 0.5, `1Gi` → 1073741824; ValueError(QUANTITY_ERROR) if not a quantity."""
    if isinstance(value, bool):
        raise ValueError(QUANTITY_ERROR)
    if isinstance(value, int | float):
        return Decimal(str(value))
    return _parse_text(str(value))


@lru_cache(maxsize=1024)  # pods repeat the same few quantities
def _parse_text(value: str) -> Decimal:
    m = QUANTITY_RE.match(value)
    if not m:
        raise ValueError(QUANTITY_ERROR)
    number, suffix = m.group(1), m.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
        return Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation as e:
        raise ValueError(QUANTITY_ERROR) from e


def _invalid(field: str, value: Any, message: str) -> Cause:
    shown = value if isinstance(value, str) else str(value)
    return Cause("FieldValueInvalid", f'Invalid value: "{shown}": {message}', field)


def _required(field: str, detail: str = "") -> Cause:
    return Cause(
        "FieldValueRequired", f"Required value: {detail}" if detail else "Required value", field
    )


def check_name(resource: str, name: str, field: str = "metadata.name") -> list[Cause]:
    if NAME_RULES.get(resource) == "label":
        if len(name) > 63:
            return [_invalid(field, name, "must be no more than 63 characters")]
        return [] if _LABEL_RE.match(name) else [_invalid(field, name, LABEL_MSG)]
    if resource == "events":  # event names only need to be valid path segments
        return (
            []
            if "/" not in name and name not in (".", "..")
            else [_invalid(field, name, "may not contain '/'")]
        )
    if len(name) > 253:
        return [_invalid(field, name, "must be no more than 253 characters")]
    return [] if _SUBDOMAIN_RE.match(name) else [_invalid(field, name, SUBDOMAIN_MSG)]


@lru_cache(maxsize=4096)  # label and annotation keys repeat across objects
def _check_key(key: str, field: str) -> tuple[Cause, ...]:
    prefix, _, name = key.rpartition("/")
    causes: list[Cause] = []
    if prefix and not _SUBDOMAIN_RE.match(prefix):
        causes.append(_invalid(field, key, "prefix part " + SUBDOMAIN_MSG))
    if not name or len(name) > 63 or not _QUALIFIED_RE.match(name):
        causes.append(_invalid(field, key, QUALIFIED_MSG))
    return tuple(causes)


@lru_cache(maxsize=4096)
def _label_value_ok(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE_RE.match(value))


def check_metadata(resource: str, meta: dict) -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        causes.append(_required("metadata.name", "name or generateName is required"))
    elif name:
        causes.extend(check_name(resource, name))
    for key, value in (meta.get("labels") or {}).items():
        causes.extend(_check_key(key, "metadata.labels"))
        if not isinstance(value, str) or not _label_value_ok(value):
            causes.append(_invalid("metadata.labels", value, LABEL_VALUE_MSG))
    for key in meta.get("annotations") or {}:
        causes.extend(_check_key(key, "metadata.annotations"))
    return causes


def _check_resources(container: dict, field: str) -> list[Cause]:
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    causes: list[Cause] = []
    parsed: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    for kind, values in (("limits", limits), ("requests", requests)):
        for name, raw in values.items():
            quantity = parse_quantity(raw)  # decode errors surface as 400 before this point
            parsed[kind][name] = quantity
            if quantity < 0:
                causes.append(
                    _invalid(
                        f"{field}.resources.{kind}[{name}]",
                        raw,
                        "must be greater than or equal to 0",
                    )
                )
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            causes.append(
                _invalid(
                    f"{field}.resources.requests",
                    requests[name],
                    f"must be less than or equal to {name} limit of {limits[name]}",
                )
            )
    return causes


def _check_container(container: dict, field: str, seen: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    name = container.get("name")
    if not name:
        causes.append(_required(f"{field}.name"))
    elif not _LABEL_RE.match(name) or len(name) > 63:
        causes.append(_invalid(f"{field}.name", name, LABEL_MSG))
    elif name in seen:
        causes.append(Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', f"{field}.name"))
    else:
        seen.add(name)
    if not container.get("image"):
        causes.append(_required(f"{field}.image"))
    causes.extend(_check_resources(container, field))
    return causes


def check_pod_spec(spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_required("spec.containers"))
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind) or []):
            causes.extend(_check_container(container, f"spec.{kind}[{i}]", seen))
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        message = f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"'
        causes.append(Cause("FieldValueNotSupported", message, "spec.restartPolicy"))
    return causes


def _decode_error(kind: str, detail: str) -> status.ApiError:
    return status.bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {detail}')


def _check_meta_shape(kind: str, meta: dict) -> None:
    for key in ("labels", "annotations"):
        values = meta.get(key)
        if values is not None and not (
            isinstance(values, dict) and all(isinstance(v, str) for v in values.values())
        ):
            raise _decode_error(
                kind,
                f"json: cannot unmarshal {_go_type(values)} into Go struct field "
                f"ObjectMeta.metadata.{key} of type map[string]string",
            )


def _check_pod_shape(spec: dict) -> None:
    for list_field in ("containers", "initContainers"):
        items = spec.get(list_field)
        if items is not None and not (
            isinstance(items, list) and all(isinstance(c, dict) for c in items)
        ):
            raise _decode_error(
                "Pod",
                f"json: cannot unmarshal {_go_type(items)} into Go struct field "
                f"PodSpec.spec.{list_field} of type []v1.Container",
            )
        for container in items or []:
            resources = container.get("resources") or {}
            for values in (resources.get("limits") or {}, resources.get("requests") or {}):
                for raw in values.values():
                    try:
                        parse_quantity(raw)
                    except ValueError as e:
                        raise _decode_error("Pod", str(e)) from e


def decode_check(kind: str, obj: Any) -> None:
    """The shape checks a Go decoder would fail on: 400 BadRequest, like the real server."""
    if not isinstance(obj, dict):
        raise status.bad_request(
            f"the object provided is unrecognized (must be of type {kind}): couldn't get "
            f"version/kind; json parse error: json: cannot unmarshal {_go_type(obj)} into Go "
            'value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
            'Kind string "json:\\"kind,omitempty\\"" }'
        )
    for key in ("metadata", "spec", "status"):
        if key in obj and obj[key] is not None and not isinstance(obj[key], dict):
            raise _decode_error(
                kind,
                f"json: cannot unmarshal {_go_type(obj[key])} into Go struct field {kind}.{key}",
            )
    _check_meta_shape(kind, obj.get("metadata") or {})
    if kind == "Pod":
        _check_pod_shape(obj.get("spec") or {})


def _go_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "object"


def validate(resource: str, obj: dict) -> None:
    """Raise 422 Invalid with every cause found; the message is kube-apiserver's."""
    meta = obj.get("metadata") or {}
    causes = check_metadata(resource, meta)
    if resource == "pods":
        causes.extend(check_pod_spec(obj.get("spec") or {}))
    if causes:
        raise status.invalid(resource, meta.get("name") or meta.get("generateName") or "", causes)

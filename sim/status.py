"""Errors the simulated API server returns, as `metav1.Status` objects shaped exactly as
kube-apiserver's (k8s.io/apimachinery/pkg/api/errors): same code, reason, message text and
details, so clients that parse them (the official client, kubectl, kubequeue's own error
mapping) see what a real cluster would send."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubequeue.errors import KubeQueueError

# resource (plural) -> (group, Kind); the Invalid error names the Kind, the others the resource.
KINDS: dict[str, tuple[str, str]] = {
    "pods": ("", "Pod"),
    "nodes": ("", "Node"),
    "namespaces": ("", "Namespace"),
    "events": ("", "Event"),
    "serviceaccounts": ("", "ServiceAccount"),
    "configmaps": ("", "ConfigMap"),
    "secrets": ("", "Secret"),
    "bindings": ("", "Binding"),
    "leases": ("coordination.k8s.io", "Lease"),
}


@dataclass(frozen=True)
class Cause:
    """One entry of `details.causes`: what is wrong with which field."""

    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    message: str
    field: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(KubeQueueError):
    """An API failure; `status()` is the body the server sends."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(resource: str) -> str:
    """`pods`, or `leases.coordination.k8s.io` for a resource of a named group."""
    group = KINDS.get(resource, ("", ""))[0]
    return f"{resource}.{group}" if group else resource


def _details(resource: str, name: str) -> dict[str, Any]:
    group = KINDS.get(resource, ("", ""))[0]
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = resource
    return details


def not_found(resource: str, name: str) -> ApiError:
    message = f'{_qualified(resource)} "{name}" not found'
    return ApiError(404, "NotFound", message, _details(resource, name))


def already_exists(resource: str, name: str) -> ApiError:
    message = f'{_qualified(resource)} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(resource, name))


def conflict(resource: str, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    message = f'Operation cannot be fulfilled on {_qualified(resource)} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(resource, name))


def invalid(resource: str, name: str, causes: list[Cause]) -> ApiError:
    group, kind = KINDS.get(resource, ("", resource))
    listed = ", ".join(f"{c.field}: {c.message}" for c in causes)
    aggregate = listed if len(causes) == 1 else f"[{listed}]"
    message = f'{kind} "{name}" is invalid: {aggregate}'
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [c.to_dict() for c in causes]
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def page_not_found() -> ApiError:
    """What kube-apiserver sends for a path it has no route for (e.g. an unknown resource)."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_many_requests(retry_after: int) -> ApiError:
    message = "Too many requests, please try again later."
    return ApiError(
        429,
        "TooManyRequests",
        message,
        {"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def internal_error(message: str) -> ApiError:
    text = f"Internal error occurred: {message}"
    return ApiError(500, "InternalError", text, {"causes": [{"message": message}]})


def unavailable(message: str = "the server is currently unable to handle the request") -> ApiError:
    return ApiError(503, "ServiceUnavailable", message, {})


def unsupported_media_type(content_type: str) -> ApiError:
    message = (
        f'the body of the request was in an unknown format "{content_type}" - accepted media '
        "types include: application/json, application/yaml, application/merge-patch+json, "
        "application/strategic-merge-patch+json"
    )
    return ApiError(415, "UnsupportedMediaType", message, {})


def success(resource: str, name: str, uid: str) -> dict[str, Any]:
    """The Status a delete answers with when the object is gone at once (kube-apiserver
    answers with the object itself while a graceful delete is in progress)."""
    details = _details(resource, name)
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }

"""The watcher's two pod calls, DELETE a finished pod and label a kept one done: the
requests the generated client sends, through kubequeue.podrequests (the official client's
pool, auth and headers, without its per-call layers).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient

from kubequeue.podrequests import PodRequests

# CoreV1Api sends a dict PATCH body as a strategic merge patch; a DELETE without a body is
# still sent with a JSON Content-Type.
_PATCH = "application/strategic-merge-patch+json"


class PodApi:
    """Pod DELETE and PATCH through one ApiClient's connection pool; thread-safe."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self._requests = PodRequests(api)

    def delete(self, namespace: str, name: str) -> None:
        """DELETE the pod, the request `CoreV1Api.delete_namespaced_pod` sends; raises a
        KubeApiError subclass on any failure (404 included)."""
        self._requests.send("DELETE", namespace, name, "application/json", None)

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Strategic-merge PATCH of the pod, the request `CoreV1Api.patch_namespaced_pod`
        sends; raises a KubeApiError subclass on any failure."""
        self._requests.send("PATCH", namespace, name, _PATCH, json.dumps(patch).encode())

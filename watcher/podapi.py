"""The watcher's two pod calls, DELETE a finished pod and label a kept one done, without the
generated client's per-call layers.

Through `CoreV1Api` each call cost about 1 ms of CPU (parameter checks, URL building, the
PoolManager's per-request lookups, the response wrapping). We keep what makes the official
client correct against a real cluster: its urllib3 pool (TLS, client certificates, CA bundle,
proxy, all from the kubeconfig or the in-cluster config), its auth (`update_params_for_auth`,
which runs the token refresh hook of in-cluster and exec-plugin credentials) and its default
headers; and send the same requests it sends. The answer is read whole, so its connection
goes back to the pool for the next call. Errors are mapped by kubequeue.kube.api_error like
any other client's.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlparse

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from kubequeue import kube

# CoreV1Api sends a dict PATCH body as a strategic merge patch; a DELETE without a body is
# still sent with a JSON Content-Type.
_DELETE = {"Accept": "application/json", "Content-Type": "application/json"}
_PATCH = {"Accept": "application/json", "Content-Type": "application/strategic-merge-patch+json"}


class PodApi:
    """Pod DELETE and PATCH through one ApiClient's connection pool; thread-safe."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        host = api.configuration.host
        self._pool = api.rest_client.pool_manager.connection_from_url(host)
        self._prefix = urlparse(host).path.rstrip("/")
        connect, read = kube.REQUEST_TIMEOUT
        self._timeout = urllib3.Timeout(connect=connect, read=read)

    def delete(self, namespace: str, name: str) -> None:
        """DELETE the pod, the request `CoreV1Api.delete_namespaced_pod` sends; raises a
        KubeApiError subclass on any failure (404 included)."""
        self._call("DELETE", namespace, name, _DELETE, None)

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Strategic-merge PATCH of the pod, the request `CoreV1Api.patch_namespaced_pod`
        sends; raises a KubeApiError subclass on any failure."""
        self._call("PATCH", namespace, name, _PATCH, json.dumps(patch).encode())

    def _call(
        self, method: str, namespace: str, name: str, kind: dict[str, str], body: bytes | None
    ) -> None:
        headers = {**self.api.default_headers, **kind}
        if self.api.cookie:
            headers["Cookie"] = self.api.cookie
        self.api.update_params_for_auth(headers, [], ["BearerToken"])
        path = (
            f"{self._prefix}/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/pods/{quote(name, safe='')}"
        )
        try:
            resp = self._pool.urlopen(
                method, path, body=body, headers=headers, retries=False, timeout=self._timeout
            )
        except Exception as e:
            raise kube.api_error(e) from e
        if resp.status >= 300:
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body, exc.headers = resp.data, resp.headers
            raise kube.api_error(exc)

"""The one Kubernetes call a dispatcher makes, POST a pod, without the generated client's
per-call layers.

`CoreV1Api.create_namespaced_pod` costs about 1.4 ms of CPU per call here, most of it in the
generated code around the request (parameter checks, `sanitize_for_serialization` walking the
body, urllib3's PoolManager URL handling); the POST itself is well under half of that. We
keep everything that makes the official client correct against a real cluster — its
urllib3 pool (TLS, client certificates, CA bundle, proxy, all from the kubeconfig or the
in-cluster config), its auth (`update_params_for_auth`, which runs the token refresh hook
of in-cluster and exec-plugin credentials) and its default headers — and drop the rest.
Errors are mapped by kubequeue.kube.api_error like any other client's.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlparse

import orjson
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from kubequeue import kube

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class PodApi:
    """Creates pods through one ApiClient's connection pool; safe to share between threads."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        host = api.configuration.host
        self._pool = api.rest_client.pool_manager.connection_from_url(host)
        self._prefix = urlparse(host).path.rstrip("/")
        connect, read = kube.REQUEST_TIMEOUT
        self._timeout = urllib3.Timeout(connect=connect, read=read)

    def create(self, namespace: str, pod: dict[str, Any]) -> None:
        """POST the pod; raises a KubeApiError subclass on any failure."""
        headers = {**self.api.default_headers, **_JSON}
        self.api.update_params_for_auth(headers, [], ["BearerToken"])
        path = f"{self._prefix}/api/v1/namespaces/{quote(namespace, safe='')}/pods"
        body = _encode(pod)
        try:
            resp = self._pool.urlopen(
                "POST", path, body=body, headers=headers, retries=False, timeout=self._timeout
            )
        except Exception as e:
            raise kube.api_error(e) from e
        if resp.status >= 300:
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body, exc.headers = resp.data, resp.headers
            raise kube.api_error(exc)


def _encode(pod: dict[str, Any]) -> bytes:
    """The pod as compact JSON: what json.dumps wrote, several times faster. What orjson
    refuses (date objects from a YAML template, integers beyond 64 bits) goes to json.dumps,
    which answers as it always did. One difference: a NaN or infinite float (only a YAML
    template can hold one) becomes null, where json.dumps wrote tokens JSON does not have."""
    try:
        return orjson.dumps(pod, option=_ORJSON)
    except TypeError:
        return json.dumps(pod, separators=(",", ":")).encode()


# Dates are encoded by json.dumps's rules (it refuses them); non-str keys as json.dumps does.
_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS

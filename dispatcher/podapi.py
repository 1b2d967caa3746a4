"""The one Kubernetes call a dispatcher makes, POST a pod: the request
`CoreV1Api.create_namespaced_pod` sends, through kubequeue.podrequests (the official
client's pool, auth and headers, without its per-call layers).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from kubernetes.client import ApiClient

from kubequeue.podrequests import PodRequests


class PodApi:
    """Creates pods through one ApiClient's connection pool; safe to share between threads."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self._requests = PodRequests(api)

    def create(self, namespace: str, pod: dict[str, Any]) -> None:
        """POST the pod; raises a KubeApiError subclass on any failure."""
        self._requests.send("POST", namespace, None, "application/json", _encode(pod))


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

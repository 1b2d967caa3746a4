"""The simulator's own endpoints under `/_sim/` (never faulted):

GET  /_sim/faults                 the fault settings
POST /_sim/faults                 change some: {"throttle": 0.2, "retry_after": 2, ...}
POST /_sim/compact                forget watch history: older resourceVersions get 410
POST /_sim/watches/drop           end every open watch now
POST /_sim/nodes/<name>/ready     {"ready": false} makes a node NotReady
GET  /_sim/stats                  resourceVersion, object counts, watches, faults served
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kubequeue.errors import ConfigError
from kubequeue.sim import status
from kubequeue.sim.store import RESOURCES
from kubequeue.sim.wire import error_response, json_response, read_body

if TYPE_CHECKING:
    from kubequeue.sim.server import Api


async def _body(request: web.BaseRequest) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise status.bad_request(f"admin request body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise status.bad_request("admin request body must be a JSON object")
    return data


def stats(api: Api) -> dict[str, Any]:
    return {
        "resourceVersion": api.store.resource_version,
        "oldestResumable": api.store.oldest_resumable,
        "objects": {r: api.store.count(r) for r in sorted(RESOURCES)},
        "watches": api.hub.count(),
        "requests": api.requests,
        "faults": dict(api.faults.counts),
    }


def set_node_ready(api: Api, node: str, ready: bool) -> None:
    if api.store.get("nodes", None, node) is None:
        raise status.not_found("nodes", node)
    if api.cluster is None:
        raise status.unavailable("this simulator runs without a cluster (no kubelets)")
    api.cluster.set_node_ready(node, ready)


async def _route(api: Api, request: web.BaseRequest) -> web.Response:
    path, method = request.path.rstrip("/"), request.method
    if path == "/_sim/faults" and method == "GET":
        return json_response(api.faults.config.to_dict())
    if path == "/_sim/faults" and method == "POST":
        try:
            api.faults.config = api.faults.config.replace(**await _body(request))
        except (ConfigError, TypeError, ValueError) as e:
            raise status.bad_request(str(e)) from e
        return json_response(api.faults.config.to_dict())
    if path == "/_sim/compact" and method == "POST":
        api.store.compact()
        return json_response({"compactedAt": api.store.resource_version})
    if path == "/_sim/watches/drop" and method == "POST":
        return json_response({"dropped": api.hub.drop_all()})
    if path == "/_sim/stats" and method == "GET":
        return json_response(stats(api))
    parts = path.split("/")
    if len(parts) == 5 and parts[2] == "nodes" and parts[4] == "ready" and method == "POST":
        ready = (await _body(request)).get("ready", True)
        if not isinstance(ready, bool):
            raise status.bad_request('"ready" must be true or false')
        set_node_ready(api, parts[3], ready)
        return json_response({"node": parts[3], "ready": ready})
    raise status.page_not_found()


def handler(api: Api) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    async def serve(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await _route(api, request)
        except status.ApiError as e:
            return error_response(e)

    return serve

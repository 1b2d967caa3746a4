"""Reading collections: list (selectors, limit/continue, Table and metadata-only forms), watch
(resourceVersion resume, bookmarks, timeoutSeconds, sendInitialEvents), and pod logs
(tail, limit, follow)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kubequeue.sim import pods, selectors, status, tables
from kubequeue.sim.selectors import Matcher
from kubequeue.sim.watch import LineCache, Watcher, json_line, serve_error
from kubequeue.sim.wire import Format, Target, dumps, negotiate

if TYPE_CHECKING:
    from kubequeue.sim.server import Api

TRUE = frozenset({"true", "1", "True"})


def matcher(request: web.BaseRequest, resource: str) -> Matcher | None:
    q = request.query
    return selectors.combine(
        selectors.label_matcher(q.get("labelSelector")),
        selectors.field_matcher(resource, q.get("fieldSelector")),
    )


def _int(request: web.BaseRequest, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise status.bad_request(f"invalid {name} {raw!r}: not an integer") from e


def _key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _encode_continue(rv: int, key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": key + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        return int(data["rv"]), str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError) as e:
        raise status.bad_request(f"continue key is not valid: {e}") from e


def _list_rv(api: Api, request: web.BaseRequest) -> None:
    """resourceVersion/resourceVersionMatch on a list: only the current state is kept."""
    rv = _int(request, "resourceVersion")
    current = api.store.resource_version
    if rv is None or rv == 0:
        return
    if request.query.get("resourceVersionMatch") == "Exact" and rv != current:
        raise status.gone(f"too old resource version: {rv} ({current})")
    if rv > current:
        raise status.ApiError(
            504,
            "Timeout",
            f"Too large resource version: {rv}, current: {current}",
            {
                "causes": [
                    {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                ],
                "retryAfterSeconds": 1,
            },
        )


def select(api: Api, request: web.BaseRequest, target: Target) -> tuple[list[dict], dict[str, Any]]:
    """The page of objects a list asks for, and its list metadata."""
    resource = target.info.name
    match = matcher(request, resource)
    objects = api.store.list(resource, target.namespace)
    if match is not None:
        objects = [o for o in objects if match(o)]
    objects.sort(key=_key)
    rv = api.store.resource_version
    token = request.query.get("continue")
    if token:
        rv, start = _decode_continue(token)
        if rv < api.store.oldest_resumable:
            raise status.gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            )
        objects = [o for o in objects if _key(o) >= start]
    else:
        _list_rv(api, request)
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    limit = _int(request, "limit")
    if limit is not None and 0 < limit < len(objects):
        page = objects[:limit]
        meta["continue"] = _encode_continue(rv, _key(page[-1]))
        if match is None:
            meta["remainingItemCount"] = len(objects) - limit
        objects = page
    return objects, meta


async def list_or_watch(api: Api, request: web.BaseRequest, target: Target) -> web.StreamResponse:
    if request.query.get("watch") in TRUE:
        return await watch(api, request, target)
    fmt = negotiate(request.headers.get("Accept"))
    objects, meta = select(api, request, target)
    info = target.info
    body: dict[str, Any]
    if fmt.kind == "table" and info.name in tables.TABLES:
        include = request.query.get("includeObject", "Metadata")
        body = tables.table(info.name, objects, meta, include=include, version=fmt.version)
    elif fmt.kind == "meta":
        body = {
            "kind": "PartialObjectMetadataList",
            "apiVersion": f"meta.k8s.io/{fmt.version}",
            "metadata": meta,
            "items": [tables.partial(o, fmt.version) for o in objects],
        }
    else:
        body = {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": meta,
            "items": objects,
        }
    return web.Response(body=dumps(body), content_type="application/json")


def _encoder(target: Target, fmt: Format, include: str) -> Any:
    if fmt.kind == "json" or (target.info.name not in tables.TABLES and fmt.kind == "table"):
        return json_line
    if fmt.kind == "meta":

        def meta_line(kind: str, obj: dict, cache: LineCache) -> bytes:
            return dumps({"type": kind, "object": tables.partial(obj, fmt.version)}) + b"\n"

        return meta_line
    first = [True]

    def table_line(kind: str, obj: dict, cache: LineCache) -> bytes:
        meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
        rendered = tables.table(
            target.info.name, [obj], meta, include=include, version=fmt.version, headers=first[0]
        )
        first[0] = False
        return dumps({"type": kind, "object": rendered}) + b"\n"

    return table_line


def _bookmark(target: Target) -> Any:
    info = target.info

    def line(rv: int) -> bytes:
        obj = {
            "kind": info.kind,
            "apiVersion": info.api_version,
            "metadata": {"resourceVersion": str(rv)},
        }
        return dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    return line


async def watch(api: Api, request: web.BaseRequest, target: Target) -> web.StreamResponse:
    q = request.query
    fmt = negotiate(request.headers.get("Accept"))
    initial = q.get("sendInitialEvents") in TRUE
    w = Watcher(
        resource=target.info.name,
        namespace=target.namespace,
        matcher=matcher(request, target.info.name),
        encode=_encoder(target, fmt, q.get("includeObject", "Metadata")),
        bookmark=_bookmark(target) if q.get("allowWatchBookmarks") in TRUE else None,
    )
    rv = _int(request, "resourceVersion")
    timeout = _int(request, "timeoutSeconds")
    try:
        api.hub.open(w, None if (rv in (None, 0) or initial) else rv, initial_end_bookmark=initial)
    except status.ApiError as e:
        return await serve_error(request, e)
    limit = api.config.default_watch_timeout if timeout is None or timeout <= 0 else timeout
    return await api.hub.serve(request, w, float(limit))


async def pod_log(api: Api, request: web.BaseRequest, target: Target) -> web.StreamResponse:
    q = request.query
    pod = api.store.get("pods", target.namespace, target.name or "")
    if pod is None:
        raise status.not_found("pods", target.name or "")
    container = pods.log_container(pod, q.get("container"))
    if q.get("previous") in TRUE:
        raise status.bad_request(
            f'previous terminated container "{container}" in pod "{target.name}" not found'
        )
    pods.log_ready(api.store, pod, container)
    tail_lines, limit = _int(request, "tailLines"), _int(request, "limitBytes")
    stamps = q.get("timestamps") in TRUE
    namespace, name = target.namespace or "", target.name or ""
    text = pods.tail(api.store.read_log(namespace, name, container), tail_lines, limit)
    if q.get("follow") not in TRUE:
        body = pods.stamp(text) if stamps else text
        return web.Response(text=body, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    offset = len(api.store.read_log(namespace, name, container))
    if text:
        await response.write((pods.stamp(text) if stamps else text).encode())
    await _follow(api, response, namespace, name, container, offset, stamps)
    return response


async def _follow(
    api: Api,
    response: web.StreamResponse,
    namespace: str,
    name: str,
    container: str,
    offset: int,
    stamps: bool,
) -> None:
    store = api.store
    uid = (store.get("pods", namespace, name) or {"metadata": {"uid": None}})["metadata"]["uid"]
    while True:
        pod = store.get("pods", namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid:
            break
        more = store.read_log(namespace, name, container, offset)
        if more:
            offset += len(more)
            await response.write((pods.stamp(more) if stamps else more).encode())
            continue
        if store.log_closed(namespace, name, container):
            break
        await store.wait_log(namespace, name, container, offset)
    await response.write_eof()

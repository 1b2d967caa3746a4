"""The REST verbs: get, list (+ watch), create, update, patch, delete, deletecollection, with
the per-resource behaviour kube-apiserver's registries add (status strategies, namespace
lifecycle, service-account admission). Pod specifics live in `pods`, paging in `listing`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from kubequeue.sim import listing, patch, pods, status, tables, validation
from kubequeue.sim.store import now_rfc3339
from kubequeue.sim.wire import (
    Target,
    dumps,
    encode_stored,
    json_response,
    negotiate,
    parse_json,
    read_body,
)

if TYPE_CHECKING:
    from kubequeue.sim.server import Api

WITH_STATUS = frozenset({"pods", "nodes", "namespaces"})  # status has its own endpoint
RETURNS_OBJECT_ON_DELETE = frozenset({"pods", "namespaces", "nodes"})


async def handle(api: Api, request: web.BaseRequest, target: Target) -> web.StreamResponse:
    method, sub = request.method, target.sub
    if target.name is None:
        if method == "GET":
            return await listing.list_or_watch(api, request, target)
        if target.info.namespaced and target.namespace is None:
            raise status.method_not_allowed()
        if method == "POST":
            return await create(api, request, target)
        if method == "DELETE":
            return await delete_collection(api, request, target)
    elif sub == "log" and method == "GET":
        return await listing.pod_log(api, request, target)
    elif sub == "binding" and method == "POST":
        return await binding(api, request, target)
    elif method == "GET" and sub in (None, "status"):
        return get(api, request, target)
    elif method == "PUT":
        body = parse_json(await read_body(request), target.info.kind)
        return json_response(update(api, target, body, dry_run(request)))
    elif method == "PATCH":
        return await patch_object(api, request, target)
    elif method == "DELETE" and sub is None:
        return await delete(api, request, target)
    raise status.method_not_allowed()


def dry_run(request: web.BaseRequest) -> bool:
    return "All" in request.query.getall("dryRun", [])


def lookup(api: Api, target: Target) -> dict:
    obj = api.store.get(target.info.name, target.namespace, target.name or "")
    if obj is None:
        raise status.not_found(target.info.name, target.name or "")
    return obj


def get(api: Api, request: web.BaseRequest, target: Target) -> web.Response:
    obj = lookup(api, target)
    fmt = negotiate(request.headers.get("Accept"))
    if fmt.kind == "meta":
        return json_response(tables.partial(obj, fmt.version))
    if fmt.kind == "table" and target.info.name in tables.TABLES:
        meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
        include = request.query.get("includeObject", "Metadata")
        rendered = tables.table(target.info.name, [obj], meta, include=include, version=fmt.version)
        return json_response(rendered)
    return json_response(obj)


# -- create ----------------------------------------------------------------------------------
def _check_type(target: Target, body: dict) -> None:
    info = target.info
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if api_version and api_version != info.api_version:
        raise status.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({info.api_version})"
        )
    if kind and kind != info.kind:
        raise status.bad_request(
            f'{kind} in version "{info.version}" cannot be handled as a {info.kind}: '
            f'no kind "{kind}" is registered for version "{info.api_version}" in scheme '
            '"pkg/api/legacyscheme/scheme.go:30"'
        )
    body["kind"], body["apiVersion"] = info.kind, info.api_version


def _check_namespace(api: Api, target: Target, meta: dict) -> None:
    namespace = target.namespace or ""
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise status.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    meta["namespace"] = namespace
    ns = api.store.get("namespaces", None, namespace)
    if ns is None:
        raise status.not_found("namespaces", namespace)
    if ns["metadata"].get("deletionTimestamp"):
        name = meta.get("name") or meta.get("generateName") or ""
        message = (
            f'{target.info.name} "{name}" is forbidden: unable to create new content in '
            f"namespace {namespace} because it is being terminated"
        )
        raise status.ApiError(403, "Forbidden", message, {"name": name, "kind": target.info.name})


def prepare(api: Api, target: Target, body: Any) -> dict:
    """Decode, default, admit and validate a new object (without storing it)."""
    resource = target.info.name
    validation.decode_check(target.info.kind, body)
    _check_type(target, body)
    meta = body["metadata"] = dict(body.get("metadata") or {})
    if meta.get("resourceVersion"):
        raise status.internal_error("resourceVersion should not be set on objects to be created")
    for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(key, None)
    if target.info.namespaced:
        _check_namespace(api, target, meta)
    if resource == "pods":
        body = pods.prepare_create(body)
        validation.validate(resource, body)
        pods.admit(api.store, body)
    elif resource == "namespaces":
        body = _namespace_defaults(body)
        validation.validate(resource, body)
    else:
        validation.validate(resource, body)
    return body


async def create(api: Api, request: web.BaseRequest, target: Target) -> web.Response:
    body = parse_json(await read_body(request), target.info.kind)
    obj = prepare(api, target, body)
    if dry_run(request):
        return json_response(obj, 201)
    if target.info.name == "namespaces":
        return json_response(create_namespace(api, obj), 201)
    created = api.store.create(target.info.name, obj)
    # the watch fan-out of this create has just encoded the same object
    return web.Response(body=encode_stored(created), status=201, content_type="application/json")


def _namespace_defaults(body: dict) -> dict:
    meta = body["metadata"]
    name = meta.get("name", "")
    body["metadata"] = {
        **meta,
        "labels": {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name},
    }
    body["spec"] = {"finalizers": ["kubernetes"], **(body.get("spec") or {})}
    body["status"] = {"phase": "Active"}
    return body


def create_namespace(api: Api, body: dict) -> dict:
    """Store a namespace and its `default` service account (the controller's job)."""
    body = _namespace_defaults({"kind": "Namespace", "apiVersion": "v1", **body})
    created = api.store.create("namespaces", body)
    name = created["metadata"]["name"]
    if api.store.get("serviceaccounts", name, "default") is None:
        account = {
            "kind": "ServiceAccount",
            "apiVersion": "v1",
            "metadata": {"name": "default", "namespace": name},
        }
        api.store.create("serviceaccounts", account)
    return created


# -- update and patch -------------------------------------------------------------------------
def update(api: Api, target: Target, body: Any, dry: bool = False) -> dict:
    """PUT on an object or its status subresource."""
    resource = target.info.name
    validation.decode_check(target.info.kind, body)
    _check_type(target, body)
    meta = dict(body.get("metadata") or {})
    if meta.get("name") and meta["name"] != target.name:
        raise status.bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL "
            f"({target.name})"
        )
    old = lookup(api, target)
    meta["name"] = target.name
    if target.namespace is not None:
        meta["namespace"] = target.namespace
    # Deletion state and identity are the server's, whatever the client sends.
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "uid", "creationTimestamp"):
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        else:
            meta.pop(key, None)
    new = {**body, "metadata": meta}
    if target.sub == "status":
        new = {**old, "status": body.get("status") or {}}
        new["metadata"] = {**old["metadata"], "resourceVersion": meta.get("resourceVersion")}
    elif target.sub == "finalize":
        new = {**old, "spec": body.get("spec") or {}}
    elif resource in WITH_STATUS:
        new["status"] = old.get("status")
        if resource == "pods":
            pods.check_update(old, new)
    if new.get("status") is None:
        new.pop("status", None)
    validation.validate(resource, new)
    if dry:
        return new
    stored = api.store.update(resource, new)
    _finish_if_finalized(api, target, stored)
    return stored


def _finish_if_finalized(api: Api, target: Target, obj: dict) -> None:
    """An object being deleted goes once its last finalizer is removed."""
    meta = obj["metadata"]
    if target.info.name == "pods" or not meta.get("deletionTimestamp"):
        return
    if meta.get("finalizers"):
        return
    if target.info.name == "namespaces" and (obj.get("spec") or {}).get("finalizers"):
        return
    api.store.remove(target.info.name, target.namespace, meta["name"])


async def patch_object(api: Api, request: web.BaseRequest, target: Target) -> web.Response:
    content_type = request.content_type
    if content_type == patch.APPLY:
        raise status.unsupported_media_type(content_type)
    body = parse_json(await read_body(request), target.info.kind)
    old = lookup(api, target)
    patched = patch.apply(content_type, old, body)
    if target.sub is None and target.info.name in WITH_STATUS:
        patched["status"] = old.get("status")
    return json_response(update(api, target, patched, dry_run(request)))


# -- delete -----------------------------------------------------------------------------------
async def _delete_options(request: web.BaseRequest) -> dict[str, Any]:
    raw = await read_body(request)
    options: dict[str, Any] = {}
    if raw.strip():
        parsed = parse_json(raw, "DeleteOptions")
        if not isinstance(parsed, dict):
            raise status.bad_request("DeleteOptions must be an object")
        options = parsed
    if "gracePeriodSeconds" in request.query:
        options["gracePeriodSeconds"] = request.query["gracePeriodSeconds"]
    options["gracePeriodSeconds"] = pods.parse_grace(options.get("gracePeriodSeconds"))
    return options


def _check_preconditions(target: Target, obj: dict, options: dict[str, Any]) -> None:
    pre = options.get("preconditions") or {}
    meta = obj["metadata"]
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        if pre.get(key) and pre[key] != meta.get(key):
            why = (
                f"Precondition failed: {label} in precondition: {pre[key]}, {label} in object "
                f"meta: {meta.get(key)}"
            )
            raise status.conflict(target.info.name, meta["name"], why)


def delete_one(api: Api, target: Target, obj: dict, grace: int | None) -> tuple[dict, bool]:
    """(object, gone-now) after deleting one object the way its registry does."""
    resource, meta = target.info.name, obj["metadata"]
    namespace = meta.get("namespace")
    if resource == "pods":
        return api.deleter.delete(namespace or "", meta["name"], grace)
    if resource == "namespaces":
        return delete_namespace(api, obj), False
    if meta.get("finalizers"):
        if meta.get("deletionTimestamp"):
            return obj, False
        new_meta = {**meta, "deletionTimestamp": now_rfc3339(), "deletionGracePeriodSeconds": 0}
        return api.store.update(resource, {**obj, "metadata": new_meta}), False
    removed = api.store.remove(resource, namespace, meta["name"])
    return (removed or obj), True


async def delete(api: Api, request: web.BaseRequest, target: Target) -> web.Response:
    options = await _delete_options(request)
    obj = lookup(api, target)
    _check_preconditions(target, obj, options)
    if dry_run(request):
        return json_response(obj)
    result, gone = delete_one(api, target, obj, options["gracePeriodSeconds"])
    if gone and target.info.name not in RETURNS_OBJECT_ON_DELETE:
        return json_response(
            status.success(target.info.name, result["metadata"]["name"], result["metadata"]["uid"])
        )
    return json_response(result)


async def delete_collection(api: Api, request: web.BaseRequest, target: Target) -> web.Response:
    options = await _delete_options(request)
    matcher = listing.matcher(request, target.info.name)
    chosen = [
        o
        for o in api.store.list(target.info.name, target.namespace)
        if matcher is None or matcher(o)
    ]
    deleted = []
    if not dry_run(request):
        for obj in chosen:
            result, _ = delete_one(api, target, obj, options["gracePeriodSeconds"])
            deleted.append(result)
    else:
        deleted = chosen
    body = {
        "kind": f"{target.info.kind}List",
        "apiVersion": target.info.api_version,
        "metadata": {"resourceVersion": str(api.store.resource_version)},
        "items": deleted,
    }
    return web.Response(body=dumps(body), content_type="application/json")


def delete_namespace(api: Api, ns: dict) -> dict:
    """Terminating: delete everything in the namespace; it goes when its pods are gone."""
    name = ns["metadata"]["name"]
    if not ns["metadata"].get("deletionTimestamp"):
        meta = {
            **ns["metadata"],
            "deletionTimestamp": now_rfc3339(),
            "deletionGracePeriodSeconds": 0,
        }
        meta.pop("resourceVersion", None)
        ns = api.store.update(
            "namespaces", {**ns, "metadata": meta, "status": {"phase": "Terminating"}}
        )
    for resource in ("events", "leases", "configmaps", "secrets", "serviceaccounts"):
        for obj in api.store.list(resource, name):
            api.store.remove(resource, name, obj["metadata"]["name"])
    for pod in api.store.list("pods", name):
        api.deleter.delete(name, pod["metadata"]["name"], None)
    finalize_namespaces(api)
    return api.store.get("namespaces", None, name) or ns


def finalize_namespaces(api: Api) -> None:
    """Remove terminating namespaces that have no pods left."""
    for ns in api.store.list("namespaces"):
        name = ns["metadata"]["name"]
        if ns["metadata"].get("deletionTimestamp") and not api.store.list("pods", name):
            api.store.remove("namespaces", None, name)


async def binding(api: Api, request: web.BaseRequest, target: Target) -> web.Response:
    body = parse_json(await read_body(request), "Binding")
    if not isinstance(body, dict):
        raise status.bad_request("the object provided is unrecognized (must be of type Binding)")
    pods.bind(api.store, target.namespace or "", target.name or "", body)
    return json_response(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
        201,
    )

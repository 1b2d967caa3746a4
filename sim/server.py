"""The simulated kube-apiserver: an aiohttp application with one catch-all route that parses
Kubernetes API paths itself (faster and clearer than a route per shape), applies injected
faults, and hands the request to the handlers. Every error leaves as a Status object."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubequeue.sim import admin, discovery, handlers, status
from kubequeue.sim.config import SimConfig
from kubequeue.sim.faults import Faults
from kubequeue.sim.pods import Deleter
from kubequeue.sim.store import Store
from kubequeue.sim.watch import WatchHub
from kubequeue.sim.wire import Target, error_response, json_response, parse_path

log = logging.getLogger(__name__)
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_HEALTH = frozenset({"/healthz", "/livez", "/readyz"})


class Api:
    """State shared by the handlers of one simulator."""

    def __init__(self, store: Store, config: SimConfig, cluster: Any = None) -> None:
        self.store = store
        self.config = config
        self.cluster = cluster
        self.faults = Faults(config.faults, config.seed)
        self.hub = WatchHub(store, self.faults)
        self.deleter = Deleter(store)
        self.address = f"{config.host}:{config.port}"
        self.requests = 0
        store.add_listener(self._on_change)

    def _on_change(self, kind: str, resource: str, obj: dict) -> None:
        if resource != "pods" or kind != "DELETED":
            return
        ns = self.store.get("namespaces", None, obj["metadata"].get("namespace", ""))
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            # Not from inside the listener: the store is still announcing this change.
            asyncio.get_running_loop().call_soon(handlers.finalize_namespaces, self)

    def bootstrap(self) -> None:
        """The objects every cluster starts with: namespaces and their default accounts."""
        for name in self.config.namespaces:
            if self.store.get("namespaces", None, name) is None:
                handlers.create_namespace(self, {"metadata": {"name": name}})

    def server(self) -> web.Server:
        """aiohttp's low-level server: this API routes by itself, so the application layer
        (router, middlewares, signals) would only cost time on every request."""
        admin_handler = admin.handler(self)

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            if request.path.startswith("/_sim/"):
                return await admin_handler(request)
            return await self.dispatch(request)

        return web.Server(handle, access_log=None, handler_cancellation=True)

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        self.requests += 1
        try:
            return await self._dispatch(request)
        except status.ApiError as e:
            return error_response(e)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug must never take the server down
            log.exception("internal error serving %s %s", request.method, request.path)
            return error_response(status.internal_error(f"{type(e).__name__}: {e}"))

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path in _HEALTH:
            return web.Response(text="ok")
        if path == "/openapi/v2":
            # An empty OpenAPI document (valid protobuf): kubectl's client-side validation
            # finds no schema and skips, as it does for types a server does not describe.
            return web.Response(body=b"", content_type=OPENAPI_V2_PROTOBUF)
        static = self._discovery(path)
        if static is not None:
            if request.method != "GET":
                raise status.method_not_allowed()
            return json_response(static)
        target = parse_path(path)
        if target is None:
            raise status.page_not_found()
        await self._inject_faults(request, target)
        return await handlers.handle(self, request, target)

    def _discovery(self, path: str) -> dict[str, Any] | None:
        path = path.rstrip("/") or "/"
        if path == "/version":
            return discovery.version()
        if path == "/api":
            return discovery.api_versions(self.address)
        if path == "/apis":
            return discovery.api_group_list()
        if path == "/api/v1":
            return discovery.resource_list("", "v1")
        if path.startswith("/apis/"):
            parts = path.split("/")[2:]
            if len(parts) == 1 and parts[0] in {r.group for r in discovery.RESOURCES}:
                return discovery.api_group(parts[0])
            if len(parts) == 2:
                return discovery.resource_list(parts[0], parts[1])
        return None

    async def _inject_faults(self, request: web.BaseRequest, target: Target) -> None:
        faults = self.faults
        if not faults.config.active:
            return
        is_create = request.method == "POST" and target.name is None
        if not faults.applies(request.method, target.info.name, is_create):
            return
        delay = faults.delay()
        if delay:
            await asyncio.sleep(delay)
        failure = faults.failure()
        if failure is not None:
            raise failure


def _cluster_class() -> Any:
    """The scheduler and kubelets (None while that side of the simulator is absent)."""
    try:
        return importlib.import_module("kubequeue.sim.cluster").Cluster
    except ImportError:  # pragma: no cover
        return None


@dataclass
class Running:
    """One booted simulator inside its event loop."""

    api: Api
    runner: web.ServerRunner
    url: str
    tasks: list[asyncio.Task]

    @property
    def store(self) -> Store:
        return self.api.store


async def boot(config: SimConfig) -> Running:
    """Build the store, the cluster and the HTTP server, and start listening."""
    store = Store(config.watch_window)
    cluster = None
    cluster_class = _cluster_class()
    if cluster_class is not None and config.pools:
        cluster = cluster_class(store, config.pools, seed=config.seed)
    api = Api(store, config, cluster)
    api.bootstrap()
    tasks: list[asyncio.Task] = []
    if cluster is not None:
        cluster.install()
        tasks.append(asyncio.create_task(cluster.run(), name="sim-cluster"))
    runner = web.ServerRunner(api.server(), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=4096)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else config.port
    api.address = f"{config.host}:{port}"
    tasks.append(asyncio.create_task(api.hub.bookmark_loop(config.bookmark_interval)))
    return Running(api, runner, f"http://{config.host}:{port}", tasks)


async def shutdown(running: Running) -> None:
    api = running.api
    api.hub.drop_all()
    api.deleter.cancel_all()
    for task in running.tasks:
        task.cancel()
    for task in running.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if api.cluster is not None:
        await api.cluster.shutdown()
    await running.runner.cleanup()

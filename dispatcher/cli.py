"""`kubequeue dispatcher`: take TaskSpecs off RQ queues and create their pods.

Stateless: run as many replicas as you like (scale on queue depth). SIGTERM (or Ctrl-C)
stops taking work, lets the creates in flight finish, requeues jobs still waiting on
retries, and exits 0; a second signal exits at once (the leases of whatever was held then
run out and another replica requeues it).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from types import FrameType

import click
import kubernetes

from kubequeue import health, kube
from kubequeue.dispatcher.handle import Handler
from kubequeue.dispatcher.loop import Dispatcher, Options
from kubequeue.errors import KubeApiError, KubeQueueError
from kubequeue.pools import PoolsConfig, load
from kubequeue.settings import DISPATCHER_METRICS_PORT, Settings, options, ping_redis

log = logging.getLogger("kubequeue.dispatcher")

# /healthz fails once the claim loop has not turned for this long: it turns even when idle,
# so a minute without a turn means stuck, not busy.
STALL_AFTER = 60.0


@click.command()
@click.option(
    "--queues",
    "queue_list",
    envvar="KUBEQUEUE_QUEUES",
    default=None,
    help="comma-separated Airflow queues to serve [default: every queue in the pools file]",
)
@click.option(
    "--concurrency",
    envvar="KUBEQUEUE_CONCURRENCY",
    type=click.IntRange(1, 512),
    default=16,
    show_default=True,
    help="pod creates in flight in this replica",
)
@options(metrics_port_default=DISPATCHER_METRICS_PORT)
@click.option("--name", envvar="KUBEQUEUE_NAME", default=None, help="replica name [host-pid]")
@click.option(
    "--lease",
    type=click.FloatRange(1.0, 3600.0),
    default=30.0,
    show_default=True,
    help="seconds before the jobs of a replica that stopped renewing are requeued",
)
@click.option(
    "--retry-for",
    type=click.FloatRange(0.0),
    default=60.0,
    show_default=True,
    help="seconds of 429/5xx/unreachable retries before a job goes back to its queue",
)
@click.option("--log-level", default="INFO", show_default=True)
def dispatcher(
    queue_list: str | None,
    concurrency: int,
    redis_url: str | None,
    redis_prefix: str | None,
    pools_file: str | None,
    kubeconfig: str | None,
    metrics_port: int,
    name: str | None,
    lease: float,
    retry_for: float,
    log_level: str,
) -> None:
    """Run a dispatcher: take TaskSpecs off queues, create pods."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env(
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            pools_file=pools_file,
            kubeconfig=kubeconfig,
            metrics_port=metrics_port,
        )
        pools = load(settings.pools_file)
        served = _served_queues(pools, queue_list)
        apis = _api_clients(pools, served, settings.kubeconfig, concurrency + 2)
        client = settings.redis()
        ping_redis(client, settings.redis_url)
    except KubeQueueError as e:
        raise click.ClickException(str(e)) from e
    opts = Options(
        queues=served,
        name=(name or f"{socket.gethostname()}-{os.getpid()}").replace(":", "-"),
        concurrency=concurrency,
        lease=lease,
        reap_every=min(5.0, lease / 2),
        events_maxlen=settings.events_maxlen,
    )
    handler = Handler(pools, apis, retry_for=retry_for)
    d = Dispatcher(client, settings.keys, pools, handler, opts)
    ready = health.CachedProbe(lambda: _not_ready(d, client, apis))
    server = None
    if settings.metrics_port:
        ready.start()
        server = health.serve(settings.metrics_port, lambda: _stalled(d), ready)
    _install_signals(d)
    log.info(
        "dispatcher %s: queues %s -> pools %s, concurrency %d, metrics on :%s",
        opts.name,
        ",".join(served),
        ",".join(sorted({pools.queues[q] for q in served})),
        concurrency,
        settings.metrics_port or "off",
    )
    d.run()
    ready.stop()
    if server is not None:
        server.stop()
    sys.exit(0)


def _served_queues(pools: PoolsConfig, queue_list: str | None) -> tuple[str, ...]:
    if not queue_list:
        return tuple(pools.queues)
    served = tuple(dict.fromkeys(q.strip() for q in queue_list.split(",") if q.strip()))
    unknown = [q for q in served if q not in pools.queues]
    if unknown or not served:
        raise click.ClickException(
            f"--queues: {', '.join(unknown) or '(none)'} not in the pools file {pools.source} "
            f"(known queues: {', '.join(sorted(pools.queues))})"
        )
    return served


def _api_clients(
    pools: PoolsConfig, served: tuple[str, ...], kubeconfig: str | None, concurrency: int
) -> dict[str, kubernetes.client.ApiClient]:
    """One ApiClient per kube context, shared by the pools that use it."""
    by_context: dict[str | None, kubernetes.client.ApiClient] = {}
    apis = {}
    for pool_name in {pools.queues[q] for q in served}:
        context = pools.pools[pool_name].context
        if context not in by_context:
            by_context[context] = kube.api_client(kubeconfig, context, pool_size=concurrency)
        apis[pool_name] = by_context[context]
    return apis


def _stalled(d: Dispatcher) -> str | None:
    return health.stalled(d.last_tick, STALL_AFTER, "the claim loop")


def _not_ready(
    d: Dispatcher, client: object, apis: dict[str, kubernetes.client.ApiClient]
) -> str | None:
    if d.stopping():
        return "stopping"
    try:
        ping_redis(client)  # type: ignore[arg-type]
    except KubeQueueError as e:
        return str(e)
    for pool, api in sorted(apis.items()):
        try:
            kube.check_api(api)
        except KubeApiError as e:
            return f"Kubernetes API of pool {pool!r} does not answer: {e}"
    return None


def _install_signals(d: Dispatcher) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        if d.stopping():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received", signal.Signals(signum).name)
        d.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

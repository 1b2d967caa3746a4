"""`kubequeue watcher`: watch task pods, publish task events, export start-up metrics."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from kubequeue import health
from kubequeue import pools as pools_file
from kubequeue import settings as settings_mod
from kubequeue.errors import KubeQueueError
from kubequeue.watcher.leader import LEASE_DURATION
from kubequeue.watcher.service import Service, api_clients, default_identity, policies

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _lease_namespace(given: str | None) -> str:
    if given:
        return given
    try:  # in a pod: the namespace it runs in
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


@click.command("watcher")
@settings_mod.options(metrics_port_default=settings_mod.WATCHER_METRICS_PORT)
@click.option("--lease-namespace", envvar="KUBEQUEUE_LEASE_NAMESPACE", default=None,
              help="namespace of the Lease `kubequeue-watcher` [default: the pod's own "
                   "namespace, else default]")  # fmt: skip
@click.option("--identity", envvar="KUBEQUEUE_WATCHER_IDENTITY", default=None,
              help="this replica's name in the Lease [default: hostname-pid]")  # fmt: skip
@click.option("--lease-duration", type=click.FloatRange(min=1.0), default=LEASE_DURATION,
              show_default=True, help="seconds a leader's Lease lasts without renewal; a "
              "follower takes over this long after the leader dies")  # fmt: skip
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def watcher(
    redis_url: str | None,
    redis_prefix: str | None,
    pools_file: str | None,
    kubeconfig: str | None,
    metrics_port: int,
    lease_namespace: str | None,
    identity: str | None,
    lease_duration: float,
    log_level: str,
) -> None:
    """Run the watcher: list+watch task pods in every pool's namespace and cluster, publish
    one event per transition to the events stream, fail stuck pods fast, clean up finished
    pods, and serve Prometheus metrics. Replicas elect one leader through a Lease."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        service = _build(redis_url, redis_prefix, pools_file, kubeconfig, metrics_port,
                         lease_namespace, identity, lease_duration)  # fmt: skip
    except KubeQueueError as e:
        raise click.ClickException(str(e)) from e
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("got signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = health.serve(metrics_port, service.alive, service.not_ready) if metrics_port else None
    try:
        service.run(stop)
    finally:
        if server is not None:
            server.stop()


def _build(
    redis_url: str | None,
    redis_prefix: str | None,
    pools_path: str | None,
    kubeconfig: str | None,
    metrics_port: int,
    lease_namespace: str | None,
    identity: str | None,
    lease_duration: float,
) -> Service:
    s = settings_mod.Settings.from_env(
        redis_url=redis_url, redis_prefix=redis_prefix, pools_file=pools_path,
        kubeconfig=kubeconfig, metrics_port=metrics_port,
    )  # fmt: skip
    config = pools_file.load(s.pools_file)
    client = s.redis()
    settings_mod.ping_redis(client, s.redis_url)  # Redis down at start: a clear error, exit 1
    pools = policies(config)
    return Service(
        redis=client,
        keys=s.keys,
        pools=pools,
        queue_names=sorted(config.queues),
        apis=api_clients(s.kubeconfig, pools),
        lease_namespace=_lease_namespace(lease_namespace),
        identity=identity or default_identity(),
        lease_duration=lease_duration,
        events_maxlen=s.events_maxlen,
    )

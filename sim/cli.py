"""`kubequeue sim`: run the simulated cluster in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from kubequeue.errors import ConfigError
from kubequeue.sim import kubeconfig, new_loop, tune_gc
from kubequeue.sim.cluster import NodePool, parse_pool
from kubequeue.sim.config import SimConfig
from kubequeue.sim.faults import FaultConfig
from kubequeue.sim.server import Running, boot, shutdown


def _pools(specs: tuple[str, ...]) -> tuple[NodePool, ...]:
    try:
        pools = tuple(parse_pool(s) for s in specs) if specs else (NodePool("default", 4),)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--nodes") from e
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"pool names must differ, got {names}", param_hint="--nodes")
    return pools


def _faults(**values: object) -> FaultConfig:
    codes = str(values.pop("error_codes"))
    try:
        parsed = tuple(int(c) for c in codes.split(",") if c.strip())
        return FaultConfig(error_codes=parsed, **values)
    except ValueError as e:
        raise click.BadParameter(f"--error-codes {codes!r}: comma-separated numbers") from e
    except ConfigError as e:
        raise click.UsageError(str(e)) from e


async def _serve(config: SimConfig, kubeconfig_out: Path | None) -> None:
    try:
        running: Running = await boot(config)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {config.host}:{config.port}: {e}") from e
    tune_gc(freeze=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if kubeconfig_out is not None:
            kubeconfig.write(kubeconfig_out, [(config.context, running.url)])
        nodes = sum(p.count for p in config.pools)
        pools = ", ".join(f"{p.name}={p.count}" for p in config.pools)
        click.echo(f"kubequeue sim listening on {running.url} ({nodes} nodes: {pools})")
        if kubeconfig_out is not None:
            click.echo(f"kubeconfig: {kubeconfig_out} (context {config.context})")
            click.echo(f"try: KUBECONFIG={kubeconfig_out} kubectl get nodes --show-labels")
        click.echo(
            "admin: POST /_sim/faults, /_sim/compact, /_sim/nodes/<name>/ready; Ctrl-C stops"
        )
        await stop.wait()
    finally:
        click.echo("kubequeue sim stopping")
        await shutdown(running)


@click.command("sim")
@click.option(
    "--nodes",
    "node_specs",
    multiple=True,
    metavar="SPEC",
    help="A node pool, repeatable: NAME=COUNT[:cpu=8][:mem=32Gi][:pods=110]"
    "[:taint=KEY=VALUE:EFFECT][:label=K=V][:res=NAME=QTY][:kubelet=timed|process]"
    "[:profile=general|fast|FILE.yaml]. Default: default=4.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0: any free port).")
@click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a kubeconfig for this cluster here.",
)
@click.option("--context", default="kubequeue-sim", show_default=True, help="Context name.")
@click.option(
    "--watch-window",
    default=10_000,
    show_default=True,
    help="Changes kept for watch resume; older resourceVersions get 410 Gone.",
)
@click.option(
    "--api-only",
    is_flag=True,
    help="Serve the API alone: no nodes, scheduler or kubelets (objects change only by request).",
)
@click.option("--seed", type=int, help="Seed for faults and timings (reproducible runs).")
@click.option("--latency", default=0.0, help="Fault: seconds added to every answer.")
@click.option("--latency-jitter", default=0.0, help="Fault: plus up to this many seconds.")
@click.option("--throttle", default=0.0, help="Fault: fraction of requests answered 429.")
@click.option("--retry-after", default=1, help="Fault: Retry-After seconds on a 429.")
@click.option("--error-rate", "error", default=0.0, help="Fault: fraction answered 500/503.")
@click.option("--error-codes", default="500,503", help="Fault: codes for --error-rate.")
@click.option("--watch-drop", default=0.0, help="Fault: chance per event batch to end a watch.")
@click.option(
    "--fault-scope",
    "scope",
    type=click.Choice(["all", "writes", "pod-creates"]),
    default="all",
    show_default=True,
    help="Requests that latency, 429 and 5xx faults apply to.",
)
def sim(
    node_specs: tuple[str, ...],
    host: str,
    port: int,
    kubeconfig_out: Path | None,
    context: str,
    watch_window: int,
    api_only: bool,
    seed: int | None,
    **faults: object,
) -> None:
    """Run a simulated Kubernetes cluster: API server, scheduler and kubelets."""
    if watch_window < 1:
        raise click.BadParameter("must be at least 1", param_hint="--watch-window")
    if api_only and node_specs:
        raise click.UsageError("--api-only and --nodes exclude each other")
    config = SimConfig(
        pools=() if api_only else _pools(node_specs),
        port=port,
        host=host,
        context=context,
        watch_window=watch_window,
        seed=seed,
        faults=_faults(**faults),
    )
    loop = new_loop()
    try:
        loop.run_until_complete(_serve(config, kubeconfig_out))
    finally:
        with contextlib.suppress(RuntimeError):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

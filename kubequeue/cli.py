"""The `kubequeue` command. Each subcommand lives beside the part it runs and is imported
only when called, so `kubequeue --help` is fast and the dispatcher/watcher image never
imports the simulator, the benchmark or Airflow."""

from __future__ import annotations

import importlib

import click

# name -> ("module:attribute", one-line help shown by --help without importing the module)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("kubequeue.sim.cli:sim", "Run the simulated Kubernetes cluster (API server)."),
    "dispatcher": (
        "kubequeue.dispatcher.cli:dispatcher",
        "Run a dispatcher: take TaskSpecs off queues, create pods.",
    ),
    "watcher": (
        "kubequeue.watcher.cli:watcher",
        "Run the watcher: watch task pods, publish events and metrics.",
    ),
    "queues": (
        "kubequeue.watcher.status:queues",
        "Show each queue's depth, in-flight pods, failures and start-up latency.",
    ),
    "demo": ("kubequeue.executor.demo:demo", "Run a real Airflow DAG through the whole pipeline."),
    "bench": ("kubequeue.bench.cli:bench", "Benchmark kubequeue against the KubernetesExecutor."),
    "report": ("kubequeue.bench.report:report", "Draw the start-up latency panels to a PNG."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        target, _ = SUBCOMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise click.ClickException(
                f"`kubequeue {cmd_name}` is not available in this installation ({e}); "
                "install the matching extra, e.g. pip install 'kubequeue[sim]'"
            ) from e
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="kubequeue")
def main() -> None:
    """kubequeue: run each Airflow task in its own Kubernetes pod, through Redis queues."""

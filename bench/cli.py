"""`kubequeue bench`: kubequeue against the KubernetesExecutor on the simulated cluster.

    kubequeue bench                      # the default run (N=2,000), a few minutes
    kubequeue bench -n 200 --skip ladder # quicker
    kubequeue bench --soak 100000        # add the dispatcher memory soak

Writes bench/results/<date>-<name>.{json,png,md}; see bench/METHOD.md for what is measured.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kubequeue.bench import output, plan
from kubequeue.bench.plan import Settings
from kubequeue.errors import ConfigError, KubeQueueError

DEFAULT_OUT = Path("bench/results")
PHASES = ("burst", "paced", "rate", "ladder")


class RichSink:
    """Progress bars per system and phase: pods Running (the bar) and pods created."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running, {task.fields[created]} created"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task: Any = None

    def __enter__(self) -> RichSink:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def phase_started(self, system: str, phase: str, total: int) -> None:
        self.task = self.bars.add_task(f"{system} / {phase}", total=total, created=0)

    def progress(self, created: int, running: int) -> None:
        if self.task is not None:
            self.bars.update(self.task, completed=running, created=created)

    def phase_done(self, system: str, phase: str, figures: dict[str, Any]) -> None:
        if not figures.get("complete", True):
            self.console.print(f"[yellow]{system}/{phase}: {figures.get('note')}[/yellow]")

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
        return "-"
    return f"{value:,.{digits}f}"


def summary_table(doc: dict[str, Any]) -> Table:
    s = doc["settings"]
    table = Table(
        title=f"kubequeue bench - N={s['n']}, {doc['date']}",
        caption=f"burst: N at once, tight loop; paced: {s['paced_n']} tasks, "
        f"{s['loop_ms']:g} ms loop (heartbeat, CPU); rate: {s['rate']:g} tasks/s arriving, paced",
    )
    table.add_column("system")
    for header, _ in output.HEADLINE:
        table.add_column(header, justify="right")
    for system, row in zip(doc["results"], output.headline_rows(doc["results"]), strict=True):
        table.add_row(system, *(_num(v, d) for v, (_, d) in zip(row, output.HEADLINE, strict=True)))
    return table


def targets_table(doc: dict[str, Any]) -> Table:
    table = Table(title="targets (reported, never asserted)")
    table.add_column("target")
    table.add_column("measured", justify="right")
    table.add_column("met", justify="center")
    for t in doc["targets"]:
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[t["met"]]
        table.add_row(t["target"], _num(t["value"], 2), met)
    return table


def _settings(**kw: Any) -> Settings:
    try:
        return Settings(
            n=kw["n"],
            mix=plan.parse_mix(kw["mix"]),
            replicas=plan.parse_ints(kw["replicas"], "--replicas"),
            rate=kw["rate"],
            rate_seconds=kw["rate_seconds"],
            paced_n=kw["paced_n"],
            loop_ms=kw["loop_ms"],
            levels=plan.parse_ints(kw["levels"], "--levels"),
            api_latency_ms=kw["api_latency_ms"],
            task_seconds=kw["task_seconds"],
            dispatcher_concurrency=kw["dispatcher_concurrency"],
            ke_tuned_batch=kw["ke_tuned_batch"],
            ke_tuned_concurrency=kw["ke_tuned_concurrency"],
            systems=tuple(x for x in kw["systems"].split(",") if x),
            skip=tuple(x for x in kw["skip"].split(",") if x),
            soak=kw["soak"],
            name=kw["name"],
        )
    except ConfigError as e:
        raise click.UsageError(str(e)) from e


@click.command()
@click.option(
    "-n",
    "n",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Tasks in the burst phase.",
)
@click.option(
    "--mix",
    default="default=0.5,highmem=0.5",
    show_default=True,
    help="Share of tasks per Airflow queue (each queue has its own node pool).",
)
@click.option(
    "--replicas",
    default="1,2,4",
    show_default=True,
    help="kubequeue dispatcher replica counts to run.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=200.0,
    show_default=True,
    help="Arrival rate (tasks/s) of the latency phase.",
)
@click.option("--rate-seconds", type=click.FloatRange(min=0.1), default=3.0, show_default=True)
@click.option(
    "--paced-n",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Tasks in the paced phase (heartbeat once per scheduler loop).",
)
@click.option(
    "--loop-ms",
    type=click.FloatRange(min=1),
    default=50.0,
    show_default=True,
    help="Scheduler loop length of the paced phase.",
)
@click.option(
    "--levels",
    default="100,1000,10000",
    show_default=True,
    help="Tasks in flight at which the heartbeat cost is measured.",
)
@click.option(
    "--api-latency-ms",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Latency the simulated API server adds to every request.",
)
@click.option(
    "--task-seconds",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="How long each task's container runs on the simulated kubelet.",
)
@click.option(
    "--dispatcher-concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Pod creates in flight per dispatcher.",
)
@click.option("--ke-tuned-batch", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--ke-tuned-concurrency", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--systems", default="", help="Comma-separated subset, e.g. ke-tuned,kubequeue-4.")
@click.option("--skip", default="", help=f"Phases to skip, from {', '.join(PHASES)}.")
@click.option(
    "--soak",
    type=click.IntRange(min=0),
    default=0,
    help="Also run N tasks through kubequeue and report dispatcher RSS (e.g. 100000).",
)
@click.option("--name", default="bench", show_default=True, help="Results file name suffix.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep every process's logs and working files in this directory (must not exist).",
)
@click.option(
    "--replot",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Only redraw the PNG and markdown of an earlier results JSON (into --out).",
)
def bench(out: Path, keep: Path | None, replot: Path | None, **kw: Any) -> None:  # fmt: skip
    """Benchmark kubequeue against the KubernetesExecutor on the simulated cluster."""
    from kubequeue.bench import run, soak

    if replot is not None:
        _report(Console(width=140), json.loads(replot.read_text()), out)
        return

    settings = _settings(**kw)
    unknown = set(settings.skip) - set(PHASES)
    if unknown:
        raise click.UsageError(f"--skip: unknown phase(s) {', '.join(sorted(unknown))}")
    try:
        systems = plan.systems(settings)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    console = Console(width=max(Console().width, 140))
    try:
        with RichSink(console) as sink:
            results = run.run_all(settings, systems, sink, keep)
            soaked = soak.run_soak(settings, sink) if settings.soak else None
    except KubeQueueError as e:
        raise click.ClickException(str(e)) from e
    _report(console, output.document(settings, results, soaked), out)


def _report(console: Console, doc: dict[str, Any], out: Path) -> None:
    paths = output.write(doc, out)
    console.print(summary_table(doc))
    console.print(targets_table(doc))
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")

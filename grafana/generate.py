"""Generate kubequeue's Grafana dashboards (grafana/dashboards/*.json) with grafanalib.

    python grafana/generate.py          # rewrite the JSON files
    python grafana/generate.py --check  # exit 1 if a committed file differs from the code

Metric names are those of kubequeue/metrics.py; the `queue_pool*:...` series are recording
rules from deploy/monitoring/kubequeue.rules.yaml (Prometheus must load that file). Every
query here is run against a real Prometheus by tests/deploy/test_promql.py, and
`kubequeue report` draws the start-up latency panels from the same queries.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

OUT = Path(__file__).resolve().parent / "dashboards"
DS = "${datasource}"
WIDTH = 24
SEL = 'queue=~"$queue", pool=~"$pool"'
RATE = "[$__rate_interval]"
PHASES = (
    ("1_queued_to_dispatched", "queued → dispatched (waiting in Redis)"),
    ("2_dispatched_to_created", "dispatched → pod seen (create + watch)"),
    ("3_created_to_scheduled", "pod → scheduled (scheduler)"),
    ("4_scheduled_to_started", "scheduled → containers running (image pull, start)"),
)
QUANTILES = (0.5, 0.95, 0.99)


def target(expr: str, legend: str = "", ref: str = "A", fmt: str = "time_series") -> g.Target:
    return g.Target(expr=expr, legendFormat=legend, refId=ref, format=fmt, datasource=DS)


def targets(*rows: tuple[str, str]) -> list[g.Target]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(rows)]


def series(
    title: str,
    rows: Sequence[g.Target],
    unit: str = "short",
    description: str = "",
    stacked: bool = False,
    width: int = 12,
) -> g.TimeSeries:
    return g.TimeSeries(
        title=title,
        description=description,
        dataSource=DS,
        targets=list(rows),
        unit=unit,
        fillOpacity=60 if stacked else 10,
        stacking={"mode": "normal" if stacked else "none", "group": "A"},
        legendDisplayMode="table",
        legendPlacement="bottom",
        legendCalcs=["mean", "max", "lastNotNull"],
        tooltipMode="multi",
        gridPos=g.GridPos(h=8, w=width, x=0, y=0),
    )


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> g.Stat:
    return g.Stat(
        title=title,
        description=description,
        dataSource=DS,
        targets=[target(expr)],
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="area",
        gridPos=g.GridPos(h=4, w=4, x=0, y=0),
    )


def row(title: str) -> g.RowPanel:
    return g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=WIDTH, x=0, y=0))


def flow(panels: Iterable[g.Panel]) -> list[g.Panel]:
    """Lay panels out left to right, wrapping at the dashboard's 24 columns."""
    x = y = line = 0
    placed = []
    for panel in panels:
        pos = panel.gridPos
        if x + pos.w > WIDTH or isinstance(panel, g.RowPanel):
            x, y, line = 0, y + line, 0
        pos.x, pos.y = x, y
        x, line = x + pos.w, max(line, pos.h)
        if isinstance(panel, g.RowPanel):
            x, y, line = 0, y + pos.h, 0
        placed.append(panel)
    return placed


def variables() -> g.Templating:
    return g.Templating(
        list=[
            g.Template(
                name="datasource", label="Prometheus", type="datasource", query="prometheus"
            ),
            g.Template(
                name="queue",
                label="queue",
                dataSource=DS,
                query="label_values(kubequeue_queue_depth, queue)",
                includeAll=True,
                multi=True,
                allValue=".*",
                default="$__all",
                refresh=2,
                sort=1,
            ),
            g.Template(
                name="pool",
                label="pool",
                dataSource=DS,
                query='label_values(kubequeue_dispatches_total{queue=~"$queue"}, pool)',
                includeAll=True,
                multi=True,
                allValue=".*",
                default="$__all",
                refresh=2,
                sort=1,
            ),
        ]
    )


def dashboard(uid: str, title: str, description: str, panels: list[g.Panel]) -> g.Dashboard:
    return g.Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=["kubequeue"],
        timezone="browser",
        time=g.Time("now-1h", "now"),
        refresh="30s",
        templating=variables(),
        panels=flow(panels),
        links=[
            g.DashboardLink(
                title="kubequeue",
                type="dashboards",
                tags=["kubequeue"],
                asDropdown=False,
                includeVars=True,
                keepTime=True,
            )
        ],
    ).auto_panel_ids()


# --- overview ---------------------------------------------------------------------------


def overview() -> g.Dashboard:
    finished = f"kubequeue_tasks_finished_total{{{SEL}}}"
    return dashboard(
        "kubequeue-overview",
        "kubequeue / overview",
        "Throughput, queues, pods in flight, failures and the dispatcher and watcher tiers.",
        [
            stat("Tasks finished /s", f"sum(rate({finished}{RATE}))", "ops"),
            stat("Queued specs", 'sum(max by (queue) (kubequeue_queue_depth{queue=~"$queue"}))'),
            stat("Pods in flight", f"sum(kubequeue_pods_in_flight{{{SEL}}})"),
            stat(
                "Dispatcher replicas",
                'count(up{job=~".*dispatcher.*"} == 1)',
                description="Dispatcher replicas Prometheus scrapes successfully.",
            ),
            stat(
                "Watcher leaders",
                "sum(kubequeue_watcher_leader)",
                description="Exactly 1 is healthy: 0 = nobody publishes task events.",
            ),
            stat(
                "Start-up p99 (5m)",
                "histogram_quantile(0.99, sum by (le) "
                f"(queue_pool:kubequeue_task_startup_seconds_bucket:rate5m{{{SEL}}}))",
                "s",
            ),
            row("Throughput"),
            series(
                "Tasks finished /s by outcome",
                targets((f"sum by (outcome) (rate({finished}{RATE}))", "{{outcome}}")),
                "ops",
                "Terminal events published to the events stream, per outcome.",
                stacked=True,
            ),
            series(
                "Specs dispatched /s by outcome",
                targets(
                    (
                        f"sum by (outcome) (rate(kubequeue_dispatches_total{{{SEL}}}{RATE}))",
                        "{{outcome}}",
                    )
                ),
                "ops",
                "created = pod created, exists = 409 (already dispatched), retry = back to "
                "its queue, failed/expired/revoked = ended without a pod.",
                stacked=True,
            ),
            row("Queues and pods"),
            series(
                "Queue depth",
                targets(('max by (queue) (kubequeue_queue_depth{queue=~"$queue"})', "{{queue}}")),
                description="TaskSpecs waiting in each queue's RQ list.",
            ),
            series(
                "Oldest queued spec age",
                targets(
                    (
                        'max by (queue) (kubequeue_oldest_queued_age_seconds{queue=~"$queue"})',
                        "{{queue}}",
                    )
                ),
                "s",
                "Airflow revokes a task [scheduler] task_queued_timeout (600 s by default) "
                "after queueing it.",
            ),
            series(
                "Pods in flight",
                targets(
                    (
                        f"sum by (queue, pool) (kubequeue_pods_in_flight{{{SEL}}})",
                        "{{queue}} / {{pool}}",
                    )
                ),
                description="Task pods that exist and are not terminal (watcher's view).",
                stacked=True,
            ),
            series(
                "Failures /s by reason",
                targets(
                    (
                        f"sum by (reason) (rate(kubequeue_task_failures_total{{{SEL}}}{RATE}))",
                        "{{reason}}",
                    )
                ),
                "ops",
                "ExitCode is the task's own failure; the others are kubequeue or "
                "Kubernetes failing to start it.",
                stacked=True,
            ),
            row("Dispatchers and watcher"),
            series(
                "Dispatcher replicas",
                targets(('count(up{job=~".*dispatcher.*"} == 1)', "up")),
                width=8,
            ),
            series(
                "API errors /s by status",
                targets(
                    (
                        "sum by (code) "
                        f"(rate(kubequeue_dispatcher_api_errors_total{{{SEL}}}{RATE}))",
                        "HTTP {{code}}",
                    )
                ),
                "ops",
                "Pod create errors, retried ones included (0 = API unreachable).",
                width=8,
            ),
            series(
                "Watch re-lists",
                targets(
                    (
                        f"sum by (reason) (increase(kubequeue_watch_restarts_total{RATE}))",
                        "{{reason}}",
                    )
                ),
                description="gone = 410 (history compacted), error, start.",
                width=8,
            ),
            series(
                "Pod create call (p50 / p99)",
                targets(
                    *(
                        (
                            f"histogram_quantile({q}, sum by (le) "
                            f"(rate(kubequeue_dispatcher_create_seconds_bucket{{{SEL}}}{RATE})))",
                            f"p{round(q * 100)}",
                        )
                        for q in (0.5, 0.99)
                    )
                ),
                "s",
                "Dispatcher sends the create → API answers, retries included.",
            ),
            series(
                "Watcher leader",
                targets(('kubequeue_watcher_leader{job=~".*watcher.*"}', "{{instance}}")),
                description="1 on the watcher replica holding the Lease.",
            ),
        ],
    )


# --- start-up latency -------------------------------------------------------------------


def _quantile(q: float, series_name: str, by: str, extra: str = "") -> str:
    matchers = f"{extra}, {SEL}" if extra else SEL
    return f"histogram_quantile({q}, sum by (le{by}) ({series_name}{{{matchers}}}))"


STARTUP = "queue_pool:kubequeue_task_startup_seconds_bucket:rate5m"
PHASE = "queue_pool_phase:kubequeue_startup_phase_seconds"


def startup_latency() -> g.Dashboard:
    heatmap = g.Heatmap(
        title="Start-up latency distribution",
        description="Tasks per start-up latency bucket (queued → Running) over time.",
        dataSource=DS,
        targets=[
            target(
                f"sum by (le) (increase(kubequeue_task_startup_seconds_bucket{{{SEL}}}{RATE}))",
                "{{le}}",
                fmt="heatmap",
            )
        ],
        dataFormat="tsbuckets",
        yAxis=g.YAxis(format="s", decimals=0),
        hideZeroBuckets=True,
        gridPos=g.GridPos(h=9, w=12, x=0, y=0),
    )
    per_phase = [
        series(
            f"p{round(q * 100)} per phase",
            targets((_quantile(q, f"{PHASE}_bucket:rate5m", ", phase"), "{{phase}}")),
            "s",
            f"{round(q * 100)}th percentile of each start-up phase (5m window).",
            width=8,
        )
        for q in QUANTILES
    ]
    return dashboard(
        "kubequeue-startup",
        "kubequeue / task start-up latency",
        "From the executor queueing a task to its pod Running, per queue and pool, and "
        "split into the phases kubequeue measures through the watch.",
        [
            row("End to end: queued → Running"),
            series(
                "Start-up latency p50 / p95 / p99 by queue and pool",
                [
                    target(
                        _quantile(q, STARTUP, ", queue, pool"),
                        f"p{round(q * 100)} {{{{queue}}}} / {{{{pool}}}}",
                        chr(ord("A") + i),
                    )
                    for i, q in enumerate(QUANTILES)
                ],
                "s",
                "kubequeue_task_startup_seconds: TaskSpec.queued_at (executor clock) to the "
                "watcher first seeing the pod Running.",
            ),
            heatmap,
            row("Where did the time go"),
            series(
                "Mean start-up time by phase (stacked)",
                targets(
                    (
                        f"sum by (phase) ({PHASE}_sum:rate5m{{{SEL}}}) "
                        f"/ sum by (phase) ({PHASE}_count:rate5m{{{SEL}}})",
                        "{{phase}}",
                    )
                ),
                "s",
                "The four phases stack up to the end-to-end start-up time: "
                + "; ".join(f"{p} = {text}" for p, text in PHASES),
                stacked=True,
                width=24,
            ),
            *per_phase,
            row("Latency kubequeue adds"),
            series(
                "Queued → pod create sent (p50 / p95 / p99)",
                targets(
                    *(
                        (
                            f"histogram_quantile({q}, sum by (le) (rate("
                            f"kubequeue_queued_to_create_sent_seconds_bucket{{{SEL}}}{RATE})))",
                            f"p{round(q * 100)}",
                        )
                        for q in QUANTILES
                    )
                ),
                "s",
                "From TaskSpec.queued_at to a dispatcher sending the first pod create.",
            ),
            series(
                "Tasks started /s by queue and pool",
                targets(
                    (
                        f"sum by (queue, pool) ({STARTUP.replace('_bucket', '_count')}{{{SEL}}})",
                        "{{queue}} / {{pool}}",
                    )
                ),
                "ops",
                "Pods that reached Running (the start-up histogram's count).",
            ),
        ],
    )


DASHBOARDS = {
    "kubequeue-overview.json": overview,
    "kubequeue-startup-latency.json": startup_latency,
}


def render(build: Callable[[], g.Dashboard]) -> str:
    data = build().to_json_data()
    return json.dumps(data, cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name, build in DASHBOARDS.items():
        text, path = render(build), OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python grafana/generate.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

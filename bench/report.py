"""`kubequeue report`: draw the start-up latency dashboard's main panels to a PNG.

No Grafana needed: the panels' own PromQL (read from the committed dashboard JSON, so the
picture and the dashboard cannot drift apart) is run against Prometheus' HTTP API with
`query_range`, and matplotlib draws what Grafana would: p50/p95/p99 per queue and pool, the
latency heatmap, "where did the time go" (mean time per phase, stacked) and p99 per phase.

    kubequeue report --prometheus http://127.0.0.1:9090 --range 30m --out startup.png
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from kubequeue.errors import KubeQueueError

DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
DASHBOARD_FILE = "kubequeue-startup-latency.json"
# The panels drawn, by dashboard title, in reading order (2 x 2).
PANELS = (
    "Start-up latency p50 / p95 / p99 by queue and pool",
    "Start-up latency distribution",
    "Mean start-up time by phase (stacked)",
    "p99 per phase",
)
POINTS = 240  # samples per series across the range
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ReportError(KubeQueueError):
    """The report cannot be drawn (Prometheus unreachable, bad query, no data)."""


@dataclass
class Series:
    legend: str
    labels: dict[str, str]
    times: list[float]
    values: list[float]


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | heatmap
    stacked: bool
    queries: list[tuple[str, str]]  # (expr, legendFormat)


def parse_duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise ReportError(f"duration {text!r} is invalid: use e.g. 90s, 30m, 6h, 1d")
    return float(int(m.group(1)) * _UNITS[m.group(2)])


def load_panels(path: Path) -> list[Panel]:
    try:
        board = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot read dashboard {path}: {e}") from e
    by_title = {p.get("title"): p for p in board.get("panels", [])}
    missing = [t for t in PANELS if t not in by_title]
    if missing:
        raise ReportError(f"dashboard {path} has no panel {missing[0]!r}")
    panels = []
    for title in PANELS:
        raw = by_title[title]
        custom = raw.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
        stacked = custom.get("stacking", {}).get("mode") == "normal"
        queries = [(t["expr"], t.get("legendFormat", "")) for t in raw.get("targets", [])]
        panels.append(Panel(title, raw["type"], stacked, queries))
    return panels


def substitute(expr: str, queue: str, pool: str, rate_interval: str) -> str:
    """Grafana's variables as the report's options (regexes for queue and pool)."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$queue", queue)
        .replace("$pool", pool)
    )


def legend(fmt: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    return text or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def query_range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    request = f"{url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        try:
            detail = json.loads(body).get("error", body)
        except ValueError:
            detail = body
        raise ReportError(f"Prometheus rejected the query {expr!r}: {detail}") from e
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot reach Prometheus at {url}: {e}") from e
    if answer.get("status") != "success":
        raise ReportError(f"Prometheus rejected the query {expr!r}: {answer.get('error')}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def fetch(url: str, panel: Panel, window: tuple[float, float, float], **subs: str) -> list[Series]:
    start, end, step = window
    found = []
    for expr, fmt in panel.queries:
        for item in query_range(url, substitute(expr, **subs), start, end, step):
            values = item.get("values", [])
            found.append(
                Series(
                    legend(fmt, item["metric"]),
                    item["metric"],
                    [float(t) for t, _ in values],
                    [float(v) for _, v in values],
                )
            )
    return found


def _finite(values: list[float]) -> list[float]:
    return [0.0 if math.isnan(v) or math.isinf(v) else v for v in values]


def _time_format(span: float) -> str:
    return "%H:%M:%S" if span < 600 else "%H:%M"


def draw_lines(ax: Any, panel: Panel, series: list[Series]) -> None:
    series = sorted(series, key=lambda s: s.legend)
    if panel.stacked:
        grid = sorted({t for s in series for t in s.times})
        rows = []
        for s in series:
            by_time = dict(zip(s.times, _finite(s.values), strict=True))
            rows.append([by_time.get(t, 0.0) for t in grid])
        xs = [datetime.fromtimestamp(t) for t in grid]
        ax.stackplot(xs, *rows, labels=[s.legend for s in series], alpha=0.8)
    else:
        for s in series:
            ax.plot([datetime.fromtimestamp(t) for t in s.times], s.values, label=s.legend)
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7, loc="upper left")


def _bound(le: str) -> float:
    return math.inf if le == "+Inf" else float(le)


def draw_heatmap(ax: Any, series: list[Series], time_format: str) -> None:
    """Cumulative per-`le` increases -> tasks per latency bucket over time."""
    series = sorted(series, key=lambda s: _bound(s.labels.get("le", "+Inf")))
    grid = sorted({t for s in series for t in s.times})
    cumulative = []
    for s in series:
        by_time = dict(zip(s.times, _finite(s.values), strict=True))
        cumulative.append([by_time.get(t, 0.0) for t in grid])
    counts = [
        [max(row[i] - (cumulative[j - 1][i] if j else 0.0), 0.0) for i in range(len(grid))]
        for j, row in enumerate(cumulative)
    ]
    image = ax.imshow(
        counts, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest"
    )
    labels = [s.labels.get("le", "?") for s in series]
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("start-up latency bucket (le, seconds)")
    ticks = [round(i * (len(grid) - 1) / 4) for i in range(5)] if grid else []
    ax.set_xticks(ticks, [datetime.fromtimestamp(grid[i]).strftime(time_format) for i in ticks])
    ax.figure.colorbar(image, ax=ax, label="tasks")


def render(url: str, out: Path, span: float, end: float, dashboard: Path, **subs: str) -> int:
    """Query every panel, then draw them to `out`; returns how many panels had data."""
    panels = load_panels(dashboard)
    window = (end - span, end, max(span / POINTS, 1.0))
    data = [(panel, fetch(url, panel, window, **subs)) for panel in panels]
    with_data = sum(1 for _, series in data if series)
    if not with_data:
        raise ReportError(
            f"no kubequeue start-up data at {url} in the {span:.0f} s before "
            f"{datetime.fromtimestamp(end):%Y-%m-%d %H:%M:%S}: does it scrape the watcher and "
            "load deploy/monitoring/kubequeue.rules.yaml?"
        )
    # matplotlib only now: it is slow to import, and every error above is found without it.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates as mdates
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 9))
    for ax, (panel, series) in zip(axes.flat, data, strict=True):
        ax.set_title(panel.title, fontsize=10)
        if not series:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif panel.kind == "heatmap":
            draw_heatmap(ax, series, _time_format(span))
        else:
            draw_lines(ax, panel, series)
            ax.xaxis.set_major_formatter(mdates.DateFormatter(_time_format(span)))
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(
        f"kubequeue task start-up latency · queue=~{subs['queue']} pool=~{subs['pool']} · "
        f"{datetime.fromtimestamp(end - span):%H:%M}-{datetime.fromtimestamp(end):%H:%M}"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return with_data


@click.command()
@click.option(
    "--prometheus", "url", default="http://127.0.0.1:9090", show_default=True, help="base URL"
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("startup-latency.png"),
    show_default=True,
)
@click.option("--range", "span", default="1h", show_default=True, help="time range, e.g. 30m")
@click.option("--end", type=float, default=None, help="end of the range, epoch seconds [now]")
@click.option("--queue", default=".*", show_default=True, help="regex of queues to show")
@click.option("--pool", default=".*", show_default=True, help="regex of pools to show")
@click.option("--rate-interval", default="1m", show_default=True, help="$__rate_interval")
@click.option(
    "--dashboard",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"dashboard JSON [grafana/dashboards/{DASHBOARD_FILE}]",
)
def report(
    url: str,
    out: Path,
    span: str,
    end: float | None,
    queue: str,
    pool: str,
    rate_interval: str,
    dashboard: Path | None,
) -> None:
    """Draw the start-up latency dashboard's main panels from Prometheus to a PNG."""
    try:
        parse_duration(rate_interval)
        panels = render(
            url,
            out,
            parse_duration(span),
            time.time() if end is None else end,
            dashboard or DASHBOARD / DASHBOARD_FILE,
            queue=queue,
            pool=pool,
            rate_interval=rate_interval,
        )
    except ReportError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"wrote {out} ({panels}/{len(PANELS)} panels with data)")

"""One PNG that reads at a glance: throughput bars by system and replicas, latency CDFs,
and the scheduler's cost per heartbeat as tasks in flight grow."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

COLORS = {"limit": "#7f7f7f", "ke-default": "#d62728", "ke-tuned": "#ff7f0e"}
KQ_COLORS = ("#9ecae1", "#4292c6", "#08519c", "#08306b")


def color(system: str, order: list[str]) -> str:
    if system in COLORS:
        return COLORS[system]
    kq = [s for s in order if s.startswith("kubequeue")]
    return KQ_COLORS[min(kq.index(system), len(KQ_COLORS) - 1)] if system in kq else "#333333"


def _throughput(ax: Any, results: dict[str, Any], order: list[str]) -> None:
    systems = [s for s in order if "burst" in results[s]]
    created = [results[s]["burst"]["throughput_created"] for s in systems]
    running = [results[s]["burst"]["throughput_running"] for s in systems]
    xs = range(len(systems))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], created, width, label="queued → pod created",
           color=[color(s, order) for s in systems])  # fmt: skip
    ax.bar([x + width / 2 for x in xs], running, width, label="queued → pod Running",
           color=[color(s, order) for s in systems], alpha=0.45, hatch="//")  # fmt: skip
    for x, value in zip(xs, created, strict=True):
        ax.annotate(f"{value:.0f}", (x - width / 2, value), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), systems, rotation=25, ha="right")
    ax.set_ylabel("tasks / s")
    ax.set_title("Throughput, burst of N tasks")
    ax.legend(fontsize=8)


def _legend(ax: Any, size: int) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)
    else:
        ax.text(0.5, 0.5, "not measured in this run", ha="center", transform=ax.transAxes)


def _cdf(ax: Any, results: dict[str, Any], order: list[str], phase: str, key: str) -> None:
    for system in order:
        cdf = results[system].get(phase, {}).get(key) or []
        if not cdf:
            continue
        ys = [100.0 * i / (len(cdf) - 1) for i in range(len(cdf))]
        ax.plot([max(v, 0.1) for v in cdf], ys, label=system, color=color(system, order))
    ax.set_xscale("log")
    ax.set_xlabel("ms (log scale)")
    ax.set_ylabel("% of tasks")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 8)


def _ladder(ax: Any, results: dict[str, Any], order: list[str]) -> None:
    for system in order:
        levels = results[system].get("ladder", {}).get("levels") or {}
        if not levels:
            continue
        xs = sorted(int(k) for k in levels)
        busy = [levels[str(x)]["busy_ms_mean"] for x in xs]
        top = [levels[str(x)].get("busy_ms_max", math.nan) for x in xs]
        idle = [levels[str(x)]["idle_ms_mean"] for x in xs]
        c = color(system, order)
        ax.plot(xs, top, marker="^", linestyle=":", color=c, label=f"{system}, slowest (hand-over)")
        ax.plot(xs, busy, marker="o", color=c, label=f"{system}, mean while 100 start")
        ax.plot(xs, idle, marker="x", linestyle="--", color=c, label=f"{system}, mean idle")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tasks in flight")
    ax.set_ylabel("ms per heartbeat")
    ax.set_title("Scheduler cost per heartbeat")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 7)


def plot(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc["results"]
    order = list(results)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _throughput(axes[0][0], results, order)
    _cdf(axes[0][1], results, order, "rate", "cdf_created_ms")
    rate = doc["settings"].get("rate", math.nan)
    axes[0][1].set_title(f"Latency queued → pod created, {rate:g} tasks/s arriving")
    _cdf(axes[1][0], results, order, "burst", "cdf_running_ms")
    axes[1][0].set_title("Latency queued → pod Running, burst of N tasks")
    _ladder(axes[1][1], results, order)
    machine = doc["machine"]
    fig.suptitle(
        f"kubequeue vs KubernetesExecutor on the simulated cluster — N={doc['settings']['n']}, "
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), {doc['date']}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

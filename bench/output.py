"""The results document: figures, ratios, targets, machine facts, versions and settings; written
as `<date>-<name>.json` with a PNG and a markdown summary for the README beside it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from kubequeue.bench import measure
from kubequeue.bench.plan import Settings
from kubequeue.bench.simproc import PROFILE_DELAYS_MS

PACKAGES = (
    "kubequeue",
    "apache-airflow",
    "apache-airflow-providers-cncf-kubernetes",
    "rq",
    "redis",
    "kubernetes",
    "kubernetes-asyncio",
    "aiohttp",
)


def machine() -> dict[str, Any]:
    import psutil

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        from kubequeue.embedded_redis import find_server

        server = find_server()
        text = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=5)
        out["redis-server"] = text.stdout.strip()[:120]
    except Exception as e:  # the version is a fact to record, not a reason to fail
        out["redis-server"] = f"unknown ({e})"
    return out


def _fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "-"
    return f"{value:,.{digits}f}"


def targets(results: dict[str, Any], soak: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's goals, each with the measured value; None = not measured in this run."""
    kq = [s for s in results if s.startswith("kubequeue")]
    top = max(kq, key=lambda s: int(s.rsplit("-", 1)[1]), default="")
    burst = results.get(top, {}).get("burst", {})
    mine = burst.get("throughput_created", math.nan)
    out: list[dict[str, Any]] = []
    for base, goal in (("limit", 0.8), ("ke-default", 3.0), ("ke-tuned", 1.5)):
        theirs = results.get(base, {}).get("burst", {}).get("throughput_created", math.nan)
        r = measure.ratio(mine, theirs)
        out.append(_target(f"{top} queued→created throughput ≥ {goal}x {base}", r, goal, True))
    levels = results.get(top, {}).get("ladder", {}).get("levels") or {}
    if levels:
        busy = [v["busy_ms_mean"] for v in levels.values()]
        out.append(_target(f"{top} ms per heartbeat ≤ 5 at every level", max(busy), 5.0, False))
        spread = max(busy) / max(min(busy), 1e-9)
        out.append(_target(f"{top} heartbeat cost flat (max/min level ≤ 2)", spread, 2.0, False))
    # The paced phase only: a tight loop's idle heartbeats say more about the loop than the
    # executor (METHOD.md), so a run without it has no figure for this target.
    paced = results.get(top, {}).get("paced", {})
    cpu = paced.get("scheduler_cpu_ms_per_task", math.nan)
    out.append(_target(f"{top} scheduler CPU per task ≤ 0.2 ms (paced)", cpu, 0.2, False))
    added = measure.added_latency(results, top).get("p99", math.nan)
    out.append(_target(f"{top} p99 added latency queued→created ≤ 25 ms", added, 25.0, False))
    if soak:
        growth = soak.get("rss_growth", math.nan)
        out.append(
            _target("dispatcher RSS flat over the soak (growth ≤ 10 %)", growth, 0.10, False)
        )
    return out


def _target(name: str, value: float, goal: float, higher: bool) -> dict[str, Any]:
    met = None if math.isnan(value) else (value >= goal if higher else value <= goal)
    return {"target": name, "value": value, "goal": goal, "met": met}


def document(
    settings: Settings, results: dict[str, Any], soak: dict[str, Any] | None = None
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "name": settings.name,
        "date": now.strftime("%Y-%m-%d"),
        "started": now.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "settings": dataclasses.asdict(settings),
        "simulator": {
            "kubelet": "timed, fixed delays",
            "delays_ms": PROFILE_DELAYS_MS,
            "api_latency_ms": settings.api_latency_ms,
            "nodes_per_pool": settings.nodes_per_pool,
            "max_pods_per_node": settings.max_pods_per_node,
        },
        "results": results,
        "ratios": measure.ratios(results),
        "targets": targets(results, soak),
        "soak": soak,
    }


def headline_rows(results: dict[str, Any]) -> list[list[float]]:
    """Per system: burst created/s, burst Running/s, paced created/s, rate p50 and p99
    queued→created ms, paced ms per heartbeat (mean, p99), paced scheduler CPU ms per task.
    The scheduler-side figures come from the paced phase: a tight loop spends most of its
    heartbeats (and CPU) with nothing to do, which says more about the loop than the executor.
    Last, the CPU per task spent outside the scheduler (paced), see `other_cpu`."""
    rows = []
    for phases in results.values():
        b, r, p = phases.get("burst", {}), phases.get("rate", {}), phases.get("paced", {})
        lat, hb = r.get("latency_created_ms", {}), p.get("heartbeat_ms", {})
        rows.append(
            [
                b.get("throughput_created", math.nan),
                b.get("throughput_running", math.nan),
                p.get("throughput_created", math.nan),
                lat.get("p50", math.nan),
                lat.get("p99", math.nan),
                hb.get("mean", math.nan),
                hb.get("p99", math.nan),
                p.get("scheduler_cpu_ms_per_task", math.nan),
                other_cpu(p),
            ]
        )
    return rows


def other_cpu(figures: dict[str, Any]) -> float:
    """CPU per task outside the scheduler process: KE's watcher and Manager processes, or
    kubequeue's dispatchers, watcher and Redis (the simulator is not counted)."""
    if not figures:
        return math.nan
    fleet = figures.get("fleet_cpu_ms_per_task") or {}
    return float(figures.get("helper_cpu_ms_per_task") or 0.0) + sum(fleet.values())


HEADLINE = (
    ("created/s burst", 0),
    ("Running/s burst", 0),
    ("created/s paced", 0),
    ("p50 ms rate", 1),
    ("p99 ms rate", 1),
    ("ms/heartbeat", 2),
    ("p99 ms/heartbeat", 2),
    ("CPU ms/task", 2),
    ("other CPU ms/task", 2),
)


RATIO_COLUMNS = (
    ("created/s burst", "burst", "throughput_created", ("ke-default", "ke-tuned", "limit")),
    (
        "p99 queued→created rate",
        "rate",
        "latency_created_ms.p99",
        ("ke-default", "ke-tuned", "limit"),
    ),
    ("CPU ms/task paced", "paced", "scheduler_cpu_ms_per_task", ("ke-default", "ke-tuned")),
)
SHORT = {"ke-default": "KE default", "ke-tuned": "KE tuned", "limit": "limit"}


CPU_PARTS = ("scheduler", "KE helpers", "dispatchers", "watcher", "redis", "simulator")


def cpu_table(results: dict[str, Any], phase: str = "burst") -> list[str]:
    """Where the CPU goes per task, by process, in the burst phase: on a machine whose cores
    everything shares, the largest share is what limits throughput."""
    lines = [
        f"CPU ms per task by process ({phase} phase):",
        "",
        "| system | " + " | ".join(CPU_PARTS) + " |",
        "|---|" + "---:|" * len(CPU_PARTS),
    ]
    for system, phases in results.items():
        f = phases.get(phase)
        if not f:
            continue
        fleet = f.get("fleet_cpu_ms_per_task") or {}
        values = [
            f.get("scheduler_cpu_ms_per_task", math.nan),
            f.get("helper_cpu_ms_per_task", math.nan) if system.startswith("ke") else math.nan,
            fleet.get("dispatcher", math.nan),
            fleet.get("watcher", math.nan),
            fleet.get("redis", math.nan),
            f.get("sim_cpu_ms_per_task", _sim_cpu(f)),
        ]
        lines.append(f"| {system} | " + " | ".join(_fmt(v, 2) for v in values) + " |")
    return lines


def _sim_cpu(f: dict[str, Any]) -> float:
    share, wall, n = f.get("sim_cpu_share"), f.get("wall_s"), f.get("tasks")
    return share * wall * 1000.0 / n if share is not None and wall and n else math.nan


def ratio_table(ratios: dict[str, Any]) -> list[str]:
    """kubequeue's figure divided by each baseline's (above 1 is better for throughput,
    below 1 is better for latency and CPU)."""
    heads = [f"{title} ÷ {SHORT[b]}" for title, _, _, bases in RATIO_COLUMNS for b in bases]
    lines = [
        "kubequeue's figures divided by the baselines' (throughput: higher is better; "
        "latency and CPU: lower is better):",
        "",
        "| system | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(heads),
    ]
    for system, phases in ratios.items():
        cells = [
            _fmt(phases.get(phase, {}).get(path, {}).get(base, math.nan), 2)
            for _, phase, path, bases in RATIO_COLUMNS
            for base in bases
        ]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return lines


def markdown(doc: dict[str, Any], png: str) -> str:
    s, res, m = doc["settings"], doc["results"], doc["machine"]
    lines = [
        f"Measured {doc['date']} on {m['cpus']} CPUs ({m['cpu_model']}, {m['memory_gib']} GiB), "
        f"Python {m['python']}, Airflow {doc['versions']['apache-airflow']}, cncf-kubernetes "
        f"{doc['versions']['apache-airflow-providers-cncf-kubernetes']}. N = {s['n']} tasks over "
        f"2 queues/node pools, simulated API latency {s['api_latency_ms']:g} ms, fixed kubelet "
        "delays; method in `bench/METHOD.md`.",
        "",
        f"*burst*: N tasks queued at once, tight heartbeat loop; *paced*: {s['paced_n']} tasks, "
        f"one heartbeat per {s['loop_ms']:g} ms scheduler loop (heartbeat and CPU figures); "
        f"*rate*: tasks arriving at {s['rate']:g}/s, paced loop (latency queued → pod created). "
        "*CPU*: "
        "in the scheduler process; *other CPU*: KE's watcher and Manager processes, or "
        "kubequeue's dispatchers, watcher and Redis.",
        "",
        "| system | " + " | ".join(h for h, _ in HEADLINE) + " |",
        "|---|" + "---:|" * len(HEADLINE),
    ]
    for system, row in zip(res, headline_rows(res), strict=True):
        cells = [_fmt(v, d) for v, (_, d) in zip(row, HEADLINE, strict=True)]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", *ratio_table(doc["ratios"])]
    lines += ["", *cpu_table(res)]
    lines += ["", "| target | measured | met |", "|---|---:|:---:|"]
    for t in doc["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {_fmt(t['value'], 2)} | {met} |")
    lines += ["", f"![kubequeue benchmark]({png})", ""]
    return "\n".join(lines)


def write(doc: dict[str, Any], outdir: Path) -> dict[str, Path]:
    """Write JSON, PNG and markdown; returns their paths."""
    from kubequeue.bench.plot import plot

    outdir.mkdir(parents=True, exist_ok=True)
    stem = f"{doc['date']}-{doc['name']}"
    paths = {k: outdir / f"{stem}.{k}" for k in ("json", "png", "md")}
    paths["json"].write_text(json.dumps(clean(doc), indent=1, default=_json_default))
    plot(doc, paths["png"])
    paths["md"].write_text(markdown(doc, paths["png"].name))
    return paths


def clean(value: Any) -> Any:
    """NaN and infinity become null: they are not JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

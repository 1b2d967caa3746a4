from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubequeue.bench import measure, output
from kubequeue.bench.cli import bench, summary_table
from kubequeue.bench.plan import Settings


def figures(tput: float, p99: float, cpu: float, hb: float) -> dict:
    lat = [p99 * i / 100 for i in range(101)]
    return {
        "tasks": 10,
        "throughput_created": tput,
        "throughput_running": tput * 0.9,
        "latency_created_ms": {"p50": p99 / 2, "p95": p99, "p99": p99, "mean": 1.0, "max": p99},
        "latency_running_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "mean": 1.0, "max": 3.0},
        "heartbeat_ms": {"mean": hb, "p50": hb, "p95": hb, "p99": hb, "max": hb, "count": 3},
        "scheduler_cpu_ms_per_task": cpu,
        "cdf_created_ms": lat,
        "cdf_running_ms": lat,
        "complete": True,
    }


def results() -> dict:
    ladder = figures(0.0, math.nan, 0.0, 0.0)
    ladder["levels"] = {
        "100": {"busy_ms_mean": 2.0, "idle_ms_mean": 0.3},
        "10000": {"busy_ms_mean": 3.0, "idle_ms_mean": 0.4},
    }
    return {
        "limit": {"burst": figures(1000.0, 20.0, 0.1, math.nan), "rate": figures(200, 22, 0, 0)},
        "ke-default": {"burst": figures(50.0, 900.0, 9.0, 11.0)},
        "ke-tuned": {"burst": figures(100.0, 400.0, 8.0, 300.0)},
        "kubequeue-4": {
            "burst": figures(850.0, 30.0, 0.1, 2.0),
            "rate": figures(200.0, 40.0, 0.1, 2.0),
            "ladder": ladder,
        },
    }


def test_targets_report_value_goal_and_whether_met() -> None:
    got = {t["target"]: t for t in output.targets(results(), {"rss_growth": 0.2})}
    assert got["kubequeue-4 queued→created throughput ≥ 0.8x limit"]["met"] is True
    assert got["kubequeue-4 queued→created throughput ≥ 3.0x ke-default"]["value"] == 17.0
    assert got["kubequeue-4 ms per heartbeat ≤ 5 at every level"]["met"] is True
    assert got["kubequeue-4 heartbeat cost flat (max/min level ≤ 2)"]["value"] == 1.5
    assert got["kubequeue-4 p99 added latency queued→created ≤ 25 ms"]["value"] == 18.0
    assert got["dispatcher RSS flat over the soak (growth ≤ 10 %)"]["met"] is False


def test_targets_not_measured_are_neither_met_nor_missed() -> None:
    (first, *_) = output.targets({"kubequeue-1": {}}, None)
    assert first["met"] is None


def test_scheduler_cpu_target_comes_from_the_paced_phase_only() -> None:
    burst_only = {"kubequeue-1": {"burst": {"scheduler_cpu_ms_per_task": 0.1}}}
    got = {t["target"]: t for t in output.targets(burst_only, None)}
    assert got["kubequeue-1 scheduler CPU per task ≤ 0.2 ms (paced)"]["met"] is None


def test_clean_turns_nan_into_null() -> None:
    assert output.clean({"a": [math.nan, 1.0, math.inf], 2: (1,)}) == {
        "a": [None, 1.0, None],
        "2": [1],
    }


def test_document_markdown_json_and_png_are_written(tmp_path: Path) -> None:
    doc = output.document(Settings(n=10, name="unit"), results())
    assert doc["ratios"]["kubequeue-4"]["burst"]["throughput_created"]["ke-tuned"] == 8.5
    paths = output.write(doc, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{doc['date']}-unit.{ext}" for ext in ("json", "md", "png")
    )
    data = json.loads(paths["json"].read_text())  # strict JSON: no NaN
    assert data["settings"]["n"] == 10 and data["machine"]["cpus"] >= 1
    assert "apache-airflow" in data["versions"]
    md = paths["md"].read_text()
    assert "| kubequeue-4 | 850 |" in md
    assert "| kubequeue-4 | 17.00 | 8.50 | 0.85 |" in md  # created/s over each baseline
    assert f"![kubequeue benchmark]({doc['date']}-unit.png)" in md
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_summary_table_has_a_row_per_system() -> None:
    doc = output.document(Settings(n=10), results())
    table = summary_table(doc)
    assert table.row_count == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mix", "gpu=1"], "QUEUE one of default, highmem"),
        (["--replicas", "0"], "--replicas '0': expected positive integers"),
        (["--skip", "warmup"], "--skip: unknown phase(s) warmup"),
        (["--systems", "ke-fast"], "unknown ke-fast"),
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 2
    assert message in result.output


def test_added_latency_is_nan_without_a_limit_run() -> None:
    assert math.isnan(measure.added_latency({"kubequeue-1": {}}, "kubequeue-1")["p50"])


def test_replot_redraws_an_earlier_run(tmp_path: Path) -> None:
    doc = output.document(Settings(n=10, name="again"), results())
    first = output.write(doc, tmp_path / "first")
    result = CliRunner().invoke(bench, ["--replot", str(first["json"]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / first["md"].name).read_text()
    assert "CPU ms per task by process (burst phase):" in md
    assert (tmp_path / first["png"].name).exists()

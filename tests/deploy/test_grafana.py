"""The Grafana dashboards: committed JSON equals what grafana/generate.py produces, the
provisioning files are sane, and every query names only series kubequeue exports or records
(they are run against a real Prometheus in test_promql.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.deploy.manifests import ROOT
from tests.deploy.promql import (
    DASHBOARDS,
    GRAFANA_VARIABLES,
    dashboard_queries,
    exported_series,
    rules,
    selectors,
    substitute,
)

GRAFANA = ROOT / "grafana"


def test_committed_json_is_generated() -> None:
    done = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboards_have_variables_and_unique_ids() -> None:
    boards = [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]
    assert {b["uid"] for b in boards} == {"kubequeue-overview", "kubequeue-startup"}
    for board in boards:
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == ["datasource", "queue", "pool"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            assert panel["type"] == "row" or panel["targets"], panel["title"]
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24


def test_latency_dashboard_has_the_promised_panels() -> None:
    board = json.loads((DASHBOARDS / "kubequeue-startup-latency.json").read_text())
    types = {p["title"]: p["type"] for p in board["panels"]}
    assert "heatmap" in types.values()
    assert any("p99 per phase" in t for t in types)
    stacked = [
        p
        for p in board["panels"]
        if p["type"] == "timeseries"
        and p["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    ]
    assert stacked, "no stacked 'where did the time go' panel"


def test_queries_use_only_known_series_and_variables() -> None:
    known = set(exported_series()) | {r["record"] for r in rules() if "record" in r} | {"up"}
    queries = list(dashboard_queries())
    assert len(queries) > 20
    for board, title, expr in queries:
        assert "$" not in substitute(expr), f"{board} {title}: unknown variable in {expr}"
        for name, _ in selectors(substitute(expr)):
            assert name in known, f"{board} {title}: unknown series {name}"
    assert set(GRAFANA_VARIABLES) >= {"$queue", "$pool", "$__rate_interval"}


def test_provisioning_files() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/kubequeue.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"]

"""Small, dependency-free helpers for the PromQL in deploy/monitoring and grafana/: pull the
series selectors and label names out of an expression, list every series kubequeue exports,
and turn a Grafana query into plain PromQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import yaml

from kubequeue import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "monitoring" / "kubequeue.rules.yaml"
DASHBOARDS = ROOT / "grafana" / "dashboards"

_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_BRACES = re.compile(r"\{(?:[^{}\"']|" + _STRING + r")*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(
    r"(?<![A-Za-z0-9_:])([A-Za-z_:][A-Za-z0-9_:]*)(?![A-Za-z0-9_:])\s*(\{\d+\})?(?!\s*\()"
)
_NUMBER = re.compile(r"(?<![{\w.])\d+(\.\d+)?([eE][+-]?\d+)?(?![}\w])")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(" + _STRING + ")")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_KEYWORDS |= {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Grafana template variables and what they stand for when a query runs outside Grafana.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "5m",
    "$queue": ".*",
    "$pool": ".*",
}


def substitute(expr: str) -> str:
    """A Grafana query as plain PromQL: every variable replaced by a catch-all value."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace("${" + name[1:] + "}", GRAFANA_VARIABLES[name])
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Every series selector: (metric name, {label: (operator, value)})."""
    blocks: list[str] = []

    def stash(m: re.Match[str]) -> str:
        blocks.append(m.group(0))
        return "{" + str(len(blocks) - 1) + "}"

    text = _BRACES.sub(stash, expr)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    found = []
    for name, ref in _SELECTOR.findall(text):
        if name.lower() in _KEYWORDS:
            continue
        matchers = {}
        if ref:
            block = blocks[int(ref[1:-1])]
            for label, op, value in _MATCHER.findall(block):
                matchers[label] = (op, value[1:-1])
        found.append((name, matchers))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in by/without/on/ignoring/group_* clauses."""
    return {
        label.strip()
        for _, labels in _GROUPING.findall(_BRACES.sub("{}", expr))
        for label in labels.split(",")
        if label.strip()
    }


def exported_series() -> dict[str, set[str]]:
    """Every series name kubequeue/metrics.py exports -> its label names."""
    series: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, prometheus_client.metrics.MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)
        if value._type == "counter":
            series[f"{name}_total"] = labels
        elif value._type == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return groups


def rules() -> Iterator[dict[str, Any]]:
    for group in rule_groups():
        yield from group["rules"]


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every Prometheus target."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        panels = list(board.get("panels", []))
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield path.name, panel.get("title", ""), target["expr"]
        for variable in board.get("templating", {}).get("list", []):
            query = variable.get("query")
            if variable.get("type") == "query" and isinstance(query, dict | str):
                text = query.get("query", "") if isinstance(query, dict) else query
                yield path.name, f"variable {variable['name']}", _variable_query(text)


def _variable_query(text: str) -> str:
    """label_values(metric, label) -> the selector it reads."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text)
    return m.group(1) if m else text

"""The alert and recording rules: promtool accepts them, their unit tests (each alert firing
and not firing) pass, they only name series kubequeue exports or records, and the
PrometheusRule the Operator loads is generated from the same file."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, ROOT
from tests.deploy.promql import RULES_FILE, exported_series, grouping_labels, rules, selectors

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES_FILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests() -> None:
    tests = sorted((DEPLOY / "monitoring" / "tests").glob("*.test.yaml"))
    assert len(tests) >= 4
    done = promtool("test", "rules", *map(str, tests))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_unit_tests_firing_and_not_firing() -> None:
    fired: dict[str, set[bool]] = {}
    for path in (DEPLOY / "monitoring" / "tests").glob("*.test.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                fired.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for rule in rules():
        if "alert" in rule:
            assert fired.get(rule["alert"]) == {True, False}, f"{rule['alert']}: {fired}"


def test_rules_use_only_exported_or_recorded_series() -> None:
    exported = exported_series()
    recorded = {r["record"] for r in rules() if "record" in r}
    for rule in rules():
        for name, matchers in selectors(rule["expr"]):
            if name == "up":
                assert matchers.get("job", ("", ""))[1] in {
                    "kubequeue-dispatcher",
                    "kubequeue-watcher",
                }
                continue
            assert name in exported or name in recorded, f"{rule}: unknown series {name}"
            if name in exported:
                assert set(matchers) <= exported[name], f"{name}: labels {set(matchers)}"
        labels = set().union(*exported.values(), {"phase", "le"})
        assert grouping_labels(rule["expr"]) <= labels, rule


def test_alerts_have_severity_and_text() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_prometheusrule_is_generated_from_the_rule_file() -> None:
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "monitoring" / "prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr

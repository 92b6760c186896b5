"""The monitoring kit (``deploy/``): the alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``, Debian's ``prometheus`` package); the dashboard and the compose stack load
what the kit holds, and every rule has its runbook text."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        message = "promtool is not installed (apt-get install -y prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: tests may not skip)")
        pytest.skip(message)
    return binary


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, cwd=PROMETHEUS, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_alert_rules_pass_promtool_check() -> None:
    assert "SUCCESS: 6 rules found" in run(promtool(), "check", "rules", "alerts.yml")


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    assert "SUCCESS" in run(promtool(), "test", "rules", "alerts_test.yml")


def test_every_alert_has_a_summary_a_runbook_and_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    names = set()
    for rule in rules["groups"][0]["rules"]:
        names.add(rule["alert"])
        assert rule["annotations"]["summary"], rule["alert"]
        assert len(rule["annotations"]["runbook"]) > 80, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for group in tests["tests"]
        for case in group["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == names


def test_the_dashboard_queries_only_metrics_notifier_exports() -> None:
    dashboard = json.loads((GRAFANA / "notifier.json").read_text(encoding="utf-8"))
    exported = set((REPO / "docs" / "operations.md").read_text(encoding="utf-8").split("`"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    for expr in exprs:
        for metric in re.findall(r"notifier_[a-z_]+", expr):
            assert metric.removesuffix("_bucket") in exported, metric


def test_the_compose_stack_loads_the_rules_and_the_dashboard() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    prometheus = " ".join(compose["services"]["prometheus"]["volumes"])
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml" in prometheus
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    grafana = " ".join(compose["services"]["grafana"]["volumes"])
    assert "./deploy/grafana/notifier.json:/var/lib/grafana/dashboards/notifier.json" in grafana
    for name in ("prometheus", "grafana"):
        assert all(str(port).startswith("127.0.0.1:") for port in compose["services"][name]["ports"])

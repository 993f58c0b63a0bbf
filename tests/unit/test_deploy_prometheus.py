"""Prometheus and Alertmanager files, checked with the real tools (promtool, amtool).

`promtool check config` on both Prometheus configurations, `check rules` and `test rules`
(deploy/prometheus/tests) on the pipeline rules, `amtool check-config` on Alertmanager's; then
what the tools do not check: every alert has a firing and a non-firing unit test, summary and
description annotations, and a runbook_url whose anchor exists in docs/operations.md; and the
metric names the rules use are the ones the workers export (`check metrics` on them too).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.core.metrics import Metrics
from tests.promtool import amtool, check_metrics, promtool

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"
# Metrics the lead's runtime exports (README "Metrics", the runtime contract), beyond
# pipeline/core/metrics.py today; the rules may use these names too.
# Series Prometheus itself makes (not exported by cxpulse).
RUNTIME_METRICS = {"up"}


def alerts() -> list[dict[str, Any]]:
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text("utf-8"))["groups"]:
            out += [r for r in group["rules"] if "alert" in r]
    return out


def test_prometheus_configs_are_valid(tmp_path: Path) -> None:
    result = promtool("check", "config", PROM / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # Debian's promtool is built without Kubernetes discovery: check the pod-annotation config
    # with its kubernetes_sd_configs swapped for a static target (relabelling, rules, alerting
    # are then checked as written).
    k8s = yaml.safe_load((PROM / "prometheus-k8s-pods.yml").read_text("utf-8"))
    for job in k8s["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["pod:9464"]}]
    k8s["rule_files"] = [str(PROM / "rules" / "*.yml")]
    copy = tmp_path / "prometheus-k8s-pods.yml"
    copy.write_text(yaml.safe_dump(k8s), "utf-8")
    result = promtool("check", "config", copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid() -> None:
    assert RULES
    result = promtool("check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The harness notices a wrong expectation (a test that cannot fail proves nothing)."""
    text = (PROM / "tests" / "cxpulse-pipeline.test.yml").read_text("utf-8")
    broken = text.replace("severity: critical", "severity: page", 1)
    copy = tmp_path / "broken.test.yml"
    copy.write_text(broken.replace("../rules/", f"{PROM}/rules/"), "utf-8")
    result = promtool("test", "rules", copy)
    assert result.returncode != 0


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text("utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def github_anchors(markdown: str) -> set[str]:
    """Heading anchors as GitHub renders them."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_explains_itself_and_has_a_runbook() -> None:
    anchors = github_anchors(OPERATIONS.read_text("utf-8"))
    for rule in alerts():
        name = rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        url = notes["runbook_url"]
        assert url == f"docs/operations.md#{name.lower()}", name
        assert url.split("#")[1] in anchors, f"{name}: no section in docs/operations.md"


def test_rules_use_only_exported_metrics() -> None:
    text = generate_latest(_registry()).decode()
    exported = set(re.findall(r"^# TYPE (\w+) (\w+)", text, re.M))
    names = set()
    for metric, kind in exported:
        names.add(metric)
        if kind == "counter":
            names.add(metric + "_total")
        if kind == "histogram":
            names |= {metric + "_bucket", metric + "_sum", metric + "_count"}
    used = set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text("utf-8"))["groups"]:
            for rule in group["rules"]:
                used |= set(re.findall(r"\b(cxpulse_\w+|up)\b", rule["expr"]))
    assert used - names - RUNTIME_METRICS == set()


def test_alertmanager_config_is_valid() -> None:
    result = amtool("check-config", ROOT / "deploy" / "alertmanager" / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    m = Metrics.create(registry)
    # one child of every labelled metric, so every series family is in the exposition
    m.events.labels(verdict="accepted").inc()
    m.dead_letters.labels(reason="invalid_json").inc()
    m.watermark.labels(partition="0").set(1.7e9)
    m.event_time_progress.labels(partition="0").set(1.7e9)
    m.consumer_lag.labels(role="compute", topic="t", partition="0").set(3)
    m.worker_ready.labels(role="compute").set(1)
    m.batch_seconds.labels(role="compute").observe(0.01)
    m.commit_seconds.labels(role="compute").observe(0.01)
    m.batch_messages.labels(role="compute").observe(10)
    m.transaction_failures.labels(role="compute").inc()
    m.sink_contributions.labels(result="applied").inc()
    m.sink_rows.labels(table="kpi_minute_partials").inc()
    m.sink_flush_seconds.observe(0.2)
    m.visibility_latency.observe(1.2)
    return registry


def test_metrics_pass_promtool_check_metrics() -> None:
    assert check_metrics(generate_latest(_registry())) == []


def test_check_metrics_reports_a_bad_name() -> None:
    bad = "# HELP flushes_seconds x\n# TYPE flushes_seconds counter\nflushes_seconds 1\n"
    problems = check_metrics(bad)
    assert any("_total" in p for p in problems), problems

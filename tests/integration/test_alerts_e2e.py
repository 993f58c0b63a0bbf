"""An injected incident through the real pipeline reaches Alertmanager once firing, once
resolved: broker -> compute worker -> sink worker (writes partials and source_progress,
runs the alert evaluator) -> Alertmanager -> the test's webhook receiver.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.app.demo import demo_params
from pipeline.simulator import Incident, SimulationParams, simulate
from tests.alertmanager_harness import Alertmanager, Inbox
from tests.pipeline_harness import PipelineHarness

RULES = """
defaults:
  windows: [15m, 30m]
  baseline: {kind: trailing, span: 1h}
  min_count: 10
  min_baseline: 50
  z: 3.5
  for: 1m
  resolve_after: 3m
rules:
  - name: csat_drop
    kpi: csat_pct
    groupings: [team]
    severity: page
    margin: 2
"""


pytestmark = pytest.mark.integration


def test_an_injected_incident_reaches_alertmanager_once_each(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=105)
    incident_start = now - timedelta(minutes=25)
    # The demo's world (surveys answered often and soon): enough CSAT answers per 15 min.
    params = demo_params(SimulationParams(
        seed=21, start=start, duration=timedelta(minutes=130), conversations_per_hour=900,
        seasonality=False,
        incidents=(Incident("csat", incident_start, timedelta(minutes=30), team="billing",
                            target=15.0),),
    ))  # fmt: skip
    messages = [(ev.key.encode(), ev.value, ev.occurred_at) for ev in simulate(params)]
    split = next(i for i, m in enumerate(messages) if m[2] >= now)
    inbox = Inbox()
    am = Alertmanager(tmp_path, inbox)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=2)
    env = {
        "CXPULSE_ALERTS__RULES_FILE": str(rules),
        "CXPULSE_ALERTS__ALERTMANAGER_URL": am.url,
        "CXPULSE_ALERTS__WEBHOOK_URL": f"http://127.0.0.1:{inbox.port}/hook",
        "CXPULSE_ALERTS__EVALUATE_INTERVAL_SECONDS": "1",
        "CXPULSE_ALERTS__RESEND_INTERVAL_SECONDS": "5",
    }
    try:
        h.cli("topics", "create")
        sink = h.start_worker("sink", **env)
        compute = h.start_worker("compute")
        h.produce((k, v) for k, v, _ in messages[:split])  # history + 25 min of the drop
        deadline = time.monotonic() + 75
        while not inbox.notifications("firing", "csat_drop") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert inbox.notifications("firing", "csat_drop"), h.logs()
        assert not inbox.notifications("resolved", "csat_drop")
        h.produce((k, v) for k, v, _ in messages[split:])  # the rest of the drop, recovery
        while not inbox.notifications("resolved", "csat_drop") and time.monotonic() < deadline + 45:
            time.sleep(0.5)
        time.sleep(4)
        h.stop(compute)
        h.stop(sink)
    finally:
        h.stop_all()
        am.stop()
        inbox.close()
    firing = inbox.notifications("firing", "csat_drop")
    resolved = inbox.notifications("resolved", "csat_drop")
    assert len(firing) == 1 and len(resolved) == 1, (firing, resolved, h.logs())
    labels = firing[0]["alerts"][0]["labels"]
    assert labels["team"] == "billing" and labels["kpi"] == "csat_pct"
    keys = Counter(k for k, _ in inbox.hook)
    assert {k.split("/")[1] for k in keys} >= {"firing", "resolved"}
    stored = h.query("SELECT rule, team, state, fired_at, resolved_at FROM {db}.alerts FINAL")[0]
    assert [(r[0], r[1], r[2]) for r in stored] == [("csat_drop", "billing", "resolved")]
    fired = datetime.fromisoformat(stored[0][3]).replace(tzinfo=UTC)
    assert incident_start <= fired <= incident_start + timedelta(minutes=16)

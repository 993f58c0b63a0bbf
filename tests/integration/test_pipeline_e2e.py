"""End to end: simulated events -> real broker -> compute + sink workers -> chDB rows.

Builds the schema from nothing (the sink migrates an empty chDB), loads simulated data
through the pipeline, then checks the stored rows, every documented view and every
dashboard query.

The stored aggregates are compared with an independent recomputation from the input
(``tests/oracle.py``), minute by minute and grouping by grouping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.simulator import SimulationParams, simulate
from tests.contract_checks import check_dashboards, check_views
from tests.pipeline_harness import PipelineHarness
from tests.stored import compare_with_oracle

pytestmark = pytest.mark.integration


def simulated_messages(seed: int, minutes: int = 90) -> list[tuple[bytes, bytes]]:
    params = SimulationParams(
        seed=seed,
        start=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        duration=timedelta(minutes=minutes),
        conversations_per_hour=400,
        malformed_rate=0.01,
        duplicate_rate=0.02,
        late_rate=0.01,
    )
    return [(ev.key.encode(), ev.value) for ev in simulate(params)]


def test_events_flow_into_clickhouse(kafka_bootstrap: str, tmp_path: Path) -> None:
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=3)
    assert "created" in h.cli("topics", "create").stdout
    sent = h.produce(simulated_messages(seed=7))
    assert sent > 500
    sink = h.start_worker("sink")
    compute = h.start_worker("compute")
    try:
        h.wait_drained(timeout=180)
    finally:
        assert h.stop(compute) == 0, h.logs()
        assert h.stop(sink) == 0, h.logs()
    summary = compare_with_oracle(h)
    # ClickHouse as a contract: every documented view and every Grafana query, on the data
    # this run wrote.
    assert check_views(h, summary["oracle"]) > 20
    assert check_dashboards(h, summary["oracle"]) > 20
    # The operator's board (`cxpulse kpis`, read straight from chDB once the sink stopped).
    board = json.loads(h.cli("kpis", "--json").stdout)
    oracle = summary["oracle"]
    newest = max(m for (g, _k, m) in oracle.minutes if g == "overall")
    expected = {
        key[0]: sum(
            row["events"]
            for (g, k, m), row in oracle.minutes.items()
            if g == "team" and k == key and newest - 15 < m <= newest
        )
        for (g, key, _m) in oracle.minutes
        if g == "team"
    }
    assert {t["team"]: t["events"] for t in board["teams"]} == {
        team: n for team, n in expected.items() if n
    }

"""The customers board against the real schema: every panel query runs on customer rows.

Two simulated days ending now (churn-prone customers included) go through the in-process
customer path; its rows are inserted into a freshly migrated database, and each ClickHouse
target of ``cxpulse-customers.json`` is expanded like Grafana and the plugin do and must
return rows of the shape its panel needs. The checks are those of the KPI board's test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.simulator import SimulationParams, simulate
from sinks.clickhouse.customer_rows import CHANGE_COLUMNS, FOLLOWUP_COLUMNS, HEALTH_COLUMNS
from sinks.clickhouse.store import ClickHouseStore
from tests.customer_harness import run_customers, source_messages
from tests.unit.test_clickhouse_contract import new_migrated_database
from tests.unit.test_grafana_dashboards import (
    CLICKHOUSE,
    GRAFANA,
    Expander,
    check_overrides,
    check_result,
    load,
    panels,
    run,
)

pytest.importorskip("clickhouse_connect")

BOARD = GRAFANA / "dashboards" / "cxpulse-customers.json"
END = datetime.now(UTC).replace(second=0, microsecond=0)
START = END - timedelta(days=2)


@pytest.fixture(scope="module")
def store(chdb_client: Any) -> Iterator[ClickHouseStore]:
    params = SimulationParams(
        seed=5,
        start=START,
        duration=END - START,
        conversations_per_hour=150,
        seasonality=False,
        churn_prone_share=0.05,
    )
    result = run_customers(source_messages(simulate(params), 4), source_partitions=4)
    st = new_migrated_database(chdb_client)
    for table, rows, names in (
        ("customer_health", result.health_rows, HEALTH_COLUMNS),
        ("customer_risk_changes", result.change_rows, CHANGE_COLUMNS),
        ("feedback_followups", result.followup_rows, FOLLOWUP_COLUMNS),
    ):
        st.insert(table, [list(c) for c in zip(*rows, strict=True)], names)
    try:
        yield st
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {st.database}")


def test_board_reads_the_customer_views() -> None:
    board = load(BOARD)
    sql = " ".join(t["rawSql"] for p in panels(board) for t in p.get("targets", []))
    for name in ("revenue_at_risk_trend", "revenue_at_risk", "at_risk_customers"):
        assert f"cxpulse.{name}" in sql
    assert "feedback_followups FINAL" in sql
    titles = {p["title"] for p in panels(board)}
    for needed in (
        "Revenue at risk",
        "Revenue at risk by team",
        "Revenue at risk by segment",
        "At-risk customers by reason",
    ):
        assert needed in titles
    trend = [p for p in panels(board) if p["type"] == "timeseries"]
    assert {p["title"] for p in trend} >= {"Revenue at risk by team", "At-risk customers by reason"}


@pytest.mark.parametrize("interval_s", [60, 3600])
def test_every_panel_query_returns_its_columns(
    chdb_client: Any, store: ClickHouseStore, interval_s: int
) -> None:
    board = load(BOARD)
    expander = Expander(START, END, interval_s, {})
    checked = 0
    for panel in panels(board):
        columns: set[str] = set()
        for target in panel.get("targets", []):
            assert target["datasource"]["type"] == CLICKHOUSE
            where = f"{panel['title']}/{target['refId']} ({interval_s} s)"
            names, types, rows = run(chdb_client, store, expander.expand(target["rawSql"]))
            columns |= set(names)
            check_result(panel, target, names, types, rows, where, several_points=True)
            checked += 1
        check_overrides(panel, columns)
    assert checked >= 10


def test_trend_step_follows_the_graph_interval(chdb_client: Any, store: ClickHouseStore) -> None:
    board = load(BOARD)
    (target,) = [t for p in panels(board) if p["title"] == "Revenue at risk" for t in p["targets"]]
    hourly = run(chdb_client, store, Expander(START, END, 3600, {}).expand(target["rawSql"]))[2]
    first, last = -(-int(START.timestamp()) // 3600), int(END.timestamp()) // 3600
    assert [r[0].replace(tzinfo=UTC).timestamp() // 3600 for r in hourly] == list(
        range(first, last + 1)
    )  # whole hours from START to END
    sql = Expander(START, END, 60, {}).expand(target["rawSql"])
    assert re.search(r"step_minutes = greatest\(1, intDiv\(60, 60\)\)", sql)


def test_revenue_alerts_show_as_annotations(chdb_client: Any, store: ClickHouseStore) -> None:
    board = load(BOARD)
    (annotation,) = [
        a for a in board["annotations"]["list"] if a.get("datasource", {}).get("type") == CLICKHOUSE
    ]
    assert annotation["enable"] is True
    started = END - timedelta(hours=3)
    rows = [
        ("r1", "revenue_at_risk", "team", "billing", "", "firing", started),
        ("k1", "csat_pct", "team", "billing", "", "firing", started),  # a KPI alert: not here
    ]
    names = ("alert_id", "kpi", "grouping", "team", "segment", "state", "started_at")
    extra = {"rule": "revenue_at_risk_rise", "summary": "revenue at risk rose for team billing"}
    store.insert(
        "alerts",
        [*zip(*rows, strict=True), *([v] * len(rows) for v in extra.values())],
        (*names, *extra),
    )
    expander = Expander(START, END, 60, {})
    got_names, types, result = run(
        chdb_client, store, expander.expand(annotation["target"]["rawSql"])
    )
    assert got_names[:2] == ["time", "timeEnd"] and types[0].startswith("DateTime")
    texts = [r[got_names.index("text")] for r in result]
    assert texts == ["revenue_at_risk_rise firing: revenue at risk rose for team billing"]

"""Revenue-at-risk alerts on the simulated month (chDB): the stored levels equal the
independent recomputation, and the live evaluator, restarted midway, makes exactly the
transitions of the detector fed from that recomputation."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.cli.alerts import render_alerts
from pipeline.core.config import Settings
from pipeline.core.metrics import Metrics
from sinks.alerts.evaluator import AlertEvaluator
from sinks.alerts.level_store import LevelStore
from sinks.alerts.queries import alerts_payload
from sinks.alerts.store import dt
from sinks.clickhouse.customer_rows import (
    PROGRESS_COLUMNS,
)
from sinks.clickhouse.store import ClickHouseStore
from streams.alerts.levels import LevelChange, LevelEngine
from streams.alerts.rules import parse_rules
from tests.unit.test_clickhouse_contract import new_migrated_database
from tests.unit.test_customer_month import CUSTOMER_PARTITIONS, Month, insert_run

MINUTE_US = 60_000_000
# Thresholds low enough that the month's build-up of risk makes alerts to compare.
RULES_TEXT = """
rules:
  - name: revenue_rise
    kpi: revenue_at_risk
    groupings: [team, segment, overall]
    window: 1d
    factor: 1.2
    min_customers: 2
    warmup: 3d
    for: 2m
  - name: customers_rise
    kpi: customers_at_risk
    groupings: [team]
    window: 6h
    factor: 1.1
    min_increase: 2
    min_customers: 2
    warmup: 2d
"""
RULES = parse_rules(RULES_TEXT, "month-rules.yaml")


@pytest.fixture(scope="module")
def store(chdb_client: Any, month: Month) -> Iterator[ClickHouseStore]:
    """The month's rows as the sink writes them, customer_progress included."""
    st = new_migrated_database(chdb_client)
    insert_run(st, month.run, random.Random(9))
    try:
        yield st
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {st.database}")


def oracle_changes(timelines: dict[str, list[Any]]) -> dict[int, list[LevelChange]]:
    """Level changes per minute from the oracle's risk timelines (no SQL, no pipeline)."""
    out: dict[tuple[Any, int], list[int]] = defaultdict(lambda: [0, 0])
    for timeline in timelines.values():
        prev = None
        for at, status in timeline:
            m = at // MINUTE_US
            for st, sign in ((prev, -1), (status, 1)):
                if st is None:
                    continue
                pairs, value, segment = st
                v = int((value or 0.0) * 1_000_000)  # as ClickHouse makes a Decimal(6)
                keys = [("overall", "", "", "", "", ""), ("segment", "", "", "", "", segment)]
                keys += [("team", t, "", "", "", "") for t in sorted({t for _, t in pairs})]
                for key in keys:
                    out[(key, m)][0] += sign * v
                    out[(key, m)][1] += sign
            prev = status
    by_minute: dict[int, list[LevelChange]] = defaultdict(list)
    for (key, m), (v, c) in out.items():
        if v or c:
            by_minute[m].append((key, m, v, c))
    return by_minute


def levels_at(changes: dict[int, list[LevelChange]], minutes: list[int]) -> dict[int, dict]:
    current: dict[Any, tuple[int, int]] = {}
    out: dict[int, dict] = {}
    todo = sorted(minutes)
    for m in sorted(set(changes) | set(todo)):
        for key, _, v, c in changes.get(m, []):
            a, b = current.get(key, (0, 0))
            current[key] = (a + v, b + c)
        if m in minutes:
            out[m] = {k: x for k, x in current.items() if x != (0, 0)}
    return out


def expected_transitions(timelines: dict[str, list[Any]], end: int) -> list[Any]:
    """The detector fed from the oracle's timelines, from their first change to ``end``."""
    changes = oracle_changes(timelines)
    start = min(changes)
    engine = LevelEngine(RULES)
    engine.load(start - 1, [])
    out = []
    for m in range(start, end + 1):
        out.extend(engine.advance(m, changes.get(m, [])))
    return out


def test_the_customer_log_reports_how_far_each_partition_is_final(month: Month) -> None:
    rows = month.run.progress_rows
    assert {r[0] for r in rows} == set(range(CUSTOMER_PARTITIONS))
    for p in range(CUSTOMER_PARTITIONS):
        mine = [r for r in rows if r[0] == p]
        frozen = [r[2] for r in mine]
        assert frozen == sorted(frozen)  # never moves back
        assert all(r[2] <= r[1] for r in mine)  # behind the watermark


def test_stored_levels_equal_the_oracle_at_every_change(
    store: ClickHouseStore, month: Month
) -> None:
    end = min(month.run.watermarks.values()) // MINUTE_US - 1
    first = LevelStore(store).first_minute(end)
    assert first is not None
    stored: dict[int, list[LevelChange]] = defaultdict(list)
    for change in LevelStore(store).changes(first, end, fold_before=True):
        stored[change[1]].append(change)
    want = {m: cs for m, cs in oracle_changes(month.timelines).items() if m <= end}
    minutes = [*sorted(want)[::7], end]
    got_levels, want_levels = levels_at(stored, minutes), levels_at(want, minutes)
    assert got_levels == want_levels
    assert sum(len(x) for x in want_levels.values()) > 100
    # The money matches the revenue_at_risk_trend reading of the same rows (the board).
    t = minutes[len(minutes) // 2]
    oracle = month.oracle.revenue_at(month.timelines, (t + 1) * MINUTE_US - 1)
    team = {k[1]: v for k, v in got_levels[t].items() if k[0] == "team"}
    assert {name: c for name, (_, c) in team.items()} == {
        key: n for (g, key), (n, _) in oracle.items() if g == "team" and n
    }


def test_the_evaluator_restarted_midway_makes_the_oracles_transitions(
    store: ClickHouseStore, month: Month
) -> None:
    settings = Settings(
        topics={"partitions": CUSTOMER_PARTITIONS},
        alerts={"webhook_url": "http://127.0.0.1:9/hook", "backfill_days": 60},
    )
    progress = sorted(month.run.progress_rows, key=lambda r: r[3])
    halfway = progress[: len(progress) // 2]
    io = LevelStore(store)
    # First the history final halfway through the month, then all of it.
    latest = {r[0]: r for r in halfway}
    store.insert("customer_progress", [list(c) for c in zip(*latest.values(), strict=True)],
                 PROGRESS_COLUMNS)  # fmt: skip
    mid = io.closed_minute(CUSTOMER_PARTITIONS)
    first = AlertEvaluator(settings, store, rules=RULES)
    assert first._evaluate_kpis() == []  # no KPI data: rise rules run on their own
    before = first.evaluate()
    assert first.levels.minute == mid
    latest = {r[0]: r for r in progress}
    store.insert("customer_progress", [list(c) for c in zip(*latest.values(), strict=True)],
                 PROGRESS_COLUMNS)  # fmt: skip
    end = io.closed_minute(CUSTOMER_PARTITIONS)
    assert end is not None and mid is not None and end > mid + 1440
    metrics = Metrics.create(CollectorRegistry())
    second = AlertEvaluator(settings, store, metrics, rules=RULES)  # a restart
    after = second.evaluate()
    assert second.levels.minute == end
    gauge = metrics.alert_levels_evaluated_minute._value.get()  # type: ignore[attr-defined]
    assert gauge == end * 60
    # `cxpulse alerts` tells where each clock stands (no KPI data here: no KPI minute).
    payload = alerts_payload(store)
    assert payload["evaluated_minute"] is None
    assert payload["levels_evaluated_minute"].startswith(dt(end).strftime("%Y-%m-%dT%H:%M"))
    assert f"(rise rules: {dt(end):%Y-%m-%d %H:%M} UTC)" in render_alerts(payload)

    expected = expected_transitions(month.timelines, end)

    def key(ts: list) -> list[tuple[Any, ...]]:
        return [(t.rule, t.group, t.state, t.minute, t.alert_id, t.onset) for t in ts]

    assert key(before + after) == key(expected)
    states = {(t.rule, t.state) for t in expected}
    assert {("revenue_rise", "firing"), ("customers_rise", "firing")} <= states
    assert ("revenue_rise", "resolved") in states
    assert {t.details["observed"] for t in before + after} == {
        t.details["observed"] for t in expected
    }
    # Persisted like every alert: one row per transition, one outbox entry each.
    rows = store.query(
        f"SELECT alert_id, state, kpi FROM {store.database}.alerts FINAL "
        f"WHERE rule IN ('revenue_rise', 'customers_rise')"
    )
    firing = {t.alert_id for t in expected if t.state == "firing"}
    assert {r[0] for r in rows} == firing
    assert {r[2] for r in rows} == {"revenue_at_risk", "customers_at_risk"}
    pending = second.io.pending(end)
    assert {e["transition_id"] for e in pending} == {t.transition_id for t in expected}

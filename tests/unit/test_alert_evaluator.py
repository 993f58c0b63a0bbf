"""The live evaluator on real ClickHouse (chDB): event-time semantics, exact replay,
restart from the checkpoint, persisted transitions and outbox."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from pipeline.core.config import Settings
from sinks.alerts.evaluator import AlertEvaluator
from sinks.alerts.store import AlertStore
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.store import Capabilities, ClickHouseStore
from streams.alerts.engine import Engine
from streams.alerts.rules import parse_rules
from tests.alert_data import PARTITIONS, RULES, Drop, insert_progress, synthetic
from tests.unit.test_clickhouse_contract import migrated_store

pytest.importorskip("clickhouse_connect")

DROPS = (Drop("csat", "billing", 240, 300, 0.3), Drop("frt", "tech", 260, 320, 4.0))
DATA = synthetic(420, DROPS, seed=3)
RULESET = parse_rules(RULES, "test-rules.yaml")


def settings(**alerts: Any) -> Settings:
    return Settings(
        topics={"partitions": PARTITIONS},
        alerts={"webhook_url": "http://127.0.0.1:9/hook", "backfill_days": 30, **alerts},
    )


@pytest.fixture
def db(chdb_client: Any, chdb_database: str) -> ClickHouseStore:
    store = migrated_store(chdb_client, chdb_database)
    DATA.insert(store)
    return store


def key(transitions: list) -> list[tuple[str, str, int]]:
    return [(t.alert_id, t.state, t.minute) for t in transitions]


def reference() -> list:
    """The detector fed in process, minute by minute (what evaluate-alerts does)."""
    engine = Engine(RULESET)
    rows = DATA.known_rows()
    out = []
    for minute in range(DATA.start, DATA.last_minute + 1):
        out.extend(engine.advance(minute, rows.get(minute, [])))
    return out


def test_sql_reads_equal_the_in_process_vectors(db: ClickHouseStore) -> None:
    io = AlertStore(db, groupings=("team_channel",))
    stored = io.deltas(DATA.start, DATA.last_minute)
    expected = DATA.known_rows()
    assert sorted(stored) == sorted(expected)
    for known, rows in expected.items():
        got = {(leaf, m): v for leaf, m, v in stored[known]}
        assert set(got) == {(leaf, m) for leaf, m, _ in rows}
        for leaf, m, vec in rows:
            np.testing.assert_array_equal(got[(leaf, m)], vec)


def test_nothing_is_evaluated_before_every_partition_reports(db: ClickHouseStore) -> None:
    ev = AlertEvaluator(settings(), db, rules=RULESET)
    assert ev.evaluate() == [] and not ev.loaded
    insert_progress(db, DATA.start + 30, partitions=PARTITIONS - 1)
    assert ev.evaluate() == [] and not ev.loaded


def test_replay_live_and_restart_give_the_same_alerts(
    chdb_client: Any, db: ClickHouseStore
) -> None:
    expected = reference()
    kinds = {(t.rule, t.group[1], t.state) for t in expected}
    assert ("csat_drop", "billing", "firing") in kinds
    assert ("csat_drop", "billing", "resolved") in kinds
    assert ("frt_slowdown", "tech", "firing") in kinds
    assert not any(t.group[1] == "billing" and t.rule == "frt_slowdown" for t in expected)

    # replay: everything closed at once
    insert_progress(db, DATA.last_minute)
    at_once = AlertEvaluator(settings(), db, rules=RULESET).evaluate()
    assert key(at_once) == key(expected)

    # live: minutes close a few at a time; a restart (new process) in the middle of the drop
    other = ClickHouseStore(chdb_client, f"t_{uuid.uuid4().hex[:10]}", Capabilities(embedded=True))
    chdb_client.command(f"CREATE DATABASE {other.database}")
    try:
        migrate(other, minute_ttl_days=400, side_ttl_days=30)
        DATA.insert(other)
        live: list = []
        ev = AlertEvaluator(settings(), other, rules=RULESET)
        for closed in range(DATA.start + 5, DATA.last_minute + 1, 7):
            insert_progress(other, closed)
            live.extend(ev.evaluate())
            if DATA.start + 270 <= closed < DATA.start + 277:  # kill: forget everything
                ev = AlertEvaluator(settings(), other, rules=RULESET)
        insert_progress(other, DATA.last_minute)
        live.extend(ev.evaluate())
        assert key(live) == key(expected)
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {other.database}")


def test_transitions_alerts_rows_outbox_and_checkpoint(db: ClickHouseStore) -> None:
    insert_progress(db, DATA.last_minute)
    ev = AlertEvaluator(settings(), db, rules=RULESET)
    transitions = ev.evaluate()
    q = db.query
    alerts = q(
        f"SELECT alert_id, rule, state, kpi, team, toUnixTimestamp(fired_at) / 60, samples, "
        f"observed, baseline, summary FROM {db.database}.alerts FINAL"
    )
    by_id = {r[0]: r for r in alerts}
    for t in transitions:
        row = by_id[t.alert_id]
        assert row[1] == t.rule and row[5] == t.fired_at
        assert row[6] > 0 and row[9]
    billing = next(r for r in alerts if r[1] == "csat_drop")
    assert billing[2] == "resolved" and billing[3] == "csat_pct" and billing[4] == "billing"
    assert 80 < billing[8] < 95 and billing[7] < billing[8] - 10  # percent, as on the boards
    outbox = q(
        f"SELECT receiver, transition_id, status FROM {db.database}.alert_outbox FINAL "
        "ORDER BY transition_id"
    )
    assert sorted(r[1] for r in outbox) == sorted(t.transition_id for t in transitions)
    assert {r[0] for r in outbox} == {"webhook"} and {r[2] for r in outbox} == {"pending"}
    found = ev.io.load_checkpoint()
    assert found is not None and found[0] == DATA.last_minute
    # Nothing new closed: nothing evaluated again, nothing written twice.
    assert AlertEvaluator(settings(), db, rules=RULESET).evaluate() == []


def test_a_changed_rule_starts_afresh_and_others_resume(db: ClickHouseStore) -> None:
    insert_progress(db, DATA.start + 250)
    AlertEvaluator(settings(), db, rules=RULESET).evaluate()
    changed = parse_rules(RULES.replace("margin: 1.2", "margin: 1.3"), "changed.yaml")
    ev = AlertEvaluator(settings(), db, rules=changed)
    insert_progress(db, DATA.start + 251)
    ev.evaluate()
    firing = {rule.name for rule, _, _ in ev.engine.firing()}
    assert firing == {"csat_drop"}  # the billing drop (fired before) is still firing

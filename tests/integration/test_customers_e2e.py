"""Issue 12 done-when: a simulated month through the real pipeline, customers included.

The simulator's month (churn-prone customers, repeat contacts, surveys with comments,
duplicates, malformed and late events) goes to the real broker; real compute workers (which
also run the customer role) and the sink write ClickHouse; the compute worker is killed with
``kill -9`` while it commits, once. Then the at-risk list with its reasons, teams and
"since" times, revenue at risk per team / segment / reason / overall, customer health and the
feedback follow-ups in ClickHouse must equal an independent recomputation from the events
(``tests/customer_oracle.py``), and every reason the simulator caused must be found.
The sink's alert evaluator runs rise rules on revenue and customers at risk live, on the
minutes the customer history has frozen: the alerts it stored must be those of the detector
fed from the recomputation.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.simulator import CustomerLedger, simulate
from tests.customer_harness import partition_for
from tests.customer_oracle import recompute_customers
from tests.integration.test_exactly_once import wait_until_moving
from tests.pipeline_harness import PipelineHarness
from tests.unit.test_customer_month import key_of, month_params, oracle_revenue_now, oracle_rows
from tests.unit.test_revenue_alerts import RULES_TEXT, expected_transitions

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)
PARTITIONS = 3


def read_with_timestamps(h: PipelineHarness) -> list[tuple[int, int, int, bytes]]:
    """Every event as (partition, offset, Kafka timestamp ms, value)."""
    consumer = KafkaConsumer(bootstrap_servers=h.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(h.topics["events"], p) for p in range(h.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    out: list[tuple[int, int, int, bytes]] = []
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for tp, records in consumer.poll(timeout_ms=500).items():
            out.extend((tp.partition, r.offset, r.timestamp, r.value) for r in records)
    consumer.close()
    return sorted(out)


def test_a_month_of_customers_through_the_pipeline(kafka_bootstrap: str, tmp_path: Path) -> None:
    params = month_params()
    ledger = CustomerLedger(params)
    events = [(ev.key.encode(), ev.value) for ev in simulate(params, ledger.observe)]
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    h.cli("topics", "create")
    # The month is produced in two bursts, so one source partition's event time may run
    # days ahead of another's; a skew bound above the month keeps the risk history exact
    # (within the default 7 days, a lag beyond it clamps the history, by design).
    env = {
        "CXPULSE_COMPUTE__BATCH_MAX_MESSAGES": "2000",
        "CXPULSE_CUSTOMERS__HISTORY_MAX_SKEW_HOURS": str(40 * 24),
    }
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_TEXT)
    sink_env = {
        "CXPULSE_ALERTS__RULES_FILE": str(rules),
        "CXPULSE_ALERTS__EVALUATE_INTERVAL_SECONDS": "0.5",
        "CXPULSE_ALERTS__BACKFILL_DAYS": "60",
    }
    sink = h.start_worker("sink", **sink_env)
    compute = h.start_worker("compute", **env)
    half = len(events) // 2
    h.produce(events[:half])
    wait_until_moving(h, f"{h.app_id}-compute", [h.topics["events"]], timeout=90)
    time.sleep(random.Random(12).uniform(0.2, 1.5))
    h.kill9(compute)  # mid-stream: its transactions (facts, follow-ups) are in flight
    compute = h.start_worker("compute", **env)
    h.produce(events[half:])
    h.wait_drained(timeout=300)
    assert h.stop(compute) == 0, h.logs()
    # The evaluator catches up with the last frozen minute (a restart resumes it).
    for _ in range(6):
        time.sleep(4)
        assert h.stop(sink) == 0, h.logs()
        (((checked, closed),),) = h.query(
            "SELECT (SELECT max(toUnixTimestamp(minute)) FROM {db}.alert_checkpoints FINAL "
            "WHERE evaluator = 'default:levels'), (SELECT intDiv(min(toUnixTimestamp64Micro("
            "frozen)), 60000000) - 1 FROM {db}.customer_progress FINAL)"
        )
        if checked is not None and int(checked) // 60 == int(closed):
            break
        sink = h.start_worker("sink", **sink_env)
    else:
        raise AssertionError(f"alerts evaluated up to {checked}, frozen {closed}\n{h.logs()}")

    oracle = recompute_customers(
        read_with_timestamps(h), lambda c: partition_for(c.encode(), PARTITIONS)
    )
    health_rows, at_risk, revenue, followups = h.query(
        "SELECT customer_id, conversations_opened, reopens, frt_breaches, urgent_frt_breaches, "
        "repeat_contacts, open_conversations, latest_csat, latest_nps, latest_ces, "
        "customer_value, segment FROM {db}.customer_health FINAL",
        "SELECT customer_id, reason, team, toUnixTimestamp64Micro(since), evidence, "
        "customer_value, segment FROM {db}.at_risk_customers",
        "SELECT grouping, team, segment, reason, customers, revenue, customers_without_value "
        "FROM {db}.revenue_at_risk",
        "SELECT conversation_id, event_id, survey, score, customer_id "
        "FROM {db}.feedback_followups FINAL",
    )
    # At-risk customers, reasons, teams and since: exactly the recomputation.
    got = {(c, r): (t, since, ev) for c, r, t, since, ev, _, _ in at_risk}
    want = {}
    for customer in oracle.facts:
        for name, team, since, evidence in oracle.health(customer)["reasons"]:
            want[(customer, name)] = (team, since, evidence)
    assert got == want
    assert len({c for c, _ in want}) >= 30
    # Revenue at risk now, per team / segment / reason / overall.
    want_revenue = oracle_revenue_now(oracle)
    got_revenue = {
        key_of({"grouping": g, "team": t, "segment": s, "reason": r}): (n, rev, none)
        for g, t, s, r, n, rev, none in revenue
    }
    assert set(got_revenue) == set(want_revenue)
    for key, (n, rev, none) in want_revenue.items():
        got_n, got_rev, got_none = got_revenue[key]
        assert (got_n, got_none) == (n, none), key
        assert math.isclose(got_rev, rev, rel_tol=1e-9), key
    # Health of every customer (counts, latest answers, value, segment).
    assert len(health_rows) == len(oracle.facts)
    for customer, *values in health_rows:
        h_want = oracle.health(customer)
        answer = [None if h_want[k] is None else h_want[k][0] for k in ("csat", "nps", "ces")]
        expected = [
            h_want["opened"], h_want["reopens"], h_want["breaches"], h_want["urgent"],
            h_want["repeats"], h_want["open"], *answer, h_want["value"], h_want["segment"],
        ]  # fmt: skip
        assert values == expected, customer
    # Follow-ups: every low answer once, no more.
    assert {(r[0], r[1]) for r in followups} == set(oracle.followups)
    assert len(followups) == len(oracle.followups) > 50
    # Every reason the simulator caused is found.
    reasons_of: dict[str, set[str]] = {}
    for c, r in want:
        reasons_of.setdefault(c, set()).add(r)
    found = 0
    for cp, wm in oracle.watermarks.items():
        for item in ledger.truth(wm)["customers"]:
            if partition_for(item["customer_id"].encode(), PARTITIONS) == cp:
                assert set(item["reasons"]) <= reasons_of.get(item["customer_id"], set()), item
                found += 1
    assert found >= 10
    # The risk history up to the frozen boundary: the recomputation's timelines.
    timelines = {c: oracle.timeline(c) for c in oracle.facts}
    (changes,) = h.query(
        "SELECT customer_id, toUnixTimestamp64Micro(at), at_risk, reasons, teams, "
        "customer_value, segment FROM {db}.customer_risk_changes FINAL ORDER BY customer_id, at"
    )
    stored: dict[str, list] = {}
    for c, at, risk, reasons, teams, value, segment in changes:
        if at // 60_000_000 <= int(closed):
            status = (tuple(reasons), tuple(teams), value, segment) if risk else None
            stored.setdefault(c, []).append((at, status))
    want_history = {
        c: rows
        for c, tl in timelines.items()
        if (rows := [r for r in oracle_rows(tl) if r[0] // 60_000_000 <= int(closed)])
    }
    bad = [c for c in set(stored) | set(want_history) if stored.get(c) != want_history.get(c)]
    assert not bad, [(c, stored.get(c), want_history.get(c)) for c in bad[:3]]
    # Rise alerts, evaluated live: those of the detector fed from the recomputation.
    expected: dict[str, list[int | None]] = {}
    for t in expected_transitions(timelines, int(closed)):
        entry = expected.setdefault(t.alert_id, [t.fired_at, None])
        if t.state == "resolved":
            entry[1] = t.minute
    (alerts,) = h.query(
        "SELECT alert_id, intDiv(toUnixTimestamp(fired_at), 60), "
        "intDiv(toUnixTimestamp(resolved_at), 60) FROM {db}.alerts FINAL "
        "WHERE kpi IN ('revenue_at_risk', 'customers_at_risk')"
    )
    assert {a: [f, r] for a, f, r in alerts} == expected
    assert len(expected) >= 3

"""Issue 12 done-when: a simulated month through the real pipeline, customers included.

The simulator's month (churn-prone customers, repeat contacts, surveys with comments,
duplicates, malformed and late events) goes to the real broker; real compute workers (which
also run the customer role) and the sink write ClickHouse; the compute worker is killed with
``kill -9`` while it commits, once. Then the at-risk list with its reasons, teams and
"since" times, revenue at risk per team / segment / reason / overall, customer health and the
feedback follow-ups in ClickHouse must equal an independent recomputation from the events
(``tests/customer_oracle.py``), and every reason the simulator caused must be found.
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
from tests.unit.test_customer_month import key_of, month_params, oracle_revenue_now

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
    env = {"CXPULSE_COMPUTE__BATCH_MAX_MESSAGES": "2000"}
    sink = h.start_worker("sink")
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
    assert h.stop(sink) == 0, h.logs()

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

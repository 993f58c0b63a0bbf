"""Effectively-once under failure: kill -9, restarts, rebalances and replays of real workers.

Every test ends by comparing the aggregates stored in ClickHouse with an independent
recomputation from everything in the events topic (``tests/oracle.py``): counts and
integer sums must be equal, row for row. Failure points are drawn from a seeded RNG so a
failing run can be repeated; the traps named in Faust's tracker are covered: windows lost on
rebalance (#193), offsets committed past in-flight events (#606), duplicates under
exactly-once (#323, #517), and state that never expires (#385).
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.simulator import SimulationParams, simulate
from pipeline.simulator.producer import to_jsonl
from tests.pipeline_harness import PipelineHarness
from tests.stored import compare_with_oracle

pytestmark = pytest.mark.integration


def messages(seed: int, minutes: int, per_hour: float = 600) -> list[tuple[bytes, bytes]]:
    params = SimulationParams(
        seed=seed,
        start=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        duration=timedelta(minutes=minutes),
        conversations_per_hour=per_hour,
        malformed_rate=0.01,
        duplicate_rate=0.03,
        late_rate=0.01,
    )
    return [(ev.key.encode(), ev.value) for ev in simulate(params)]


def chunks(items: list[tuple[bytes, bytes]], n: int) -> list[list[tuple[bytes, bytes]]]:
    size = -(-len(items) // n)
    return [items[i : i + size] for i in range(0, len(items), size)]


def test_kill9_compute_and_sink_at_random_moments(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(5)
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=3)
    h.cli("topics", "create")
    batches = chunks(messages(seed=11, minutes=120), 4)
    sink = h.start_worker("sink")
    compute = h.start_worker("compute")
    kills = 0
    for batch in batches:
        h.produce(batch)
        time.sleep(rng.uniform(3.0, 8.0))  # mid-processing, mid-commit, mid-flush
        victim = rng.choice(["compute", "sink", "both"])
        if victim in ("compute", "both"):
            h.kill9(compute)
            compute = h.start_worker("compute")
            kills += 1
        if victim in ("sink", "both"):
            h.kill9(sink)
            sink = h.start_worker("sink")
            kills += 1
    h.wait_drained(timeout=240)
    assert h.stop(compute) == 0, h.logs()
    assert h.stop(sink) == 0, h.logs()
    summary = compare_with_oracle(h)
    assert kills >= 4 and summary["events"] > 1000


def test_rebalance_across_workers_and_crash_of_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=4)
    h.cli("topics", "create")
    first, second, third = chunks(messages(seed=12, minutes=90), 3)
    sink = h.start_worker("sink")
    w0 = h.start_worker("compute", "0")
    h.produce(first)
    time.sleep(4)
    w1 = h.start_worker("compute", "1")  # rebalance: partitions move with their state
    h.produce(second)
    time.sleep(6)
    h.kill9(w0)  # the group rebalances again; w1 recovers w0's partitions from the log
    h.produce(third)
    h.wait_drained(timeout=240)
    assert h.stop(w1) == 0, h.logs()
    assert h.stop(sink) == 0, h.logs()
    compare_with_oracle(h)


def test_replay_of_processed_input_changes_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=2)
    h.cli("topics", "create")
    data = messages(seed=13, minutes=60, per_hour=300)
    dump = tmp_path / "events.jsonl"
    dump.write_text("".join(to_jsonl(k.decode(), v) + "\n" for k, v in data))
    h.produce(data)
    sink = h.start_worker("sink")
    compute = h.start_worker("compute")
    h.wait_drained(timeout=180)
    assert h.stop(sink) == 0, h.logs()
    totals = (
        "SELECT sum(events), sum(opened), sum(csat_responses) "
        "FROM {db}.kpi_minute WHERE grouping = 'overall'"
    )
    before = h.query(totals)[0]
    assert int(before[0][0]) > 500
    # The user replays a file of events that were already processed.
    sink = h.start_worker("sink")
    result = h.cli("replay", str(dump))
    assert json.loads(result.stdout.strip().splitlines()[-1])["sent"] == len(data)
    h.wait_drained(timeout=180)
    assert h.stop(compute) == 0, h.logs()
    assert h.stop(sink) == 0, h.logs()
    assert h.query(totals)[0] == before
    # The oracle reads the topic with the replayed copies: all duplicates or late.
    compare_with_oracle(h)


def test_expired_state_is_tombstoned(kafka_bootstrap: str, tmp_path: Path) -> None:
    """State is deleted once the partition's event time passes the retention (#385)."""
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=1)
    h.cli("topics", "create")
    t0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

    def event(conv: str, eid: str, kind: str, at: datetime, **extra: object) -> tuple[bytes, bytes]:
        body = {
            "event_id": eid,
            "type": kind,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            "conversation_id": conv,
            "schema_version": 1,
            **extra,
        }
        return conv.encode(), json.dumps(body).encode()

    old = [event("old-1", "e1", "conversation.opened", t0, channel="chat", team="billing")]
    later = t0 + timedelta(days=8)
    fresh = [
        event(
            f"new-{i}",
            "e1",
            "conversation.opened",
            later + timedelta(seconds=i),
            channel="chat",
            team="billing",
        )
        for i in range(30)
    ]
    h.produce(old + fresh)
    compute = h.start_worker("compute", CXPULSE_KPI__STATE_SWEEP_EVERY_EVENTS="10")
    sink = h.start_worker("sink")
    h.wait_drained(timeout=120)
    assert h.stop(compute) == 0, h.logs()
    assert h.stop(sink) == 0, h.logs()
    consumer = KafkaConsumer(bootstrap_servers=h.bootstrap, enable_auto_commit=False)
    tp = TopicPartition(h.topics["conversation_log"], 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    tombstones = []
    while consumer.position(tp) < end:
        for m in consumer.poll(timeout_ms=1000).get(tp, []):
            if m.value is None:
                tombstones.append(m.key)
    consumer.close()
    assert tombstones == [b"old-1"]
    compare_with_oracle(h)

"""The ClickHouse sink against the real engine (chDB), with fault-injecting store doubles."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.core.config import Settings
from pipeline.core.metrics import Metrics
from sinks.base import SinkBackpressureError, SinkError
from sinks.clickhouse.kpi_sink import KpiSink
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.store import Capabilities, ClickHouseStore, StoreUnavailable
from sinks.runner import SinkRunner, SinkRunnerConfig
from streams.conversation import ConversationState, fact_fields
from streams.deltas import BatchDelta

TOPICS = SimpleNamespace(deltas="deltas", dead_letter="dlq", late_events="late")
DLQ, LATE, DELTAS = "dlq", "late", "deltas"
MINUTE = 29_400_000  # some minute since the epoch
NOW_MS = int(time.time() * 1000)  # side tables have a TTL on the source time: keep it recent


@dataclass
class Rec:
    """Has the shape of aiokafka's ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = NOW_MS


def feed(sink: KpiSink, records: list[Rec]) -> None:
    for record in records:
        sink.add(record)


class FlakyStore(ClickHouseStore):
    """Refuses every call while ``down`` (a ClickHouse server that is unreachable)."""

    def __init__(self, client: Any, database: str) -> None:
        super().__init__(client, database, Capabilities(embedded=True))
        self.down = False
        self.refused = 0

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            self.refused += 1
            raise StoreUnavailable(f"ClickHouse {what} failed: connection refused")
        return super()._run(what, fn, *args, **kwargs)


class BrokenStore(FlakyStore):
    """Fails with a non-transient error (a schema problem): retrying cannot help."""

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if what == "insert":
            raise ValueError("Code: 16. DB::Exception: No such column frt_sum_us")
        return super()._run(what, fn, *args, **kwargs)


def sink_factory(store: ClickHouseStore, registry: CollectorRegistry) -> KpiSink:
    migrate(store, minute_ttl_days=400, side_ttl_days=30)
    return KpiSink(
        store,
        topics=TOPICS,
        allowed_lateness_seconds=600,
        metrics=Metrics.create(registry),
        retry_after=0.01,
    )


def delta(partition: int, offset: int, team: str, inc: dict[str, int], lag: int = 0) -> list[Rec]:
    """One delta message: one event of ``team`` in MINUTE, processed at offset ``offset``."""
    batch = BatchDelta(partition)
    batch.add((MINUTE, lag, team, "chat", "emea", "normal", "smb"), inc)
    batch.count(NOW_MS, "accepted")  # arrival time: recent (the table's TTL)
    state = ConversationState(team=team, last_event_us=MINUTE * 60_000_000, last_offset=offset)
    batch.facts.append(fact_fields(b"conv", partition, state))
    body, facts = batch.encode(
        first_offset=offset,
        offset=offset,
        watermark_us=MINUTE * 60_000_000,
        progress_us=MINUTE * 60_000_000 + offset,
    )
    return [Rec(DELTAS, partition, offset, None, body), Rec(DELTAS, partition, offset, None, facts)]


def overall(store: ClickHouseStore) -> tuple[int, int, int]:
    rows = store.query(
        f"SELECT sum(events), sum(opened), sum(frt_count) FROM {store.database}.kpi_minute "
        "WHERE grouping = 'overall'"
    )
    return tuple(int(v or 0) for v in rows[0])  # type: ignore[return-value]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_outage_keeps_the_batch_and_writes_it_once_back(
    chdb_client: Any, chdb_database: str, registry: CollectorRegistry
) -> None:
    store = FlakyStore(chdb_client, chdb_database)
    sink = sink_factory(store, registry)
    for offset in range(5):
        feed(sink, delta(0, offset, "billing", {"events": 1, "opened": 1}))
    store.down = True
    for _ in range(3):
        with pytest.raises(SinkBackpressureError):
            sink.flush()
    assert sink.has_pending
    store.down = False
    assert sink.flush() > 0
    assert overall(store) == (5, 5, 0)
    # A restarted sink re-reads the same contributions: every row already holds them.
    again = sink_factory(FlakyStore(chdb_client, chdb_database), CollectorRegistry())
    for offset in range(5):
        feed(again, delta(0, offset, "billing", {"events": 1, "opened": 1}))
    feed(again, delta(0, 5, "billing", {"events": 1, "frt": 2_000_000}))
    again.flush()
    assert overall(store) == (6, 5, 1)
    verdicts = store.query(
        f"SELECT sum(accepted), max(version) FROM {store.database}.event_verdicts FINAL"
    )
    assert verdicts == [(6, 5)]
    progress = store.query(
        f"SELECT source_partition, version FROM {store.database}.source_progress FINAL"
    )
    assert progress == [(0, MINUTE * 60_000_000 + 5)]
    facts = store.query(
        "SELECT conversation_id, version, team, status "
        f"FROM {store.database}.conversation_facts FINAL"
    )
    assert facts == [("conv", 5, "billing", "open")]
    assert registry.get_sample_value("cxpulse_sink_flush_failures_total") == 3


def test_outage_during_the_insert_after_the_fold(
    chdb_client: Any, chdb_database: str, registry: CollectorRegistry
) -> None:
    """Contributions are folded once even if the insert that follows fails."""
    store = FlakyStore(chdb_client, chdb_database)
    sink = sink_factory(store, registry)
    feed(sink, delta(1, 10, "tech", {"events": 1, "opened": 1}))
    original_insert = store.insert

    def failing_insert(*args: Any) -> int:
        store.down = True
        return original_insert(*args)

    store.insert = failing_insert  # type: ignore[method-assign]
    with pytest.raises(SinkBackpressureError):
        sink.flush()
    store.insert = original_insert  # type: ignore[method-assign]
    store.down = False
    sink.flush()
    assert overall(store) == (1, 1, 0)


class FakeConsumer:
    """The consumer calls SinkRunner._flush makes while it waits (pause, poll, resume)."""

    def __init__(self) -> None:
        self.paused: set[str] = set()
        self.polls = 0

    def assignment(self) -> set[str]:
        return {"tp0", "tp1"}

    def pause(self, *tps: str) -> None:
        self.paused.update(tps)

    def resume(self, *tps: str) -> None:
        self.paused.difference_update(tps)

    async def getmany(self, timeout_ms: int = 0) -> dict[str, list[Any]]:
        self.polls += 1
        await asyncio.sleep(timeout_ms / 1000)
        return {}


def test_an_outage_pauses_the_partitions_then_resumes(
    chdb_client: Any, chdb_database: str, registry: CollectorRegistry
) -> None:
    store = FlakyStore(chdb_client, chdb_database)
    sink = sink_factory(store, registry)
    feed(sink, delta(0, 1, "billing", {"events": 1}))
    store.down = True
    settings = Settings()
    runner = SinkRunner(
        settings,
        sink,
        SinkRunnerConfig(
            group_id="g", topics=(DELTAS,), partition_topic=DELTAS,
            retry_initial_seconds=0.01, retry_max_seconds=0.05,
        ),
        sink.metrics,
    )  # fmt: skip
    consumer = FakeConsumer()
    seen: list[tuple[float | None, set[str]]] = []

    async def scenario() -> int:
        async def recover() -> None:
            await asyncio.sleep(0.2)
            seen.append((registry.get_sample_value("cxpulse_sink_paused"), set(consumer.paused)))
            store.down = False

        task = asyncio.create_task(recover())
        written = await runner._flush(consumer)  # type: ignore[arg-type]
        await task
        return written

    assert asyncio.run(scenario()) > 0
    assert seen == [(1.0, {"tp0", "tp1"})]  # paused, and every partition held back
    assert consumer.paused == set() and consumer.polls >= 2  # resumed; the group kept us
    assert registry.get_sample_value("cxpulse_sink_paused") == 0.0
    assert store.refused >= 2
    assert overall(store) == (1, 0, 0)


def test_fatal_errors_are_not_retried(chdb_client: Any, chdb_database: str) -> None:
    store = BrokenStore(chdb_client, chdb_database)
    sink = sink_factory(store, CollectorRegistry())
    feed(sink, delta(0, 1, "billing", {"events": 1}))
    with pytest.raises(SinkError):
        sink.flush()


def test_side_records_are_keyed_by_source_position(
    chdb_client: Any, chdb_database: str, registry: CollectorRegistry
) -> None:
    store = FlakyStore(chdb_client, chdb_database)
    sink = sink_factory(store, registry)
    headers = {
        "cxpulse.reason": b"invalid_json",
        "cxpulse.source.topic": b"events",
        "cxpulse.source.partition": b"2",
        "cxpulse.source.offset": b"41",
    }
    for copy in range(3):  # a re-sent dead letter replaces itself
        sink.add(Rec(DLQ, 2, copy, b"k", b"not json", list(headers.items())))
    raw = {**headers, "cxpulse.reason": b"invalid_utf8", "cxpulse.source.offset": b"42"}
    sink.add(Rec(DLQ, 2, 9, b"k", b"\xff\xfe{", list(raw.items())))
    late = {**headers, "cxpulse.reason": b"late", "cxpulse.lateness.us": b"900000000"}
    sink.add(Rec(LATE, 0, 0, b"conv-9", b"{}", list(late.items())))
    sink.flush()
    db = chdb_database
    dead = store.query(
        f"SELECT reason, source_offset, payload FROM {db}.dead_letters FINAL "
        "WHERE reason != 'invalid_utf8'"
    )
    kept = store.query(f"SELECT hex(payload) FROM {db}.dead_letters FINAL WHERE source_offset = 42")
    assert kept == [("FFFE7B",)]  # the original bytes, not a lossy decoding
    late = store.query(f"SELECT conversation_id, lateness_seconds FROM {db}.late_events FINAL")
    assert dead == [("invalid_json", 41, "not json")]
    facts = store.query(f"SELECT count() FROM {db}.conversation_facts")
    assert facts == [(0,)]
    assert late == [("conv-9", 900.0)]

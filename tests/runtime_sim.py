"""The compute role's runtime without a broker: the real logic, stores and PartitionRunner,
over an in-memory Kafka whose transactions can crash at any step.

``FakeKafka`` keeps topics as lists, committed group offsets, and applies a transaction's
records and offsets atomically at commit. ``CrashingProducer`` has the transactional API
``PartitionRunner`` uses and raises :class:`Crash` where a plan says: inside ``process``
(before any send), after some sends, just before the commit, or just after it (before the
local store is written). A crash kills the "process": the driver drops the runner without
any cleanup, keeps the disk (a RocksDB store, reopened) or loses memory (a new memory
store), restores the store from the changelog as the runtime does, and resumes at the
committed offset.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from pipeline.core.metrics import Metrics
from streams.compute import ComputeConfig, ConversationLogic
from streams.runtime.partition import PartitionRunner
from streams.runtime.stores import PartitionStore, open_store

US = 1_000_000
SLA_US = {"urgent": 300 * US, "high": 900 * US, "normal": 3600 * US, "low": 14400 * US}
EVENTS, LOG, DELTAS, DEAD, LATE = "events", "log", "deltas", "dead", "late"
GROUP = "sim-compute"
CRASH_POINTS = ("process", "mid_send", "before_commit", "after_commit")


class Crash(Exception):
    """The process died here."""


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: Any = None


@dataclass
class FakeKafka:
    topics: dict[str, dict[int, list[Record]]] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)

    def partition(self, topic: str, p: int) -> list[Record]:
        return self.topics.setdefault(topic, {}).setdefault(p, [])


class _Meta:
    def __init__(self, offset: int) -> None:
        self.offset = offset


@dataclass
class Message:
    """Has the shape of aiokafka's ConsumerRecord (what the logic reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Sequence[Any] = ()


class CrashingProducer:
    """The transactional producer API PartitionRunner uses, over FakeKafka."""

    def __init__(self, kafka: FakeKafka, crash: Callable[[str], bool]) -> None:
        self.kafka = kafka
        self.crash = crash
        self._pending: list[tuple[str, int, Record, asyncio.Future[Any]]] = []
        self._offsets: dict[int, int] = {}

    def transaction(self) -> CrashingProducer:
        return self

    async def __aenter__(self) -> None:
        self._pending, self._offsets = [], {}

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is not None:  # aborted: nothing becomes visible
            self._pending, self._offsets = [], {}
            return False
        if self.crash("before_commit"):
            raise Crash("before_commit")
        for topic, p, record, future in self._pending:
            log = self.kafka.partition(topic, p)
            log.append(record)
            future.set_result(_Meta(len(log) - 1))
        self.kafka.committed.update(self._offsets)
        self._pending, self._offsets = [], {}
        if self.crash("after_commit"):
            raise Crash("after_commit")
        return False

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int,
        headers: Any = None,
    ) -> asyncio.Future[Any]:
        if self.crash("mid_send"):
            raise Crash("mid_send")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((topic, partition, Record(key, value, headers), future))
        return future

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group: str
    ) -> None:
        for tp, offset in offsets.items():
            self._offsets[tp.partition] = offset


class CrashPlan:
    """Crash at the n-th time a point is reached (points counted across the whole run)."""

    def __init__(self, plan: dict[str, set[int]] | None = None) -> None:
        self.plan = plan or {}
        self.seen: dict[str, int] = {}
        self.crashes = 0

    def __call__(self, point: str) -> bool:
        n = self.seen.get(point, 0)
        self.seen[point] = n + 1
        hit = n in self.plan.get(point, set())
        self.crashes += hit
        return hit


def compute_config(
    allowed_lateness_us: int = 600 * US, retention_us: int = 7 * 86_400 * US
) -> ComputeConfig:
    return ComputeConfig(
        events_topic=EVENTS,
        deltas_topic=DELTAS,
        dead_letter_topic=DEAD,
        late_topic=LATE,
        allowed_lateness_us=allowed_lateness_us,
        retention_us=retention_us,
        sla_us=dict(SLA_US),
        sweep_every_events=50,
    )


class _CrashingLogic(ConversationLogic):
    def __init__(self, crash: Callable[[str], bool], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._crash = crash

    def process(self, messages: Any, state: Any) -> Any:
        if self._crash("process"):
            raise Crash("process")
        return super().process(messages, state)


def restore_from(kafka: FakeKafka, p: int, store: PartitionStore) -> None:
    """What streams.runtime.recovery does, over FakeKafka."""
    log = kafka.partition(LOG, p)
    start = store.changelog_offset() + 1
    if start > len(log):
        store.clear()
        start = 0
    for offset in range(start, len(log)):
        record = log[offset]
        store.apply({record.key: record.value}, offset)  # type: ignore[dict-item]


async def run_partition(
    kafka: FakeKafka,
    p: int,
    messages: Sequence[tuple[int, bytes]],
    *,
    store_kind: str,
    state_dir: Path,
    crash: CrashPlan,
    rng: random.Random,
    config: ComputeConfig,
    max_batch: int = 40,
) -> int:
    """Process one partition's ``(offset, value)`` messages to the end; returns restarts."""
    restarts = 0
    metrics = Metrics.create(CollectorRegistry())
    store: PartitionStore = open_store(store_kind, state_dir / f"p{p}")
    ordered = sorted(messages)
    while True:
        restore_from(kafka, p, store)
        logic = _CrashingLogic(crash, p, config, metrics)
        logic.open(store)
        runner = PartitionRunner(
            tp=TopicPartition(EVENTS, p),
            group_id=GROUP,
            changelog_topic=LOG,
            logic=logic,
            store=store,
            producer=CrashingProducer(kafka, crash),
            metrics=metrics,
            role="compute",
        )
        committed = kafka.committed.get(p, 0)
        i = next((n for n, (o, _) in enumerate(ordered) if o >= committed), len(ordered))
        try:
            while i < len(ordered):
                size = rng.randint(1, max_batch)
                batch = [
                    Message(EVENTS, p, o, None, raw, 1_700_000_000_000 + o)
                    for o, raw in ordered[i : i + size]
                ]
                i += len(batch)
                await runner.submit(batch)
                error = runner.failure()
                if error is not None:
                    raise error
            error = await runner.drain(timeout=5)
            if error is not None:
                raise error
            store.close()
            return restarts
        except Crash:
            # The process is gone: no drain, no cleanup. Disk survives; memory does not.
            await runner.discard()
            restarts += 1
            if store_kind == "memory":
                store = open_store("memory", state_dir)
            else:
                store.close()
                store = open_store(store_kind, state_dir / f"p{p}")


def run_compute(
    stream: Sequence[tuple[int, int, bytes]],
    *,
    store_kind: str = "memory",
    state_dir: Path | None = None,
    crash: CrashPlan | None = None,
    seed: int = 0,
    config: ComputeConfig | None = None,
    kafka: FakeKafka | None = None,
    max_batch: int = 40,
) -> tuple[FakeKafka, int]:
    """All partitions of ``stream`` ``(partition, offset, value)``; returns (kafka, restarts)."""
    kafka = kafka or FakeKafka()
    crash = crash or CrashPlan()
    rng = random.Random(seed)
    by_partition: dict[int, list[tuple[int, bytes]]] = {}
    for p, o, raw in stream:
        by_partition.setdefault(p, []).append((o, raw))
    restarts = 0

    async def main() -> None:
        nonlocal restarts
        for p, msgs in sorted(by_partition.items()):
            restarts += await run_partition(
                kafka,
                p,
                msgs,
                store_kind=store_kind,
                state_dir=state_dir or Path("/nonexistent"),
                crash=crash,
                rng=rng,
                config=config or compute_config(),
                max_batch=max_batch,
            )

    asyncio.run(main())
    return kafka, restarts

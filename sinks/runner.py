"""Drive a sink from Kafka in batches: add, flush, and only then commit the offsets.

Offsets advance only for records whose effects the destination has (flush succeeded). While
the destination refuses writes (``SinkBackpressureError``) the runner keeps its batch,
pauses every assigned partition and retries with exponential backoff, still polling so the
group keeps it (no rebalance storm on a long outage); memory stays bounded and it catches
up once the destination is back. Any other error ends the process before a commit
(crash-only, exit 70): the restarted sink re-reads from the last commit, and the sink's
versioned, idempotent writes make the re-read harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from pipeline.core.config import Settings
from pipeline.core.logs import kv
from pipeline.core.service import MainTaskService
from sinks.base import BaseSink, SinkBackpressureError
from streams.failure import die
from streams.runtime.clients import client_kwargs
from streams.runtime.role import RebalanceHooks

__all__ = ["SinkRunner", "SinkRunnerConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkRunnerConfig:
    group_id: str
    topics: tuple[str, ...]
    partition_topic: str  # whose partition numbers are the source partitions the sink owns
    instance_id: str | None = None
    batch_max_messages: int = 5000
    flush_interval_seconds: float = 1.0
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    revoke_timeout_seconds: float = 30.0


class SinkRunner(MainTaskService):
    """Consumes ``config.topics`` into ``sink``; ``after_flush`` runs after each commit."""

    stop_timeout_seconds = 90.0  # a flush may be retrying against ClickHouse
    task_name = "cxpulse-sink"

    def __init__(
        self,
        settings: Settings,
        sink: BaseSink[Any],
        config: SinkRunnerConfig,
        metrics: Any,
        *,
        forget_partition: Callable[[int], None] | None = None,
        after_flush: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.sink = sink
        self.cfg = config
        self.metrics = metrics
        self.forget_partition = forget_partition
        self.after_flush = after_flush
        self.consumer: AIOKafkaConsumer | None = None
        self._offsets: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._buffered = 0
        self._first_add = 0.0
        self._marker_check = 0.0
        self._lag_at = 0.0
        self._lock = asyncio.Lock()
        self.assigned_once = False
        self.rebalancing = False
        self.loop_turned_at = 0.0
        self._ready = metrics.worker_ready.labels("sink")
        self._ready.set(0)

    @property
    def ready(self) -> bool:
        return (
            self.assigned_once
            and not self.rebalancing
            and time.monotonic() - self.loop_turned_at < 60.0
        )

    async def _main(self) -> None:
        cfg = self.cfg
        try:
            consumer = self.consumer = AIOKafkaConsumer(
                group_id=cfg.group_id,
                group_instance_id=cfg.instance_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                session_timeout_ms=10_000,
                heartbeat_interval_ms=2_000,
                rebalance_timeout_ms=60_000,
                **client_kwargs(self.settings, f"{cfg.group_id}-{cfg.instance_id or 'sink'}"),
            )
            consumer.subscribe(
                list(cfg.topics), listener=RebalanceHooks(self._on_revoked, self._on_assigned)
            )
            await consumer.start()
            log.info("sink started", extra=kv(group=cfg.group_id, topics=",".join(cfg.topics)))
            while not self._stopping:
                room = max(cfg.batch_max_messages - self._buffered, 1)
                data = await consumer.getmany(timeout_ms=100, max_records=room)
                self.loop_turned_at = time.monotonic()
                async with self._lock:
                    self._add(data)
                    if self._due():
                        await self._flush_and_commit(consumer)
                    elif not self._buffered and time.monotonic() - self._marker_check >= 1.0:
                        self._marker_check = time.monotonic()
                        await self._commit_markers(consumer)
                if time.monotonic() - self._lag_at >= 1.0:
                    self._lag_at = time.monotonic()
                    await self._export_lag(consumer)
                self._ready.set(1 if self.ready else 0)
            async with self._lock:
                await self._flush_and_commit(consumer)  # graceful stop: nothing held back
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die(log, "sink", exc)
        finally:
            if self.consumer is not None:
                with contextlib.suppress(Exception):
                    await self.consumer.stop()
            self._ready.set(0)

    def _add(self, data: dict[TopicPartition, list[Any]]) -> None:
        add = self.sink.add
        for tp, records in data.items():
            if not records:
                continue
            if not self._buffered:
                self._first_add = time.monotonic()
            for record in records:
                add(record)
            self._buffered += len(records)
            self._offsets[tp] = records[-1].offset + 1

    def _due(self) -> bool:
        if self._buffered >= self.cfg.batch_max_messages:
            return True
        return bool(self._buffered) and (
            time.monotonic() - self._first_add >= self.cfg.flush_interval_seconds
        )

    async def _flush_and_commit(self, consumer: AIOKafkaConsumer) -> None:
        if not self._offsets and not getattr(self.sink, "has_pending", False):
            await self._commit_markers(consumer)
            return
        await self._flush(consumer)
        # The position, not last offset + 1: it also steps over transaction markers, so a
        # drained sink shows a lag of 0.
        offsets = {tp: await consumer.position(tp) for tp in self._offsets}
        self._offsets = {}
        self._buffered = 0
        self._committed.update(offsets)
        if offsets:
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions: their new owner re-reads what we wrote,
                # which the sink's versioned writes make harmless.
                log.warning("sink offsets not committed", extra=kv(error=repr(exc)[:200]))
        if self.after_flush is not None:
            result = self.after_flush()
            if asyncio.iscoroutine(result):
                await result

    async def _export_lag(self, consumer: AIOKafkaConsumer) -> None:
        gauge = self.metrics.consumer_lag
        for tp in consumer.assignment():
            lso = consumer.last_stable_offset(tp)
            if lso is None:
                lso = consumer.highwater(tp)
            if lso is not None:
                position = await consumer.position(tp)
                gauge.labels("sink", tp.topic, str(tp.partition)).set(max(lso - position, 0))

    async def _commit_markers(self, consumer: AIOKafkaConsumer) -> None:
        """Commit positions that moved over transaction markers only (nothing to flush)."""
        moved = {}
        for tp in consumer.assignment():
            position = await consumer.position(tp)
            if self._committed.get(tp, -1) < position:
                moved[tp] = position
        if moved:
            with contextlib.suppress(CommitFailedError, KafkaError):
                await consumer.commit(moved)
                self._committed.update(moved)

    async def _flush(self, consumer: AIOKafkaConsumer) -> int:
        loop = asyncio.get_running_loop()
        delay = self.cfg.retry_initial_seconds
        paused_at: float | None = None
        while True:
            started = time.perf_counter()
            try:
                written: int = await loop.run_in_executor(None, self.sink.flush)
            except SinkBackpressureError as exc:
                if paused_at is None:
                    paused_at = time.monotonic()
                    consumer.pause(*consumer.assignment())
                    self.metrics.sink_paused.set(1)
                log.warning(
                    "clickhouse unavailable, consumption paused",
                    extra=kv(retry_in_s=round(delay, 2), cause=exc.cause[:200]),
                )
                # Keep polling (nothing arrives: paused) so the group keeps this member.
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and not self._stopping:
                    await consumer.getmany(timeout_ms=min(500, int(delay * 1000)))
                delay = min(delay * 2, self.cfg.retry_max_seconds)
                continue
            self.metrics.sink_flush_seconds.observe(time.perf_counter() - started)
            if paused_at is not None:
                consumer.resume(*consumer.assignment())
                self.metrics.sink_paused.set(0)
                log.info(
                    "clickhouse back, consumption resumed",
                    extra=kv(paused_s=round(time.monotonic() - paused_at, 1)),
                )
            return written

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned_once = True
        self.rebalancing = False

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.rebalancing = True
        consumer = self.consumer
        if consumer is None:
            return
        async with self._lock:
            try:
                await asyncio.wait_for(
                    self._flush_and_commit(consumer), timeout=self.cfg.revoke_timeout_seconds
                )
            except TimeoutError:
                log.warning("sink flush on revoke timed out; the new owner re-reads the batch")
            if self.forget_partition is not None:
                for tp in revoked:
                    if tp.topic == self.cfg.partition_topic:
                        self.forget_partition(tp.partition)

"""The ClickHouse sink: minute deltas -> minute rows, plus facts, progress and side tables.

Everything it writes comes from the delta messages and the side topics; it never decodes
conversation states (the compute role ships each changed conversation's facts row in the
batch's deltas).

``add`` parses and buffers (no I/O); ``flush`` (1) loads the stored rows of minutes it has
not seen, (2) folds the buffered deltas in, skipping any a row already holds (version
check, see ``streams.rollup``), (3) upserts every changed row with its new version, then
the conversation facts, verdict counts and side tables, and last the event-time progress
of the partitions (so a reader that sees a partition's progress also sees its rows). Each
step can fail and be retried; rows are full state, so a repeated insert is harmless
(``ReplacingMergeTree(version)``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Protocol

from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics, observe_many
from sinks.base import BaseSink, SinkBackpressureError, SinkError
from sinks.clickhouse import rows as R
from sinks.clickhouse.store import Store, StoreUnavailable
from streams.deltas import VERDICTS, DeltaMessage, decode_delta
from streams.rollup import MinuteRollup, StoredRowData

__all__ = ["KpiSink", "SinkRecord", "SinkTopics"]

log = logging.getLogger(__name__)


class SinkRecord(Protocol):
    """What the sink reads of a Kafka record (aiokafka's ConsumerRecord has this shape)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    timestamp: int  # milliseconds


class SinkTopics(Protocol):
    deltas: str
    conversation_log: str
    dead_letter: str
    late_events: str


class KpiSink(BaseSink[SinkRecord]):
    def __init__(
        self,
        store: Store,
        *,
        topics: Any,
        allowed_lateness_seconds: int,
        metrics: Metrics,
        retry_after: float = 1.0,
    ) -> None:
        self.store = store
        self.topics = topics
        self.metrics = metrics
        self.retry_after = retry_after
        self.rollup = MinuteRollup()
        self._deltas: list[DeltaMessage] = []
        self._latency: list[tuple[int, int]] = []  # (event Kafka ms, count) awaiting a write
        self._facts: dict[str, tuple[Any, ...]] = {}  # conversation -> row (newest version)
        self._dead: list[tuple[Any, ...]] = []
        self._late: list[tuple[Any, ...]] = []
        self._progress: dict[int, tuple[Any, ...]] = {}  # partition -> row (newest)
        self._verdicts: dict[tuple[int, int], list[int]] = {}  # (p, minute) -> counts+version
        self._verdicts_dirty: set[tuple[int, int]] = set()
        self._verdicts_loaded: set[tuple[int, int]] = set()
        self._max_minute: dict[int, int] = {}
        self._keep_minutes = allowed_lateness_seconds // 60 + 3
        self._evicted_at = 0.0
        self._partials_table = f"{store.database}.kpi_minute_partials"

    # -- add: parse and buffer, no I/O --

    def add(self, record: SinkRecord) -> None:
        topic = record.topic
        t = self.topics
        if topic == t.deltas:
            self._add_delta(record)
        elif topic in (t.dead_letter, t.late_events):
            self._add_side(record)

    def _add_delta(self, record: SinkRecord) -> None:
        if not record.value:
            return
        try:
            delta = decode_delta(record.value)
        except (ValueError, KeyError, TypeError) as exc:
            # Not written by cxpulse: skipping it loses nothing of ours; say so loudly.
            log.error(
                "foreign record on the deltas topic skipped",
                extra=kv(partition=record.partition, offset=record.offset, error=str(exc)),
            )
            return
        self._deltas.append(delta)
        self._latency.extend(delta.latency)
        facts = self._facts
        for fields in delta.facts:
            key, offset = fields[0], fields[2]
            known = facts.get(key)
            if known is None or known[2] < offset:
                facts[key] = R.fact_row(fields)
        p = delta.partition
        if delta.watermark_us is not None:
            m = delta.watermark_us // 60_000_000
            if m > self._max_minute.get(p, -1):
                self._max_minute[p] = m
        if delta.progress_us is not None:
            current = self._progress.get(p)
            if current is None or current[-1] <= delta.progress_us:
                wm = delta.watermark_us if delta.watermark_us is not None else delta.progress_us
                self._progress[p] = (
                    p,
                    R.utc(wm),
                    R.utc(delta.progress_us),
                    1 if delta.idle else 0,
                    delta.offset,
                    delta.progress_us,
                )

    def _add_side(self, record: SinkRecord) -> None:
        h = {k: v for k, v in (record.headers or ())}
        payload = record.value or b""
        try:
            source = (
                h["cxpulse.source.topic"].decode(),
                int(h["cxpulse.source.partition"]),
                int(h["cxpulse.source.offset"]),
            )
        except (KeyError, ValueError):
            # Written by something else: keep it, identified by its own position.
            source = (record.topic, record.partition, record.offset)
        when = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
        # ClickHouse String columns hold bytes: the original message is kept unchanged.
        key = record.key or b""
        if record.topic == self.topics.dead_letter:
            reason = h.get("cxpulse.reason", b"unknown").decode()
            self._dead.append((*source, when, reason, key, payload))
        else:
            lateness = int(h.get("cxpulse.lateness.us", b"0")) / 1e6
            self._late.append((*source, when, key, lateness, payload))

    # -- flush: load, fold, upsert --

    def flush(self) -> int:
        try:
            self._fold()
            written = self._write_partials()
            written += self._write_facts()
            written += self._write_verdicts()
            written += self._write_side()
            written += self._write_progress()
        except StoreUnavailable as exc:
            self.metrics.sink_flush_failures.inc()
            raise SinkBackpressureError(self.retry_after, str(exc)) from exc
        except SinkBackpressureError:
            self.metrics.sink_flush_failures.inc()
            raise
        except Exception as exc:
            self.metrics.sink_flush_failures.inc()
            # A server that closed the connection is transient; anything else is a bug or
            # a schema problem that retrying cannot fix.
            if "Connection" in type(exc).__name__ or "connection" in str(exc).lower():
                raise SinkBackpressureError(self.retry_after, str(exc)) from exc
            raise SinkError(f"ClickHouse write failed: {exc}") from exc
        self._evict()
        self.metrics.sink_cached_partials.set(len(self.rollup))
        if self._latency:
            now_ms = time.time() * 1000
            histogram = self.metrics.visibility_latency
            for ts, n in self._latency:
                observe_many(histogram, max(now_ms - ts, 0.0) / 1000, n)
            self._latency.clear()
        return written

    def _fold(self) -> None:
        if not self._deltas:
            return
        pairs = {(d.partition, cell[0]) for d in self._deltas for cell, _ in d.cells}
        missing = self.rollup.missing(pairs)
        if missing:
            self.rollup.install(missing, self._load(missing))
        self._load_verdicts(
            {(d.partition, m) for d in self._deltas for m, _ in d.verdicts} - self._verdicts_loaded
        )
        applied = skipped = 0
        for delta in self._deltas:
            a, s = self.rollup.apply(delta.partition, delta.offset, delta.cells)
            applied += a
            skipped += s
            for minute, counts in delta.verdicts:
                key = (delta.partition, minute)
                row = self._verdicts.get(key)
                if row is None:
                    row = self._verdicts[key] = [0] * len(VERDICTS) + [-1]
                if delta.offset > row[-1]:
                    for i, n in enumerate(counts):
                        row[i] += n
                    row[-1] = delta.offset
                    self._verdicts_dirty.add(key)
        self._deltas.clear()
        self.metrics.sink_contributions.labels("applied").inc(applied)
        if skipped:
            self.metrics.sink_contributions.labels("skipped").inc(skipped)

    def _load(self, pairs: set[tuple[int, int]]) -> list[StoredRowData]:
        by_partition: dict[int, list[int]] = defaultdict(list)
        for p, m in pairs:
            by_partition[p].append(m)
        cols = ", ".join(R.PARTIAL_INSERT_COLUMNS)
        out = []
        for p, minutes in by_partition.items():
            stamps = ", ".join(str(m * 60) for m in sorted(minutes))
            rows = self.store.query(
                f"SELECT {cols} FROM {self._partials_table} FINAL "
                f"WHERE source_partition = {int(p)} AND toUnixTimestamp(minute) IN ({stamps})"
            )
            out.extend(R.row_to_stored(row) for row in rows)
        return out

    def _load_verdicts(self, pairs: set[tuple[int, int]]) -> None:
        if not pairs:
            return
        by_partition: dict[int, list[int]] = defaultdict(list)
        for p, m in pairs:
            by_partition[p].append(m)
        for p, minutes in by_partition.items():
            stamps = ", ".join(str(m * 60) for m in sorted(minutes))
            rows = self.store.query(
                f"SELECT {', '.join(R.VERDICT_COLUMNS)} FROM {self.store.database}."
                f"event_verdicts FINAL WHERE source_partition = {int(p)} "
                f"AND toUnixTimestamp(minute) IN ({stamps})"
            )
            for minute, _, *counts, version in rows:
                self._verdicts[(p, R.minute_number(minute))] = [*map(int, counts), int(version)]
        self._verdicts_loaded |= pairs

    def _write_partials(self) -> int:
        dirty = self.rollup.dirty()
        if not dirty:
            return 0
        columns = R.partial_columns(dirty)
        count = self.store.insert("kpi_minute_partials", columns, R.PARTIAL_INSERT_COLUMNS)
        self.rollup.mark_clean(k for k, _ in dirty)
        self.metrics.sink_rows.labels("kpi_minute_partials").inc(count)
        return count

    def _write_facts(self) -> int:
        if not self._facts:
            return 0
        rows = list(self._facts.values())
        columns = list(zip(*rows, strict=True))
        count = self.store.insert("conversation_facts", columns, R.FACT_COLUMNS)
        self._facts.clear()
        self.metrics.sink_rows.labels("conversation_facts").inc(count)
        return count

    def _write_verdicts(self) -> int:
        if not self._verdicts_dirty:
            return 0
        rows = [
            (R.minute_dt(m), p, *self._verdicts[(p, m)]) for p, m in sorted(self._verdicts_dirty)
        ]
        count = self.store.insert(
            "event_verdicts", list(zip(*rows, strict=True)), R.VERDICT_COLUMNS
        )
        self._verdicts_dirty.clear()
        self.metrics.sink_rows.labels("event_verdicts").inc(count)
        return count

    def _write_side(self) -> int:
        written = 0
        side = ("source_topic", "source_partition", "source_offset", "source_time")
        if self._dead:
            cols = (*side, "reason", "kafka_key", "payload")
            written += self.store.insert("dead_letters", list(zip(*self._dead, strict=True)), cols)
            self.metrics.sink_rows.labels("dead_letters").inc(len(self._dead))
            self._dead.clear()
        if self._late:
            cols = (*side, "conversation_id", "lateness_seconds", "payload")
            written += self.store.insert("late_events", list(zip(*self._late, strict=True)), cols)
            self.metrics.sink_rows.labels("late_events").inc(len(self._late))
            self._late.clear()
        return written

    def _write_progress(self) -> int:
        if not self._progress:
            return 0
        rows = list(self._progress.values())
        count = self.store.insert(
            "source_progress", list(zip(*rows, strict=True)), R.PROGRESS_COLUMNS
        )
        self._progress.clear()
        return count

    def _evict(self) -> None:
        # A scan of the working set: every 10 s is enough to keep it bounded.
        now = time.monotonic()
        if now - self._evicted_at < 10.0:
            return
        self._evicted_at = now
        for p, max_minute in self._max_minute.items():
            cutoff = max_minute - self._keep_minutes
            dropped = self.rollup.evict_before(p, cutoff)
            if dropped:
                log.debug("evicted rows", extra=kv(partition=p, rows=dropped))
            old = [k for k in self._verdicts if k[0] == p and k[1] < cutoff]
            for k in old:
                if k not in self._verdicts_dirty:
                    del self._verdicts[k]
                    self._verdicts_loaded.discard(k)

    def forget_partition(self, partition: int) -> None:
        """Another sink owns this source partition now (server DSN, several sinks)."""
        self.rollup.drop_partition(partition)
        self._verdicts = {k: v for k, v in self._verdicts.items() if k[0] != partition}
        self._verdicts_loaded = {k for k in self._verdicts_loaded if k[0] != partition}
        self._max_minute.pop(partition, None)

    @property
    def has_pending(self) -> bool:
        return bool(
            self._deltas
            or self._dead
            or self._late
            or self._facts
            or self._progress
            or self._verdicts_dirty
            or self.rollup.dirty()
        )

"""The ClickHouse sink: conversation-log contributions -> minute partial rows, plus side tables.

``add`` parses and buffers (no I/O); ``flush`` (1) loads the stored rows of minutes it has
not seen, (2) folds the buffered contributions in, skipping any a row already holds
(version check, see ``streams.rollup``), (3) upserts every changed row with its new
version. Each step can fail and be retried: buffered contributions are folded exactly once,
changed rows stay marked until an insert succeeds. Rows are full state, so a repeated
insert of the same row is harmless (``ReplacingMergeTree(version)``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics
from sinks.base import BaseSink, SinkBackpressureError, SinkError
from sinks.clickhouse.store import Store, StoreUnavailable
from streams.conversation import Contribution, ConversationState
from streams.partials import PARTIAL_COLUMNS, SKETCH_FIELDS, TIME_SUM_FIELDS, MinutePartial
from streams.rollup import MinuteRollup, RowKey

__all__ = ["KpiSink", "SinkMessage"]

log = logging.getLogger(__name__)

_KEY_COLUMNS = (
    "source_partition",
    "grouping",
    "team",
    "channel",
    "region",
    "priority",
    "segment",
    "minute",
)
_TIME_SUMS = frozenset(TIME_SUM_FIELDS)
# Stored column names: time sums are integer microseconds in ClickHouse (exact sums).
_STORED = tuple(f"{c}_us" if c in _TIME_SUMS else c for c in PARTIAL_COLUMNS)
_PARTIAL_INSERT_COLUMNS = (*_KEY_COLUMNS, "version", *_STORED)
_SIDE_COLUMNS = ("source_topic", "source_partition", "source_offset", "source_time")


_FACT_COLUMNS = (
    "conversation_id",
    "source_partition",
    "version",
    "team",
    "channel",
    "region",
    "priority",
    "segment",
    "customer_id",
    "customer_value",
    "status",
    "opened_at",
    "waiting_since",
    "awaiting_first_response",
    "human_agent_messages",
    "reopens",
    "events",
    "last_event_at",
)


def _utc(epoch_us: int | None) -> datetime | None:
    if epoch_us is None:
        return None
    return _EPOCH + timedelta(microseconds=epoch_us)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class SinkMessage:
    """What the sink needs of one Kafka message (decoupled from Faust for tests)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: Any  # dict for the conversation log, bytes for side topics
    headers: dict[str, bytes]
    timestamp: float  # Kafka timestamp, seconds


def _minute_dt(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, tz=UTC)


class KpiSink(BaseSink[SinkMessage]):
    def __init__(
        self,
        store: Store,
        *,
        log_topic: str,
        dead_letter_topic: str,
        late_topic: str,
        allowed_lateness_seconds: int,
        metrics: Metrics,
        retry_after: float = 1.0,
    ) -> None:
        self.store = store
        self.log_topic = log_topic
        self.dead_letter_topic = dead_letter_topic
        self.late_topic = late_topic
        self.metrics = metrics
        self.retry_after = retry_after
        self.rollup = MinuteRollup()
        self._pending: list[tuple[int, int, Contribution]] = []
        self._unwritten_ts: list[float] = []  # source timestamps awaiting a successful insert
        self._facts: dict[bytes, tuple[int, int, dict[str, Any]]] = {}  # key -> (p, offset, state)
        self._dead: list[tuple[Any, ...]] = []
        self._late: list[tuple[Any, ...]] = []
        self._max_minute: dict[int, int] = {}
        self._keep_minutes = allowed_lateness_seconds // 60 + 3
        db = store.database
        self._partials_table = f"{db}.kpi_minute_partials"

    # -- add: parse and buffer, no I/O --

    def add(self, record: SinkMessage) -> None:
        if record.topic == self.log_topic:
            value = record.value
            if not value:
                return  # tombstone: an expired conversation (its facts row ages out by TTL)
            partition = int(value["p"])
            offset = int(value["o"])
            if record.key is not None:
                known = self._facts.get(record.key)
                if known is None or known[1] < offset:
                    self._facts[record.key] = (partition, offset, value["s"])
            if not value.get("c"):
                return
            contribution = Contribution.from_json(value["c"])
            self._pending.append((partition, int(value["o"]), contribution))
            ts = value.get("ts")
            if ts:
                self._unwritten_ts.append(float(ts))
            wm_minute = int(value["wm"]) // 60_000_000
            if wm_minute > self._max_minute.get(partition, -1):
                self._max_minute[partition] = wm_minute
        elif record.topic in (self.dead_letter_topic, self.late_topic):
            self._add_side(record)

    def _add_side(self, record: SinkMessage) -> None:
        h = record.headers
        payload = record.value if isinstance(record.value, bytes) else b""
        try:
            source = (
                h["cxpulse.source.topic"].decode(),
                int(h["cxpulse.source.partition"]),
                int(h["cxpulse.source.offset"]),
            )
        except (KeyError, ValueError):
            # Written by something else: keep it, identified by its own position.
            source = (record.topic, record.partition, record.offset)
        when = datetime.fromtimestamp(record.timestamp, tz=UTC)
        # ClickHouse String columns hold bytes: the original message is kept unchanged
        # (an invalid_utf8 payload included).
        key = record.key or b""
        text = payload
        if record.topic == self.dead_letter_topic:
            reason = h.get("cxpulse.reason", b"unknown").decode()
            self._dead.append((*source, when, reason, key, text))
        else:
            lateness = int(h.get("cxpulse.lateness.us", b"0")) / 1e6
            self._late.append((*source, when, key, lateness, text))

    # -- flush: load, fold, upsert --

    def flush(self) -> int:
        try:
            self._fold_pending()
            written = self._write_partials()
            written += self._write_facts()
            written += self._write_side()
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
        if self._unwritten_ts:
            now = time.time()
            observe = self.metrics.visibility_latency.observe
            for ts in self._unwritten_ts:
                observe(max(now - ts, 0.0))
            self._unwritten_ts.clear()
        return written

    def _fold_pending(self) -> None:
        if not self._pending:
            return
        missing = self.rollup.missing((p, c) for p, _, c in self._pending)
        if missing:
            self.rollup.install(missing, self._load(missing))
        applied = skipped = 0
        for partition, offset, contribution in self._pending:
            if self.rollup.apply(partition, offset, contribution):
                applied += 1
            else:
                skipped += 1
        self._pending.clear()
        self.metrics.sink_contributions.labels("applied").inc(applied)
        if skipped:
            self.metrics.sink_contributions.labels("skipped").inc(skipped)

    def _load(self, pairs: set[tuple[int, int]]) -> list[tuple[RowKey, MinutePartial, int]]:
        by_partition: dict[int, list[int]] = defaultdict(list)
        for p, m in pairs:
            by_partition[p].append(m)
        cols = ", ".join(_PARTIAL_INSERT_COLUMNS)
        out: list[tuple[RowKey, MinutePartial, int]] = []
        for p, minutes in by_partition.items():
            stamps = ", ".join(str(m * 60) for m in sorted(minutes))
            rows = self.store.query(
                f"SELECT {cols} FROM {self._partials_table} FINAL "
                f"WHERE source_partition = {int(p)} AND toUnixTimestamp(minute) IN ({stamps})"
            )
            for row in rows:
                out.append(self._row_to_partial(row))
        return out

    @staticmethod
    def _row_to_partial(row: tuple[Any, ...]) -> tuple[RowKey, MinutePartial, int]:
        n_key = len(_KEY_COLUMNS)
        p, grouping, team, channel, region, priority, segment, minute = row[:n_key]
        if isinstance(minute, datetime):
            ts = minute.replace(tzinfo=UTC) if minute.tzinfo is None else minute
            minute_no = int(ts.timestamp()) // 60
        else:
            minute_no = int(minute) // 60
        version = int(row[n_key])
        values = dict(zip(PARTIAL_COLUMNS, row[n_key + 1 :], strict=True))
        for name in TIME_SUM_FIELDS:
            values[name] = int(values[name]) / 1e6
        key: RowKey = (int(p), grouping, team, channel, region, priority, segment, minute_no)
        return key, MinutePartial.from_row(values), version

    def _write_partials(self) -> int:
        dirty = self.rollup.dirty()
        if not dirty:
            return 0
        columns: list[list[Any]] = [[] for _ in _PARTIAL_INSERT_COLUMNS]
        sketch_set = frozenset(SKETCH_FIELDS)
        for key, stored in dirty:
            p, grouping, team, channel, region, priority, segment, minute = key
            head = (
                p,
                grouping,
                team,
                channel,
                region,
                priority,
                segment,
                _minute_dt(minute),
                stored.version,
            )
            for i, v in enumerate(head):
                columns[i].append(v)
            partial = stored.partial
            base = len(head)
            for j, name in enumerate(PARTIAL_COLUMNS):
                value = getattr(partial, name)
                if name in sketch_set:
                    value = value.to_map()
                elif name in _TIME_SUMS:
                    value = round(value * 1_000_000)
                columns[base + j].append(value)
        count = self.store.insert("kpi_minute_partials", columns, _PARTIAL_INSERT_COLUMNS)
        self.rollup.mark_clean(k for k, _ in dirty)
        self.metrics.sink_rows.labels("kpi_minute_partials").inc(count)
        return count

    def _write_facts(self) -> int:
        if not self._facts:
            return 0
        rows = []
        for key, (partition, offset, st) in self._facts.items():
            team, channel, region, priority, segment = ConversationState.from_json(st).dims()
            rows.append(
                (
                    key.decode("utf-8", "replace"),
                    partition,
                    offset,
                    team,
                    channel,
                    region,
                    priority,
                    segment,
                    st.get("customer_id") or "",
                    st.get("customer_value"),
                    "resolved" if st.get("rs") else "open",
                    _utc(st.get("o")),
                    _utc(st.get("w")),
                    1 if st.get("f") else 0,
                    st.get("h", 0),
                    st.get("rc", 0),
                    len(st.get("ids", ())),
                    _utc(st.get("t")),
                )
            )
        count = self.store.insert(
            "conversation_facts", list(zip(*rows, strict=True)), _FACT_COLUMNS
        )
        self._facts.clear()
        self.metrics.sink_rows.labels("conversation_facts").inc(count)
        return count

    def _write_side(self) -> int:
        written = 0
        if self._dead:
            cols = (*_SIDE_COLUMNS, "reason", "kafka_key", "payload")
            written += self.store.insert("dead_letters", list(zip(*self._dead, strict=True)), cols)
            self.metrics.sink_rows.labels("dead_letters").inc(len(self._dead))
            self._dead.clear()
        if self._late:
            cols = (*_SIDE_COLUMNS, "conversation_id", "lateness_seconds", "payload")
            written += self.store.insert("late_events", list(zip(*self._late, strict=True)), cols)
            self.metrics.sink_rows.labels("late_events").inc(len(self._late))
            self._late.clear()
        return written

    def _evict(self) -> None:
        for p, max_minute in self._max_minute.items():
            dropped = self.rollup.evict_before(p, max_minute - self._keep_minutes)
            if dropped:
                log.debug("evicted rows", extra=kv(partition=p, rows=dropped))

    @property
    def has_pending(self) -> bool:
        return bool(self._pending or self._dead or self._late or self._facts or self.rollup.dirty())

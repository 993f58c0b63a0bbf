"""Row shapes of the sink's tables: Python values <-> ClickHouse columns (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.conversation import ConversationState
from streams.partials import PARTIAL_COLUMNS, SKETCH_FIELDS, TIME_SUM_FIELDS, MinutePartial
from streams.rollup import RowKey, StoredRow

__all__ = [
    "FACT_COLUMNS",
    "PARTIAL_INSERT_COLUMNS",
    "PROGRESS_COLUMNS",
    "VERDICT_COLUMNS",
    "fact_row",
    "minute_dt",
    "partial_columns",
    "row_to_partial",
    "utc",
]

KEY_COLUMNS = (
    "source_partition",
    "grouping",
    "team",
    "channel",
    "region",
    "priority",
    "segment",
    "minute",
    "lag_minutes",
)
_TIME_SUMS = frozenset(TIME_SUM_FIELDS)
_SKETCHES = frozenset(SKETCH_FIELDS)
# Stored column names: time sums are integer microseconds in ClickHouse (exact sums).
STORED = tuple(f"{c}_us" if c in _TIME_SUMS else c for c in PARTIAL_COLUMNS)
PARTIAL_INSERT_COLUMNS = (*KEY_COLUMNS, "version", *STORED)
FACT_COLUMNS = (
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
PROGRESS_COLUMNS = ("source_partition", "watermark", "progress", "idle", "source_offset", "version")
VERDICT_COLUMNS = (
    "minute",
    "source_partition",
    "accepted",
    "duplicate",
    "late",
    "invalid",
    "replayed",
    "version",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(epoch_us: int | None) -> datetime | None:
    if epoch_us is None:
        return None
    return _EPOCH + timedelta(microseconds=epoch_us)


def minute_dt(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, tz=UTC)


def minute_number(value: Any) -> int:
    """A DateTime column value (naive UTC or aware) as minutes since the epoch."""
    if isinstance(value, datetime):
        ts = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return int(ts.timestamp()) // 60
    return int(value) // 60


def row_to_partial(row: Sequence[Any]) -> tuple[RowKey, MinutePartial, int]:
    """A stored row (``PARTIAL_INSERT_COLUMNS`` order) as (key, partial, version)."""
    n_key = len(KEY_COLUMNS)
    p, grouping, team, channel, region, priority, segment, minute, lag = row[:n_key]
    version = int(row[n_key])
    values = dict(zip(PARTIAL_COLUMNS, row[n_key + 1 :], strict=True))
    for name in TIME_SUM_FIELDS:
        values[name] = int(values[name]) / 1e6
    key: RowKey = (
        int(p),
        grouping,
        team,
        channel,
        region,
        priority,
        segment,
        minute_number(minute),
        int(lag),
    )
    return key, MinutePartial.from_row(values), version


def partial_columns(dirty: Sequence[tuple[RowKey, StoredRow]]) -> list[list[Any]]:
    """Column-oriented insert data for ``PARTIAL_INSERT_COLUMNS``."""
    columns: list[list[Any]] = [[] for _ in PARTIAL_INSERT_COLUMNS]
    for key, stored in dirty:
        p, grouping, team, channel, region, priority, segment, minute, lag = key
        head = (p, grouping, team, channel, region, priority, segment, minute_dt(minute), lag)
        for i, v in enumerate(head):
            columns[i].append(v)
        base = len(head)
        columns[base].append(stored.version)
        partial = stored.partial
        for j, name in enumerate(PARTIAL_COLUMNS, start=base + 1):
            value = getattr(partial, name)
            if name in _SKETCHES:
                value = value.to_map()
            elif name in _TIME_SUMS:
                value = round(value * 1_000_000)
            columns[j].append(value)
    return columns


def fact_row(key: bytes, partition: int, offset: int, st: dict[str, Any]) -> tuple[Any, ...]:
    """One ``conversation_facts`` row from a conversation-log state (``FACT_COLUMNS``)."""
    team, channel, region, priority, segment = ConversationState.from_json(st).dims()
    return (
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
        utc(st.get("o")),
        utc(st.get("w")),
        1 if st.get("f") else 0,
        st.get("h", 0),
        st.get("rc", 0),
        len(st.get("ids", ())),
        utc(st.get("t")),
    )

"""Row shapes of the sink's tables: Python values <-> ClickHouse columns (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.rollup import (
    SKETCH_COLUMNS,
    STORED_COLUMNS,
    VALUE_INDEX,
    RowKey,
    StoredRow,
    StoredRowData,
)

__all__ = [
    "FACT_COLUMNS",
    "PARTIAL_INSERT_COLUMNS",
    "PROGRESS_COLUMNS",
    "VERDICT_COLUMNS",
    "fact_row",
    "minute_dt",
    "partial_columns",
    "row_to_stored",
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
PARTIAL_INSERT_COLUMNS = (*KEY_COLUMNS, "version", *STORED_COLUMNS)
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


def row_to_stored(row: Sequence[Any]) -> StoredRowData:
    """A stored row (``PARTIAL_INSERT_COLUMNS`` order) as (key, values, sketches, version)."""
    n_key = len(KEY_COLUMNS)
    p, grouping, team, channel, region, priority, segment, minute, lag = row[:n_key]
    version = int(row[n_key])
    values: list[int] = []
    sketches: dict[str, dict[int, int]] = {}
    for name, value in zip(STORED_COLUMNS, row[n_key + 1 :], strict=True):
        if name in SKETCH_COLUMNS:
            if value:
                sketches[name] = {int(k): int(c) for k, c in value.items()}
        else:
            values.append(int(value))
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
    return key, values, sketches, version


def partial_columns(dirty: Sequence[tuple[RowKey, StoredRow]]) -> list[list[Any]]:
    """Column-oriented insert data for ``PARTIAL_INSERT_COLUMNS``."""
    n_key = len(KEY_COLUMNS)
    keys = [key for key, _ in dirty]
    columns: list[list[Any]] = (
        [list(col) for col in zip(*keys, strict=True)] if keys else [[] for _ in KEY_COLUMNS]
    )
    minutes = columns[7]
    columns[7] = [m * 60 for m in minutes]  # DateTime columns take epoch seconds as they are
    columns.append([stored.version for _, stored in dirty])
    rows = [stored for _, stored in dirty]
    dense = list(zip(*(r.values for r in rows), strict=True)) if rows else []
    for name in STORED_COLUMNS:
        if name in SKETCH_COLUMNS:
            # Map order does not matter: every reader sorts the keys (see quantile_sql).
            columns.append([r.sketches.get(name) or {} for r in rows])
        elif dense:
            columns.append(list(dense[VALUE_INDEX[name]]))
        else:
            columns.append([])
    assert len(columns) == n_key + 1 + len(STORED_COLUMNS)
    return columns


def fact_row(fields: Sequence[Any]) -> tuple[Any, ...]:
    """One ``conversation_facts`` row (``FACT_COLUMNS``) from the compute role's fact fields
    (``streams.conversation.fact_fields``: times in microseconds)."""
    f = list(fields)
    for i in (11, 12, 17):  # opened_at, waiting_since, last_event_at
        f[i] = utc(f[i])
    return tuple(f)

"""What the evaluator reads from and writes to ClickHouse.

Reads are aggregated in ClickHouse (sums and binned sketches per leaf and minute), never
row by row in Python. The data known when minute ``C`` closed is exactly the rows of
``kpi_minute_partials FINAL`` with ``minute + lag_minutes <= C`` (the one exception:
rows with ``lag_minutes`` above ``max_lag`` are not read at all, see README "Alerts").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sinks.clickhouse.store import Store
from streams.alerts.layout import BINS, COUNTERS, LEAF_GROUPINGS, WIDTH, bin_sql, hist_slice
from streams.alerts.series import SLOT, LeafKey

__all__ = ["AlertStore", "Row", "closed_minute", "dt", "minute_of"]

Row = tuple[LeafKey, int, np.ndarray]
_DIMS = "grouping, team, channel, region, priority, segment"
_SUMS = ", ".join(
    [f"sum({c})" for c in COUNTERS]
    + [f"sumMap({bin_sql(f'{h}_sketch')})" for h in ("frt", "reply")]
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minute_of(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp()) // 60


def dt(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, tz=UTC)


def _vector(row: Sequence[Any]) -> np.ndarray:
    """Counters then two (keys, counts) bin maps, as selected by ``_SUMS``."""
    vec = np.zeros(WIDTH, dtype=np.int64)
    n = len(COUNTERS)
    vec[:n] = [int(x) for x in row[:n]]
    for i, kind in enumerate(("frt", "reply")):
        keys, counts = row[n + i]
        if keys:
            hist = np.zeros(BINS, dtype=np.int64)
            np.add.at(hist, np.asarray(keys, dtype=np.intp), np.asarray(counts, dtype=np.int64))
            vec[hist_slice(kind)] = hist
    return vec


class AlertStore:
    """ClickHouse I/O of one evaluator (``name``) over a :class:`Store`."""

    def __init__(
        self, store: Store, *, groupings: Iterable[str] = LEAF_GROUPINGS, max_lag: int = 60,
        name: str = "default",
    ) -> None:  # fmt: skip
        self.store = store
        self.db = store.database
        self.groupings = tuple(groupings)
        self.max_lag = max_lag
        self.name = name

    def _where(self) -> str:
        names = ", ".join(f"'{g}'" for g in self.groupings)
        return f"grouping IN ({names}) AND lag_minutes <= {int(self.max_lag)}"

    # -- event-time progress --

    def closed_minute(self, partitions: int) -> int | None:
        """Last minute every source partition's progress has passed (None: not all seen)."""
        return closed_minute(self.store, "source_progress", "progress", partitions)

    def first_minute(self, upto: int) -> int | None:
        rows = self.store.query(
            f"SELECT min(minute), count() FROM {self.db}.kpi_minute_partials WHERE "
            f"{self._where()} AND intDiv(toUnixTimestamp(minute), 60) + lag_minutes <= {int(upto)}"
        )
        return minute_of(rows[0][0]) if rows and int(rows[0][1]) else None

    # -- data --

    def _select(self, key: str, where: str) -> list[tuple[Any, ...]]:
        sql = (
            f"SELECT {_DIMS}, {key} AS k, {_SUMS} FROM (SELECT *, "
            f"intDiv(toUnixTimestamp(minute), 60) AS m, m + lag_minutes AS known "
            f"FROM {self.db}.kpi_minute_partials FINAL WHERE {self._where()} AND {where}) "
            f"GROUP BY {_DIMS}, k ORDER BY k"
        )
        return self.store.query(sql)

    def history(self, now: int, minute_span: int, slot_span: int) -> tuple[list[Row], list[Row]]:
        """(per-minute rows of the last ``minute_span`` minutes, per-slot rows of the last
        ``slot_span`` slots), as known at ``now``."""
        lo = now - minute_span
        minute_rows = [
            (tuple(r[:6]), int(r[6]), _vector(r[7:]))
            for r in self._select(
                "m", f"minute > {_t(lo)} AND minute <= {_t(now)} AND known <= {int(now)}"
            )
        ]
        first_slot = (now // SLOT - slot_span) * SLOT
        slot_rows = [
            (tuple(r[:6]), int(r[6]), _vector(r[7:]))
            for r in self._select(
                "intDiv(m, 15)",
                f"minute >= {_t(first_slot)} AND minute <= {_t(now)} AND known <= {int(now)}",
            )
        ]
        return minute_rows, slot_rows  # type: ignore[return-value]

    def deltas(self, first: int, last: int) -> dict[int, list[Row]]:
        """Rows that became known at each minute of ``first..last``, by that minute."""
        sql = (
            f"SELECT {_DIMS}, m, known, {_SUMS} FROM (SELECT *, "
            f"intDiv(toUnixTimestamp(minute), 60) AS m, m + lag_minutes AS known "
            f"FROM {self.db}.kpi_minute_partials FINAL WHERE {self._where()} "
            f"AND minute >= {_t(first - self.max_lag)} AND minute <= {_t(last)} "
            f"AND known >= {int(first)} AND known <= {int(last)}) "
            f"GROUP BY {_DIMS}, m, known ORDER BY known, m"
        )
        out: dict[int, list[Row]] = {}
        for r in self.store.query(sql):
            out.setdefault(int(r[7]), []).append((tuple(r[:6]), int(r[6]), _vector(r[8:])))  # type: ignore[arg-type]
        return out

    # -- checkpoint --

    def load_checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        rows = self.store.query(
            f"SELECT toUnixTimestamp(minute), state FROM {self.db}.alert_checkpoints FINAL "
            f"WHERE evaluator = {{e:String}}",
            parameters={"e": self.name},
        )
        if not rows:
            return None
        return int(rows[0][0]) // 60, json.loads(rows[0][1])

    def save_checkpoint(self, minute: int, digest: str, state: dict[str, Any]) -> None:
        self.store.insert(
            "alert_checkpoints",
            [[self.name], [dt(minute)], [digest], [json.dumps(state)], [minute]],
            ("evaluator", "minute", "rules_digest", "state", "version"),
        )

    # -- transitions --

    def write_alert_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            names = tuple(rows[0])
            self.store.insert("alerts", [[r[n] for r in rows] for n in names], names)

    def alert_row(self, alert_id: str) -> dict[str, Any] | None:
        rows = self.store.query(
            f"SELECT * FROM {self.db}.alerts FINAL WHERE alert_id = {{a:String}}",
            parameters={"a": alert_id},
        )
        if not rows:
            return None
        names = [r[0] for r in self.store.query(f"DESCRIBE TABLE {self.db}.alerts")]
        return dict(zip(names, rows[0], strict=True))

    def write_outbox(self, entries: list[dict[str, Any]]) -> None:
        if entries:
            names = tuple(entries[0])
            self.store.insert("alert_outbox", [[e[n] for e in entries] for n in names], names)

    def pending(self, upto: int) -> list[dict[str, Any]]:
        """Undelivered outbox entries of transitions up to ``upto``, oldest first."""
        rows = self.store.query(
            f"SELECT receiver, transition_id, alert_id, state, toUnixTimestamp(minute), payload, "
            f"attempts FROM {self.db}.alert_outbox FINAL WHERE status = 'pending' "
            f"AND minute <= {_t(upto)} ORDER BY minute, state = 'resolved', transition_id"
        )
        keys = ("receiver", "transition_id", "alert_id", "state", "minute", "payload", "attempts")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for e in out:
            e["minute"] = int(e["minute"]) // 60
        return out


def closed_minute(store: Store, table: str, column: str, partitions: int) -> int | None:
    """The last minute before the smallest ``column`` of ``table FINAL`` (one row per
    partition), once all ``partitions`` have a row; None before."""
    rows = store.query(
        f"SELECT count(), min(toUnixTimestamp(toStartOfMinute({column}))) "
        f"FROM {store.database}.{table} FINAL"
    )
    count, low = rows[0]
    if int(count) < partitions or low is None:
        return None
    return int(low) // 60 - 1


def _t(minute: int) -> str:
    return f"toDateTime({int(minute) * 60}, 'UTC')"

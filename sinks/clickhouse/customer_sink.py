"""The customer tables: customer-log records -> customer_health and customer_risk_changes,
follow-up records -> feedback_followups.

Every row carries its source position as ``version`` (customer log) or key (follow-ups),
so a re-read after a sink restart rewrites the same rows: idempotent like the KPI sink.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.core.config import CustomerSettings
from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics
from sinks.base import BaseSink, SinkBackpressureError, SinkError
from sinks.clickhouse.customer_rows import (
    CHANGE_COLUMNS,
    FOLLOWUP_COLUMNS,
    HEALTH_COLUMNS,
    PROGRESS_COLUMNS,
    customer_log_rows,
    followup_row,
)
from sinks.clickhouse.store import Store, StoreUnavailable

__all__ = ["CustomerSink"]

log = logging.getLogger(__name__)


class CustomerSink(BaseSink[Any]):
    def __init__(
        self,
        store: Store,
        settings: CustomerSettings,
        *,
        metrics: Metrics,
        retry_after: float = 1.0,
    ) -> None:
        self.store = store
        self.log_topic = settings.log_topic
        self.followups_topic = settings.followups_topic
        self.metrics = metrics
        self.retry_after = retry_after
        self._health: dict[str, tuple[Any, ...]] = {}  # customer -> newest row
        self._changes: list[tuple[Any, ...]] = []
        self._followups: list[tuple[Any, ...]] = []
        self._progress: dict[int, tuple[Any, ...]] = {}  # log partition -> newest row
        # (frozen, watermark) minutes last written per partition: both move with every
        # batch, but they are read by the minute, so one insert per minute of either.
        self._written_minute: dict[int, tuple[int, int]] = {}

    def add(self, record: Any) -> None:
        if record.topic == self.log_topic:
            try:
                rows = customer_log_rows(
                    record.key, record.value, partition=record.partition, offset=record.offset
                )
            except (ValueError, KeyError, TypeError) as exc:
                # Not written by this build's customer role: leave it, say so loudly.
                log.error(
                    "unreadable customer-log record skipped",
                    extra=kv(partition=record.partition, offset=record.offset, error=str(exc)),
                )
                return
            for row in rows.health:
                known = self._health.get(row[0])
                if known is None or known[2] < row[2]:
                    self._health[row[0]] = row
            self._changes.extend(rows.changes)
            progress = rows.progress
            if progress is not None and _minutes(progress) != self._written_minute.get(
                record.partition
            ):
                self._progress[record.partition] = progress
        elif record.topic == self.followups_topic and record.value:
            try:
                self._followups.append(followup_row(record.value))
            except (ValueError, KeyError, TypeError) as exc:
                log.error(
                    "unreadable follow-up record skipped",
                    extra=kv(partition=record.partition, offset=record.offset, error=str(exc)),
                )

    def flush(self) -> int:
        try:
            written = self._insert("customer_health", list(self._health.values()), HEALTH_COLUMNS)
            written += self._insert("customer_risk_changes", self._changes, CHANGE_COLUMNS)
            written += self._insert("feedback_followups", self._followups, FOLLOWUP_COLUMNS)
            # Last: progress promises that the risk changes before it are stored.
            written += self._insert(
                "customer_progress", list(self._progress.values()), PROGRESS_COLUMNS
            )
        except StoreUnavailable as exc:
            self.metrics.sink_flush_failures.inc()
            raise SinkBackpressureError(self.retry_after, str(exc)) from exc
        except Exception as exc:
            self.metrics.sink_flush_failures.inc()
            if "Connection" in type(exc).__name__ or "connection" in str(exc).lower():
                raise SinkBackpressureError(self.retry_after, str(exc)) from exc
            raise SinkError(f"ClickHouse write failed: {exc}") from exc
        self._health.clear()
        self._changes.clear()
        self._followups.clear()
        for partition, row in self._progress.items():
            self._written_minute[partition] = _minutes(row)
        self._progress.clear()
        return written

    def _insert(self, table: str, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> int:
        if not rows:
            return 0
        count = self.store.insert(table, list(zip(*rows, strict=True)), columns)
        self.metrics.sink_rows.labels(table).inc(count)
        return count

    @property
    def has_pending(self) -> bool:
        return bool(self._health or self._changes or self._followups or self._progress)


def _minutes(progress: tuple[Any, ...]) -> tuple[int, int]:
    """(frozen, watermark) of a customer_progress row, in minutes."""
    return int(progress[2].timestamp()) // 60, int(progress[1].timestamp()) // 60

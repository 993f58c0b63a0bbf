"""The customer sink's progress rows: after the risk changes, once per minute of either
the frozen boundary or the watermark."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.core.config import CustomerSettings
from pipeline.core.metrics import Metrics
from sinks.clickhouse.customer_sink import CustomerSink
from streams.customers.logic import META_KEY

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00Z
MIN = 60_000_000


class Recorder:
    def __init__(self) -> None:
        self.inserts: list[tuple[str, list[Any]]] = []

    def insert(self, table: str, columns: list[Any], names: tuple[str, ...]) -> int:
        rows = list(zip(*columns, strict=True))
        self.inserts.append((table, rows))
        return len(rows)


def meta(partition: int, offset: int, w: int, f: int) -> SimpleNamespace:
    value = json.dumps({"w": w, "s": {"0": w}, "l": {"0": f}, "f": f}).encode()
    return SimpleNamespace(
        topic="cxpulse.customer-log", key=META_KEY, value=value, partition=partition, offset=offset
    )


def test_progress_goes_last_and_once_per_minute_of_boundary() -> None:
    store = Recorder()
    sink = CustomerSink(store, CustomerSettings(), metrics=Metrics.create(CollectorRegistry()))  # type: ignore[arg-type]
    sink.add(meta(0, 1, T0 + 5 * MIN, T0 + MIN))
    sink.add(meta(0, 2, T0 + 6 * MIN, T0 + MIN + 10))
    sink.flush()
    ((table, rows),) = store.inserts
    assert table == "customer_progress" and [r[3] for r in rows] == [2]  # the newest
    sink.add(meta(0, 3, T0 + 6 * MIN + 1, T0 + MIN + 20_000_000))  # same minutes: not again
    assert not sink.has_pending
    sink.add(meta(0, 4, T0 + 7 * MIN, T0 + MIN + 30_000_000))  # the watermark moved on
    assert sink.has_pending
    sink.add(meta(0, 5, T0 + 8 * MIN, T0 + 2 * MIN))
    sink.add(meta(1, 9, T0 + 8 * MIN, T0 + MIN))
    sink.flush()
    table, rows = store.inserts[-1]
    assert table == "customer_progress" and sorted((r[0], r[3]) for r in rows) == [(0, 5), (1, 9)]

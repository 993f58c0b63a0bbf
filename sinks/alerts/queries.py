"""Read-side alert queries: the board's firing alerts, and ``cxpulse alerts``."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sinks.clickhouse.store import Store

__all__ = ["ALERT_COLUMNS", "alerts_payload", "firing_alerts", "recent_alerts"]

ALERT_COLUMNS = (
    "alert_id", "rule", "kpi", "severity", "state", "grouping", "team", "channel", "region",
    "priority", "segment", "started_at", "fired_at", "resolved_at", "window_minutes",
    "observed", "baseline", "samples", "baseline_samples", "summary", "notified_at",
)  # fmt: skip


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _select(store: Store, where: str, limit: int) -> list[dict[str, Any]]:
    rows = store.query(
        f"SELECT {', '.join(ALERT_COLUMNS)} FROM {store.database}.alerts FINAL "
        f"WHERE {where} ORDER BY fired_at DESC, alert_id LIMIT {int(limit)}"
    )
    return [{k: _json(v) for k, v in zip(ALERT_COLUMNS, r, strict=True)} for r in rows]


def firing_alerts(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Alerts firing now (newest first): for the board. Columns: ``ALERT_COLUMNS``."""
    return _select(store, "state = 'firing'", limit)


def recent_alerts(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The latest alerts, firing or resolved, newest first."""
    return _select(store, "1", limit)


def alerts_payload(store: Store, limit: int = 20) -> dict[str, Any]:
    """What ``GET /alerts`` on the sink and ``cxpulse alerts --json`` return.

    ``evaluated_minute``: where the KPI rules stand; ``levels_evaluated_minute``: where
    the rise rules stand (their own clock, the customer history's frozen boundary)."""
    rows = store.query(
        f"SELECT endsWith(evaluator, ':levels') AS levels, max(minute) "
        f"FROM {store.database}.alert_checkpoints FINAL GROUP BY levels"
    )
    at = {bool(levels): m for levels, m in rows if m and m.year > 1970}
    return {
        "evaluated_minute": _json(at.get(False)),
        "levels_evaluated_minute": _json(at.get(True)),
        "firing": firing_alerts(store),
        "recent": recent_alerts(store, limit),
    }

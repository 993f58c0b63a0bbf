"""Read-side queries shared by the CLI board, the live board and the sink's ``/kpis``.

Everything here reads the documented views (docs/clickhouse.md: ``kpi_window``,
``kpi_rolling``, ``kpi_minute_kpis``, ``dead_letter_counts``), like any downstream service.
Windows are event time and end at the newest minute stored, so a replayed history and a live
stream read the same way. Rates are percentages here (the views keep plain ratios), each with
the count it is a share of, so a board can print "82% (n=34)" and "n/a (n=0)".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sinks.clickhouse.store import Store

__all__ = [
    "BOARD_COLUMNS",
    "AlertsProvider",
    "board",
    "board_payload",
    "dead_letters",
    "totals",
    "trends",
]

AlertsProvider = Callable[[Store], list[dict[str, Any]]]

# (payload key, SQL over a kpi_window / kpi_rolling row); percentages are 100 x the ratio.
_KPIS: tuple[tuple[str, str], ...] = (
    ("events", "events"),
    ("opened", "opened"),
    ("resolutions", "resolutions"),
    ("frt_count", "frt_count"),
    ("frt_p50_s", "frt_p50"),
    ("frt_p90_s", "frt_p90"),
    ("reply_count", "reply_count"),
    ("reply_p90_s", "reply_p90"),
    ("frt_breaches", "frt_breaches"),
    ("sla_breach_pct", "100 * frt_sla_breach_rate"),
    ("resolution_rate_pct", "100 * resolution_rate"),
    ("one_touch_resolutions", "one_touch_resolutions"),
    ("one_touch_pct", "100 * one_touch_rate"),
    ("reopens", "reopens"),
    ("reopen_pct", "100 * reopen_rate"),
    ("csat_responses", "csat_responses"),
    ("csat_pct", "csat_pct"),
    ("nps_responses", "nps_responses"),
    ("nps", "nps"),
    ("ces_responses", "ces_responses"),
    ("ces_avg", "ces_avg"),
    ("ces_easy_pct", "ces_easy_pct"),
)
BOARD_COLUMNS = ("team", *(key for key, _ in _KPIS))

# Sparklines: events per minute, the rest over a 5-minute rolling window (smoother).
TREND_SMOOTHING_MINUTES = 5
_TREND = (
    ("frt_p90_s", "frt_p90"),
    ("csat_pct", "csat_pct"),
    ("resolution_rate_pct", "100 * resolution_rate"),
)


def _at(minute: datetime) -> str:
    return f"toDateTime('{minute:%Y-%m-%d %H:%M:%S}', 'UTC')"


def _key(minute: datetime) -> str:
    return f"{minute:%Y-%m-%d %H:%M}"


def newest_minute(store: Store) -> datetime | None:
    """The newest minute with a stored row (event time), None on an empty store."""
    rows = store.query(f"SELECT max(minute), count() FROM {store.database}.kpi_minute_partials")
    return rows[0][0] if rows and rows[0][1] else None


def board(
    store: Store, window_minutes: int = 15, grouping: str = "team", *, end: datetime | None = None
) -> list[dict[str, Any]]:
    """KPIs per dimension value over the ``window_minutes`` minutes ending at ``end``
    (default: the newest minute stored), from the ``kpi_window`` view."""
    if window_minutes < 1:
        raise ValueError(f"window_minutes must be at least 1, got {window_minutes}")
    end = end or newest_minute(store)
    if end is None:
        return []
    column = "team" if grouping in ("team", "overall") else grouping
    select = ", ".join(sql for _, sql in _KPIS)
    rows = store.query(
        f"""SELECT {column}, {select}
        FROM {store.database}.kpi_window(window_minutes = {int(window_minutes)},
                                        end_minute = {_at(end)})
        WHERE grouping = {{grouping:String}}
        ORDER BY {column}""",
        parameters={"grouping": grouping},
    )
    return [dict(zip(BOARD_COLUMNS, row, strict=True)) for row in rows]


def trends(store: Store, minutes: int, *, end: datetime | None = None) -> dict[str, Any]:
    """Per team, one point per minute over the ``minutes`` minutes ending at ``end``:
    events of that minute, and FRT p90 / CSAT / resolution rate of the 5 minutes up to it
    (``kpi_rolling``). A minute without data is ``None``."""
    end = end or newest_minute(store)
    if end is None or minutes < 1:
        return {"minutes": [], "teams": {}}
    start = end - timedelta(minutes=minutes - 1)
    axis = [start + timedelta(minutes=i) for i in range(minutes)]
    index = {_key(m): i for i, m in enumerate(axis)}
    db = store.database
    series: dict[str, dict[str, list[Any]]] = {}

    def slot(team: str) -> dict[str, list[Any]]:
        keys = ("events", *(key for key, _ in _TREND))
        return series.setdefault(team, {key: [None] * minutes for key in keys})

    for team, minute, events in store.query(
        f"""SELECT team, minute, events FROM {db}.kpi_minute_kpis
        WHERE grouping = 'team' AND minute BETWEEN {_at(start)} AND {_at(end)}"""
    ):
        slot(team)["events"][index[_key(minute)]] = int(events)
    select = ", ".join(sql for _, sql in _TREND)
    for team, minute, *values in store.query(
        f"""SELECT team, minute, {select}
        FROM {db}.kpi_rolling(window_minutes = {TREND_SMOOTHING_MINUTES},
                              from_minute = {_at(start)}, to_minute = {_at(end)})
        WHERE grouping = 'team'"""
    ):
        for (key, _), value in zip(_TREND, values, strict=True):
            slot(team)[key][index[_key(minute)]] = value
    return {
        "minutes": [m.isoformat() for m in axis],
        "teams": dict(sorted(series.items())),
    }


def dead_letters(store: Store, minutes: int, *, end: datetime | None = None) -> dict[str, Any]:
    """Dead letters of the ``minutes`` minutes ending at ``end`` (``dead_letter_counts``,
    Kafka time), with the three most frequent reasons."""
    end = end or newest_minute(store)
    if end is None:
        return {"count": 0, "reasons": []}
    rows = store.query(
        f"""SELECT reason, sum(dead_letters) AS n FROM {store.database}.dead_letter_counts
        WHERE minute > {_at(end)} - INTERVAL {int(minutes)} MINUTE
        GROUP BY reason ORDER BY n DESC, reason"""
    )
    return {"count": sum(int(n) for _, n in rows), "reasons": [[r, int(n)] for r, n in rows[:3]]}


def totals(store: Store) -> dict[str, Any]:
    """Row counts of the main tables, for progress output and smoke checks."""
    db = store.database
    row = store.query(
        f"""SELECT
            (SELECT sum(events) FROM {db}.kpi_minute WHERE grouping = 'overall'),
            (SELECT count() FROM {db}.kpi_minute_partials FINAL),
            (SELECT count() FROM {db}.dead_letters FINAL),
            (SELECT count() FROM {db}.late_events FINAL),
            (SELECT max(minute) FROM {db}.kpi_minute_partials)"""
    )[0]
    return {
        "events": int(row[0] or 0),
        "partial_rows": int(row[1]),
        "dead_letters": int(row[2]),
        "late_events": int(row[3]),
        "newest_minute": row[4] if row[1] else None,
    }


def board_payload(
    store: Store,
    window_minutes: int = 15,
    *,
    trend_minutes: int = 30,
    alerts: AlertsProvider | None = None,
) -> dict[str, Any]:
    """Everything a board shows, JSON-ready: totals, the window's KPIs per team and overall,
    trends, dead letters, and firing alerts (``None`` when no alert provider is loaded)."""
    summary = totals(store)
    end = summary["newest_minute"]
    summary["newest_minute"] = end.isoformat() if end is not None else None
    overall = board(store, window_minutes, "overall", end=end) if end is not None else []
    if overall:
        overall[0].pop("team", None)
    return {
        "window_minutes": int(window_minutes),
        "end_minute": summary["newest_minute"],
        "totals": summary,
        "overall": overall[0] if overall else None,
        "teams": board(store, window_minutes, end=end) if end is not None else [],
        "trend": trends(store, trend_minutes, end=end),
        "dead_letters": dead_letters(store, window_minutes, end=end),
        "alerts": _jsonable(alerts(store)) if alerts is not None else None,
    }


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alert rows as JSON-ready values (times as ISO strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return float(value)
        return value

    return [{k: plain(v) for k, v in row.items()} for row in rows]

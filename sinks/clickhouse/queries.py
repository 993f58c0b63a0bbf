"""Read-side queries shared by the CLI board and the sink's ``/kpis`` endpoint."""

from __future__ import annotations

from typing import Any

from sinks.clickhouse.store import Store

__all__ = ["BOARD_COLUMNS", "board", "board_payload", "totals"]

BOARD_COLUMNS = (
    "team",
    "events",
    "opened",
    "resolutions",
    "frt_p50_s",
    "frt_p90_s",
    "reply_p90_s",
    "sla_breach_pct",
    "resolution_rate",
    "csat_pct",
    "nps",
)


def board(store: Store, window_minutes: int = 15, grouping: str = "team") -> list[dict[str, Any]]:
    """KPIs per team over the last ``window_minutes`` minutes of event time in the store.

    Reads the ``kpi_window`` view (docs/clickhouse.md) like any downstream service would;
    the window ends at the newest minute stored (event time), so a replayed history and a
    live stream read the same way.
    """
    db = store.database
    sql = f"""
        SELECT team, events, opened, resolutions, frt_p50, frt_p90, reply_p90,
               100 * frt_sla_breach_rate, resolution_rate, csat_pct, nps
        FROM {db}.kpi_window(
            window_minutes = {int(window_minutes)},
            end_minute = (SELECT max(minute) FROM {db}.kpi_minute_partials))
        WHERE grouping = {{grouping:String}}
        ORDER BY team
    """
    rows = store.query(sql, parameters={"grouping": grouping})
    return [dict(zip(BOARD_COLUMNS, row, strict=True)) for row in rows]


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


def board_payload(store: Store, window_minutes: int = 15) -> dict[str, Any]:
    """Totals and the per-team board as JSON-ready data (the sink's /kpis and the CLI)."""
    summary = totals(store)
    newest = summary["newest_minute"]
    summary["newest_minute"] = newest.isoformat() if newest is not None else None
    return {"totals": summary, "teams": board(store, window_minutes)}

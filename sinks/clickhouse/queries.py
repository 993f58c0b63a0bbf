"""Read-side queries shared by the CLI board and the sink's ``/kpis`` endpoint."""

from __future__ import annotations

from typing import Any

from sinks.clickhouse.store import Store
from streams.sketch import quantile_sql

__all__ = ["BOARD_COLUMNS", "board", "totals"]

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

    The window ends at the newest minute stored (event time), so a replayed history and a
    live stream read the same way.
    """
    db = store.database
    frt = "sumMap(frt_sketch)"
    reply = "sumMap(reply_sketch)"
    sql = f"""
        WITH (SELECT max(minute) FROM {db}.kpi_minute_partials) AS newest
        SELECT
            team,
            sum(events),
            sum(opened),
            sum(resolutions),
            {quantile_sql(frt, 0.5)},
            {quantile_sql(frt, 0.9)},
            {quantile_sql(reply, 0.9)},
            if(sum(frt_count) = 0, NULL, 100 * sum(frt_breaches) / sum(frt_count)),
            if(sum(opened) = 0, NULL, sum(resolutions) / sum(opened)),
            if(sum(csat_responses) = 0, NULL, 100 * sum(csat_satisfied) / sum(csat_responses)),
            if(sum(nps_responses) = 0, NULL,
               100 * (sum(nps_promoters) - sum(nps_detractors)) / sum(nps_responses))
        FROM {db}.kpi_minute
        WHERE grouping = {{grouping:String}}
          AND minute > newest - INTERVAL {int(window_minutes)} MINUTE
        GROUP BY team
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

"""The terminal KPI board: fetch (from a running sink, or ClickHouse directly) and render."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from pipeline.core.config import Settings
from pipeline.core.errors import CxpulseError

__all__ = ["fetch_board", "render_board"]

_HEAD = (
    ("team", "team", "{}"),
    ("events", "events", "{:,}"),
    ("opened", "opened", "{:,}"),
    ("resolved", "resolutions", "{:,}"),
    ("FRT p50", "frt_p50_s", "dur"),
    ("FRT p90", "frt_p90_s", "dur"),
    ("reply p90", "reply_p90_s", "dur"),
    ("SLA breach", "sla_breach_pct", "{:.1f}%"),
    ("resol. rate", "resolution_rate", "{:.2f}"),
    ("CSAT", "csat_pct", "{:.1f}%"),
    ("NPS", "nps", "{:+.0f}"),
)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "dur":
        return _duration(float(value))
    return fmt.format(value)


def fetch_board(settings: Settings, *, url: str | None = None, window: int = 15) -> dict[str, Any]:
    """From ``url`` (a sink's web root), else the local sink, else ClickHouse directly."""
    candidates = [url] if url else []
    if not url and settings.clickhouse.is_embedded and settings.ports.sink_web:
        candidates.append(f"http://127.0.0.1:{settings.ports.sink_web}")
    for base in candidates:
        try:
            with urllib.request.urlopen(f"{base.rstrip('/')}/kpis", timeout=10) as resp:  # noqa: S310
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if url:
                raise CxpulseError(f"cannot read {base}/kpis: {exc}") from None
    from sinks.clickhouse.queries import board_payload
    from sinks.clickhouse.store import open_store

    store = open_store(
        settings.clickhouse_dsn(), settings.clickhouse.database, create_database=False
    )
    try:
        return board_payload(store, window)
    except Exception as exc:
        raise CxpulseError(f"cannot read KPIs (has `cxpulse db migrate` run?): {exc}") from exc
    finally:
        store.close()


def render_board(payload: dict[str, Any]) -> str:
    teams = payload.get("teams") or []
    rows = [[title for title, _, _ in _HEAD]]
    for team in teams:
        rows.append([_cell(team.get(key), fmt) for _, key, fmt in _HEAD])
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    t = payload.get("totals") or {}
    lines.append(
        f"stored: {t.get('events', 0):,} events in {t.get('partial_rows', 0):,} minute rows, "
        f"{t.get('dead_letters', 0):,} dead letters, {t.get('late_events', 0):,} late; "
        f"newest minute {t.get('newest_minute') or '-'} UTC"
    )
    if not teams:
        lines.insert(2, "(no KPI rows yet)")
    return "\n".join(lines)

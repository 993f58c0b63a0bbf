"""The KPI board: fetch it (a running sink's ``/kpis``, or ClickHouse directly), render it.

One payload (``sinks.clickhouse.queries.board_payload``) feeds ``cxpulse kpis``, the live
board of ``cxpulse run`` (pipeline/app/live_board.py) and the sink's ``GET /kpis?window=N``
(:func:`kpis_view`). Formatting rules, the same everywhere: rates are percentages, every KPI
shows the count it stands on ("82% (n=34)"), and a KPI without samples is "n/a (n=0)", never
a 0 or a 100 % that one answer made.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from pipeline.core.config import Settings
from pipeline.core.errors import CxpulseError

__all__ = [
    "MAX_WINDOW_MINUTES",
    "alerts_provider",
    "fetch_board",
    "kpis_view",
    "parse_window",
    "render_board",
]

log = logging.getLogger(__name__)
MAX_WINDOW_MINUTES = 400 * 24 * 60  # the default retention of minute rows
DEFAULT_WINDOW = 15


def parse_window(raw: str | int | None) -> int:
    """A window length in minutes, 1 .. MAX_WINDOW_MINUTES; ValueError says what is wrong."""
    if raw is None or raw == "":
        return DEFAULT_WINDOW
    try:
        window = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a whole number of minutes, got {raw!r}") from None
    if not 1 <= window <= MAX_WINDOW_MINUTES:
        raise ValueError(f"window must be within 1..{MAX_WINDOW_MINUTES} minutes, got {window}")
    return window


def alerts_provider() -> Callable[[Any], list[dict[str, Any]]]:
    """The firing alerts the board shows (``sinks.alerts.queries.firing_alerts``)."""
    from sinks.alerts.queries import firing_alerts

    return firing_alerts


async def kpis_view(
    web: Any,
    request: Any,
    store: Any,
    *,
    alerts: Callable[[Any], list[dict[str, Any]]] | None = None,
) -> Any:
    """``GET /kpis?window=N`` on the sink (the process that owns embedded chDB).

    400 with ``{"error": ...}`` for a bad window, 503 when ClickHouse cannot answer.
    """
    from sinks.clickhouse.queries import board_payload

    try:
        window = parse_window(request.query.get("window"))
    except ValueError as exc:
        return web.json({"error": str(exc)}, status=400)
    job = functools.partial(
        board_payload, store, window, alerts=alerts if alerts is not None else alerts_provider()
    )
    try:
        payload = await asyncio.get_running_loop().run_in_executor(None, job)
    except Exception as exc:
        log.warning("board query failed", exc_info=True)
        return web.json({"error": f"ClickHouse did not answer the board query: {exc}"}, status=503)
    return web.json(payload)


def fetch_board(
    settings: Settings, *, url: str | None = None, window: int = DEFAULT_WINDOW
) -> dict[str, Any]:
    """From ``url`` (a sink's web root), else the local sink, else ClickHouse directly."""
    window = parse_window(window)
    candidates = [url] if url else []
    if not url and settings.clickhouse.is_embedded and settings.ports.sink_web:
        candidates.append(f"http://127.0.0.1:{settings.ports.sink_web}")
    for base in candidates:
        endpoint = f"{base.rstrip('/')}/kpis?{urllib.parse.urlencode({'window': window})}"
        try:
            payload = _get_json(endpoint)
        except CxpulseError:
            if url:
                raise
            continue
        if payload.get("window_minutes") != window:
            raise CxpulseError(
                f"the sink at {base} answered for a window of "
                f"{payload.get('window_minutes', 15)} minutes, not {window}: it runs a cxpulse "
                "without ?window support (restart it with this version)"
            )
        return payload
    return _from_store(settings, window)


def _get_json(endpoint: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(endpoint, timeout=10) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            reason = exc.reason
        raise CxpulseError(f"{endpoint} answered {exc.code}: {reason}") from None
    except urllib.error.URLError as exc:
        why = getattr(exc.reason, "strerror", None) or exc.reason
        raise CxpulseError(
            f"cannot read {endpoint.split('?')[0]}: {why} (is the sink running, with its web port?)"
        ) from None
    except (OSError, ValueError) as exc:
        raise CxpulseError(f"cannot read {endpoint.split('?')[0]}: {exc}") from None


def _from_store(settings: Settings, window: int) -> dict[str, Any]:
    from sinks.clickhouse.queries import board_payload
    from sinks.clickhouse.store import open_store

    store = open_store(
        settings.clickhouse_dsn(), settings.clickhouse.database, create_database=False
    )
    try:
        return board_payload(store, window, alerts=alerts_provider())
    except Exception as exc:
        raise CxpulseError(f"cannot read KPIs (has `cxpulse db migrate` run?): {exc}") from exc
    finally:
        store.close()


# ----------------------------------------------------------------------------- formatting


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def percent(value: float) -> str:
    return f"{value:.1f}%" if 0 < abs(value) < 10 else f"{value:.0f}%"


# column title, value key, count key, format of the value
Cell = tuple[str, str, str | None, Callable[[Any], str]]
COUNTS: tuple[Cell, ...] = (
    ("events", "events", None, "{:,}".format),
    ("opened", "opened", None, "{:,}".format),
    ("resolved", "resolutions", None, "{:,}".format),
)
RESPONSE: tuple[Cell, ...] = (
    ("FRT p50", "frt_p50_s", "frt_count", duration),
    ("FRT p90", "frt_p90_s", "frt_count", duration),
    ("reply p90", "reply_p90_s", "reply_count", duration),
    ("SLA breach", "sla_breach_pct", "frt_count", percent),
)
OUTCOME: tuple[Cell, ...] = (
    ("resolution", "resolution_rate_pct", "opened", percent),
    ("one-touch", "one_touch_pct", "resolutions", percent),
    ("reopen", "reopen_pct", "resolutions", percent),
    ("CSAT", "csat_pct", "csat_responses", percent),
    ("NPS", "nps", "nps_responses", "{:+.0f}".format),
    ("CES", "ces_avg", "ces_responses", "{:.1f}/7".format),
)
LEGEND = (
    "n = what each KPI stands on: first responses (FRT, SLA), replies, conversations opened "
    "(resolution rate), resolutions (one-touch, reopen), survey answers (CSAT, NPS, CES)"
)


def value_text(row: dict[str, Any], cell: Cell) -> str:
    """The value alone ("82%", "n/a"): for boards that show the count apart."""
    _, key, count_key, fmt = cell
    value = row.get(key)
    if count_key is not None and not row.get(count_key):
        return "n/a"
    return "-" if value is None else fmt(value)


def cell_text(row: dict[str, Any], cell: Cell) -> str:
    """ "82% (n=34)", "n/a (n=0)", or a plain count."""
    count_key = cell[2]
    if count_key is None:
        return value_text(row, cell)
    return f"{value_text(row, cell)} (n={int(row.get(count_key) or 0):,})"


def _table(rows: list[tuple[str, dict[str, Any]]], cells: tuple[Cell, ...]) -> list[str]:
    grid = [["team", *(c[0] for c in cells)]]
    grid += [[name, *(cell_text(row, c) for c in cells)] for name, row in rows]
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    out = []
    for n, line in enumerate(grid):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def stored_line(payload: dict[str, Any]) -> str:
    t = payload.get("totals") or {}
    return (
        f"stored: {t.get('events', 0):,} events in {t.get('partial_rows', 0):,} minute rows, "
        f"{t.get('dead_letters', 0):,} dead letters, {t.get('late_events', 0):,} late; "
        f"newest minute {t.get('newest_minute') or '-'} UTC"
    )


def alerts_lines(payload: dict[str, Any]) -> list[str]:
    alerts = payload.get("alerts")
    if alerts is None:
        return ["alerts: no alert rules loaded"]
    if not alerts:
        return ["alerts: none firing"]
    return [f"alerts: {len(alerts)} firing"] + [f"  ! {alert_text(a)}" for a in alerts]


def alert_text(alert: dict[str, Any]) -> str:
    if alert.get("summary"):
        return str(alert["summary"])
    scope = ", ".join(
        f"{k}={alert[k]}"
        for k in ("team", "channel", "region", "priority", "segment")
        if alert.get(k)
    )
    return f"{alert.get('kpi', '?')} {scope or 'overall'} since {alert.get('started_at', '?')}"


def render_board(payload: dict[str, Any]) -> str:
    """The board as plain text (``cxpulse kpis``, logs, CI)."""
    window = payload.get("window_minutes", DEFAULT_WINDOW)
    end = payload.get("end_minute")
    teams = [(t.get("team") or "-", t) for t in payload.get("teams") or []]
    lines = [f"last {window} min of event time" + (f", ending {end} UTC" if end else "")]
    overall = payload.get("overall")
    rows = teams + ([("all teams", overall)] if overall else [])
    if not rows:
        lines.append("(no KPI rows yet)")
    else:
        lines += _table(rows, COUNTS + RESPONSE)
        lines.append("")
        lines += _table(rows, OUTCOME)
        lines.append(LEGEND)
    dead = payload.get("dead_letters") or {}
    if dead.get("count"):
        reasons = ", ".join(f"{r} {n:,}" for r, n in dead.get("reasons", []))
        lines.append(f"dead letters in the window: {dead['count']:,} ({reasons})")
    lines += alerts_lines(payload)
    lines.append(stored_line(payload))
    return "\n".join(lines)

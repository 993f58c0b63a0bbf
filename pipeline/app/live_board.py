"""The live terminal board of ``cxpulse run``: KPIs per team with their sample counts, trend
sparklines, firing alerts, throughput, consumer lag and dead letters, refreshed in place.

On a terminal it is a ``rich`` screen redrawn every refresh; when stdout is not a terminal
(logs, CI, a pipe) it prints the plain board (:func:`pipeline.app.board.render_board`) with a
status line at each refresh instead, so logs stay readable text.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.app.board import (
    COUNTS,
    LEGEND,
    OUTCOME,
    RESPONSE,
    alert_text,
    render_board,
    stored_line,
    value_text,
)
from pipeline.core.config import Settings

__all__ = ["ConsumerLag", "LiveBoard", "Status", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], width: int | None = None) -> str:
    """One character per value, scaled between the series' min and max; gaps stay blank."""
    if width is not None:
        values = values[-width:]
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    lo, hi = min(known), max(known)
    span = hi - lo
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif span == 0:
            out.append(BARS[len(BARS) // 2])
        else:
            out.append(BARS[min(int((v - lo) / span * len(BARS)), len(BARS) - 1)])
    return "".join(out)


class ConsumerLag:
    """Messages not yet committed by the compute and sink consumer groups, read from Kafka
    (end offsets minus committed offsets), so it works whatever the workers export."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        t = settings.topics
        self.groups = {
            "compute": (f"{settings.app_id}-compute", (t.events,)),
            "sink": (f"{settings.app_id}-sink", (t.conversation_log, t.dead_letter, t.late_events)),
        }
        self._admin: Any = None
        self._consumer: Any = None
        self.events_in_topic: int | None = None

    def _clients(self) -> tuple[Any, Any]:
        if self._admin is None:
            from kafka import KafkaConsumer
            from kafka.admin import KafkaAdminClient

            from pipeline.core.kafka import kafka_python_kwargs

            kw = kafka_python_kwargs(self.settings, client_id=f"{self.settings.app_id}-board")
            self._admin = KafkaAdminClient(request_timeout_ms=5000, **kw)
            self._consumer = KafkaConsumer(request_timeout_ms=5000, **kw)
        return self._admin, self._consumer

    def read(self) -> dict[str, int] | None:
        """``{"compute": n, "sink": n}``, or None when Kafka does not answer; also sets
        :attr:`events_in_topic` (messages in the events topic)."""
        from kafka import TopicPartition

        try:
            admin, consumer = self._clients()
            out = {}
            for role, (group, topics) in self.groups.items():
                tps = [
                    TopicPartition(topic, p)
                    for topic in topics
                    for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                ends = consumer.end_offsets(tps) if tps else {}
                if role == "compute":
                    self.events_in_topic = sum(ends.values())
                # kafka-python 3: {group: {tp: OffsetAndMetadata}}
                committed = admin.list_group_offsets({group: tps or None}).get(group) or {}
                out[role] = sum(
                    max(end - max(committed[tp].offset if tp in committed else 0, 0), 0)
                    for tp, end in ends.items()
                )
            return out
        except Exception:
            self.close()
            return None

    def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._admin = self._consumer = None


@dataclass
class Status:
    """What the board shows besides ClickHouse's numbers."""

    elapsed: float = 0.0
    produced: int | None = None  # messages in the events topic
    lag: dict[str, int] | None = None
    stored_per_second: float | None = None
    _last: tuple[float, int] | None = field(default=None, repr=False)

    def observe(self, stored_events: int, now: float | None = None) -> None:
        """Events/s stored since the previous refresh."""
        now = time.monotonic() if now is None else now
        if self._last is not None and now > self._last[0]:
            self.stored_per_second = (stored_events - self._last[1]) / (now - self._last[0])
        self._last = (now, stored_events)


def status_line(payload: dict[str, Any], status: Status) -> str:
    t = payload.get("totals") or {}
    rate = "-" if status.stored_per_second is None else f"{status.stored_per_second:,.0f}"
    lag = (
        "?" if status.lag is None else " / ".join(f"{role} {n:,}" for role, n in status.lag.items())
    )
    produced = "-" if status.produced is None else f"{status.produced:,}"
    return (
        f"t={status.elapsed:.0f}s  stored {t.get('events', 0):,} events ({rate}/s)  "
        f"in Kafka {produced}  lag {lag}  dead letters {t.get('dead_letters', 0):,}  "
        f"late {t.get('late_events', 0):,}"
    )


def render_rich(payload: dict[str, Any], status: Status) -> Any:
    """The board as a rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    window = payload.get("window_minutes", 15)
    end = payload.get("end_minute") or "-"
    teams = [(t.get("team") or "-", t) for t in payload.get("teams") or []]
    if payload.get("overall"):
        teams.append(("all teams", payload["overall"]))

    kpis = Table(title=f"KPIs per team: last {window} min of event time, ending {end} UTC",
                 title_justify="left", expand=False, header_style="bold")  # fmt: skip
    kpis.add_column("team", style="bold")
    for cell in COUNTS + RESPONSE + OUTCOME:
        kpis.add_column(cell[0], justify="right")
    for name, row in teams:
        cells = []
        for cell in COUNTS + RESPONSE + OUTCOME:
            text = Text(value_text(row, cell))
            if cell[2] is not None:
                n = int(row.get(cell[2]) or 0)
                text.append(f"\nn={n:,}", style="dim")
                if not n:
                    text.stylize("yellow", 0, 3)
            cells.append(text)
        if name == "all teams":
            kpis.add_section()
        kpis.add_row(name, *cells)
    if not teams:
        kpis.add_row("(no KPI rows yet)")

    trend = payload.get("trend") or {}
    points = len(trend.get("minutes") or [])
    spark = Table(title=f"trends, last {points} min (one mark a minute; KPIs over 5 min)",
                  title_justify="left", header_style="bold")  # fmt: skip
    spark.add_column("team", style="bold")
    for title in ("events/min", "FRT p90", "CSAT", "resolution"):
        spark.add_column(title)
    for team, series in (trend.get("teams") or {}).items():
        spark.add_row(
            team,
            *(
                Text(sparkline(series.get(key) or []), style="cyan")
                for key in ("events", "frt_p90_s", "csat_pct", "resolution_rate_pct")
            ),
        )

    alerts = payload.get("alerts")
    if alerts is None:
        alert_body: Any = Text("no alert rules loaded", style="dim")
    elif not alerts:
        alert_body = Text("none firing", style="green")
    else:
        alert_body = Text("\n".join(f"! {alert_text(a)}" for a in alerts), style="bold red")
    dead = payload.get("dead_letters") or {}
    reasons = ", ".join(f"{r} {n:,}" for r, n in dead.get("reasons", []))
    footer = Text(status_line(payload, status))
    if dead.get("count"):
        footer.append(
            f"\ndead letters in the window: {dead['count']:,} ({reasons})", style="yellow"
        )
    footer.append("\n" + stored_line(payload), style="dim")
    footer.append("\n" + LEGEND, style="dim")
    return Group(
        kpis,
        spark,
        Panel(alert_body, title="alerts", title_align="left", expand=False),
        footer,
    )


class LiveBoard:
    """Redraws in place on a terminal; prints periodic plain text otherwise."""

    def __init__(self, *, tty: bool | None = None, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._live: Any = None

    def __enter__(self) -> LiveBoard:
        if self.tty:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self.stream)
            self._live = Live(
                Text("waiting for the first KPIs ..."),
                console=console,
                auto_refresh=False,
                screen=False,
                transient=False,
                vertical_overflow="visible",
            )
            self._live.__enter__()
        return self

    def show(self, payload: dict[str, Any], status: Status) -> None:
        if self._live is not None:
            self._live.update(render_rich(payload, status), refresh=True)
            return
        print(f"\n== cxpulse live KPIs ({status_line(payload, status)}) ==", file=self.stream)
        print(render_board(payload), file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

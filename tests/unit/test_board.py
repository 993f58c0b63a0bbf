"""The board as operations staff read it: the window asked for, percentages with their sample
counts, "n/a (n=0)" for KPIs without samples, trends, alerts; on the contract's dataset
(tests/unit/test_clickhouse_contract.py), checked against the Python KPI implementation."""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.app.board import cell_text, kpis_view, parse_window, render_board
from pipeline.app.live_board import LiveBoard, Status, render_rich, sparkline
from sinks.clickhouse.queries import board_payload
from sinks.clickhouse.store import ClickHouseStore
from streams.partials import rolling
from tests.unit.test_clickhouse_contract import (
    NEWEST,
    Dataset,
    build_dataset,
    minute_no,
    new_migrated_database,
)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset()


@pytest.fixture(scope="module")
def store(chdb_client: Any, dataset: Dataset) -> Iterator[ClickHouseStore]:
    st = new_migrated_database(chdb_client)
    dataset.insert(st, random.Random(7))
    yield st
    chdb_client.command(f"DROP DATABASE IF EXISTS {st.database}")


def expected_teams(dataset: Dataset, window: int) -> dict[str, dict[str, Any]]:
    return {
        s[1]: rolling(by_minute, NEWEST, window).kpis()
        for s, by_minute in dataset.minutes().items()
        if s[0] == "team" and any(NEWEST - window < m <= NEWEST for m in by_minute)
    }


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("window", [1, 5, 15, 60])
def test_the_window_asked_for_is_the_window_shown(
    store: ClickHouseStore, dataset: Dataset, window: int
) -> None:
    payload = board_payload(store, window)
    assert payload["window_minutes"] == window
    assert minute_no(_dt(payload["end_minute"])) == NEWEST
    want = expected_teams(dataset, window)
    got = {row["team"]: row for row in payload["teams"]}
    assert set(got) == set(want)
    for team, k in want.items():
        row = got[team]
        assert row["events"] == k["events"] and row["opened"] == k["opened"]
        assert row["csat_responses"] == k["csat_responses"]
        assert row["csat_pct"] == approx(k["csat_pct"])
        # Rates are percentages on the board, 100 x the views' ratios.
        for pct, ratio in (
            ("resolution_rate_pct", "resolution_rate"),
            ("one_touch_pct", "one_touch_rate"),
            ("reopen_pct", "reopen_rate"),
            ("sla_breach_pct", "frt_sla_breach_rate"),
        ):
            assert row[pct] == approx(None if k[ratio] is None else 100 * k[ratio]), (team, pct)
        assert row["ces_responses"] == k["ces_responses"]
        assert row["ces_avg"] == approx(k["ces_avg"])
        assert row["reopens"] == k["reopens"]


def test_windows_differ_where_the_data_does(store: ClickHouseStore) -> None:
    """The bug this guards: /kpis answered for 15 minutes whatever was asked."""
    short, long = board_payload(store, 1), board_payload(store, 60)
    assert sum(t["events"] for t in short["teams"]) < sum(t["events"] for t in long["teams"])


def test_billing_by_hand(store: ClickHouseStore) -> None:
    """Minutes 0..20 of billing: CSAT (5, 4, 2) -> 67% of 3; NPS 2 promoters, 1 detractor of 4."""
    billing = next(t for t in board_payload(store, 60)["teams"] if t["team"] == "billing")
    assert billing["csat_responses"] == 3 and billing["csat_pct"] == pytest.approx(200 / 3)
    assert cell_text(billing, ("CSAT", "csat_pct", "csat_responses", "{:.0f}%".format)) == (
        "67% (n=3)"
    )
    assert billing["nps_responses"] == 4 and billing["nps"] == pytest.approx(25.0)


def test_a_kpi_without_samples_is_na_with_n_0(store: ClickHouseStore) -> None:
    payload = board_payload(store, 15)  # billing's minutes 6..20: no survey answer
    text = render_board(payload)
    assert "n/a (n=0)" in text
    assert "(n=" in text and "%" in text
    assert not re.search(r"\b0\.\d\d\b", text.split("n = ")[0]), "a bare fraction on the board"
    for row in payload["teams"]:
        if not row["csat_responses"]:
            assert cell_text(row, ("CSAT", "csat_pct", "csat_responses", str)) == "n/a (n=0)"


def test_overall_row_and_trends(store: ClickHouseStore, dataset: Dataset) -> None:
    payload = board_payload(store, 15, trend_minutes=10)
    overall = next(
        rolling(by_minute, NEWEST, 15).kpis()
        for s, by_minute in dataset.minutes().items()
        if s[0] == "overall"
    )
    assert payload["overall"]["events"] == overall["events"]
    trend = payload["trend"]
    assert len(trend["minutes"]) == 10
    assert minute_no(_dt(trend["minutes"][-1])) == NEWEST
    for team, series in trend["teams"].items():
        by_minute = next(m for s, m in dataset.minutes().items() if s[:2] == ("team", team))
        for i, iso in enumerate(trend["minutes"]):
            minute = minute_no(_dt(iso))
            want = by_minute[minute].events if minute in by_minute else None
            assert series["events"][i] == want, (team, minute)
            assert len(series["csat_pct"]) == 10


def test_alerts_section(store: ClickHouseStore) -> None:
    assert board_payload(store, 15)["alerts"] is None
    assert "alerts: no alert rules loaded" in render_board(board_payload(store, 15))
    firing = [{"kpi": "csat_pct", "team": "billing", "summary": "CSAT billing 61% (baseline 88%)"}]
    payload = board_payload(store, 15, alerts=lambda _s: firing)
    assert payload["alerts"] == firing
    assert "CSAT billing 61% (baseline 88%)" in render_board(payload)
    assert "alerts: none firing" in render_board(board_payload(store, 15, alerts=lambda _s: []))


def test_rich_board_renders_counts_sparklines_and_alerts(store: ClickHouseStore) -> None:
    from rich.console import Console

    payload = board_payload(store, 15, alerts=lambda _s: [{"summary": "FRT p90 chat x3"}])
    status = Status(elapsed=12, produced=1234, lag={"compute": 5, "sink": 0})
    status.observe(100, now=0.0)
    status.observe(400, now=3.0)
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(render_rich(payload, status))
    out = buf.getvalue()
    assert "n=3" in out and "billing" in out and "all teams" in out
    assert "FRT p90 chat x3" in out
    assert "(100/s)" in out and "lag compute 5 / sink 0" in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")


def test_live_board_without_a_terminal_prints_plain_text(store: ClickHouseStore) -> None:
    buf = io.StringIO()
    with LiveBoard(tty=False, stream=buf) as live:
        live.show(board_payload(store, 15), Status(elapsed=3))
    out = buf.getvalue()
    assert "== cxpulse live KPIs (t=3s" in out and "stored: " in out
    assert "\x1b[" not in out  # no escape codes in logs


def test_sparkline() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([None, 5, None]) == " ▅ "
    assert sparkline([]) == ""
    assert sparkline([None, None]) == "  "
    assert len(sparkline(list(range(50)), width=20)) == 20


@pytest.mark.parametrize("raw", ["0", "-5", "abc", "1.5", str(400 * 24 * 60 + 1)])
def test_bad_windows_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="window must be"):
        parse_window(raw)


class FakeWeb:
    def json(self, value: Any, *, status: int = 200) -> tuple[int, Any]:
        return status, json.loads(json.dumps(value))


class FakeRequest:
    def __init__(self, **query: str) -> None:
        self.query = query


def test_kpis_view_honours_the_window(store: ClickHouseStore) -> None:
    def get(**query: str) -> tuple[int, Any]:
        return asyncio.run(kpis_view(FakeWeb(), FakeRequest(**query), store, alerts=lambda s: []))

    status, body = get(window="5")
    assert status == 200 and body["window_minutes"] == 5
    assert body == json.loads(json.dumps(board_payload(store, 5, alerts=lambda s: [])))
    assert get()[1]["window_minutes"] == 15
    status, body = get(window="0")
    assert status == 400 and "window must be within 1.." in body["error"]


def test_kpis_view_reports_a_failing_store() -> None:
    class Broken:
        database = "x"

        def query(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("ClickHouse is down")

    status, body = asyncio.run(kpis_view(FakeWeb(), FakeRequest(window="15"), Broken()))
    assert status == 503 and "ClickHouse is down" in body["error"]


def _dt(iso: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(iso)


def test_alert_rows_become_json(store: ClickHouseStore) -> None:
    from datetime import UTC, datetime

    started = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    row = {"kpi": "csat_pct", "team": "billing", "started_at": started, "observed": 61.0}
    payload = board_payload(store, 15, alerts=lambda _s: [row])
    assert json.loads(json.dumps(payload))["alerts"][0]["started_at"] == started.isoformat()
    assert "csat_pct team=billing since 2026-11-23T09:30:00+00:00" in render_board(payload)

"""Check every documented view and every Grafana query against data the pipeline wrote.

Used by the end-to-end test after a real run (simulated events -> broker -> workers ->
chDB): the views must agree with the oracle's clean pass, and every dashboard query, with
the plugin's macros expanded, must run and return its columns.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.oracle import Oracle
from tests.pipeline_harness import PipelineHarness
from tests.unit.test_grafana_dashboards import (
    ALL,
    CLICKHOUSE,
    DASHBOARDS,
    Expander,
    load,
    panels,
)

_US = 1_000_000


def _minute_dt(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _window(
    oracle: Oracle, grouping: str, end: int, size: int
) -> dict[tuple[str, ...], dict[str, Any]]:
    """The oracle's sums over minutes end-size+1 .. end, per group key."""
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for (name, key, minute), row in oracle.minutes.items():
        if name != grouping or not end - size < minute <= end:
            continue
        acc = out.setdefault(key, {"events": 0, "opened": 0, "frt_samples_s": []})
        acc["events"] += row["events"]
        acc["opened"] += row["opened"]
        acc["frt_samples_s"].extend(row["frt_samples_s"])
    return out


def _close_to_a_sample(value: float | None, samples: list[float], q: float) -> bool:
    """Within 1% of the exact sample quantile under any usual rank convention."""
    if not samples:
        return value is None
    ordered = sorted(samples)
    n = len(ordered)
    ranks = {
        max(0, min(n - 1, r))
        for r in (math.ceil(q * n) - 2, math.ceil(q * n) - 1, math.ceil(q * n))
    }
    low = min(ordered[r] for r in ranks)
    high = max(ordered[r] for r in ranks)
    return value is not None and low * 0.99 - 1e-6 <= value <= high * 1.01 + 1e-6


def check_views(h: PipelineHarness, oracle: Oracle) -> int:
    """Every view of docs/clickhouse.md against the oracle; returns the checks made."""
    overall_minutes = sorted(m for (g, _k, m) in oracle.minutes if g == "overall")
    newest = overall_minutes[-1]
    end = _minute_dt(newest)
    start = _minute_dt(newest - 30)
    (
        minute_kpis,
        window15,
        rolling60,
        latest_team,
        facts,
        dead_counts,
    ) = h.query(
        "SELECT intDiv(toUnixTimestamp(minute), 60), events, opened "
        "FROM {db}.kpi_minute_kpis WHERE grouping = 'overall' ORDER BY minute",
        f"SELECT grouping, team, events, opened, frt_p50, frt_p90 FROM {{db}}.kpi_window("
        f"window_minutes = 15, end_minute = toDateTime('{end}', 'UTC')) "
        "WHERE grouping IN ('overall', 'team')",
        f"SELECT intDiv(toUnixTimestamp(minute), 60), events, opened FROM {{db}}.kpi_rolling("
        f"window_minutes = 60, from_minute = toDateTime('{start}', 'UTC'), "
        f"to_minute = toDateTime('{end}', 'UTC')) WHERE grouping = 'overall' ORDER BY minute",
        "SELECT team, events, opened FROM {db}.kpi_latest_team",
        "SELECT count(), countIf(status NOT IN ('open', 'resolved')) "
        "FROM {db}.conversation_facts FINAL",
        "SELECT sum(dead_letters) FROM {db}.dead_letter_counts",
    )
    checks = 0
    expected_minutes = {m: row for (g, _k, m), row in oracle.minutes.items() if g == "overall"}
    assert [r[0] for r in minute_kpis] == sorted(expected_minutes)
    for minute, events, opened in minute_kpis:
        assert (events, opened) == (
            expected_minutes[minute]["events"],
            expected_minutes[minute]["opened"],
        )
        checks += 1
    for grouping in ("overall", "team"):
        expected = _window(oracle, grouping, newest, 15)
        got = {(r[1],) if grouping == "team" else (): r for r in window15 if r[0] == grouping}
        assert set(got) == set(expected), (grouping, set(got) ^ set(expected))
        for key, row in got.items():
            assert (row[2], row[3]) == (expected[key]["events"], expected[key]["opened"]), key
            samples = expected[key]["frt_samples_s"]
            assert _close_to_a_sample(row[4], samples, 0.5), (key, row[4])
            assert _close_to_a_sample(row[5], samples, 0.9), (key, row[5])
            checks += 1
    for minute, events, opened in rolling60:
        expected = _window(oracle, "overall", minute, 60).get((), {"events": 0, "opened": 0})
        assert (events, opened) == (expected["events"], expected["opened"]), minute
        checks += 1
    latest_expected = _window(oracle, "team", newest, 15)
    assert {r[0]: (r[1], r[2]) for r in latest_team} == {
        k[0]: (v["events"], v["opened"]) for k, v in latest_expected.items()
    }
    assert facts[0][0] > 0 and facts[0][1] == 0
    assert int(dead_counts[0][0]) == sum(oracle.dead_letters.values())
    return checks + 3


def check_dashboards(h: PipelineHarness, oracle: Oracle) -> int:
    """Run every ClickHouse query of every board over the run's time range."""
    minutes = sorted(m for (g, _k, m) in oracle.minutes if g == "overall")
    start = datetime.fromtimestamp(minutes[0] * 60, tz=UTC)
    end = datetime.fromtimestamp(minutes[-1] * 60, tz=UTC) + timedelta(minutes=1)
    team = sorted(k[0] for (g, k, _m) in oracle.minutes if g == "team")[0]
    checked = 0
    for path in DASHBOARDS:
        board = load(path)
        names = [v["name"] for v in board.get("templating", {}).get("list", [])]
        for scope in ({"team": ALL, "channel": ALL}, {"team": team, "channel": ALL}):
            variables = {n: scope.get(n, "15") for n in names}
            expander = Expander(start, end, 60, variables)
            sqls: list[tuple[str, str]] = []
            for panel in panels(board):
                for target in panel.get("targets", []):
                    ds = target.get("datasource") or panel.get("datasource") or {}
                    if ds.get("type") == CLICKHOUSE and target.get("rawSql"):
                        sqls.append(
                            (
                                f"{path.name}/{panel['title']}/{target['refId']}",
                                expander.expand(target["rawSql"]),
                            )
                        )
            for annotation in board.get("annotations", {}).get("list", []):
                ds = annotation.get("datasource") or {}
                if ds.get("type") == CLICKHOUSE and annotation.get("target", {}).get("rawSql"):
                    sqls.append(
                        (f"{path.name}/annotation", expander.expand(annotation["target"]["rawSql"]))
                    )
            results = h.query(*(sql for _, sql in sqls))
            for (where, _sql), rows in zip(sqls, results, strict=True):
                # Alerts have no writer yet; dead letters, late events and verdict counts are
                # on processing time (Kafka timestamps), outside the simulated event time:
                # run, not judged.
                if not any(
                    t in _sql for t in ("alerts", "dead_letter", "late_events", "event_verdicts")
                ):
                    assert rows, f"{where}: no rows for a run with data ({scope})"
                checked += 1
    return checked

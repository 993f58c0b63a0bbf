"""Latency of the KPI views on 30 days of minute data, embedded ClickHouse (chDB).

    python3 bench/query_latency.py [--days 30] [--runs 20] [--partitions 4] [--dir DIR]

Builds the schema with the real migrations in a temporary chDB, fills `kpi_minute_partials`
with `--days` days x 1440 minutes of synthetic rows ending at the current minute, then times
the "last hour of one team" query of docs/clickhouse.md and its relatives against the views
(`--runs` runs after 2 warm-ups; median and p95 of the wall time of `client.query`, result
rows included) and prints each figure and its ratio to the 100 ms target.

Why synthetic rows: pushing 30 days of simulated events through the pipeline would take
hours (about 45 000 conversations and 400 000 events a day), and the views only see
`kpi_minute_partials`. So the rows are generated inside ClickHouse with one `INSERT ...
SELECT` per day: every minute, for each of `--partitions` source partitions, the rows of all
seven groupings (overall, 6 teams, 4 channels, 4 regions, 4 priorities, 3 segments, 24 team x
channel pairs: 46 rows), with Poisson-like counts following a daily cycle (about 32
conversations opened per minute at the daily mean) and sketches built from log-normal samples
by the same bucket rule as streams/sketch.py. 30 days, 4 partitions: 7.9 million rows. The
last hour is then written again as newer versions in one small insert per minute, as the sink
does, so `FINAL` has unmerged versions to resolve, as it has on a live system.

Also timed, to back the design note in 0002_views.sql: a plain (non-parameterized) rolling
1-hour view, which has to compute the windows of the team's whole history before the time
filter applies.

Numbers are noisy on a shared 2-core machine (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sinks.clickhouse.migrate import migrate  # noqa: E402
from sinks.clickhouse.store import Capabilities, ClickHouseStore  # noqa: E402
from streams.sketch import GAMMA  # noqa: E402

TARGET_MS = 100.0
DB = "cxpulse"
TEAMS = ("billing", "technical", "onboarding", "accounts", "returns", "vip")
CHANNELS = ("chat", "email", "phone", "social")
REGIONS = ("emea", "amer", "apac", "unknown")
PRIORITIES = ("low", "normal", "high", "urgent")
SEGMENTS = ("enterprise", "smb", "consumer")
OPENED_PER_PARTITION_MINUTE = 8.0  # overall, at the daily mean


def series() -> list[tuple[str, str, str, str, str, str, float]]:
    """(grouping, team, channel, region, priority, segment, share of the traffic)."""
    rows = [("overall", "", "", "", "", "", 1.0)]
    rows += [("team", t, "", "", "", "", 1 / len(TEAMS)) for t in TEAMS]
    rows += [("channel", "", c, "", "", "", 1 / len(CHANNELS)) for c in CHANNELS]
    rows += [("region", "", "", r, "", "", 1 / len(REGIONS)) for r in REGIONS]
    rows += [("priority", "", "", "", p, "", 1 / len(PRIORITIES)) for p in PRIORITIES]
    rows += [("segment", "", "", "", "", s, 1 / len(SEGMENTS)) for s in SEGMENTS]
    share = 1 / (len(TEAMS) * len(CHANNELS))
    rows += [("team_channel", t, c, "", "", "", share) for t in TEAMS for c in CHANNELS]
    return rows


def _count(mean: str, seed: int) -> str:
    """A non-negative integer around ``mean`` with Poisson spread (normal approximation)."""
    return f"toUInt64(greatest(0, round({mean} + sqrt({mean}) * randNormal(0, 1, {seed}))))"


def _share(n: str, p: float, seed: int) -> str:
    """Binomial(n, p): how many of ``n`` answers are in a class."""
    return f"toUInt64(arrayCount(i -> randCanonical(i + {seed}) < {p}, range({n})))"


def _sketch(values: str) -> str:
    """Map(Int16, UInt64) of ``values`` (seconds, all > 0) by streams.sketch's bucket rule."""
    keys = f"arrayMap(v -> toInt16(ceil(log(v) / log({GAMMA!r}))), {values})"
    return (
        f"mapFromArrays(arrayDistinct({keys}), "
        f"arrayMap(k -> toUInt64(countEqual({keys}, k)), arrayDistinct({keys})))"
    )


def insert_sql(first_minute: int, minutes: int, partitions: int, version_base: int) -> str:
    """One INSERT ... SELECT of ``minutes`` minutes (Unix minute numbers) of partial rows."""
    combos = ", ".join(
        f"('{g}', '{t}', '{c}', '{r}', '{p}', '{s}', {w!r})" for g, t, c, r, p, s, w in series()
    )
    us = "toUInt64(arraySum(arrayMap(v -> round(v * 1e6), {})))"
    return f"""
INSERT INTO {DB}.kpi_minute_partials
SELECT
    grouping, team, channel, region, priority, segment, minute, source_partition, version,
    opened, resolutions, reopens, least(resolutions, one_touch) AS one_touch_resolutions,
    length(frt) AS frt_count, {us.format("frt")} AS frt_sum_us,
    arrayCount(v -> v > 3600, frt) AS frt_breaches, {_sketch("frt")} AS frt_sketch,
    length(reply) AS reply_count, {us.format("reply")} AS reply_sum_us,
    {_sketch("reply")} AS reply_sketch,
    length(res) AS resolution_count, {us.format("res")} AS resolution_sum_us,
    {_sketch("res")} AS resolution_sketch,
    csat_n AS csat_responses, csat_ok * 5 + (csat_n - csat_ok) * 2 AS csat_sum,
    csat_ok AS csat_satisfied,
    nps_n AS nps_responses, nps_pro AS nps_promoters,
    least(nps_n - nps_pro, nps_det) AS nps_detractors,
    ces_n AS ces_responses, ces_ok * 6 + (ces_n - ces_ok) * 3 AS ces_sum, ces_ok AS ces_easy,
    opened * 3 AS messages_customer, opened * 2 AS messages_agent_human,
    opened AS messages_agent_bot, opened * 9 AS events,
    now64(3) AS written_at
FROM
(
    SELECT
        c.1 AS grouping, c.2 AS team, c.3 AS channel, c.4 AS region, c.5 AS priority,
        c.6 AS segment,
        toDateTime(({first_minute} + intDiv(number, {partitions})) * 60, 'UTC') AS minute,
        toUInt16(number % {partitions}) AS source_partition,
        toUInt64({version_base} + number) AS version,
        -- daily cycle: busiest mid-day UTC, a third of the mean at night
        c.7 * {OPENED_PER_PARTITION_MINUTE} * (1 + 0.65 * sin(2 * pi() * (toHour(minute) - 6) / 24))
            AS lam,
        {_count("lam", 1)} AS opened,
        {_count("lam * 0.95", 2)} AS resolutions,
        {_count("lam * 0.05", 3)} AS reopens,
        {_count("lam * 0.6", 4)} AS one_touch,
        arrayMap(i -> randLogNormal(4.8, 1.0, i), range({_count("lam", 5)})) AS frt,
        arrayMap(i -> randLogNormal(5.7, 1.2, i), range({_count("lam * 2", 6)})) AS reply,
        arrayMap(i -> randLogNormal(9.6, 1.0, i), range({_count("lam * 0.95", 7)})) AS res,
        {_count("lam * 0.2", 8)} AS csat_n,
        {_share("csat_n", 0.8, 9000)} AS csat_ok,
        {_count("lam * 0.1", 10)} AS nps_n,
        {_share("nps_n", 0.5, 11000)} AS nps_pro,
        {_count("lam * 0.02", 12)} AS nps_det,
        {_count("lam * 0.1", 13)} AS ces_n,
        {_share("ces_n", 0.7, 14000)} AS ces_ok
    FROM numbers({minutes * partitions})
    ARRAY JOIN [{combos}] AS c
)
"""


# A plain-view formulation of a rolling 1-hour window (opened and p90 FRT only), NOT part of the
# schema: it shows why the schema's windows are parameterized views.
PLAIN_ROLLING_1H = f"""
CREATE OR REPLACE VIEW {DB}.bench_plain_rolling_1h AS
SELECT grouping, team, channel, region, priority, segment, minute,
       sum(opened) OVER w AS opened, sumMap(frt_sketch) OVER w AS frt_sketch
FROM {DB}.kpi_minute
WINDOW w AS (PARTITION BY grouping, team, channel, region, priority, segment
             ORDER BY minute RANGE BETWEEN 3540 PRECEDING AND CURRENT ROW)
"""


def timed(fn: Callable[[], Any], runs: int, warmups: int = 2) -> tuple[list[float], Any]:
    result = None
    for _ in range(warmups):
        result = fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples, result


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--team", default="billing")
    ap.add_argument("--dir", help="chDB directory (default: a temporary one, removed after)")
    args = ap.parse_args(argv)

    import clickhouse_connect

    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="cxpulse-bench-")
    path = Path(args.dir or tmp.name) / "chdb"  # type: ignore[union-attr]
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    try:
        return run(client, args)
    finally:
        client.close()
        if tmp:
            tmp.cleanup()


def run(client: Any, args: argparse.Namespace) -> int:
    client.command(f"CREATE DATABASE IF NOT EXISTS {DB}")
    store = ClickHouseStore(client, DB, Capabilities(embedded=True))
    migrate(store, minute_ttl_days=400, side_ttl_days=30)

    now_minute = int(datetime.now(UTC).timestamp()) // 60
    first = now_minute - args.days * 1440 + 1
    print(
        f"generating {args.days} days x 1440 minutes x {args.partitions} partitions x "
        f"{len(series())} rows ...",
        flush=True,
    )
    t0 = time.perf_counter()
    for day in range(args.days):
        client.command(insert_sql(first + day * 1440, 1440, args.partitions, day * 10**8))
    # The live tail: the last hour written again, one insert per minute, newer versions.
    for minute in range(now_minute - 59, now_minute + 1):
        client.command(insert_sql(minute, 1, args.partitions, 10**12 + minute))
    rows, parts = client.query(
        f"SELECT (SELECT count() FROM {DB}.kpi_minute_partials), "
        f"(SELECT count() FROM system.parts WHERE database = '{DB}' AND active)"
    ).result_rows[0]
    print(
        f"  {rows:,} rows (incl. the rewritten last hour) in {parts} parts, "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    team = args.team
    newest = "(SELECT max(minute) FROM cxpulse.kpi_minute_partials)"
    end = f"toDateTime({now_minute * 60}, 'UTC')"
    hour = f"from_minute = {end} - INTERVAL 59 MINUTE, to_minute = {end}"
    scope = f"grouping = 'team' AND team = '{team}'"
    last_hour = f"minute > {newest} - INTERVAL 1 HOUR ORDER BY minute"
    queries = {
        "last hour of one team, every KPI (kpi_minute_kpis, SELECT *)": (
            f"SELECT * FROM cxpulse.kpi_minute_kpis WHERE {scope} AND {last_hour}"
        ),
        "last hour of one team, docs example columns": (
            "SELECT minute, events, opened, resolutions, frt_p50, frt_p90, resolution_rate, "
            f"csat_pct, nps FROM cxpulse.kpi_minute_kpis WHERE {scope} AND {last_hour}"
        ),
        "last hour of one team as one window (kpi_window 60)": (
            f"SELECT * FROM cxpulse.kpi_window(window_minutes = 60, end_minute = {newest}) "
            f"WHERE {scope}"
        ),
        "rolling 15 min, every minute of the last hour (kpi_rolling)": (
            f"SELECT * FROM cxpulse.kpi_rolling(window_minutes = 15, {hour}) "
            f"WHERE {scope} ORDER BY minute"
        ),
        "rolling 15 min, FRT percentiles only (a board panel)": (
            "SELECT minute, frt_p50, frt_p90, frt_p95, frt_p99, frt_avg "
            f"FROM cxpulse.kpi_rolling(window_minutes = 15, {hour}) "
            f"WHERE {scope} ORDER BY minute"
        ),
        "rolling 24 h, every minute of the last hour (kpi_rolling)": (
            f"SELECT * FROM cxpulse.kpi_rolling(window_minutes = 1440, {hour}) "
            f"WHERE {scope} ORDER BY minute"
        ),
        "latest 15 minutes of every team (kpi_latest_team)": (
            "SELECT * FROM cxpulse.kpi_latest_team"
        ),
    }
    client.command(PLAIN_ROLLING_1H)
    plain = (
        "SELECT minute, opened, frt_sketch FROM cxpulse.bench_plain_rolling_1h "
        f"WHERE {scope} AND minute > {end} - INTERVAL 1 HOUR ORDER BY minute"
    )
    reference = (
        f"SELECT minute, opened FROM cxpulse.kpi_rolling(window_minutes = 60, {hour}) "
        f"WHERE {scope} ORDER BY minute"
    )

    def query(sql: str) -> Callable[[], list[tuple[Any, ...]]]:
        return lambda: client.query(sql).result_rows

    load = os.getloadavg()[0]
    print(
        f"\n{args.runs} runs each after 2 warm-ups, load average {load:.1f} "
        f"on {os.cpu_count()} CPUs; target {TARGET_MS:.0f} ms"
    )
    print(f"{'query':64s} {'rows':>5s} {'median':>9s} {'p95':>9s} {'median/target':>14s}")
    results = {}
    for name, sql in queries.items():
        samples, result = timed(query(sql), args.runs)
        med = statistics.median(samples)
        results[name] = med
        print(
            f"{name:64s} {len(result):5d} {med:7.1f}ms {p95(samples):7.1f}ms "
            f"{med / TARGET_MS:13.2f}x",
            flush=True,
        )
    # Sanity: the plain view and the parameterized one agree on what both compute.
    (_, plain_rows), (_, ref_rows) = timed(query(plain), 1, 0), timed(query(reference), 1, 0)
    assert [(m, o) for m, o, _ in plain_rows] == ref_rows, "plain and parameterized differ"
    samples, result = timed(query(plain), max(3, args.runs // 5), 1)
    med = statistics.median(samples)
    print(
        f"{'plain-view rolling 1 h, last hour (rejected design, 2 columns)':64s} "
        f"{len(result):5d} {med:7.1f}ms {p95(samples):7.1f}ms {med / TARGET_MS:13.2f}x"
    )
    headline = next(iter(results))
    print(
        f"\nheadline: {headline}: median {results[headline]:.1f} ms = "
        f"{results[headline] / TARGET_MS:.2f} x the {TARGET_MS:.0f} ms target "
        f"(load average now {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

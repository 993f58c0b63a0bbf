"""Grafana boards against the real schema: every ClickHouse query runs, every metric exists.

For each ClickHouse target of every dashboard in deploy/grafana/dashboards, the template
variables and the ClickHouse plugin's macros are expanded the way Grafana and the plugin
(grafana/clickhouse-datasource, pkg/macros/macros.go) do, and the SQL runs against a freshly
migrated schema holding synthetic data; the result must have the columns its panel needs.
Prometheus targets may only use metric and label names that pipeline/metrics.py declares.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.core.metrics import Metrics
from sinks.clickhouse.store import ClickHouseStore
from tests.unit.test_clickhouse_contract import at, build_dataset, new_migrated_database

pytest.importorskip("clickhouse_connect")

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "cxpulse.yaml"
CLICKHOUSE = "grafana-clickhouse-datasource"
PROMETHEUS = "prometheus"
ALL = "__all"  # the allValue of the team and channel variables

# The dashboard time range of the tests: around the synthetic data (minutes 0..20 after T0).
FROM, TO = at(-10), at(10)
INTERVAL_S = 60


# ---------------------------------------------------------------------------------------------
# Template variables and the ClickHouse plugin's macros
# ---------------------------------------------------------------------------------------------


class ExpansionError(ValueError):
    """A query uses a macro or variable the expander (and so the test) does not know."""


def _sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Grafana's variable formats that make sense for single values in SQL.
_FORMATS = {None: str, "raw": str, "sqlstring": _sql_quote, "singlequote": _sql_quote}
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)|\[\[(\w+)\]\]")
_MACRO = re.compile(r"\$__(\w+)")


# Every macro of the plugin and its number of arguments.
_MACRO_ARITY = {
    "fromTime": 0,
    "toTime": 0,
    "fromTime_ms": 0,
    "toTime_ms": 0,
    "timeFilter": 1,
    "timeFilter_ms": 1,
    "dateFilter": 1,
    "dateTimeFilter": 2,
    "dt": 2,
    "timeInterval": 1,
    "timeInterval_ms": 1,
    "interval_s": 0,
}


def _datetime(t: datetime) -> str:
    return f"toDateTime({int(t.timestamp())})"


def _datetime64(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"


def _date(t: datetime) -> str:
    return f"toDate('{t:%Y-%m-%d}')"


@dataclass(frozen=True)
class Expander:
    """Grafana's interpolation of template variables, then the plugin's macros."""

    start: datetime
    end: datetime
    interval_s: int
    variables: dict[str, str]

    def expand(self, sql: str) -> str:
        return self.macros(self.interpolate(sql))

    def interpolate(self, sql: str) -> str:
        def value(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(3) or m.group(4)
            fmt = m.group(2)
            if name not in self.variables:
                raise ExpansionError(f"undefined variable ${name}")
            if fmt not in _FORMATS:
                raise ExpansionError(f"unsupported variable format {fmt!r} of ${name}")
            return _FORMATS[fmt](self.variables[name])

        return _VARIABLE.sub(value, sql)

    def macros(self, sql: str) -> str:
        out: list[str] = []
        pos = 0
        for m in _MACRO.finditer(sql):
            if m.start() < pos:
                continue  # inside the arguments of a macro already expanded
            args, end = _arguments(sql, m.end())
            out.append(sql[pos : m.start()])
            out.append(self.macro(m.group(1), args))
            pos = end
        out.append(sql[pos:])
        return "".join(out)

    def macro(self, name: str, args: list[str]) -> str:
        """pkg/macros/macros.go of grafana/clickhouse-datasource, macro for macro."""
        f, t, s = self.start, self.end, self.interval_s
        if name not in _MACRO_ARITY:
            raise ExpansionError(f"unknown macro $__{name}")
        expected_args = _MACRO_ARITY[name]
        if len(args) != expected_args:
            raise ExpansionError(f"$__{name} takes {expected_args} argument(s), got {args}")
        if name == "fromTime":
            return _datetime(f)
        if name == "toTime":
            return _datetime(t)
        if name == "fromTime_ms":
            return _datetime64(f)
        if name == "toTime_ms":
            return _datetime64(t)
        if name == "timeFilter":
            return f"{args[0]} >= {_datetime(f)} AND {args[0]} <= {_datetime(t)}"
        if name == "timeFilter_ms":
            return f"{args[0]} >= {_datetime64(f)} AND {args[0]} <= {_datetime64(t)}"
        if name == "dateFilter":
            return f"{args[0]} >= {_date(f)} AND {args[0]} <= {_date(t)}"
        if name in ("dateTimeFilter", "dt"):
            d, c = args
            return (
                f"({d} >= {_date(f)} AND {d} <= {_date(t)}) AND "
                f"({c} >= {_datetime(f)} AND {c} <= {_datetime(t)})"
            )
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {max(s, 1)} second)"
        if name == "timeInterval_ms":
            return (
                f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL {max(s * 1000, 1)} "
                "millisecond)"
            )
        assert name == "interval_s"
        return str(max(s, 1))


def _arguments(sql: str, pos: int) -> tuple[list[str], int]:
    """Comma-separated arguments of a macro call at ``pos`` (none without parentheses)."""
    if pos >= len(sql) or sql[pos] != "(":
        return [], pos
    depth, start, args = 0, pos + 1, []
    for i in range(pos, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i].strip())
                return [a for a in args if a], i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i].strip())
            start = i + 1
    raise ExpansionError(f"unbalanced parentheses in macro call: {sql[pos : pos + 60]}")


def test_macros_expand_as_the_plugin_does() -> None:
    start = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    e = Expander(start, start + timedelta(hours=1), 30, {"team": "o'brien"})
    f, t = int(start.timestamp()), int(start.timestamp()) + 3600
    assert e.expand("$__timeFilter(minute)") == (
        f"minute >= toDateTime({f}) AND minute <= toDateTime({t})"
    )
    assert e.expand("$__fromTime, $__toTime") == f"toDateTime({f}), toDateTime({t})"
    assert e.expand("$__fromTime_ms") == f"fromUnixTimestamp64Milli({f * 1000})"
    assert e.expand("$__timeInterval(minute)") == (
        "toStartOfInterval(toDateTime(minute), INTERVAL 30 second)"
    )
    assert e.expand("$__interval_s") == "30"
    assert e.expand("$__dateFilter(d)") == "d >= toDate('2025-01-02') AND d <= toDate('2025-01-02')"
    assert e.expand("$__timeFilter(toStartOfMinute(x, 'UTC'))").startswith(
        "toStartOfMinute(x, 'UTC') >= toDateTime("
    )
    assert e.expand("team = ${team:sqlstring} OR team = '$team'") == (
        "team = 'o''brien' OR team = 'o'brien'"
    )
    for bad in ("$__unknownMacro(x)", "$__timeFilter()", "$__timeFilter(a, b)", "${nope}"):
        with pytest.raises(ExpansionError):
            e.expand(bad)
    with pytest.raises(ExpansionError):
        e.expand("${team:csv}")


# ---------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text("utf-8"))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def targets(board: dict[str, Any], ds_type: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("type") == ds_type:
                yield panel, target


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of the provisioned data sources (a tiny reader for our own YAML file)."""
    out: dict[str, str] = {}
    uid = None
    for line in DATASOURCES.read_text("utf-8").splitlines():
        m = re.match(r"\s*-?\s*(uid|type):\s*(\S+)", line)
        if m and m.group(1) == "uid":
            uid = m.group(2)
        elif m and uid:
            out[uid] = m.group(2)
            uid = None
    return out


def test_dashboards_are_well_formed() -> None:
    assert [p.name for p in DASHBOARDS] == [
        "cxpulse-customers.json",
        "cxpulse-kpis.json",
        "cxpulse-pipeline.json",
    ]
    sources = provisioned_datasources()
    assert sources == {"cxpulse-clickhouse": CLICKHOUSE, "cxpulse-prometheus": PROMETHEUS}
    uids = set()
    for path in DASHBOARDS:
        board = load(path)
        assert board["uid"] not in uids
        uids.add(board["uid"])
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels(board):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            if panel["type"] == "row":
                continue
            assert panel["targets"] and panel.get("description"), panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
            for target in panel["targets"]:
                ds = target["datasource"]
                assert sources.get(ds["uid"]) == ds["type"], f"{panel['title']}: {ds}"
        for variable in board["templating"]["list"]:
            if "datasource" in variable:
                ds = variable["datasource"]
                assert sources.get(ds["uid"]) == ds["type"], variable["name"]


def kpi_board() -> dict[str, Any]:
    return load(GRAFANA / "dashboards" / "cxpulse-kpis.json")


def board_variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def test_kpi_board_shows_every_kpi_with_team_and_channel_variables() -> None:
    board = kpi_board()
    variables = board_variables(board)
    assert {"team", "channel"} <= set(variables)
    for name in ("team", "channel"):
        assert variables[name]["type"] == "query"
        assert variables[name]["allValue"] == ALL and variables[name]["includeAll"]
    sql = " ".join(t["rawSql"] for _, t in targets(board, CLICKHOUSE))
    needed = [
        *(f"{p}_{s}" for p in ("frt", "reply", "resolution") for s in ("p50", "p90", "p95", "p99")),
        "resolution_rate",
        "one_touch_rate",
        "reopen_rate",
        "csat_pct",
        "nps",
        "ces_avg",
        "ces_easy_pct",
        "events",
        "frt_breaches",
        "frt_sla_breach_rate",
    ]
    missing = [k for k in needed if not re.search(rf"\b{k}\b", sql)]
    assert not missing, f"KPI board lacks {missing}"
    for view in ("kpi_rolling", "kpi_window", "kpi_latest_team", "kpi_minute"):
        assert f"cxpulse.{view}" in sql
    assert "kpi_minute_partials" not in sql  # boards read the views, never the partials
    for macro in ("$__timeFilter(minute)", "$__fromTime", "$__toTime", "$__timeInterval(minute)"):
        assert macro in sql


# ---------------------------------------------------------------------------------------------
# Running the ClickHouse queries
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(chdb_client: Any) -> Iterator[ClickHouseStore]:
    """A migrated database with the contract test's synthetic data, alerts and dead letters."""
    st = new_migrated_database(chdb_client)
    build_dataset().insert(st, random.Random(3))
    tables = set(
        r[0] for r in st.query(f"SELECT name FROM system.tables WHERE database = '{st.database}'")
    )
    if "alerts" in tables:
        alerts = [
            ("a1", "csat_pct", "team", "billing", "", "firing", at(2), None),
            ("a2", "frt_p90", "team", "tech", "", "resolved", at(-3), at(5)),
            ("a3", "nps", "overall", "", "", "resolved", at(-300), at(-200)),  # outside
        ]
        columns = list(zip(*alerts, strict=True))
        n = len(alerts)
        st.insert(
            "alerts",
            [
                *columns[:5],
                [""] * n,
                [""] * n,
                [""] * n,
                columns[5],
                columns[6],
                columns[7],
                [90.0] * n,
                [60.0] * n,
                ["warning"] * n,
                ["dropped"] * n,
                [1] * n,
            ],
            (
                "alert_id",
                "kpi",
                "grouping",
                "team",
                "channel",
                "region",
                "priority",
                "segment",
                "state",
                "started_at",
                "ended_at",
                "baseline",
                "observed",
                "severity",
                "summary",
                "version",
            ),
        )
    dead = [
        ("cxpulse.interactions", 0, offset, at(offset % 7), reason, "k", "{")
        for offset, reason in enumerate(["invalid_json"] * 3 + ["missing_field:team"] * 2)
    ]
    st.insert(
        "dead_letters",
        [list(c) for c in zip(*dead, strict=True)],
        (
            "source_topic",
            "source_partition",
            "source_offset",
            "source_time",
            "reason",
            "kafka_key",
            "payload",
        ),
    )
    try:
        yield st
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {st.database}")


def run(client: Any, store: ClickHouseStore, sql: str) -> tuple[list[str], list[str], list[tuple]]:
    """Execute against the test database (the boards name it `cxpulse`)."""
    result = client.query(re.sub(r"\bcxpulse\.", f"{store.database}.", sql))
    types = [t.name for t in result.column_types]
    return list(result.column_names), types, list(result.result_rows)


_NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*)\)?$")
_LABEL = re.compile(r"^(LowCardinality\()?(Nullable\()?String\)?\)?$")


def check_result(
    panel: dict[str, Any],
    target: dict[str, Any],
    names: list[str],
    types: list[str],
    rows: list[Any],
    where: str,
    *,
    several_points: bool = False,
) -> None:
    """A panel query's result has the shape its panel type draws (shared by every board)."""
    assert rows, f"{where}: no rows for data that should show"
    numeric = [n for n, t in zip(names, types, strict=True) if _NUMERIC.match(t)]
    assert numeric, f"{where}: no value column"
    if panel["type"] == "timeseries":
        assert target["format"] == 0 and target["queryType"] == "timeseries", where
        assert names[0] == "time" and types[0].startswith("DateTime"), where
        for n, t in zip(names[1:], types[1:], strict=True):
            assert _NUMERIC.match(t) or _LABEL.match(t), f"{where}: {n} is {t}"
        times = [r[0] for r in rows]
        assert times == sorted(times), f"{where}: not ordered by time"
        if several_points:
            assert len(set(times)) > 1, f"{where}: a single point"
    else:
        assert target["format"] == 1 and target["queryType"] == "table", where
        if panel["type"] == "stat":
            assert names == numeric, f"{where}: a stat shows numbers only"


def check_overrides(panel: dict[str, Any], columns: set[str]) -> None:
    """Field overrides name only columns the panel's queries return."""
    overrides = panel.get("fieldConfig", {}).get("overrides", [])
    named = {o["matcher"]["options"] for o in overrides if o["matcher"]["id"] == "byName"}
    assert named <= columns, f"{panel['title']}: overrides of missing {named - columns}"


SCOPES = [(ALL, ALL), ("billing", ALL), (ALL, "chat"), ("billing", "chat")]


@pytest.mark.parametrize(
    ("team", "channel", "window"), [(t, c, "15") for t, c in SCOPES] + [(ALL, ALL, "1440")]
)
def test_clickhouse_panels_return_their_columns(
    chdb_client: Any, store: ClickHouseStore, team: str, channel: str, window: str
) -> None:
    board = kpi_board()
    variables = {"team": team, "channel": channel, "window": window}
    assert set(variables) == set(board_variables(board))
    expander = Expander(FROM, TO, INTERVAL_S, variables)
    checked = 0
    for panel in panels(board):
        columns: set[str] = set()
        for target in panel.get("targets", []):
            if target["datasource"]["type"] != CLICKHOUSE:
                continue
            where = f"{panel['title']}/{target['refId']} ({team}, {channel}, {window})"
            names, types, rows = run(chdb_client, store, expander.expand(target["rawSql"]))
            columns |= set(names)
            check_result(panel, target, names, types, rows, where)
            checked += 1
        check_overrides(panel, columns)
    assert checked >= 15


def test_series_follow_the_team_and_channel_selection(
    chdb_client: Any, store: ClickHouseStore
) -> None:
    """The scope filter picks exactly one grouping: team+channel reads the team_channel rows."""
    board = kpi_board()
    (volume,) = [t for p, t in targets(board, CLICKHOUSE) if p["title"] == "Volume per interval"]
    totals = {}
    for team, channel in SCOPES:
        expander = Expander(at(0), at(20), 3600, {"team": team, "channel": channel, "window": "15"})
        names, _, rows = run(chdb_client, store, expander.expand(volume["rawSql"]))
        totals[(team, channel)] = sum(r[names.index("events")] for r in rows)
    db = store.database
    for (team, channel), total in totals.items():
        grouping = {
            (True, True): "overall",
            (False, True): "team",
            (True, False): "channel",
            (False, False): "team_channel",
        }[(team == ALL, channel == ALL)]
        (expected,) = store.query(
            f"SELECT sum(events) FROM {db}.kpi_minute_partials FINAL "
            f"WHERE grouping = '{grouping}' AND team = '{'' if team == ALL else team}' "
            f"AND channel = '{'' if channel == ALL else channel}' "
            f"AND minute BETWEEN toDateTime({int(at(0).timestamp())}) "
            f"AND toDateTime({int(at(20).timestamp())})"
        )[0]
        assert total == expected > 0, (team, channel)


def test_variable_queries(chdb_client: Any, store: ClickHouseStore) -> None:
    board = kpi_board()
    expander = Expander(FROM, TO, INTERVAL_S, {})
    values = {}
    for name, variable in board_variables(board).items():
        if variable["type"] != "query":
            continue
        assert variable["query"] == variable["definition"]
        names, types, rows = run(chdb_client, store, expander.expand(variable["query"]))
        assert len(names) == 1 and _LABEL.match(types[0]), name
        values[name] = [r[0] for r in rows]
    assert "billing" in values["team"] and "tech" in values["team"]
    assert "" not in values["team"] and "" not in values["channel"]
    assert values["channel"] == sorted(values["channel"]) and "chat" in values["channel"]
    window = board_variables(board)["window"]
    assert [o["value"] for o in window["options"]] == ["5", "15", "60", "1440"]


def test_alert_annotations(chdb_client: Any, store: ClickHouseStore) -> None:
    board = kpi_board()
    annotations = [
        a for a in board["annotations"]["list"] if a.get("datasource", {}).get("type") == CLICKHOUSE
    ]
    assert len(annotations) == 1
    (annotation,) = annotations
    sql = annotation["target"]["rawSql"]
    assert "cxpulse.alerts" in sql
    tables = {
        r[0]
        for r in store.query(f"SELECT name FROM system.tables WHERE database = '{store.database}'")
    }
    if "alerts" not in tables:
        # Before the alerting migration the annotation must be off (it would error).
        assert annotation["enable"] is False
        return
    assert annotation["enable"] is True
    seen = {}
    for team in (ALL, "billing"):
        expander = Expander(FROM, TO, INTERVAL_S, {"team": team, "channel": ALL, "window": "15"})
        names, types, rows = run(chdb_client, store, expander.expand(sql))
        assert names[:2] == ["time", "timeEnd"] and "text" in names and "tags" in names
        assert types[0].startswith("DateTime")
        seen[team] = [r[names.index("text")] for r in rows]
    assert len(seen[ALL]) == 2  # a1 and a2 overlap the range, a3 does not
    assert len(seen["billing"]) == 1 and seen["billing"][0].startswith("csat_pct firing")


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------

# Labels Prometheus adds when it scrapes, and the histogram bucket label.
_SCRAPE_LABELS = {"job", "instance"}


def exported_metrics() -> dict[str, set[str]]:
    """Sample name -> label names, for every metric pipeline/metrics.py declares."""
    metrics = Metrics.create(CollectorRegistry())
    out: dict[str, set[str]] = {}
    for metric in metrics:
        family = next(iter(metric.collect()))
        labels = set(metric._labelnames) | _SCRAPE_LABELS
        name = family.name
        if family.type == "counter":
            out[f"{name}_total"] = labels
            out[f"{name}_created"] = labels
        elif family.type == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = labels
            out[f"{name}_count"] = labels
        else:
            out[name] = labels
    return out


_PROM_METRIC = re.compile(r"\b(cxpulse_\w+)(\{[^}]*\})?")
_PROM_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def prometheus_targets() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {panel['title']}", target["expr"])
        for path in DASHBOARDS
        for panel, target in targets(load(path), PROMETHEUS)
    ]


def test_prometheus_exprs_use_declared_metrics_and_labels() -> None:
    known = exported_metrics()
    used: set[str] = set()
    exprs = prometheus_targets()
    assert len(exprs) >= 12
    for where, expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]"), where
        found = _PROM_METRIC.findall(expr)
        assert found, f"{where}: no cxpulse metric in {expr}"
        metric_labels: set[str] = set()
        for name, selector in found:
            assert name in known, f"{where}: {name} is not declared in pipeline/metrics.py"
            used.add(name)
            metric_labels |= known[name]
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                assert label in known[name], f"{where}: {name} has no label {label}"
        for group in _PROM_GROUPING.findall(expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in metric_labels, f"{where}: no label {label} to group by"
    required = {
        "cxpulse_events_total",
        "cxpulse_dead_letters_total",
        "cxpulse_late_events_total",
        "cxpulse_sink_rows_written_total",
        "cxpulse_sink_flush_seconds_bucket",
        "cxpulse_sink_paused",
        "cxpulse_watermark_seconds",
        "cxpulse_sink_cached_partials",
    }
    assert required <= used, f"pipeline board lacks {required - used}"


def test_prometheus_checker_rejects_unknown_names() -> None:
    known = exported_metrics()
    assert "cxpulse_events_total" in known and "verdict" in known["cxpulse_events_total"]
    assert "cxpulse_sink_flush_seconds_bucket" in known
    assert "cxpulse_event_total" not in known and "cxpulse_events" not in known
    assert "reason" not in known["cxpulse_events_total"]

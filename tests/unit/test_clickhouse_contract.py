"""ClickHouse as a contract: migrations, views and docs/clickhouse.md agree.

Everything runs on the session's embedded engine (chDB, ``chdb_client``): the schema is built
from nothing by the real migration runner, synthetic minute partials with known values are
inserted (several source partitions, several versions of a row, gaps between minutes), and
every view is checked column by column against the doc and value by value against the Python
implementation of the KPIs (``MinutePartial.kpis``, ``streams.partials.rolling``).
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse.migrate import load_migrations, migrate
from sinks.clickhouse.store import Capabilities, ClickHouseStore
from streams.partials import (
    KPI_NAMES,
    PARTIAL_COLUMNS,
    PERCENTILES,
    SKETCH_FIELDS,
    TIME_SUM_FIELDS,
    MinutePartial,
    merge_all,
    rolling,
)
from streams.rollup import GROUPINGS
from streams.sketch import quantile_sql

pytest.importorskip("clickhouse_connect")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "clickhouse.md"

# Minute 0 of the synthetic data (minute numbers below are offsets from it): yesterday 10:00
# UTC, so that the 400-day TTL the migration sets does not drop the rows as they are inserted.
T0 = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=1)
T0_MINUTE = int(T0.timestamp()) // 60
NEWEST = 20  # the newest minute stored (an `overall` row exists there)
DIMS = ("team", "channel", "region", "priority", "segment")
SERIES_COLUMNS = ("grouping", *DIMS)
PERCENTILE_KPIS = tuple(
    f"{p}_{label}" for p in ("frt", "reply", "resolution") for label, _ in PERCENTILES
)
PERCENTILE_REL = 1e-9  # ClickHouse's pow() may differ from Python's in the last bits
FLOAT_REL = 1e-12
KPI_VIEWS = ("kpi_minute_kpis", "kpi_window", "kpi_rolling", "kpi_latest_team")

# (grouping, team, channel, region, priority, segment): one series.
Series = tuple[str, str, str, str, str, str]


def series(grouping: str, **dims: str) -> Series:
    keep = GROUPINGS[grouping]
    for name, kept in zip(DIMS, keep, strict=True):
        assert (name in dims) == kept, f"{grouping} needs exactly its own dimensions"
    t, ch, r, p, s = (dims.get(name, "") for name in DIMS)
    return (grouping, t, ch, r, p, s)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def sql_time(minute: int, seconds: int = 0) -> str:
    moment = at(minute) + timedelta(seconds=seconds)
    return f"toDateTime('{moment:%Y-%m-%d %H:%M:%S}', 'UTC')"


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------


def make_partial(
    *,
    frt: tuple[tuple[float, bool], ...] = (),
    reply: tuple[float, ...] = (),
    resolution: tuple[float, ...] = (),
    csat: tuple[int, ...] = (),
    nps: tuple[int, ...] = (),
    ces: tuple[int, ...] = (),
    **counts: int,
) -> MinutePartial:
    """A partial from samples (recorded by the project's own rules) and plain counts."""
    p = MinutePartial()
    for seconds, breach in frt:
        p.add_frt(seconds, breach)
    for seconds in reply:
        p.add_reply(seconds)
    for seconds in resolution:
        p.add_resolution_time(seconds)
    for score in csat:
        p.add_csat(score)
    for score in nps:
        p.add_nps(score)
    for score in ces:
        p.add_ces(score)
    for name, value in counts.items():
        setattr(p, name, value)
    return p


def random_partial(rng: random.Random) -> MinutePartial:
    def duration() -> float:
        kind = rng.random()
        if kind < 0.1:
            return 0.0
        if kind < 0.15:
            return 42.0  # repeated values: many samples in one bucket
        return rng.lognormvariate(4.0, 1.8)

    resolutions = rng.randint(0, 4)
    return make_partial(
        frt=tuple((duration(), rng.random() < 0.3) for _ in range(rng.randint(0, 7))),
        reply=tuple(duration() for _ in range(rng.randint(0, 7))),
        resolution=tuple(duration() * 30 for _ in range(rng.randint(0, 4))),
        csat=tuple(rng.randint(1, 5) for _ in range(rng.randint(0, 3))),
        nps=tuple(rng.randint(0, 10) for _ in range(rng.randint(0, 3))),
        ces=tuple(rng.randint(1, 7) for _ in range(rng.randint(0, 3))),
        opened=rng.randint(0, 5),
        resolutions=resolutions,
        reopens=rng.randint(0, 2),
        one_touch_resolutions=rng.randint(0, resolutions),
        messages_customer=rng.randint(0, 9),
        messages_agent_human=rng.randint(0, 9),
        messages_agent_bot=rng.randint(0, 3),
        events=rng.randint(1, 30),
    )


@dataclass(frozen=True)
class Row:
    partition: int
    series: Series
    minute: int
    version: int
    partial: MinutePartial


@dataclass
class Dataset:
    """Rows in insertion batches (each batch one INSERT, i.e. one part: FINAL has work to do)."""

    batches: list[list[Row]] = field(default_factory=lambda: [[]])

    def add(
        self, partition: int, s: Series, minute: int, partial: MinutePartial, version: int = 0
    ) -> None:
        self.batches[-1].append(Row(partition, s, minute, version, partial))

    def new_batch(self) -> None:
        self.batches.append([])

    def current(self) -> dict[tuple[int, Series, int], Row]:
        """What ReplacingMergeTree(version) keeps: the highest version of each row key."""
        best: dict[tuple[int, Series, int], Row] = {}
        for batch in self.batches:
            for row in batch:
                key = (row.partition, row.series, row.minute)
                if key not in best or row.version >= best[key].version:
                    best[key] = row
        return best

    def minutes(self) -> dict[Series, dict[int, MinutePartial]]:
        """Per series and minute, the partials of all source partitions merged (= kpi_minute)."""
        out: dict[Series, dict[int, list[MinutePartial]]] = defaultdict(lambda: defaultdict(list))
        for row in self.current().values():
            out[row.series][row.minute].append(row.partial)
        return {
            s: {m: merge_all(ps) for m, ps in by_minute.items()} for s, by_minute in out.items()
        }

    def insert(self, store: ClickHouseStore, rng: random.Random) -> None:
        names = (
            "source_partition",
            "version",
            *SERIES_COLUMNS,
            "minute",
            *(f"{c}_us" if c in TIME_SUM_FIELDS else c for c in PARTIAL_COLUMNS),
        )
        for batch in self.batches:
            columns: list[list[Any]] = [[] for _ in names]
            for row in batch:
                values: list[Any] = [row.partition, row.version, *row.series, at(row.minute)]
                for name in PARTIAL_COLUMNS:
                    value = getattr(row.partial, name)
                    if name in SKETCH_FIELDS:
                        items = list(value.to_map().items())
                        rng.shuffle(items)  # a stored Map keeps insertion order: not sorted
                        value = dict(items)
                    elif name in TIME_SUM_FIELDS:
                        value = round(value * 1_000_000)  # as the sink stores them
                    values.append(value)
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
            store.insert("kpi_minute_partials", columns, names)


BILLING = series("team", team="billing")
BILLING_CHAT = series("team_channel", team="billing", channel="chat")
LEGAL = series("team", team="legal")
QUIET = series("region", region="quiet")  # events only: every ratio has a zero denominator
NO_OPENS = series("priority", priority="low")  # resolutions without opens in its minutes
RANDOM_SERIES = (
    series("overall"),
    series("team", team="tech"),
    series("team", team="vip"),
    series("channel", channel="chat"),
    series("channel", channel="email"),
    series("region", region="emea"),
    series("priority", priority="urgent"),
    series("segment", segment="smb"),
    series("team_channel", team="tech", channel="chat"),
    BILLING_CHAT,
)
BILLING_MINUTES = (0, 1, 3, 7)
BILLING_OPENED = {0: 4, 1: 10, 3: 100, 7: 1000}


def build_dataset(seed: int = 20250303) -> Dataset:
    rng = random.Random(seed)
    data = Dataset()
    # Obsolete versions first (own part): must never be visible.
    data.add(0, BILLING, 0, make_partial(opened=100, resolutions=100, events=1), version=5)
    data.new_batch()
    # Team billing, minute 0, hand-computable: two source partitions.
    data.add(
        0,
        BILLING,
        0,
        make_partial(
            frt=((30.0, False), (90.0, True)),
            csat=(5, 4, 2),
            opened=3,
            resolutions=2,
            one_touch_resolutions=1,
            reopens=1,
            events=9,
        ),
        version=9,
    )
    data.add(
        1,
        BILLING,
        0,
        make_partial(
            frt=((600.0, True),),
            nps=(10, 9, 3, 7),
            opened=1,
            resolutions=2,
            one_touch_resolutions=2,
            events=7,
        ),
        version=4,
    )
    # The rest of billing: opened 10, 100, 1000 at minutes 1, 3, 7 (gaps at 2, 4, 5, 6).
    data.add(2, BILLING, 1, make_partial(opened=6, resolutions=1, events=6), version=3)
    data.add(0, BILLING, 1, make_partial(opened=4, reply=(12.5,), events=4), version=11)
    data.add(1, BILLING, 3, make_partial(opened=100, ces=(7, 5, 2), events=100), version=12)
    data.add(2, BILLING, 7, make_partial(opened=1000, resolution=(7200.0,), events=1000), version=8)
    data.add(2, LEGAL, 2, random_partial(rng), version=1)
    for minute in (4, 5):
        data.add(minute % 3, QUIET, minute, make_partial(events=3, messages_agent_bot=3), version=2)
    data.add(
        1, NO_OPENS, 6, make_partial(resolutions=2, one_touch_resolutions=1, events=2), version=2
    )
    for s in RANDOM_SERIES:
        minutes = sorted(rng.sample(range(NEWEST), 12))
        if s[0] == "overall":
            minutes.append(NEWEST)
        for minute in minutes:
            for partition in rng.sample(range(3), rng.randint(1, 3)):
                data.add(partition, s, minute, random_partial(rng), version=rng.randint(1, 10**6))
    data.new_batch()
    # A lower version inserted after the higher one: still the higher version wins.
    data.add(0, BILLING, 0, make_partial(opened=50, events=50), version=7)
    return data


def migrated_store(client: Any, database: str) -> ClickHouseStore:
    """The whole schema in ``database`` (which exists), built by the real migration runner."""
    store = ClickHouseStore(client, database, Capabilities(embedded=True))
    migrate(store, minute_ttl_days=400, side_ttl_days=30)
    return store


def new_migrated_database(client: Any) -> ClickHouseStore:
    """A fresh database with the whole schema."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    client.command(f"CREATE DATABASE {name}")
    return migrated_store(client, name)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset()


@pytest.fixture(scope="module")
def store(chdb_client: Any, dataset: Dataset) -> Iterator[ClickHouseStore]:
    """One migrated database with the dataset, shared by this module's read-only tests."""
    st = new_migrated_database(chdb_client)
    dataset.insert(st, random.Random(7))
    try:
        yield st
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {st.database}")


# ---------------------------------------------------------------------------------------------
# Reading and comparing
# ---------------------------------------------------------------------------------------------


Query = Callable[[str], list[dict[str, Any]]]


def dict_rows(client: Any, sql: str) -> list[dict[str, Any]]:
    result = client.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


@pytest.fixture(scope="module")
def q(chdb_client: Any, store: ClickHouseStore) -> Query:
    """Run a query on the module's database; rows as dicts by column name."""
    return lambda sql: dict_rows(chdb_client, sql)


def minute_no(value: datetime) -> int:
    ts = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return int(ts.timestamp()) // 60 - T0_MINUTE


def by_series_minute(rows: list[dict[str, Any]]) -> dict[tuple[Series, int], dict[str, Any]]:
    out: dict[tuple[Series, int], dict[str, Any]] = {}
    for row in rows:
        key = (tuple(row[c] for c in SERIES_COLUMNS), minute_no(row["minute"]))
        assert key not in out, f"duplicate row {key}"
        out[key] = row  # type: ignore[index]
    return out  # type: ignore[return-value]


def assert_kpis(actual: dict[str, Any], expected: dict[str, float | None], where: object) -> None:
    for name in KPI_NAMES:
        got, want = actual[name], expected[name]
        if want is None:
            assert got is None, f"{where} {name}: {got!r}, expected NULL"
            continue
        assert got is not None, f"{where} {name}: NULL, expected {want!r}"
        if isinstance(want, int):
            assert got == want, f"{where} {name}: {got!r} != {want!r}"
        else:
            rel = PERCENTILE_REL if name in PERCENTILE_KPIS else FLOAT_REL
            assert math.isclose(got, want, rel_tol=rel, abs_tol=0.0), (
                f"{where} {name}: {got!r} != {want!r}"
            )


# ---------------------------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------------------------


def test_migrate_builds_the_schema_from_nothing_and_is_idempotent(
    chdb_client: Any, chdb_database: str
) -> None:
    store = ClickHouseStore(chdb_client, chdb_database, Capabilities(embedded=True))
    every = [m.version for m in load_migrations()]
    assert every[:2] == [1, 2]
    assert migrate(store, minute_ttl_days=400, side_ttl_days=30) == every
    assert migrate(store, minute_ttl_days=400, side_ttl_days=30) == []
    ledger = store.query(
        f"SELECT version, name FROM {chdb_database}.schema_migrations ORDER BY version"
    )
    assert ledger[:2] == [(1, "init"), (2, "views")]
    assert len(ledger) == len(every)  # the second run recorded nothing
    engines = dict(
        store.query(f"SELECT name, engine FROM system.tables WHERE database = '{chdb_database}'")
    )
    for view in ("kpi_minute", *KPI_VIEWS):
        assert engines[view] == "View"
    assert engines["kpi_minute_partials"] == "ReplacingMergeTree"


def test_views_migration_is_only_create_or_replace_view_on_cluster() -> None:
    (views,) = [m for m in load_migrations() if m.version == 2]
    statements = views.statements(db="DB", on_cluster="ON CLUSTER c")
    assert len(statements) == len(KPI_VIEWS)
    for statement, name in zip(statements, KPI_VIEWS, strict=True):
        assert statement.startswith(f"CREATE OR REPLACE VIEW DB.{name} ON CLUSTER c AS\n")
        # exactly one statement each (the runner leaves the file's last ';' on the last one)
        assert ";" not in statement.removesuffix(";")


# ---------------------------------------------------------------------------------------------
# docs/clickhouse.md is the contract: every documented column exists, with its type, in order
# ---------------------------------------------------------------------------------------------

_OBJECT_HEADING = re.compile(r"^### `([^`]+)`\s*$")
_SIGNATURE = re.compile(r"^(\w+)\((.*)\)$")
_PLACEHOLDER = re.compile(r"\{(\w+):([^}]+)\}")
SAMPLE_PARAMS = {"UInt32": "5", "DateTime('UTC')": sql_time(NEWEST)}
KPI_MARKER = "*KPI columns*"


@dataclass(frozen=True)
class DocObject:
    name: str
    params: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]


def doc_objects() -> tuple[dict[str, DocObject], list[tuple[str, str]]]:
    """The ``### `object` `` sections of the doc (KPI marker rows expanded), and the KPI table."""
    tables: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    for line in DOC.read_text("utf-8").splitlines():
        if line.startswith("#"):
            heading = _OBJECT_HEADING.match(line)
            current = heading.group(1) if heading else "KPI" if line == "## KPI columns" else None
            continue
        if current is None or not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == KPI_MARKER:
            tables.setdefault(current, []).append((KPI_MARKER, ""))
        elif cells[0].startswith("`") and cells[1].startswith("`"):
            assert len(cells) == 4, f"column row needs name | type | unit | meaning: {line}"
            tables.setdefault(current, []).append((cells[0].strip("`"), cells[1].strip("`")))
    kpi_columns = tables.pop("KPI")
    objects: dict[str, DocObject] = {}
    for title, rows in tables.items():
        columns: list[tuple[str, str]] = []
        for row in rows:
            columns.extend(kpi_columns if row[0] == KPI_MARKER else [row])
        name, params = title, ()
        signature = _SIGNATURE.match(title)
        if signature:
            name = signature.group(1)
            parts = re.split(r",\s*(?=\w+ )", signature.group(2))
            params = tuple((p.split(" ", 1)[0], p.split(" ", 1)[1]) for p in parts)
        objects[name] = DocObject(name, params, tuple(columns))
    return objects, kpi_columns


def test_doc_kpi_columns_are_the_python_kpis_in_order() -> None:
    _, kpi_columns = doc_objects()
    assert [name for name, _ in kpi_columns] == list(KPI_NAMES)


def test_every_table_and_view_matches_the_doc(store: ClickHouseStore) -> None:
    documented, _ = doc_objects()
    db = store.database
    existing = dict(
        store.query(f"SELECT name, create_table_query FROM system.tables WHERE database = '{db}'")
    )
    assert set(existing) == set(documented), "documented objects != objects in the database"
    for name, obj in documented.items():
        params = dict(_PLACEHOLDER.findall(existing[name]))
        assert params == dict(obj.params), f"{name}: parameters {params}, doc {obj.params}"
        args = ", ".join(f"{p} = {SAMPLE_PARAMS[t]}" for p, t in obj.params)
        target = f"{db}.{name}({args})" if obj.params else f"{db}.{name}"
        described = [(r[0], r[1]) for r in store.query(f"DESCRIBE TABLE {target}")]
        assert described == list(obj.columns), f"{name}: DESCRIBE differs from docs/clickhouse.md"


def test_doc_example_queries_run(store: ClickHouseStore) -> None:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL)
    assert len(blocks) >= 8
    for block in blocks:
        store.query(block.replace("cxpulse.", f"{store.database}."))  # raises on any error


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def test_minute_kpis_match_python(q: Query, store: ClickHouseStore, dataset: Dataset) -> None:
    rows = by_series_minute(q(f"SELECT * FROM {store.database}.kpi_minute_kpis"))
    expected = {
        (s, m): p.kpis() for s, by_minute in dataset.minutes().items() for m, p in by_minute.items()
    }
    assert set(rows) == set(expected)
    for key, want in expected.items():
        assert_kpis(rows[key], want, key)


def test_percentiles_are_quantile_sql_bit_for_bit(q: Query, store: ClickHouseStore) -> None:
    db = store.database
    exprs = ", ".join(
        f"{quantile_sql(f'm.{p}_sketch', qq)} AS {p}_{label}"
        for p in ("frt", "reply", "resolution")
        for label, qq in PERCENTILES
    )
    keys = ", ".join(SERIES_COLUMNS)
    reference = by_series_minute(q(f"SELECT {keys}, minute, {exprs} FROM {db}.kpi_minute AS m"))
    views = by_series_minute(q(f"SELECT * FROM {db}.kpi_minute_kpis"))
    assert set(reference) == set(views)
    for key, ref in reference.items():
        for name in PERCENTILE_KPIS:
            assert views[key][name] == ref[name], (key, name)


def test_hand_computed_minute(q: Query, store: ClickHouseStore) -> None:
    (row,) = q(
        f"SELECT * FROM {store.database}.kpi_minute_kpis "
        f"WHERE grouping = 'team' AND team = 'billing' AND minute = {sql_time(0)}"
    )
    # Partitions 0 and 1 merged; the obsolete versions (opened 100 and 50) are not visible.
    assert row["opened"] == 4
    assert (row["resolutions"], row["reopens"], row["one_touch_resolutions"]) == (4, 1, 3)
    assert (row["channel"], row["region"], row["priority"], row["segment"]) == ("", "", "", "")
    assert row["resolution_rate"] == 1.0
    assert row["one_touch_rate"] == 0.75
    assert row["reopen_rate"] == 0.25
    assert (row["frt_count"], row["frt_breaches"]) == (3, 2)
    assert row["frt_sla_breach_rate"] == pytest.approx(2 / 3)
    assert row["frt_avg"] == 240.0  # (30 + 90 + 600) / 3, exact from microsecond sums
    assert row["frt_p50"] == pytest.approx(90.0, rel=0.01)  # 2nd of 3 samples
    assert row["frt_p99"] == pytest.approx(600.0, rel=0.01)
    assert row["csat_pct"] == pytest.approx(200 / 3)
    assert row["csat_avg"] == pytest.approx(11 / 3)
    assert row["nps"] == 25.0  # 2 promoters, 1 detractor, 4 answers
    assert row["ces_avg"] is None and row["ces_easy_pct"] is None
    assert row["reply_p50"] is None and row["reply_avg"] is None
    assert row["events"] == 16


def test_empty_denominators_are_null_never_zero(q: Query, store: ClickHouseStore) -> None:
    db = store.database
    rows = q(f"SELECT * FROM {db}.kpi_minute_kpis WHERE grouping = 'region' AND region = 'quiet'")
    assert len(rows) == 2
    ratio_suffixes = ("_p50", "_p90", "_p95", "_p99", "_avg", "_rate", "_pct")
    for row in rows:
        assert row["events"] == 3
        for name in KPI_NAMES:
            if name.endswith(ratio_suffixes) or name == "nps":
                assert row[name] is None, name
            else:
                assert isinstance(row[name], int), name
    (row,) = q(
        f"SELECT * FROM {db}.kpi_window(window_minutes = 3, end_minute = {sql_time(7)}) "
        "WHERE grouping = 'priority' AND priority = 'low'"
    )
    assert (row["resolutions"], row["opened"]) == (2, 0)
    assert row["resolution_rate"] is None  # nothing opened: NULL, not 0 and not infinity
    assert row["one_touch_rate"] == 0.5
    assert row["reopen_rate"] == 0.0  # a real zero stays zero


def test_rolling_window_bounds(q: Query, store: ClickHouseStore) -> None:
    """A window of N minutes ending at E holds E-N+1 .. E; a point at each minute with data."""
    db = store.database

    def opened(n: int, from_minute: str, to_minute: str) -> dict[int, int]:
        rows = q(
            f"SELECT minute, opened, window_minutes FROM {db}.kpi_rolling(window_minutes = {n}, "
            f"from_minute = {from_minute}, to_minute = {to_minute}) "
            "WHERE grouping = 'team' AND team = 'billing' ORDER BY minute"
        )
        assert all(r["window_minutes"] == n for r in rows)
        return {minute_no(r["minute"]): r["opened"] for r in rows}

    everything = (sql_time(0), sql_time(NEWEST))
    # billing opened 4, 10, 100, 1000 at minutes 0, 1, 3, 7
    assert opened(1, *everything) == BILLING_OPENED
    assert opened(3, *everything) == {0: 4, 1: 14, 3: 110, 7: 1000}
    assert opened(4, *everything) == {0: 4, 1: 14, 3: 114, 7: 1000}  # 4..7: not minute 3
    assert opened(5, *everything) == {0: 4, 1: 14, 3: 114, 7: 1100}  # 3..7: minute 3 in
    assert opened(1440, *everything) == {0: 4, 1: 14, 3: 114, 7: 1114}
    # Minutes before from_minute fill the first windows but get no point of their own;
    # from_minute rounds up and to_minute down to whole minutes.
    assert opened(5, sql_time(1), sql_time(3)) == {1: 14, 3: 114}
    assert opened(5, sql_time(0, 30), sql_time(7, 59)) == {1: 14, 3: 114, 7: 1100}
    assert opened(60, sql_time(4), sql_time(6)) == {}  # no data at E: no point


@pytest.mark.parametrize("n", [1, 2, 5, 15, 60])
def test_rolling_matches_python(q: Query, store: ClickHouseStore, dataset: Dataset, n: int) -> None:
    first, last = 2, NEWEST
    rows = by_series_minute(
        q(
            f"SELECT * FROM {store.database}.kpi_rolling(window_minutes = {n}, "
            f"from_minute = {sql_time(first)}, to_minute = {sql_time(last)})"
        )
    )
    expected = {
        (s, end): rolling(by_minute, end, n).kpis()
        for s, by_minute in dataset.minutes().items()
        for end in by_minute
        if first <= end <= last
    }
    assert set(rows) == set(expected)
    for key, want in expected.items():
        assert rows[key]["window_minutes"] == n
        assert_kpis(rows[key], want, (n, key))


def test_rolling_of_one_minute_is_the_minute(q: Query, store: ClickHouseStore) -> None:
    db = store.database
    minute_rows = by_series_minute(q(f"SELECT * FROM {db}.kpi_minute_kpis"))
    rolled = by_series_minute(
        q(
            f"SELECT * EXCEPT (window_minutes) FROM {db}.kpi_rolling(window_minutes = 1, "
            f"from_minute = {sql_time(0)}, to_minute = {sql_time(NEWEST)})"
        )
    )
    assert rolled == minute_rows


@pytest.mark.parametrize(
    ("n", "end", "seconds"),
    [(1, 3, 0), (1, 4, 0), (3, 5, 0), (5, 7, 45), (15, NEWEST, 0), (15, 30, 0), (60, 12, 10)],
)
def test_window_matches_python(
    q: Query, store: ClickHouseStore, dataset: Dataset, n: int, end: int, seconds: int
) -> None:
    rows = q(
        f"SELECT * FROM {store.database}.kpi_window(window_minutes = {n}, "
        f"end_minute = {sql_time(end, seconds)})"
    )
    got = {tuple(r[c] for c in SERIES_COLUMNS): r for r in rows}
    assert len(got) == len(rows)
    expected = {
        s: rolling(by_minute, end, n).kpis()
        for s, by_minute in dataset.minutes().items()
        if any(end - n < m <= end for m in by_minute)
    }
    assert set(got) == set(expected)
    for s, want in expected.items():
        assert minute_no(got[s]["minute"]) == end  # floored to the minute
        assert got[s]["window_minutes"] == n
        assert_kpis(got[s], want, (n, end, s))


def test_latest_team(q: Query, store: ClickHouseStore, dataset: Dataset) -> None:
    got = {r["team"]: r for r in q(f"SELECT * FROM {store.database}.kpi_latest_team")}
    window = range(NEWEST - 14, NEWEST + 1)  # 15 minutes ending at the newest stored minute
    expected = {
        s[1]: rolling(by_minute, NEWEST, 15).kpis()
        for s, by_minute in dataset.minutes().items()
        if s[0] == "team" and any(m in window for m in by_minute)
    }
    assert "billing" in expected and "legal" not in expected  # legal's only minute is 2
    assert set(got) == set(expected)
    for team, want in expected.items():
        row = got[team]
        assert (row["grouping"], row["window_minutes"]) == ("team", 15)
        assert minute_no(row["minute"]) == NEWEST
        assert_kpis(row, want, team)
    assert got["billing"]["opened"] == 1000  # only minute 7 of billing is in 6..20


@pytest.mark.parametrize(
    "view",
    [
        f"kpi_window(window_minutes = 0, end_minute = {sql_time(NEWEST)})",
        f"kpi_rolling(window_minutes = 0, from_minute = {sql_time(0)}, "
        f"to_minute = {sql_time(NEWEST)})",
    ],
)
def test_window_of_zero_minutes_is_empty(store: ClickHouseStore, view: str) -> None:
    assert store.query(f"SELECT count() FROM {store.database}.{view}") == [(0,)]
    one = view.replace("window_minutes = 0", "window_minutes = 1")
    assert store.query(f"SELECT count() > 0 FROM {store.database}.{one}") == [(1,)]

"""The cluster form of the schema, rendered from the migrations (sinks/clickhouse/cluster.py).

chDB has no cluster, so the rendered SQL is checked two ways: every statement parses with the
real engine's parser (``formatQuery``) with its Replicated / Distributed engines, and the whole
script runs in a scratch database with those engines swapped for plain ones (Replicated*X ->
X, Distributed -> Merge over the ``_local`` table), after which every table, column, key and
view equals what ``migrate`` builds on one server. Nothing here names a table: a migration
added later (0006, 0007, ...) is covered by the same assertions.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli.main import cli
from sinks.clickhouse.cluster import cluster_plan, render_sql
from sinks.clickhouse.migrate import Migration, load_migrations, migrate, split_statements
from sinks.clickhouse.store import Capabilities, ClickHouseStore

pytest.importorskip("clickhouse_connect")

CLUSTER = "c1"
TTL = {"minute_ttl_days": 400, "side_ttl_days": 30}
_REPLICATED = re.compile(r"ENGINE = Replicated(\w+)\('[^']*', '[^']*'(?:, ([^)]*))?\)")
_DISTRIBUTED = re.compile(r"ENGINE = Distributed\('[^']*', (\w+), (\w+), .*\)$", re.S)
_CREATE = re.compile(r"CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW|DATABASE IF NOT EXISTS) (\S+)")


def statements(sql: str) -> list[str]:
    return [s.rstrip(";") for s in split_statements(sql)]


def rendered(database: str = "cxpulse") -> list[str]:
    return statements(render_sql(CLUSTER, database=database, **TTL))


@pytest.fixture(scope="module")
def migrated(chdb_client: Any) -> Iterator[ClickHouseStore]:
    """The single-server schema, built by the real migration runner."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    chdb_client.command(f"CREATE DATABASE {name}")
    store = ClickHouseStore(chdb_client, name, Capabilities(embedded=True))
    migrate(store, **TTL)
    try:
        yield store
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {name}")


def objects(store: ClickHouseStore, database: str) -> dict[str, tuple[str, str, str]]:
    """name -> (engine, sorting key, create query with the database name taken out)."""
    rows = store.query(
        "SELECT name, engine, sorting_key, create_table_query FROM system.tables "
        f"WHERE database = '{database}'"
    )
    return {n: (e, k, q.replace(f"{database}.", "DB.")) for n, e, k, q in rows}


def sharded_tables(migrated: ClickHouseStore) -> dict[str, str]:
    """Every MergeTree table migrate creates (but the ledger) -> its sorting key."""
    return {
        name: key
        for name, (engine, key, _q) in objects(migrated, migrated.database).items()
        if engine.endswith("MergeTree") and name != "schema_migrations"
    }


def test_rendered_sql_parses_with_the_real_engine(migrated: ClickHouseStore) -> None:
    statements = rendered()
    assert len(statements) >= 2 + 2 * len(sharded_tables(migrated))
    for statement in statements:
        text = migrated.query("SELECT formatQuery({q:String})", parameters={"q": statement})[0][0]
        if statement.startswith(("CREATE", "ALTER")):
            assert f"ON CLUSTER {CLUSTER}" in text, statement[:80]
    with pytest.raises(Exception, match="Syntax error"):
        migrated.query("SELECT formatQuery('CREATE TABLE x ON CLUSTER c (a UInt8')")


def test_every_table_is_a_replicated_local_table_plus_a_distributed_one(
    migrated: ClickHouseStore,
) -> None:
    creates = {m.group(1): s for s in rendered() if (m := _CREATE.match(s))}
    for table, sorting_key in sharded_tables(migrated).items():
        local = creates[f"cxpulse.{table}_local"]
        path = f"('/clickhouse/tables/{{shard}}/cxpulse/{table}_local', '{{replica}}'"
        assert re.search(r"ENGINE = Replicated\w*MergeTree" + re.escape(path), local), table
        dist = creates[f"cxpulse.{table}"]
        m = re.search(rf"ENGINE = Distributed\('{CLUSTER}', cxpulse, {table}_local, (.*)\)$", dist)
        assert m, dist
        assert f"AS cxpulse.{table}_local" in dist
        # The sharding key is a function of columns of the row key only: every version of a row
        # (same sorting key) lands on one shard, so FINAL per shard stays exact.
        key_columns = set(re.findall(r"\w+", m.group(1))) - {"cityHash64"}
        assert key_columns, table
        assert key_columns <= {c.strip(" ()") for c in sorting_key.split(",")}, (table, m.group(1))


def test_minute_partials_keep_a_series_on_one_shard_and_spread_overall() -> None:
    """The documented decision: no minute (a series stays together), the source partition in
    (the `overall` rows of each source partition go to different shards)."""
    (dist,) = [
        s
        for s in rendered()
        if s.startswith("CREATE TABLE IF NOT EXISTS cxpulse.kpi_minute_partials ON")
    ]
    assert dist.endswith(
        "cityHash64(grouping, team, channel, region, priority, segment, source_partition))"
    )


def plain(statement: str, scratch: str) -> str:
    """A rendered statement runnable on chDB: no ON CLUSTER, plain engines, scratch database."""
    text = statement.replace(f" ON CLUSTER '{CLUSTER}'", "").replace("cxpulse.", f"{scratch}.")
    text = _REPLICATED.sub(lambda m: f"ENGINE = {m.group(1)}({m.group(2) or ''})", text)
    return _DISTRIBUTED.sub(lambda m: f"ENGINE = Merge({scratch}, '^{m.group(2)}$')", text)


def test_rendered_schema_with_plain_engines_is_the_migrated_schema(
    chdb_client: Any, migrated: ClickHouseStore
) -> None:
    scratch = f"t_{uuid.uuid4().hex[:10]}"
    chdb_client.command(f"CREATE DATABASE {scratch}")
    try:
        for statement in rendered():
            if not statement.startswith("CREATE DATABASE"):
                chdb_client.command(plain(statement, scratch))
        mine = objects(migrated, scratch)
        theirs = objects(migrated, migrated.database)
        sharded = sharded_tables(migrated)
        # the same objects: each sharded table twice (_local + Distributed), the rest once
        assert sorted(mine) == sorted([*theirs, *(f"{t}_local" for t in sharded)])
        for name, (_engine, _key, query) in theirs.items():
            if name in sharded:
                # the _local table is the migrated table: columns, comments, keys, TTL
                local = mine[f"{name}_local"][2].replace(f"DB.{name}_local", f"DB.{name}")
                assert local == query, name
                assert mine[name][0] == "Merge"  # the Distributed stand-in
                assert columns(migrated, scratch, name) == columns(
                    migrated, migrated.database, name
                ), name
            else:
                assert mine[name] == theirs[name], name  # views, the ledger
        ledger = "SELECT version, name FROM {}.schema_migrations ORDER BY 1"
        assert migrated.query(ledger.format(scratch)) == migrated.query(
            ledger.format(migrated.database)
        )
        # The views read through the Distributed names (FINAL included).
        for version in (1, 2):
            chdb_client.command(
                f"INSERT INTO {scratch}.kpi_minute_partials_local "
                "(grouping, minute, version, opened, events) "
                f"VALUES ('overall', toStartOfMinute(now()), {version}, {version}, 1)"
            )
        rows = migrated.query(f"SELECT opened FROM {scratch}.kpi_minute_kpis")
        assert rows == [(2,)]  # the newest version only
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {scratch}")


def columns(store: ClickHouseStore, database: str, table: str) -> list[tuple[str, str]]:
    return store.query(
        f"SELECT name, type FROM system.columns WHERE database = '{database}' "
        f"AND table = '{table}' ORDER BY position"
    )


def test_a_later_migration_renders_without_naming_its_tables() -> None:
    """A new table, an ALTER of it and a view, as 0006/0007 will add: rendered generically."""
    extra = Migration(
        99,
        "future",
        "CREATE TABLE IF NOT EXISTS {db}.customer_risk {on_cluster}\n(\n"
        "    customer_id String,\n    day Date,\n    scored_at DateTime64(3, 'UTC'),\n"
        "    score Float64 COMMENT 'a, b'\n)\n"
        "ENGINE = {engine_prefix}ReplacingMergeTree(scored_at)\n"
        "ORDER BY (day, customer_id)\nTTL day + INTERVAL {side_ttl_days} DAY;\n"
        "ALTER TABLE {db}.customer_risk {on_cluster} ADD COLUMN IF NOT EXISTS team String,\n"
        "    MODIFY TTL day + INTERVAL 9 DAY;\n"
        "CREATE OR REPLACE VIEW {db}.risky {on_cluster} AS SELECT * FROM {db}.customer_risk;\n",
    )
    plan = cluster_plan(CLUSTER, database="db", migrations=[*load_migrations(), extra], **TTL)
    assert plan[-1][0] is extra
    local, dist, alter_local, alter_dist, view = plan[-1][1]
    assert local.startswith("CREATE TABLE IF NOT EXISTS db.customer_risk_local ON CLUSTER 'c1'")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/db/customer_risk_local', '{replica}', scored_at)"
    ) in local
    # no date/time column in the key: all days of a customer on one shard
    assert dist.endswith(
        "ENGINE = Distributed('c1', db, customer_risk_local, cityHash64(customer_id))"
    )
    assert alter_local.startswith("ALTER TABLE db.customer_risk_local ON CLUSTER 'c1' ADD COLUMN")
    assert "MODIFY TTL" in alter_local
    # only the column change reaches the Distributed table
    want = "ALTER TABLE db.customer_risk ON CLUSTER 'c1' ADD COLUMN IF NOT EXISTS team String"
    assert " ".join(alter_dist.split()) == want
    assert view.startswith("CREATE OR REPLACE VIEW db.risky ON CLUSTER 'c1' AS")


class RecordingStore:
    """Records what ``migrate`` sends; the ledger is empty."""

    capabilities = Capabilities(embedded=False, clustered=True)
    database = "cxpulse"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def command(self, sql: str, /) -> None:
        self.commands.append(sql)

    def query(self, sql: str, /, parameters: dict[str, Any] | None = None) -> list[Any]:
        return []


def test_migrate_on_a_cluster_runs_exactly_the_printed_sql() -> None:
    store = RecordingStore()
    applied = migrate(store, cluster=CLUSTER, **TTL)  # type: ignore[arg-type]
    assert applied == [m.version for m in load_migrations()]
    norm = [" ".join(s.rstrip(";").split()) for s in store.commands]
    assert norm == [" ".join(s.split()) for s in rendered()]


def test_cli_prints_without_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    # an address nothing listens on: printing must not try it
    monkeypatch.setenv("CXPULSE_CLICKHOUSE__DSN", "http://u:p@127.0.0.1:9/")
    result = CliRunner().invoke(cli, ["db", "migrate", "--cluster", CLUSTER, "--print"])
    assert result.exit_code == 0, result.output
    assert statements(result.output) == rendered()
    upgrade = CliRunner().invoke(
        cli, ["db", "migrate", "--cluster", CLUSTER, "--print", "--after", "4"]
    )
    assert "-- migration 0004" not in upgrade.output
    assert "-- migration 0005_progress" in upgrade.output
    bad = CliRunner().invoke(cli, ["db", "migrate", "--cluster", "x'; DROP", "--print"])
    assert bad.exit_code == 2
    assert "invalid cluster name" in bad.output
    after_without_print = CliRunner().invoke(cli, ["db", "migrate", "--after", "3"])
    assert after_without_print.exit_code == 2
    monkeypatch.setenv("CXPULSE_CLICKHOUSE__DSN", "chdb://memory")
    embedded = CliRunner().invoke(cli, ["db", "migrate", "--cluster", CLUSTER])
    assert embedded.exit_code == 1
    assert "needs a ClickHouse server" in embedded.output

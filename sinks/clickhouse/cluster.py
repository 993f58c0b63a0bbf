"""The cluster form of the schema, rendered from the migrations: one source for both layouts.

On a ClickHouse cluster (several shards, each replicated) every MergeTree table a migration
creates becomes two:

* ``<name>_local``: the same table with a ``Replicated*MergeTree`` engine on every node, holding
  its shard's rows (Keeper path ``/clickhouse/tables/{shard}/<db>/<name>_local``, replica
  ``{replica}``: explicit, so a table can be found in Keeper by name);
* ``<name>``: a ``Distributed`` table over the ``_local`` tables of all shards, under the name
  the single-server schema gives the real table, so the sink, the views, Grafana and every
  query of docs/clickhouse.md work unchanged against any node.

**Sharding key** = the table's sorting key (ORDER BY at creation) without its date/time
columns. Every version of a row has the same sorting key, hence lands on the same shard, so
``ReplacingMergeTree`` and ``FINAL``, which deduplicate per shard (the Distributed engine runs
``FINAL`` on each shard), still keep only the newest version. Leaving time out keeps a series
(all minutes of one grouping and source partition) on one shard, and the source partition in
``kpi_minute_partials``' key spreads the ``overall`` rows (and any hot team) over shards.

Views are created ``ON CLUSTER`` unchanged (they read the Distributed names). An ``ALTER`` of a
sharded table is applied to its ``_local`` table; its column changes (ADD/DROP/MODIFY/RENAME/
COMMENT COLUMN) also to the Distributed table, which must list the same columns. Nothing here
knows table names: new migrations render the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.core.errors import CxpulseError
from sinks.clickhouse.migrate import Migration, load_migrations

__all__ = [
    "ClusterSchema",
    "check_cluster_name",
    "cluster_plan",
    "cluster_setup",
    "ledger_insert",
    "plain_plan",
    "render_sql",
]

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.{}-]+")
_CREATE_TABLE = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<db>[\w`]+)\.(?P<name>[\w`]+)", re.I
)
_ALTER_TABLE = re.compile(r"ALTER\s+TABLE\s+(?P<db>[\w`]+)\.(?P<name>[\w`]+)", re.I)
_DROP_TABLE = re.compile(
    r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<db>[\w`]+)\.(?P<name>[\w`]+)", re.I
)
_ON_CLUSTER = re.compile(r"\s+ON\s+CLUSTER\s+('[^']*'|\S+)", re.I)
_ENGINE = re.compile(r"ENGINE\s*=\s*(?:Replicated)?(?P<family>\w*MergeTree)\b", re.I)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+", re.I)
_CLAUSE_END = re.compile(r"\n\s*(?:PARTITION|PRIMARY|SAMPLE|TTL|SETTINGS|COMMENT)\b|$", re.I)
_COLUMN_CLAUSE = re.compile(r"(?:ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)
_NOT_COLUMN = re.compile(r"(?:INDEX|PROJECTION|CONSTRAINT)\b", re.I)
_IDENT = re.compile(r"`([^`]+)`|\b([A-Za-z_]\w*)\b")
_TIME_TYPE = re.compile(r"(?:Nullable\()?(?:LowCardinality\()?Date", re.I)
_INT_TYPE = re.compile(r"U?Int\d+$")


def check_cluster_name(name: str) -> str:
    """A cluster name (or a ``{macro}``) safe to put into DDL."""
    if not _CLUSTER_NAME.fullmatch(name):
        raise CxpulseError(
            f"invalid cluster name {name!r}: use letters, digits, '_', '.', '-' "
            "(or a macro such as {cluster})"
        )
    return name


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses, brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _balanced(text: str, open_at: int) -> int:
    """Index just past the parenthesis closing the one at ``open_at``."""
    depth, quote = 0, ""
    for i in range(open_at, len(text)):
        ch = text[i]
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise CxpulseError(f"unbalanced parentheses in migration SQL: {text[:80]!r}")


def _unquote(name: str) -> str:
    return name.strip("`")


@dataclass
class _Table:
    columns: dict[str, str]  # name -> type text
    sharding_key: str


@dataclass
class ClusterSchema:
    """Renders migration statements in order, remembering which tables it sharded."""

    cluster: str
    database: str
    tables: dict[str, _Table] = field(default_factory=dict)

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER '{self.cluster}'"

    def render(self, statement: str) -> list[str]:
        """The cluster form of one rendered migration statement (one or more statements)."""
        if m := _CREATE_TABLE.match(statement):
            return self._create(statement, m)
        if m := _ALTER_TABLE.match(statement):
            return self._alter(statement, m)
        if m := _DROP_TABLE.match(statement):
            return self._drop(statement, m)
        return [statement]

    # ------------------------------------------------------------------ CREATE TABLE

    def _create(self, statement: str, m: re.Match[str]) -> list[str]:
        name = _unquote(m.group("name"))
        engine = _ENGINE.search(statement)
        if engine is None:  # not a MergeTree table (Memory, Null, ...): one per node, as is
            return [statement]
        open_at = statement.find("(", m.end())
        if open_at < 0 or open_at > engine.start():
            raise CxpulseError(
                f"cannot render the cluster form of {name}: a MergeTree table needs its own "
                "column list in the migration (CREATE TABLE ... AS other is not supported)"
            )
        close_at = _balanced(statement, open_at)
        columns = _columns(statement[open_at + 1 : close_at - 1])
        local = f"{name}_local"
        header = statement[: m.start("name")] + local + statement[m.end("name") : m.end()]
        text = header + statement[m.end() :]
        text = self._replicated_engine(text, local)
        key = _sharding_key(name, statement[close_at:], columns)
        self.tables[name] = _Table(columns, key)
        db = m.group("db")
        dist = (
            f"CREATE TABLE IF NOT EXISTS {db}.{name} {self.on_cluster}\n"
            f"AS {db}.{local}\n"
            f"ENGINE = Distributed('{self.cluster}', {db}, {local}, {key})"
        )
        return [text, dist]

    def _replicated_engine(self, text: str, local: str) -> str:
        engine = _ENGINE.search(text)
        assert engine is not None
        family = engine.group("family")
        end = engine.end()
        args = ""
        rest = text[end:]
        stripped = rest.lstrip()
        if stripped.startswith("("):
            open_at = end + (len(rest) - len(stripped))
            close_at = _balanced(text, open_at)
            args = text[open_at + 1 : close_at - 1].strip()
            end = close_at
        path = f"'/clickhouse/tables/{{shard}}/{self.database}/{local}', '{{replica}}'"
        params = f"{path}, {args}" if args else path
        return f"{text[: engine.start()]}ENGINE = Replicated{family}({params}){text[end:]}"

    # ------------------------------------------------------------------ ALTER / DROP

    def _alter(self, statement: str, m: re.Match[str]) -> list[str]:
        name = _unquote(m.group("name"))
        table = self.tables.get(name)
        if table is None:  # a view or an unsharded table
            return [statement]
        local = statement[: m.start("name")] + f"{name}_local" + statement[m.end("name") :]
        out = [local]
        head_end = m.end()
        cluster = _ON_CLUSTER.match(statement, head_end)
        if cluster:
            head_end = cluster.end()
        clauses = split_top_level(statement[head_end:])
        column_clauses = [c for c in clauses if _COLUMN_CLAUSE.match(c)]
        if column_clauses:
            out.append(statement[:head_end] + "\n    " + ",\n    ".join(column_clauses))
        return out

    def _drop(self, statement: str, m: re.Match[str]) -> list[str]:
        name = _unquote(m.group("name"))
        if name not in self.tables:
            return [statement]
        del self.tables[name]
        local = statement[: m.start("name")] + f"{name}_local" + statement[m.end("name") :]
        # Keeper keeps a dropped replica's metadata until the drop is synchronous.
        return [statement, local if local.rstrip().upper().endswith("SYNC") else local + " SYNC"]


def _columns(body: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in split_top_level(body):
        if _NOT_COLUMN.match(item):
            continue
        m = re.match(r"(`[^`]+`|\w+)\s+(.*)", item, re.S)
        if m:
            out[_unquote(m.group(1))] = m.group(2).strip()
    return out


def _order_by(name: str, statement: str) -> list[str]:
    m = _ORDER_BY.search(statement)
    if m is None:
        raise CxpulseError(f"cannot render the cluster form of {name}: no ORDER BY")
    rest = statement[m.end() :]
    if rest.startswith("("):
        inner = rest[1 : _balanced(rest, 0) - 1]
        return split_top_level(inner)
    end = _CLAUSE_END.search(rest)
    expr = rest[: end.start() if end else len(rest)].strip()
    return [] if expr.lower() in ("tuple()", "") else [expr]


def _sharding_key(name: str, statement: str, columns: dict[str, str]) -> str:
    """The sorting key without date/time columns: all versions of a row share a shard."""
    items = _order_by(name, statement)
    time_cols = {c for c, t in columns.items() if _TIME_TYPE.match(t)}

    def uses_time(expr: str) -> bool:
        return any((a or b) in time_cols for a, b in _IDENT.findall(expr))

    kept = [e for e in items if not uses_time(e)] or items
    if not kept:
        return "rand()"  # no sorting key: no versions to keep together
    only_type = (columns.get(_unquote(kept[0]), "") or "-").split()[0] if kept else ""
    if len(kept) == 1 and _INT_TYPE.match(only_type):
        return kept[0]  # one integer column (a source partition): spread evenly, no hashing
    return f"cityHash64({', '.join(kept)})"


def cluster_setup(cluster: str, database: str) -> list[str]:
    """The database on every node, and the migration ledger replicated to all of them.

    The ledger has one Keeper path for the whole cluster (replica ``{shard}_{replica}``), so
    whichever node a later ``cxpulse db migrate --cluster`` connects to sees every version.
    """
    on = f"ON CLUSTER '{check_cluster_name(cluster)}'"
    return [
        f"CREATE DATABASE IF NOT EXISTS {database} {on}",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations {on}\n"
        "(\n    version UInt32,\n    name String,\n"
        "    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)\n)\n"
        f"ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', "
        "'{shard}_{replica}')\nORDER BY version",
    ]


def ledger_insert(database: str, mig: Migration) -> str:
    return (
        f"INSERT INTO {database}.schema_migrations (version, name) "
        f"VALUES ({mig.version}, '{mig.name}')"
    )


def cluster_plan(
    cluster: str,
    *,
    database: str,
    minute_ttl_days: int,
    side_ttl_days: int,
    migrations: list[Migration] | None = None,
) -> list[tuple[Migration, list[str]]]:
    """Every migration with its cluster statements, in order (all of them: later ones depend
    on what earlier ones created)."""
    schema = ClusterSchema(check_cluster_name(cluster), database)
    params = {
        "db": database,
        "minute_ttl_days": str(minute_ttl_days),
        "side_ttl_days": str(side_ttl_days),
        "on_cluster": schema.on_cluster,
        "engine_prefix": "Replicated",
    }
    plan = []
    for mig in migrations if migrations is not None else load_migrations():
        plan.append((mig, [s for st in mig.statements(**params) for s in schema.render(st)]))
    return plan


def plain_plan(
    *, database: str, minute_ttl_days: int, side_ttl_days: int
) -> list[tuple[Migration, list[str]]]:
    """Every migration with its single-server statements (what ``migrate`` runs)."""
    params = {
        "db": database,
        "minute_ttl_days": str(minute_ttl_days),
        "side_ttl_days": str(side_ttl_days),
        "on_cluster": "",
        "engine_prefix": "",
    }
    return [(mig, mig.statements(**params)) for mig in load_migrations()]


def render_sql(
    cluster: str | None,
    *,
    database: str,
    minute_ttl_days: int,
    side_ttl_days: int,
    after: int = 0,
) -> str:
    """The schema as one SQL script (migrations above ``after`` only), for a cluster or not."""
    ttl = dict(minute_ttl_days=minute_ttl_days, side_ttl_days=side_ttl_days)
    if cluster:
        plan = cluster_plan(cluster, database=database, **ttl)
        setup = cluster_setup(cluster, database)
        lines = [
            f"-- cxpulse schema for ClickHouse cluster '{cluster}', database {database}, "
            "rendered by `cxpulse db migrate --cluster NAME --print`",
            "-- from sinks/clickhouse/migrations: do not edit, render again. Tables: "
            "<name>_local (Replicated*MergeTree, one copy per replica of a shard)",
            "-- and <name> (Distributed over all shards, sharded by the sorting key without "
            "its time columns, so every version of a row stays on one shard).",
        ]
    else:
        plan = plain_plan(database=database, **ttl)
        setup = [
            f"CREATE DATABASE IF NOT EXISTS {database}",
            f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations (version UInt32, "
            "name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = MergeTree ORDER BY version",
        ]
        lines = [
            f"-- cxpulse schema for one ClickHouse server, database {database}, rendered by "
            "`cxpulse db migrate --print` from sinks/clickhouse/migrations.",
        ]
    lines += [
        f"-- TTLs: {minute_ttl_days} days (minutes, facts), {side_ttl_days} days (side "
        "tables). Apply with clickhouse-client --multiquery < this file.",
        "",
    ]
    for statement in setup:
        lines += [statement + ";", ""]
    for mig, statements in plan:
        if mig.version <= after:
            continue
        lines.append(f"-- migration {mig.version:04d}_{mig.name}")
        for statement in [*statements, ledger_insert(database, mig)]:
            lines += [statement.rstrip().rstrip(";") + ";", ""]
    return "\n".join(lines)

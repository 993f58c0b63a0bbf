"""Versioned schema migrations, recorded in ClickHouse itself (``schema_migrations``).

Files ``migrations/NNNN_name.sql`` run in order; each statement is idempotent
(``IF NOT EXISTS`` / ``CREATE OR REPLACE``) because ClickHouse DDL is not transactional: a
migration interrupted halfway is simply run again. A version is recorded only after all
its statements succeeded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from pipeline.core.logs import kv
from sinks.clickhouse.store import Store

__all__ = ["Migration", "applied_versions", "load_migrations", "migrate", "render"]

log = logging.getLogger(__name__)
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, **params: str) -> list[str]:
        return split_statements(render(self.sql, **params))


def render(sql: str, **params: str) -> str:
    """Fill ``{placeholder}`` names (only known ones; other braces stay)."""
    for key, value in params.items():
        sql = sql.replace("{" + key + "}", value)
    return sql


def split_statements(sql: str) -> list[str]:
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";").strip()]


def load_migrations() -> list[Migration]:
    folder = resources.files("sinks.clickhouse") / "migrations"
    found = []
    for entry in folder.iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda mig: mig.version)


def _ensure_ledger(store: Store, cluster: str | None) -> None:
    """The ledger: per server, or on a cluster replicated to every node (with the database).

    Created before anything reads it, in the right form: a plain ledger made first on one
    node of a cluster would shadow the replicated one there (``IF NOT EXISTS``).
    """
    if cluster:
        from sinks.clickhouse.cluster import cluster_setup

        for statement in cluster_setup(cluster, store.database):
            store.command(statement)
        return
    store.command(
        f"CREATE TABLE IF NOT EXISTS {store.database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )


def applied_versions(store: Store, cluster: str | None = None) -> set[int]:
    _ensure_ledger(store, cluster)
    return _read_versions(store)


def _read_versions(store: Store) -> set[int]:
    rows = store.query(f"SELECT DISTINCT version FROM {store.database}.schema_migrations")
    return {int(r[0]) for r in rows}


def migrate(
    store: Store,
    *,
    minute_ttl_days: int,
    side_ttl_days: int,
    cluster: str | None = None,
    progress: Callable[[Migration], None] | None = None,
) -> list[int]:
    """Apply pending migrations; return the versions applied now (empty when up to date).

    With ``cluster`` the statements are the cluster form (``sinks.clickhouse.cluster``:
    ``<name>_local`` replicated tables + ``Distributed`` tables, a ledger replicated to every
    node), the same SQL ``cxpulse db migrate --cluster NAME --print`` shows.
    """
    from sinks.clickhouse.cluster import cluster_plan, plain_plan

    plan: list[tuple[Migration, list[str]]]
    _ensure_ledger(store, cluster)
    if cluster:
        plan = cluster_plan(
            cluster,
            database=store.database,
            minute_ttl_days=minute_ttl_days,
            side_ttl_days=side_ttl_days,
        )
    else:
        plan = plain_plan(
            database=store.database,
            minute_ttl_days=minute_ttl_days,
            side_ttl_days=side_ttl_days,
        )
    done = _read_versions(store)
    applied: list[int] = []
    for mig, statements in plan:
        if mig.version in done:
            continue
        for statement in statements:
            store.command(statement)
        store.command(
            f"INSERT INTO {store.database}.schema_migrations (version, name) "
            f"VALUES ({mig.version}, '{mig.name}')"
        )
        applied.append(mig.version)
        log.info("migration applied", extra=kv(version=mig.version, name=mig.name))
        if progress:
            progress(mig)
    return applied

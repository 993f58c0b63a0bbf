"""One ClickHouse connection behind a small protocol, for the embedded engine and servers.

The DSN picks the backend (``chdb://path`` embedded, ``http(s)://`` a server); capability
flags, not DSN checks scattered through the code, say what differs. chDB allows one engine
per path per process and has no async client, so every call here is synchronous and the
async callers run it in a worker thread; one client per :class:`Store`, never shared
between concurrent tasks (clickhouse-connect #295).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pipeline.core.errors import CxpulseError
from pipeline.core.logs import kv

__all__ = ["Capabilities", "ClickHouseStore", "Store", "StoreUnavailable", "open_store"]

log = logging.getLogger(__name__)


class StoreUnavailable(CxpulseError):
    """ClickHouse cannot be reached or refused the request for a transient reason."""


@dataclass(frozen=True)
class Capabilities:
    embedded: bool  # chDB: one process per path, no async client
    clustered: bool = False


@runtime_checkable
class Store(Protocol):
    capabilities: Capabilities
    database: str

    def command(self, sql: str, /) -> Any: ...

    def query(
        self, sql: str, /, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]: ...

    def insert(
        self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str], /
    ) -> int: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


# Server error codes worth retrying (overload, timeouts, replicas, memory).
_TRANSIENT_CODES = {159, 164, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 999, 1000}


def _is_transient(exc: Exception) -> bool:
    from clickhouse_connect.driver import exceptions as cce

    if isinstance(exc, cce.OperationalError):
        return True
    code = getattr(exc, "code", None)
    return code in _TRANSIENT_CODES


class ClickHouseStore:
    """:class:`Store` over one clickhouse-connect client."""

    def __init__(self, client: Any, database: str, capabilities: Capabilities) -> None:
        self._client = client
        # The sink's flush thread and the web view may both call in; one client must never
        # run two queries at once (clickhouse-connect #295).
        self._lock = threading.Lock()
        self.database = database
        self.capabilities = capabilities

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return fn(*args, **kwargs)
        except Exception as exc:
            if _is_transient(exc):
                raise StoreUnavailable(f"ClickHouse {what} failed: {exc}") from exc
            raise

    def command(self, sql: str, /) -> Any:
        return self._run("command", self._client.command, sql)

    def query(self, sql: str, /, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = self._run("query", self._client.query, sql, parameters=parameters)
        return list(result.result_rows)

    def insert(
        self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str], /
    ) -> int:
        if not columns or not len(columns[0]):
            return 0
        self._run(
            "insert",
            self._client.insert,
            table,
            columns,
            column_names=list(column_names),
            column_oriented=True,
            database=self.database,
        )
        return len(columns[0])

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._client.close()


def open_store(dsn: str, database: str, *, create_database: bool = True) -> ClickHouseStore:
    """Connect to ``dsn``; one-line errors that say what to fix."""
    try:
        import clickhouse_connect
    except ImportError as exc:  # pragma: no cover - the dependency is required
        raise CxpulseError(
            'clickhouse-connect is missing: run "pip install clickhouse-connect[chdb]" to fix it'
        ) from exc
    embedded = dsn.startswith("chdb://")
    path = dsn.removeprefix("chdb://")
    in_memory = path in ("", "memory", ":memory:")
    if embedded and not create_database and not in_memory and not os.path.exists(path):
        raise CxpulseError(
            f"no embedded ClickHouse at {path} yet (start the sink, or run "
            "`cxpulse db migrate`, or set CXPULSE_CLICKHOUSE__DSN)"
        )
    if embedded:
        try:
            import chdb  # noqa: F401
        except ImportError as exc:
            raise CxpulseError(
                'the embedded engine needs chDB: run "pip install clickhouse-connect[chdb]"'
            ) from exc
    try:
        # clickhouse-connect picks TLS from the port unless told: say it from the scheme, so
        # https:// on any port is TLS and http:// never is.
        kwargs = {"interface": "https" if dsn.startswith("https://") else "http"}
        client = clickhouse_connect.get_client(dsn=dsn, **({} if embedded else kwargs))
    except Exception as exc:
        text = str(exc)
        if "Cannot lock file" in text:
            raise CxpulseError(
                f"another process already holds the embedded ClickHouse at {dsn} "
                "(chDB allows one process per path: stop it, or use a ClickHouse server DSN)"
            ) from exc
        raise CxpulseError(f"cannot connect to ClickHouse at {_redact(dsn)}: {text}") from exc
    store = ClickHouseStore(client, database, Capabilities(embedded=embedded))
    if create_database:
        store.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    log.info("clickhouse connected", extra=kv(dsn=_redact(dsn), database=database))
    return store


def _redact(dsn: str) -> str:
    from pipeline.core.config import redact_dsn

    return redact_dsn(dsn)

"""Faust app factories: wiring only (the logic lives in ``streams`` and ``sinks``).

Two roles, two consumer groups:

- ``compute`` (``<app_id>-compute``): any number of workers split the events topic's
  partitions; each folds its partitions' events into conversation state and writes the
  conversation log.
- ``sink`` (``<app_id>-sink``): reads the conversation log and side topics and owns the
  ClickHouse writes. With embedded chDB exactly one sink process runs (one engine per
  path); with a server DSN several sink workers may split the partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import faust

from pipeline.core.config import Settings
from pipeline.core.metrics import Metrics

__all__ = ["Role", "RoleApp", "create_app"]

Role = Literal["compute", "sink"]


@dataclass
class RoleApp:
    app: faust.App
    role: Role
    handle: Any  # ComputeRole or the sink agent
    sink: Any = None  # KpiSink for the sink role
    store: Any = None


def _faust_app(settings: Settings, role: Role, worker_id: str, store_url: str) -> faust.App:
    web_port = settings.ports.worker_web if role == "compute" else settings.ports.sink_web
    kafka = settings.kafka
    credentials: Any = None
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username or "",
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=_ssl_context(settings) if kafka.security_protocol == "SASL_SSL" else None,
        )
    elif kafka.security_protocol == "SSL":
        credentials = faust.SSLCredentials(_ssl_context(settings))
    datadir = (settings.data_dir / "faust" / f"{role}-{worker_id}").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"{settings.app_id}-{role}",
        broker=kafka.faust_broker_url(),
        broker_credentials=credentials,
        store=store_url,
        datadir=str(datadir),
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Batch produce requests: one conversation-log record per event would otherwise
        # mean one tiny request per event (measured: a third of the worker's CPU).
        producer_linger=0.005,
        producer_max_batch_size=256 * 1024,
        web_enabled=bool(web_port),
        web_port=web_port or 6066,
        web_host="127.0.0.1",
        autodiscover=False,
        # Our key=value logging stays in charge.
        loghandlers=[],
    )


def _ssl_context(settings: Settings) -> Any:
    import ssl

    cafile = settings.kafka.ssl_cafile
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


def create_app(
    settings: Settings,
    role: Role,
    *,
    worker_id: str = "0",
    metrics: Metrics | None = None,
    table_store: str = "rocksdb://",
) -> RoleApp:
    """Build the Faust app of one role. The sink role opens ClickHouse and migrates it."""
    metrics = metrics or Metrics.create()
    if role == "compute":
        from streams.compute import register_compute

        app = _faust_app(settings, role, worker_id, table_store)
        return RoleApp(app, role, register_compute(app, settings, metrics))

    from pipeline.app.sink_role import register_sink
    from sinks.clickhouse.kpi_sink import KpiSink
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.store import open_store

    store = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    migrate(
        store,
        minute_ttl_days=settings.clickhouse.minute_ttl_days,
        side_ttl_days=settings.clickhouse.side_ttl_days,
    )
    sink = KpiSink(
        store,
        log_topic=settings.topics.conversation_log,
        dead_letter_topic=settings.topics.dead_letter,
        late_topic=settings.topics.late_events,
        allowed_lateness_seconds=settings.kpi.allowed_lateness_seconds,
        metrics=metrics,
        retry_after=settings.sink.retry_initial_seconds,
    )
    app = _faust_app(settings, role, worker_id, "memory://")
    agent = register_sink(app, settings, metrics, sink)
    _register_board(app, store)
    return RoleApp(app, role, agent, sink=sink, store=store)


def _register_board(app: faust.App, store: Any) -> None:
    """``GET /kpis`` on the sink: the live board, served by the process that owns chDB."""
    import asyncio

    from sinks.clickhouse.queries import board_payload

    @app.page("/kpis")
    async def kpis(web: Any, request: Any) -> Any:
        payload = await asyncio.get_running_loop().run_in_executor(None, board_payload, store)
        return web.json(payload)

"""Faust app factories: wiring only (the logic lives in ``streams`` and ``sinks``).

Faust is the worker runtime (lifecycle, signals, web endpoints); the hot path of each role
is a batch service it starts and stops (``streams.runtime`` for compute, ``sinks.runner``
for the sink), because Faust's per-message stream path tops out far below a bare consumer.

- ``compute`` (consumer group ``<app_id>-compute``): any number of workers split the
  events topic's partitions; per batch and partition, one Kafka transaction carries the
  conversation-log records, the minute deltas, dead letters, late events and the offsets.
- ``sink`` (``<app_id>-sink``): reads the minute deltas and the side topics and
  owns the ClickHouse writes. With embedded chDB exactly one sink process runs (one engine
  per path); with a server DSN several sink workers may split the partitions.

Faust's own Kafka clients are not started (:class:`_RuntimeOnly`): its consumer would join
a group of its own whose dead members delay every restart by a session timeout, and the
roles bring their own clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import faust
from faust.app.base import BootStrategy

from pipeline.core.config import Settings
from pipeline.core.metrics import Metrics

__all__ = ["Role", "RoleApp", "create_app"]

Role = Literal["compute", "sink"]


@dataclass
class RoleApp:
    app: faust.App
    role: Role
    service: Any  # TransactionalRole (compute) or SinkRunner (sink)
    sink: Any = None  # KpiSink for the sink role
    store: Any = None


class _NoKafkaBoot(BootStrategy):  # type: ignore[misc]
    """Start Faust's web server, sensors and services, but none of its Kafka clients."""

    enable_kafka = False


class _RuntimeOnly(faust.App):  # type: ignore[misc]
    BootStrategy = _NoKafkaBoot


def _faust_app(settings: Settings, role: Role, worker_id: str) -> faust.App:
    web_port = settings.ports.worker_web if role == "compute" else settings.ports.sink_web
    from pipeline.core.kafka import faust_credentials

    kafka = settings.kafka
    credentials = faust_credentials(settings)
    datadir = (settings.data_dir / "faust" / f"{role}-{worker_id}").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return _RuntimeOnly(
        f"{settings.app_id}-{role}-worker",
        broker=kafka.faust_broker_url(),
        broker_credentials=credentials,
        store="memory://",
        datadir=str(datadir),
        topic_replication_factor=kafka.replication_factor,
        topic_allow_declare=True,
        web_enabled=bool(web_port),
        web_port=web_port or 6066,
        web_host=settings.ports.web_host,
        autodiscover=False,
        # Our key=value logging stays in charge.
        loghandlers=[],
    )


def create_app(
    settings: Settings,
    role: Role,
    *,
    worker_id: str = "0",
    metrics: Metrics | None = None,
) -> RoleApp:
    """Build the Faust app of one role. The sink role opens ClickHouse and migrates it."""
    metrics = metrics or Metrics.create()
    app = _faust_app(settings, role, worker_id)
    if role == "compute":
        service = _compute_service(settings, worker_id, metrics)
        app.service(service)
        services = [service]
        if settings.customers.enabled:
            customers = _customer_service(settings, worker_id, metrics)
            app.service(customers)
            services.append(customers)
        _register_health(app, *services)
        return RoleApp(app, role, service)
    return _sink_app(app, settings, worker_id, metrics)


def _compute_service(settings: Settings, worker_id: str, metrics: Metrics) -> Any:
    from streams.compute import ComputeConfig, ConversationLogic
    from streams.runtime.role import TransactionalRole

    t, kpi = settings.topics, settings.kpi
    config = ComputeConfig(
        events_topic=t.events,
        deltas_topic=t.deltas,
        dead_letter_topic=t.dead_letter,
        late_topic=t.late_events,
        allowed_lateness_us=kpi.allowed_lateness_seconds * 1_000_000,
        retention_us=kpi.state_retention_days * 86_400 * 1_000_000,
        sla_us=kpi.sla_targets_us(),
        sweep_every_events=kpi.state_sweep_every_events,
        idle_grace_us=int(kpi.idle_grace_seconds * 1_000_000),
    )
    role_config = _role_config(
        settings, "compute", worker_id, t.events, t.conversation_log, kpi.idle_grace_seconds
    )

    def logic(partition: int) -> ConversationLogic:
        extensions = []
        if settings.customers.enabled:
            from streams.customers.extension import CustomerExtension

            extensions.append(CustomerExtension(settings))
        return ConversationLogic(partition, config, metrics, extensions)

    return TransactionalRole(settings, role_config, logic, metrics)


def _customer_service(settings: Settings, worker_id: str, metrics: Metrics) -> Any:
    """The customer role: customer facts -> customer state, in every compute worker."""
    from streams.customers.logic import CustomerLogic
    from streams.customers.rules import Rules
    from streams.runtime.role import TransactionalRole

    c = settings.customers
    rules = Rules.from_settings(settings)
    role_config = _role_config(settings, "customers", worker_id, c.facts_topic, c.log_topic)
    return TransactionalRole(settings, role_config, lambda _p: CustomerLogic(rules), metrics)


def _role_config(
    settings: Settings,
    role: str,
    worker_id: str,
    input_topic: str,
    changelog_topic: str,
    idle_after_s: float = 30.0,
) -> Any:
    """Group ``<app_id>-<role>``, static member ``<group>-<worker_id>``, state under data_dir."""
    from streams.runtime.role import RoleConfig

    group = f"{settings.app_id}-{role}"
    return RoleConfig(
        role=role,
        group_id=group,
        input_topic=input_topic,
        changelog_topic=changelog_topic,
        state_dir=(settings.data_dir / "state" / f"{role}-{worker_id}").resolve(),
        store_kind=settings.table_store,
        instance_id=f"{group}-{worker_id}",
        max_batch=settings.compute.batch_max_messages,
        idle_after_s=idle_after_s,
    )


def _sink_app(app: faust.App, settings: Settings, worker_id: str, metrics: Metrics) -> RoleApp:
    from sinks.base import SinkGroup
    from sinks.clickhouse.kpi_sink import KpiSink
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.store import open_store
    from sinks.runner import SinkRunner, SinkRunnerConfig

    store = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    migrate(
        store,
        minute_ttl_days=settings.clickhouse.minute_ttl_days,
        side_ttl_days=settings.clickhouse.side_ttl_days,
    )
    t = settings.topics
    sink = KpiSink(
        store,
        topics=t,
        allowed_lateness_seconds=settings.kpi.allowed_lateness_seconds,
        metrics=metrics,
        retry_after=settings.sink.retry_initial_seconds,
    )
    group = f"{settings.app_id}-sink"
    routes: list[tuple[Any, frozenset[str]]] = [
        (sink, frozenset({t.deltas, t.dead_letter, t.late_events}))
    ]
    if settings.customers.enabled:
        from sinks.clickhouse.customer_sink import CustomerSink

        c = settings.customers
        customer_sink = CustomerSink(
            store, c, metrics=metrics, retry_after=settings.sink.retry_initial_seconds
        )
        routes.append((customer_sink, frozenset({c.log_topic, c.followups_topic})))
    group_sink = SinkGroup(routes)
    runner = SinkRunner(
        settings,
        group_sink,
        SinkRunnerConfig(
            group_id=group,
            topics=tuple(topic for _, topics in routes for topic in sorted(topics)),
            partition_topic=t.deltas,
            instance_id=f"{group}-{worker_id}",
            batch_max_messages=settings.sink.batch_max_messages,
            flush_interval_seconds=settings.sink.flush_interval_seconds,
            retry_initial_seconds=settings.sink.retry_initial_seconds,
            retry_max_seconds=settings.sink.retry_max_seconds,
        ),
        metrics,
        forget_partition=sink.forget_partition,
    )
    app.service(runner)
    _register_health(app, runner)
    _register_board(app, store)
    from pipeline.app.alerts_role import install_alerts

    install_alerts(app, settings, store, metrics)
    return RoleApp(app, "sink", runner, sink=sink, store=store)


def _register_health(app: faust.App, *services: Any) -> None:
    """``/health/live``: the event loop answers. ``/health/ready``: every role of the worker
    is assigned and caught up."""

    @app.page("/health/live")
    async def live(web: Any, request: Any) -> Any:
        return web.json({"live": True})

    @app.page("/health/ready")
    async def ready(web: Any, request: Any) -> Any:
        ok = all(service.ready for service in services)
        return web.json({"ready": ok}, status=200 if ok else 503)


def _register_board(app: faust.App, store: Any) -> None:
    """``GET /kpis?window=N`` on the sink: the live board, served by the process that owns chDB."""
    from pipeline.app.board import kpis_view

    @app.page("/kpis")
    async def kpis(web: Any, request: Any) -> Any:
        return await kpis_view(web, request, store)

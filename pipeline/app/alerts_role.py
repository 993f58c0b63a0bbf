"""Where the alert evaluator runs: inside the sink, or as its own role.

- Embedded chDB: the sink process alone owns the engine, so it runs the evaluator as a
  Faust task (:func:`install_alerts`, called by the sink role's factory) and serves the
  alerts at ``GET /alerts``, which ``cxpulse alerts`` reads while the sink holds chDB.
- A ClickHouse server: any number of sink workers and ``cxpulse worker --role alerts``
  processes may host it; a Kafka consumer-group lease (``sinks/alerts/lease.py``) makes
  exactly one of them evaluate at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from pipeline.core.config import Settings
from pipeline.core.errors import CxpulseError
from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics, serve_metrics
from pipeline.core.service import MainTaskService

__all__ = ["AlertEvaluatorService", "install_alerts", "run_alerts_role"]

log = logging.getLogger(__name__)


class AlertEvaluatorService(MainTaskService):
    """The evaluator as a service of the sink worker: started and stopped with it.

    A service rather than a Faust ``app.task`` so that a stop waits for the running step
    (a step persists its transitions before it delivers them) instead of cancelling it.
    """

    def __init__(self, settings: Settings, store: Any, metrics: Metrics) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.metrics = metrics

    async def _main(self) -> None:
        try:
            await evaluate(self.settings, self.store, self.metrics, self._stop_event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert evaluator stopped on an error")


async def evaluate(settings: Settings, store: Any, metrics: Metrics, stop: asyncio.Event) -> None:
    """Run the evaluator until ``stop``: directly on embedded chDB (this process owns it),
    under the Kafka lease with a server DSN (any number of processes may host it)."""
    from sinks.alerts.evaluator import run_evaluator

    if settings.clickhouse.is_embedded:
        await run_evaluator(settings, store, metrics, stop)
        return
    from sinks.alerts.lease import KafkaLease

    lease = KafkaLease(settings)
    await lease.start()
    log.info("alert evaluator lease joined", extra=kv(group=lease.group, topic=lease.topic))
    try:
        await run_evaluator(settings, store, metrics, stop, may_run=lease.held, guard=lease.guard)
    finally:
        await lease.stop()


def install_alerts(app: Any, settings: Settings, store: Any, metrics: Metrics) -> None:
    """Sink role hook: ``GET /alerts``, and the evaluator as a service of the worker."""
    from sinks.alerts.queries import alerts_payload

    @app.page("/alerts")
    async def alerts_page(web: Any, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        return web.json(await loop.run_in_executor(None, alerts_payload, store))

    if settings.alerts.enabled:
        app.service(AlertEvaluatorService(settings, store, metrics))


def run_alerts_role(
    settings: Settings, *, duration: float | None = None, metrics_port: int | None = None
) -> None:
    """``cxpulse worker --role alerts``: the evaluator alone, under the Kafka lease."""
    if settings.clickhouse.is_embedded:
        raise CxpulseError(
            "--role alerts needs a ClickHouse server DSN: with embedded chDB the sink worker "
            "owns the engine and runs the alert evaluator itself"
        )
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.store import open_store

    store = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    migrate(
        store,
        minute_ttl_days=settings.clickhouse.minute_ttl_days,
        side_ttl_days=settings.clickhouse.side_ttl_days,
    )
    metrics = Metrics.create()
    serve_metrics(metrics_port if metrics_port is not None else settings.ports.sink_metrics)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration:
            loop.call_later(duration, stop.set)
        await evaluate(settings, store, metrics, stop)

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(Exception):
            store.close()

"""The sink role's Faust agent: batch, flush to ClickHouse, and only then acknowledge.

Offsets advance only for messages whose effects ClickHouse has (``noack_take`` + manual
``ack`` after a successful flush). While ClickHouse refuses writes the agent keeps its
batch and retries with exponential backoff; it takes nothing new meanwhile, so Faust's
bounded stream buffer fills and the consumer stops fetching: consumption pauses, memory
stays bounded, nothing is lost, and it catches up once ClickHouse is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust

from pipeline.core.config import Settings
from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics
from sinks.base import SinkBackpressureError
from sinks.clickhouse.kpi_sink import KpiSink, SinkMessage
from streams.failure import die

__all__ = ["register_sink"]

log = logging.getLogger(__name__)


def _to_sink_message(event: Any) -> SinkMessage:
    msg = event.message
    headers = dict(msg.headers or ())
    return SinkMessage(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=event.value,
        headers={k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in headers.items()},
        timestamp=msg.timestamp,
    )


async def flush_with_backoff(sink: KpiSink, settings: Settings, metrics: Metrics) -> int:
    """Flush until it succeeds; SinkError (not retryable) propagates and stops the worker."""
    loop = asyncio.get_running_loop()
    delay = settings.sink.retry_initial_seconds
    paused_at: float | None = None
    while True:
        started = time.perf_counter()
        try:
            written = await loop.run_in_executor(None, sink.flush)
        except SinkBackpressureError as exc:
            if paused_at is None:
                paused_at = time.monotonic()
                metrics.sink_paused.set(1)
            log.warning(
                "clickhouse unavailable, consumption paused",
                extra=kv(retry_in_s=round(delay, 2), cause=exc.cause[:200]),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.sink.retry_max_seconds)
            continue
        metrics.sink_flush_seconds.observe(time.perf_counter() - started)
        if paused_at is not None:
            metrics.sink_paused.set(0)
            log.info(
                "clickhouse back, consumption resumed",
                extra=kv(paused_s=round(time.monotonic() - paused_at, 1)),
            )
        return written


def register_sink(app: faust.App, settings: Settings, metrics: Metrics, sink: KpiSink) -> Any:
    """Declare the sink agent over the conversation log and the two side topics."""
    t = settings.topics
    source = app.topic(
        t.conversation_log,
        t.dead_letter,
        t.late_events,
        key_serializer="raw",
        value_serializer="raw",
    )
    log_topic = t.conversation_log

    @app.agent(source, name="cxpulse.sink")
    async def sink_agent(stream: faust.StreamT) -> AsyncIterator[None]:
        async for events in stream.noack_take(
            settings.sink.batch_max_messages, within=settings.sink.flush_interval_seconds
        ):
            try:
                for ev in events:
                    msg = _to_sink_message(ev)
                    if msg.topic == log_topic and isinstance(msg.value, bytes | bytearray):
                        msg.value = json.loads(msg.value) if msg.value else None
                    sink.add(msg)
                written = await flush_with_backoff(sink, settings, metrics)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # SinkError or a bug: never ack what is not stored
                die(log, "sink", exc)
            for ev in events:
                ev.ack()
            if written:
                log.debug("flushed", extra=kv(messages=len(events), rows=written))
            yield None

    return sink_agent

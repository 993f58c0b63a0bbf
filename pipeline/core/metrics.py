"""Every Prometheus metric cxpulse exports, declared in one place with an injected registry.

Tests build ``Metrics.create(CollectorRegistry())`` and read values with
``registry.get_sample_value``; processes use the default registry and serve it on their
own ``/metrics`` port (one endpoint per process, no multiprocess mode).
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

__all__ = ["Metrics", "observe_many", "serve_metrics"]


class Metrics(NamedTuple):
    events: Counter
    dead_letters: Counter
    late_events: Counter
    key_mismatches: Counter
    watermark: Gauge
    expired_states: Counter
    sink_contributions: Counter
    sink_rows: Counter
    sink_flush_seconds: Histogram
    visibility_latency: Histogram
    sink_flush_failures: Counter
    sink_paused: Gauge
    sink_cached_partials: Gauge
    event_time_progress: Gauge
    consumer_lag: Gauge
    batch_seconds: Histogram
    commit_seconds: Histogram
    batch_messages: Histogram
    worker_ready: Gauge
    transaction_failures: Counter
    alert_deliveries: Counter
    alert_transitions: Counter
    alerts_firing: Gauge
    alert_evaluated_minute: Gauge
    alert_levels_evaluated_minute: Gauge
    alert_evaluation_seconds: Histogram
    alert_outbox_pending: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> Metrics:
        ns = "cxpulse"
        return cls(
            events=Counter(
                "events",
                "Input events by verdict (accepted, duplicate, late, replayed, invalid).",
                ["verdict"],
                namespace=ns,
                registry=registry,
            ),
            dead_letters=Counter(
                "dead_letters",
                "Events routed to the dead-letter topic, by reason.",
                ["reason"],
                namespace=ns,
                registry=registry,
            ),
            late_events=Counter(
                "late_events",
                "Events later than the allowed lateness, routed to the late-events topic.",
                namespace=ns,
                registry=registry,
            ),
            key_mismatches=Counter(
                "key_mismatches",
                "Events whose Kafka key is not their conversation_id (ordering not guaranteed).",
                namespace=ns,
                registry=registry,
            ),
            watermark=Gauge(
                "watermark_seconds",
                "Highest accepted event time per source partition (Unix seconds).",
                ["partition"],
                namespace=ns,
                registry=registry,
            ),
            expired_states=Counter(
                "expired_states",
                "Conversation states deleted after their retention (event time).",
                namespace=ns,
                registry=registry,
            ),
            sink_contributions=Counter(
                "sink_contributions",
                "Contributions read by the sink: applied, or skipped as already stored.",
                ["result"],
                namespace=ns,
                registry=registry,
            ),
            sink_rows=Counter(
                "sink_rows_written",
                "Rows written to ClickHouse, by table.",
                ["table"],
                namespace=ns,
                registry=registry,
            ),
            sink_flush_seconds=Histogram(
                "sink_flush_seconds",
                "Duration of one sink flush (all tables).",
                namespace=ns,
                registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
            visibility_latency=Histogram(
                "visibility_latency_seconds",
                "From an event's Kafka timestamp to its minute row committed in ClickHouse.",
                namespace=ns,
                registry=registry,
                buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 30, 60, 120, 300),
            ),
            sink_flush_failures=Counter(
                "sink_flush_failures",
                "Failed flush attempts (each is retried; consumption pauses meanwhile).",
                namespace=ns,
                registry=registry,
            ),
            sink_paused=Gauge(
                "sink_paused",
                "1 while the sink holds back consumption because ClickHouse refuses writes.",
                namespace=ns,
                registry=registry,
            ),
            sink_cached_partials=Gauge(
                "sink_cached_partials",
                "Minute partials held in the sink's memory.",
                namespace=ns,
                registry=registry,
            ),
            event_time_progress=Gauge(
                "event_time_progress_seconds",
                "Event-time progress per source partition (Unix seconds): the watermark, or "
                "the wall clock minus the idle grace while the partition is caught up and quiet.",
                ["partition"],
                namespace=ns,
                registry=registry,
            ),
            consumer_lag=Gauge(
                "consumer_lag_messages",
                "Messages between the consumer position and the partition end (last stable "
                "offset), per role, topic and partition.",
                ["role", "topic", "partition"],
                namespace=ns,
                registry=registry,
            ),
            batch_seconds=Histogram(
                "batch_seconds",
                "CPU time to fold one partition batch (before its transaction).",
                ["role"],
                namespace=ns,
                registry=registry,
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            ),
            commit_seconds=Histogram(
                "commit_seconds",
                "Duration of one batch transaction (produce, offsets, commit, local store).",
                ["role"],
                namespace=ns,
                registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
            batch_messages=Histogram(
                "batch_messages",
                "Messages per partition batch.",
                ["role"],
                namespace=ns,
                registry=registry,
                buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
            ),
            worker_ready=Gauge(
                "worker_ready",
                "1 when the worker owns its partitions, has restored their state and its "
                "loop turns (the readiness probe).",
                ["role"],
                namespace=ns,
                registry=registry,
            ),
            transaction_failures=Counter(
                "transaction_failures",
                "Batch transactions that failed; the partition is rebuilt from its changelog "
                "and the batch processed again.",
                ["role"],
                namespace=ns,
                registry=registry,
            ),
            alert_deliveries=Counter(
                "alert_deliveries",
                "Alert notification attempts per receiver: success, or failure (retried).",
                ["receiver", "result"],
                namespace=ns,
                registry=registry,
            ),
            alert_transitions=Counter(
                "alert_transitions",
                "Alert state transitions (firing, resolved).",
                ["state"],
                namespace=ns,
                registry=registry,
            ),
            alerts_firing=Gauge(
                "alerts_firing",
                "Alerts firing now.",
                namespace=ns,
                registry=registry,
            ),
            alert_evaluated_minute=Gauge(
                "alert_evaluated_minute_seconds",
                "Event time of the last minute the alert evaluator evaluated (Unix seconds).",
                namespace=ns,
                registry=registry,
            ),
            alert_levels_evaluated_minute=Gauge(
                "alert_levels_evaluated_minute_seconds",
                "Event time of the last minute the rise rules (revenue and customers at risk) "
                "evaluated: the customer history's frozen boundary (Unix seconds).",
                namespace=ns,
                registry=registry,
            ),
            alert_evaluation_seconds=Histogram(
                "alert_evaluation_seconds",
                "Duration of one evaluator step (new closed minutes, persist, deliver).",
                namespace=ns,
                registry=registry,
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            ),
            alert_outbox_pending=Gauge(
                "alert_outbox_pending",
                "Notifications not yet accepted by their receiver.",
                namespace=ns,
                registry=registry,
            ),
        )


def serve_metrics(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``/metrics`` on ``port`` from a daemon thread; 0 disables it."""
    if port:
        _start_http_server(port, addr="0.0.0.0", registry=registry)  # noqa: S104 - scraped


def observe_many(histogram: Histogram, value: float, count: int) -> None:
    """``histogram.observe(value)`` ``count`` times, in O(buckets) instead of O(count).

    The sink observes one visibility latency per event; a batch brings thousands with the
    same value (events are grouped by 100 ms of Kafka time). Uses the client's internals
    (``_sum``, ``_upper_bounds``, ``_buckets``) when present, else loops.
    """
    if count <= 0:
        return
    try:
        total, bounds, buckets = histogram._sum, histogram._upper_bounds, histogram._buckets  # type: ignore[attr-defined]
    except AttributeError:
        for _ in range(count):
            histogram.observe(value)
        return
    total.inc(value * count)
    for i, bound in enumerate(bounds):
        if value <= bound:
            buckets[i].inc(count)
            break

"""The compute role: validate, gate and fold events into conversation state (Faust agent).

Data flow per message: bytes -> :func:`parse_event` (else dead letter) -> :class:`PartitionGate`
(duplicate / late / replayed) -> :func:`apply_event` -> one write to the ``conversations``
table. That table's changelog *is* the conversation log: each record carries the new
conversation state **and** the event's contribution, so state and output become durable
together in one Kafka message (no window in which one exists without the other). The sink
role aggregates contributions from that log; see README "Exactly-once, effectively".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP, EventT

from pipeline.core.config import Settings
from pipeline.core.errors import InvalidEvent
from pipeline.core.events import parse_event
from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics
from streams.conversation import ConversationState
from streams.expiry import ExpiryIndex
from streams.failure import die
from streams.gate import PartitionGate, Verdict

__all__ = ["ComputeRole", "LogRecord", "register_compute"]

log = logging.getLogger(__name__)

# Kafka headers on dead-letter and late records (the value is the original bytes).
H_REASON = "cxpulse.reason"
H_TOPIC = "cxpulse.source.topic"
H_PARTITION = "cxpulse.source.partition"
H_OFFSET = "cxpulse.source.offset"
H_LATENESS = "cxpulse.lateness.us"


@dataclass(slots=True)
class LogRecord:
    """One conversation-log value: state after the event plus what the event contributed."""

    partition: int
    offset: int
    watermark_us: int
    state: dict[str, Any]
    contribution: dict[str, Any] | None = None
    source_timestamp: float = 0.0  # Kafka timestamp of the event (freshness metric)

    def to_json(self) -> dict[str, Any]:
        return {
            "p": self.partition,
            "o": self.offset,
            "wm": self.watermark_us,
            "s": self.state,
            "c": self.contribution,
            "ts": self.source_timestamp,
        }


@dataclass
class ComputeRole:
    """Wiring of the compute agent; holds per-partition gates for this process."""

    settings: Settings
    metrics: Metrics
    gates: dict[int, PartitionGate] = field(default_factory=dict)
    expiry: dict[int, ExpiryIndex] = field(default_factory=dict)

    def gate_for(self, partition: int, table: Any) -> PartitionGate:
        gate = self.gates.get(partition)
        if gate is None:
            # After (re)assignment the table holds the recovered log: the partition's
            # watermark is the greatest one recorded there.
            watermark: int | None = None
            replayed_until = -1
            index = ExpiryIndex(self.settings.kpi.state_sweep_every_events)
            for key, value in table.items():
                if value and value.get("p") == partition:
                    wm = value["wm"]
                    if watermark is None or wm > watermark:
                        watermark = wm
                    replayed_until = max(replayed_until, value["o"])
                    index.touch(key, value["s"]["t"])
            self.expiry[partition] = index
            kpi = self.settings.kpi
            gate = PartitionGate(
                allowed_lateness_us=kpi.allowed_lateness_seconds * 1_000_000,
                retention_us=kpi.state_retention_days * 86_400 * 1_000_000,
                sla_us=kpi.sla_targets_us(),
                watermark_us=watermark,
                replayed_until=replayed_until,
            )
            gate.watermark_gauge = self.metrics.watermark.labels(str(partition))
            self.gates[partition] = gate
            log.info("partition gate ready", extra=kv(partition=partition, watermark_us=watermark))
        return gate

    def forget_partitions(self, partitions: set[int]) -> None:
        """On revoke: another worker owns them now; rebuild from the log if they come back."""
        for p in partitions:
            self.gates.pop(p, None)
            self.expiry.pop(p, None)


def _still_assigned(app: faust.App, topic: str, partition: int) -> bool:
    try:
        return TP(topic, partition) in app.consumer.assignment()
    except Exception:  # no consumer (shutting down): treat as not ours
        return False


def register_compute(app: faust.App, settings: Settings, metrics: Metrics) -> ComputeRole:
    """Declare the compute topics, table and agent on ``app``."""
    t = settings.topics
    events_topic = app.topic(
        t.events, key_serializer="raw", value_serializer="raw", partitions=t.partitions
    )
    log_topic = app.topic(
        t.conversation_log,
        key_serializer="raw",
        value_serializer="json",
        partitions=t.partitions,
        compacting=True,
        deleting=True,
    )
    dead_letter = app.topic(t.dead_letter, key_serializer="raw", value_serializer="raw")
    late_topic = app.topic(t.late_events, key_serializer="raw", value_serializer="raw")
    conversations = app.Table(
        "conversations",
        partitions=t.partitions,
        changelog_topic=log_topic,
        key_type=bytes,  # raw conversation_id bytes
        value_type=None,  # JSON log record as a plain dict (see LogRecord)
    )
    role = ComputeRole(settings, metrics)
    # Label children resolved once: .labels() per event is measurable on the hot path.
    verdict_counters = {v: metrics.events.labels(v.value) for v in Verdict}
    invalid_counter = metrics.events.labels("invalid")

    async def side_output(topic: Any, ev: EventT, headers: dict[str, bytes]) -> None:
        """Dead-letter / late record: original key and bytes, provenance in headers."""
        msg = ev.message
        headers.update(
            {
                H_TOPIC: msg.topic.encode(),
                H_PARTITION: str(msg.partition).encode(),
                H_OFFSET: str(msg.offset).encode(),
            }
        )
        await topic.send(key=msg.key, value=msg.value, partition=msg.partition, headers=headers)

    def handle(ev: EventT) -> Awaitable[None] | None:
        """Process one message; returns a side-output send to await, if any."""
        msg = ev.message
        try:
            event = parse_event(msg.value if msg.value is not None else b"")
        except InvalidEvent as bad:
            invalid_counter.inc()
            metrics.dead_letters.labels(bad.reason).inc()
            return side_output(dead_letter, ev, {H_REASON: bad.reason.encode()})
        key = event.conversation_id.encode()
        if msg.key != key:
            metrics.key_mismatches.inc()
        gate = role.gate_for(msg.partition, conversations)
        try:  # one store lookup (Mapping.get would check __contains__ first)
            stored = conversations[key]
        except KeyError:
            stored = None
        state = ConversationState.from_json(stored["s"]) if stored else None
        outcome = gate.decide(state, event, msg.offset)
        verdict = outcome.verdict
        verdict_counters[verdict].inc()
        if verdict is Verdict.ACCEPTED:
            assert outcome.state is not None and outcome.contribution is not None
            record = LogRecord(
                msg.partition,
                msg.offset,
                gate.watermark_us or 0,
                outcome.state.to_json(),
                outcome.contribution.to_json(),
                msg.timestamp or 0.0,
            )
            conversations[key] = record.to_json()
            gate.watermark_gauge.set((gate.watermark_us or 0) / 1e6)
            index = role.expiry[msg.partition]
            index.touch(key, outcome.state.last_event_us)
            if index.sweep_due() and gate.watermark_us is not None:
                # Tombstones go to this event's partition: the keys belong to it.
                for old in index.expired(gate.watermark_us, gate.retention_us):
                    conversations.pop(old, None)
                    metrics.expired_states.inc()
        elif verdict is Verdict.LATE:
            metrics.late_events.inc()
            return side_output(
                late_topic,
                ev,
                {H_REASON: b"late", H_LATENESS: str(outcome.lateness_us).encode()},
            )
        return None

    @app.agent(events_topic, name="cxpulse.compute")
    async def compute(stream: faust.StreamT) -> AsyncIterator[None]:
        async for ev in stream.events():
            try:
                pending = handle(ev)
                if pending is not None:
                    await pending
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                msg = ev.message
                if not _still_assigned(app, msg.topic, msg.partition):
                    # A rebalance took the partition away mid-event (its table partition
                    # is gone with it). Faust discards commits of revoked partitions, so
                    # the new owner reprocesses this event: nothing is lost.
                    log.warning(
                        "partition revoked while processing; left to its new owner",
                        extra=kv(partition=msg.partition, offset=msg.offset, error=repr(exc)),
                    )
                    continue
                die(log, "compute", exc)
            yield None

    @app.on_partitions_revoked.connect
    async def _on_revoked(app_: faust.App, revoked: set[Any], **_: Any) -> None:
        role.forget_partitions({tp.partition for tp in revoked if tp.topic == t.events})

    role.agent = compute  # type: ignore[attr-defined]
    return role

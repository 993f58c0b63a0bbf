"""The compute role's batch logic for one events-topic partition (a ``PartitionLogic``).

Per message: bytes -> :func:`parse_event` (else a dead letter) -> :class:`PartitionGate`
(replayed / duplicate / late, in the contract's order) -> :func:`apply_event` -> the
event's contribution folded into the batch's minute delta. Per batch: one
conversation-log record per conversation the batch changed (its new state), one partition
record (watermark and event-time progress), the delta message(s), dead letters and late
events. The runtime publishes all of it and the input offsets in one Kafka transaction.

Pure code: no Kafka, no clock. The only input besides the messages is ``now_ms`` of an
idle tick (:meth:`ConversationLogic.on_idle`), the one place the wall clock may move
event-time progress (never the watermark, so lateness and state decisions stay exact).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import Event, parse_event
from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics
from streams.conversation import Contribution, ConversationState, fact_fields
from streams.deltas import BatchDelta
from streams.expiry import ExpiryIndex
from streams.gate import PartitionGate, Verdict
from streams.runtime.contracts import BatchResult, InputMessage, OutputRecord, StateReader

__all__ = [
    "H_LATENESS",
    "H_OFFSET",
    "H_PARTITION",
    "H_REASON",
    "H_TOPIC",
    "PARTITION_KEY",
    "ComputeConfig",
    "ComputeExtension",
    "ConversationLogic",
    "decode_log_value",
]

log = logging.getLogger(__name__)

# Kafka headers on dead-letter and late records (the value is the original bytes).
H_REASON = "cxpulse.reason"
H_TOPIC = "cxpulse.source.topic"
H_PARTITION = "cxpulse.source.partition"
H_OFFSET = "cxpulse.source.offset"
H_LATENESS = "cxpulse.lateness.us"

# Changelog key of the partition's own record. Not valid UTF-8, so no conversation id
# (a JSON string, UTF-8 encoded) can ever collide with it.
PARTITION_KEY = b"\xff\xfecxpulse:partition"
_US_PER_MIN = 60_000_000


@dataclass(frozen=True, slots=True)
class ComputeConfig:
    """What the logic needs of the settings (plain values: easy to build in tests)."""

    events_topic: str
    deltas_topic: str
    dead_letter_topic: str
    late_topic: str
    allowed_lateness_us: int
    retention_us: int
    sla_us: dict[str, int]
    sweep_every_events: int = 10_000
    idle_grace_us: int = 60_000_000


class ComputeExtension(Protocol):
    """More outputs of accepted events, published in the batch's transaction.

    One instance per logic instance: a batch that fails to commit is discarded together
    with its extension's buffers.
    """

    def on_accepted(
        self, event: Event, state: ConversationState, contribution: Contribution, msg: Any
    ) -> list[OutputRecord]: ...

    def finish(
        self, partition: int, floor_us: int | None, end_floor_us: int | None
    ) -> list[OutputRecord]:
        """Outputs due at the end of the batch (after its last event). Floors: no event the
        partition accepts from this batch on (``floor_us``, the watermark at the batch's
        start or its first accepted event, minus the allowed lateness) or after it
        (``end_floor_us``, from the watermark at its end) is older; None: no watermark."""
        ...


def decode_log_value(raw: bytes) -> dict[str, Any]:
    """A conversation-log value: ``{"p", "o", "wm", "s"}`` (or the partition record)."""
    value: dict[str, Any] = orjson.loads(raw)
    return value


class ConversationLogic:
    """Conversation state of one partition; see the module docstring."""

    def __init__(
        self,
        partition: int,
        config: ComputeConfig,
        metrics: Metrics,
        extensions: Sequence[ComputeExtension] = (),
    ) -> None:
        self.partition = partition
        self.config = config
        self.metrics = metrics
        self.extensions = tuple(extensions)
        self.gate = PartitionGate(
            allowed_lateness_us=config.allowed_lateness_us,
            retention_us=config.retention_us,
            sla_us=config.sla_us,
        )
        self.expiry = ExpiryIndex(config.sweep_every_events)
        self.progress_us: int | None = None  # event-time progress (>= watermark)
        self.last_offset = -1
        self._counters = {v: metrics.events.labels(v.value) for v in Verdict}
        self._invalid = metrics.events.labels("invalid")
        self._late = metrics.late_events
        self._dead = metrics.dead_letters
        self._watermark_gauge = metrics.watermark.labels(str(partition))
        self._progress_gauge = metrics.event_time_progress.labels(str(partition))

    # -- PartitionLogic --

    def open(self, state: StateReader) -> None:
        """Watermark and progress from the partition record; the expiry index by scan."""
        meta_raw = state.get(PARTITION_KEY)
        if meta_raw is not None:
            meta = orjson.loads(meta_raw)
            self.gate.watermark_us = meta.get("wm")
            self.progress_us = meta.get("prog")
            self.last_offset = meta.get("o", -1)
        # With transactions the state equals the committed input offset exactly; a
        # replay region only exists if an operator rewinds the group's offsets, and then
        # expiry is not re-judged inside it (see PartitionGate.replayed_until).
        self.gate.replayed_until = self.last_offset
        for key, raw in state.items():
            if key != PARTITION_KEY:
                self.expiry.touch(key, orjson.loads(raw)["s"]["t"])
        self._publish_gauges()
        log.info(
            "partition opened",
            extra=kv(
                partition=self.partition,
                conversations=len(self.expiry),
                watermark_us=self.gate.watermark_us,
                last_offset=self.last_offset,
            ),
        )

    def process(self, messages: Sequence[InputMessage], state: StateReader) -> BatchResult:
        cfg = self.config
        gate = self.gate
        partition = self.partition
        delta = BatchDelta(partition)
        outputs: list[OutputRecord] = []
        changed: dict[bytes, ConversationState] = {}
        tally = dict.fromkeys(Verdict, 0)  # metrics once per batch, not per event
        invalid = 0
        extensions = self.extensions
        start_wm = gate.watermark_us  # with the lateness: a floor for every later event
        for msg in messages:
            try:
                event = parse_event(msg.value if msg.value is not None else b"")
            except InvalidEvent as bad:
                invalid += 1
                self._dead.labels(bad.reason).inc()
                delta.count(msg.timestamp, "invalid")
                outputs.append(self._side(cfg.dead_letter_topic, msg, bad.reason.encode()))
                continue
            key = event.conversation_id.encode()
            if msg.key != key:
                self.metrics.key_mismatches.inc()
            st = changed.get(key)
            if st is None:
                raw = state.get(key)
                st = ConversationState.from_json(orjson.loads(raw)["s"]) if raw else None
            outcome = gate.decide(st, event, msg.offset)
            verdict = outcome.verdict
            tally[verdict] += 1
            delta.count(msg.timestamp, verdict.value)
            if verdict is Verdict.ACCEPTED:
                new_state = outcome.state
                contribution = outcome.contribution
                assert new_state is not None and contribution is not None
                changed[key] = new_state
                wm = gate.watermark_us or 0
                if start_wm is None:
                    start_wm = wm  # the first event ever accepted
                progress = self.progress_us
                if progress is None or wm > progress:
                    progress = self.progress_us = wm
                lag = progress // _US_PER_MIN - contribution.minute
                delta.add(
                    (
                        contribution.minute,
                        lag if lag > 0 else 0,
                        contribution.team,
                        contribution.channel,
                        contribution.region,
                        contribution.priority,
                        contribution.segment,
                    ),
                    contribution.increments,
                )
                self.expiry.touch(key, new_state.last_event_us)
                for ext in extensions:
                    outputs.extend(ext.on_accepted(event, new_state, contribution, msg))
            elif verdict is Verdict.LATE:
                self._late.inc()
                lateness = str(outcome.lateness_us).encode()
                outputs.append(self._side(cfg.late_topic, msg, b"late", ((H_LATENESS, lateness),)))
        for verdict, n in tally.items():
            if n:
                self._counters[verdict].inc(n)
        if invalid:
            self._invalid.inc(invalid)
        first, last = messages[0].offset, messages[-1].offset
        self.last_offset = last
        changelog: dict[bytes, bytes | None] = {}
        wm = gate.watermark_us
        facts = delta.facts
        for key, st in changed.items():
            changelog[key] = orjson.dumps(
                {"p": partition, "o": st.last_offset, "wm": wm, "s": st.to_json()}
            )
            facts.append(fact_fields(key, partition, st))
        self._sweep(changelog, changed)
        changelog[PARTITION_KEY] = self._partition_record()
        if extensions:
            lateness = cfg.allowed_lateness_us
            floor = None if start_wm is None else start_wm - lateness
            end_floor = None if wm is None else wm - lateness
            for ext in extensions:
                outputs.extend(ext.finish(partition, floor, end_floor))
        for body in delta.encode(
            first_offset=first, offset=last, watermark_us=wm, progress_us=self.progress_us
        ):
            outputs.append(OutputRecord(cfg.deltas_topic, None, body, partition))
        self._publish_gauges()
        return BatchResult(changelog, outputs)

    def on_idle(self, now_ms: int) -> BatchResult | None:
        """Caught up and quiet: let event-time progress follow the wall clock.

        Progress moves to ``now - idle_grace`` (never backwards, never the watermark), so
        minutes keep closing for the alert evaluator while no event arrives: for drop
        alerts, silence is the signal. Returns None when progress would not move.
        """
        target = now_ms * 1000 - self.config.idle_grace_us
        if self.progress_us is not None and target <= self.progress_us:
            return None
        if (target // _US_PER_MIN) == ((self.progress_us or 0) // _US_PER_MIN):
            return None  # only whole minutes matter to readers
        self.progress_us = target
        delta = BatchDelta(self.partition)
        bodies = delta.encode(
            first_offset=self.last_offset + 1,
            offset=self.last_offset,
            watermark_us=self.gate.watermark_us,
            progress_us=target,
            idle=True,
        )
        self._publish_gauges()
        return BatchResult(
            {PARTITION_KEY: self._partition_record()},
            [OutputRecord(self.config.deltas_topic, None, b, self.partition) for b in bodies],
        )

    # -- helpers --

    def _partition_record(self) -> bytes:
        return orjson.dumps(
            {
                "meta": 1,
                "wm": self.gate.watermark_us,
                "prog": self.progress_us,
                "o": self.last_offset,
            }
        )

    def _sweep(self, changelog: dict[bytes, bytes | None], changed: dict[bytes, Any]) -> None:
        """Tombstone conversations past their retention (event time; see streams.expiry)."""
        index = self.expiry
        wm = self.gate.watermark_us
        if wm is None or not index.sweep_due():
            return
        for key in index.expired(wm, self.gate.retention_us):
            changelog[key] = None
            changed.pop(key, None)
            self.metrics.expired_states.inc()

    def _side(
        self,
        topic: str,
        msg: InputMessage,
        reason: bytes,
        extra: tuple[tuple[str, bytes], ...] = (),
    ) -> OutputRecord:
        headers = (
            (H_REASON, reason),
            (H_TOPIC, msg.topic.encode()),
            (H_PARTITION, str(msg.partition).encode()),
            (H_OFFSET, str(msg.offset).encode()),
            *extra,
        )
        return OutputRecord(topic, msg.key, msg.value, self.partition, headers)

    def _publish_gauges(self) -> None:
        if self.gate.watermark_us is not None:
            self._watermark_gauge.set(self.gate.watermark_us / 1e6)
        if self.progress_us is not None:
            self._progress_gauge.set(self.progress_us / 1e6)

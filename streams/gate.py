"""The per-partition gate: replay, expiry, de-duplication and lateness, in the contract's order.

One :class:`PartitionGate` per source partition holds the partition's event-time watermark
(the highest ``occurred_at`` accepted). ``decide`` is deterministic in (state, event,
offset, watermark): that is what makes a restart from any offset reproduce the outputs of
one clean pass (see README, "Exactly-once, effectively").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pipeline.core.events import Event
from streams.conversation import Contribution, ConversationState, apply_event

__all__ = ["Outcome", "PartitionGate", "Verdict"]


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # event_id already accepted for this conversation
    LATE = "late"  # more than the allowed lateness behind the partition watermark
    REPLAYED = "replayed"  # this source offset is already in the state (restart replay)


@dataclass(slots=True)
class Outcome:
    verdict: Verdict
    state: ConversationState | None
    contribution: Contribution | None = None
    lateness_us: int = 0


class PartitionGate:
    """Decides the fate of each valid event of one partition, in offset order."""

    __slots__ = (
        "allowed_lateness_us",
        "replayed_until",
        "retention_us",
        "sla_us",
        "watermark_gauge",
        "watermark_us",
    )

    def __init__(
        self,
        *,
        allowed_lateness_us: int,
        retention_us: int,
        sla_us: dict[str, int],
        watermark_us: int | None = None,
        replayed_until: int = -1,
    ) -> None:
        self.allowed_lateness_us = allowed_lateness_us
        self.retention_us = retention_us
        self.sla_us = sla_us
        self.watermark_us = watermark_us
        # Highest source offset already recorded in the conversation log when this gate
        # was rebuilt. Up to it, the recovered watermark is ahead of the one the first
        # pass had, so expiry (a watermark comparison) is not re-judged there: a state
        # the first pass saw expired was replaced by then, or the event was late anyway.
        self.replayed_until = replayed_until
        self.watermark_gauge: Any = None  # set by the agent: the metric child to update

    def is_expired(self, state: ConversationState) -> bool:
        """State lives ``retention`` of event time after the conversation's last event."""
        wm = self.watermark_us
        return wm is not None and state.last_event_us + self.retention_us < wm

    def decide(self, state: ConversationState | None, event: Event, offset: int) -> Outcome:
        if state is not None:
            if offset <= state.last_offset:
                return Outcome(Verdict.REPLAYED, state)
            if offset > self.replayed_until and self.is_expired(state):
                state = None
        # Order of checks: (validated already) de-duplicate, then lateness.
        if state is not None and event.event_id in state.event_ids:
            return Outcome(Verdict.DUPLICATE, state)
        wm = self.watermark_us
        t = event.occurred_us
        if wm is not None and wm - t > self.allowed_lateness_us:
            return Outcome(Verdict.LATE, state, lateness_us=wm - t)
        if state is None:
            state = ConversationState()
        contribution = apply_event(state, event, self.sla_us)
        state.last_offset = offset
        if wm is None or t > wm:
            self.watermark_us = t
        return Outcome(Verdict.ACCEPTED, state, contribution)

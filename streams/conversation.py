"""Per-conversation state and the transition that turns one accepted event into KPI samples.

Pure code: no Kafka, no Faust. ``apply_event(state, event, sla)`` mutates the state and
returns the event's :class:`Contribution` (its minute, the conversation's dimensions as they
stand at the event, and the increments it adds to that minute's partial aggregate). The
rules are the "Conversation state" and "Response time"/"Resolution"/"Satisfaction" sections
of ``shared/kpi-definitions.md``; each branch below cites the rule it implements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.core.events import Event

__all__ = [
    "DIMENSION_DEFAULTS",
    "Contribution",
    "ConversationState",
    "apply_event",
    "fact_fields",
]

# "the stated defaults apply only to a value never given"; team and channel have none.
DIMENSION_DEFAULTS = {
    "team": "unknown",
    "channel": "unknown",
    "region": "unknown",
    "priority": "normal",
    "segment": "unknown",
}


@dataclass(slots=True)
class Contribution:
    """What one accepted event adds to its minute: increments keyed like ``MinutePartial``.

    Time samples (``frt``, ``reply``, ``resolution``) are integer microseconds, so sums stay
    exact in any merge order; survey samples are scores.
    """

    minute: int
    team: str
    channel: str
    region: str
    priority: str
    segment: str
    increments: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "m": self.minute,
            "d": [self.team, self.channel, self.region, self.priority, self.segment],
            "k": self.increments,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contribution:
        team, channel, region, priority, segment = data["d"]
        return cls(data["m"], team, channel, region, priority, segment, data["k"])


@dataclass(slots=True)
class ConversationState:
    """Everything the KPI rules need to remember about one conversation."""

    opened_us: int | None = None  # first conversation.opened: resolution time runs from it
    wait_start_us: int | None = None  # an open wait, or None
    first_pending: bool = False  # the next closed wait of this cycle is the FRT
    human_messages: int = 0  # human agent messages so far (one-touch)
    reopened: bool = False  # ever reopened (one-touch)
    reopens: int = 0
    resolved: bool = False  # resolved and not reopened/opened since
    team: str | None = None
    channel: str | None = None
    region: str | None = None
    priority: str | None = None
    segment: str | None = None
    customer_id: str | None = None
    customer_value: float | None = None
    last_event_us: int = 0  # greatest occurred_at accepted (state expiry)
    last_offset: int = -1  # source offset of the last accepted event (replay detection)
    event_ids: list[str] = field(default_factory=list)

    def dims(self) -> tuple[str, str, str, str, str]:
        d = DIMENSION_DEFAULTS
        return (
            self.team or d["team"],
            self.channel or d["channel"],
            self.region or d["region"],
            self.priority or d["priority"],
            self.segment or d["segment"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "o": self.opened_us,
            "w": self.wait_start_us,
            "f": self.first_pending,
            "h": self.human_messages,
            "r": self.reopened,
            "rc": self.reopens,
            "rs": self.resolved,
            "team": self.team,
            "channel": self.channel,
            "region": self.region,
            "priority": self.priority,
            "segment": self.segment,
            "customer_id": self.customer_id,
            "customer_value": self.customer_value,
            "t": self.last_event_us,
            "off": self.last_offset,
            "ids": self.event_ids,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConversationState:
        return cls(
            opened_us=data["o"],
            wait_start_us=data["w"],
            first_pending=data["f"],
            human_messages=data["h"],
            reopened=data["r"],
            reopens=data.get("rc", 0),
            resolved=data.get("rs", False),
            team=data["team"],
            channel=data["channel"],
            region=data["region"],
            priority=data["priority"],
            segment=data["segment"],
            customer_id=data["customer_id"],
            customer_value=data["customer_value"],
            last_event_us=data["t"],
            last_offset=data["off"],
            event_ids=list(data["ids"]),
        )


def fact_fields(key: bytes, partition: int, state: ConversationState) -> list[Any]:
    """One ``conversation_facts`` row of a conversation's state (the compute side builds it,
    so the sink never decodes states): conversation id, source partition, version (source
    offset), dimensions, customer, status, times in microseconds, counts."""
    team, channel, region, priority, segment = state.dims()
    return [
        key.decode("utf-8", "replace"),
        partition,
        state.last_offset,
        team,
        channel,
        region,
        priority,
        segment,
        state.customer_id or "",
        state.customer_value,
        "resolved" if state.resolved else "open",
        state.opened_us,
        state.wait_start_us,
        1 if state.first_pending else 0,
        state.human_messages,
        state.reopens,
        len(state.event_ids),
        state.last_event_us,
    ]


def _duration(delta_us: int) -> int:
    # "Durations below zero count as zero." Integer microseconds keep sums exact.
    return delta_us if delta_us > 0 else 0


def apply_event(state: ConversationState, event: Event, sla_us: dict[str, int]) -> Contribution:
    """Advance ``state`` by one accepted event and return the samples it completes."""
    # Dimensions present on the event set the current value "from that event on, that
    # event included", so they are applied before attribution.
    if event.team is not None:
        state.team = event.team
    if event.channel is not None:
        state.channel = event.channel
    if event.region is not None:
        state.region = event.region
    if event.priority is not None:
        state.priority = event.priority
    if event.segment is not None:
        state.segment = event.segment
    if event.customer_id is not None:
        state.customer_id = event.customer_id
    if event.customer_value is not None:
        state.customer_value = event.customer_value

    t = event.occurred_us
    inc: dict[str, int] = {"events": 1}
    etype = event.type
    if etype == "message.customer":
        inc["messages_customer"] = 1
        if state.wait_start_us is None:
            state.wait_start_us = t
    elif etype == "message.agent":
        if event.author == "bot":
            # "Bot messages never close a wait."
            inc["messages_agent_bot"] = 1
        else:
            inc["messages_agent_human"] = 1
            state.human_messages += 1
            if state.wait_start_us is not None:
                waited = t - state.wait_start_us
                state.wait_start_us = None
                # "Before a conversation's first conversation.opened is seen, closed waits
                # give reply-time samples" (a reopen alone does not make an FRT).
                if state.first_pending and state.opened_us is not None:
                    state.first_pending = False
                    inc["frt"] = _duration(waited)
                    # SLA uses the priority at the replying event; equal is not a breach.
                    target = sla_us[state.priority or DIMENSION_DEFAULTS["priority"]]
                    if waited > target:
                        inc["frt_breaches"] = 1
                else:
                    inc["reply"] = _duration(waited)
    elif etype == "conversation.opened":
        inc["opened"] = 1
        if state.opened_us is None:
            state.opened_us = t  # resolution time stays measured from the first open
        state.first_pending = True
        state.resolved = False
        if state.wait_start_us is None:
            state.wait_start_us = t
    elif etype == "conversation.reopened":
        inc["reopens"] = 1
        state.reopened = True
        state.reopens += 1
        state.resolved = False
        state.first_pending = True
        if state.wait_start_us is None:
            state.wait_start_us = t
    elif etype == "conversation.resolved":
        inc["resolutions"] = 1
        state.resolved = True
        state.wait_start_us = None  # discarded without a sample
        if state.opened_us is not None:
            inc["resolution"] = _duration(t - state.opened_us)
        if not state.reopened and state.human_messages <= 1:
            inc["one_touch_resolutions"] = 1
    elif etype == "survey.csat":
        inc["csat"] = event.score  # type: ignore[assignment]  # required on surveys
    elif etype == "survey.nps":
        inc["nps"] = event.score  # type: ignore[assignment]
    elif etype == "survey.ces":
        inc["ces"] = event.score  # type: ignore[assignment]
    # conversation.assigned only moves dimensions.

    state.event_ids.append(event.event_id)
    if t > state.last_event_us:
        state.last_event_us = t
    team, channel, region, priority, segment = state.dims()
    return Contribution(event.minute, team, channel, region, priority, segment, inc)

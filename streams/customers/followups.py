"""Feedback follow-ups: every low survey answer, published once, for a call-back.

The compute role calls :func:`followup_record` for each accepted event inside its batch
transaction and produces the result (key = ``conversation_id``) to
``cxpulse.feedback-followups``. Exactly once follows from the transaction plus the gate:
a replayed event is recognised by its offset and never accepted twice, and a duplicate
``event_id`` is never accepted at all. The sink writes the records to
``feedback_followups`` keyed by (conversation, event), so even a re-sent record replaces
itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.core.config import CustomerSettings
from pipeline.core.events import Event
from streams.conversation import ConversationState

__all__ = ["FOLLOWUP_VERSION", "FollowupRules", "decode_followup", "followup_record"]

FOLLOWUP_VERSION = 1


@dataclass(frozen=True, slots=True)
class FollowupRules:
    """Inclusive score thresholds of a low answer, per survey."""

    csat_max: int = 2  # CSAT 1-5: 1 or 2
    nps_max: int = 6  # NPS 0-10: detractors 0-6
    ces_max: int = 3  # CES 1-7, higher is easier: "hard" is 1-3 (4 is neutral)

    @classmethod
    def from_settings(cls, settings: CustomerSettings) -> FollowupRules:
        return cls(settings.followup_csat_max, settings.followup_nps_max, settings.followup_ces_max)

    def limits(self) -> dict[str, int]:
        return {
            "survey.csat": self.csat_max,
            "survey.nps": self.nps_max,
            "survey.ces": self.ces_max,
        }


DEFAULT_RULES = FollowupRules()
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


def followup_record(
    event: Event,
    state_after: ConversationState,
    source: tuple[int, int, int],
    rules: FollowupRules = DEFAULT_RULES,
) -> bytes | None:
    """The follow-up record of a low survey answer (JSON bytes), or None.

    Holds the answer, the conversation's customer, ``customer_value`` (latest seen on the
    conversation), segment, team, channel, priority and region as they stand after the
    event, the source position, and every field of the event outside the contract
    (``extra``: a comment, a survey id...), verbatim. A low answer without a known
    customer is published too (``customer_id`` null): the team can still follow up on the
    conversation.
    """
    etype = event.type
    if etype == "survey.csat":
        limit = rules.csat_max
    elif etype == "survey.nps":
        limit = rules.nps_max
    elif etype == "survey.ces":
        limit = rules.ces_max
    else:
        return None
    score = event.score
    if score is None or score > limit:
        return None
    team, channel, region, priority, segment = state_after.dims()
    partition, offset, timestamp_ms = source
    record: dict[str, Any] = {
        "v": FOLLOWUP_VERSION,
        "survey": etype[7:],
        "score": score,
        "customer_id": state_after.customer_id,
        "customer_value": state_after.customer_value,
        "segment": segment,
        "team": team,
        "channel": channel,
        "priority": priority,
        "region": region,
        "conversation_id": event.conversation_id,
        "event_id": event.event_id,
        "occurred_us": event.occurred_us,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "extra": event.extra,
    }
    return _encode(record).encode("utf-8")


def decode_followup(value: bytes) -> dict[str, Any]:
    """A follow-up record as a dict; ValueError on an unknown version."""
    data = json.loads(value)
    version = data.get("v") if type(data) is dict else None
    if version != FOLLOWUP_VERSION:
        raise ValueError(f"unknown feedback-followup version {version!r} (this build reads 1)")
    return data

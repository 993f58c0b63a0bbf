"""The compute role's customer outputs: facts (keyed by customer) and feedback follow-ups.

A :class:`~streams.compute.ComputeExtension`: the compute logic calls ``on_accepted`` for
each accepted event and ``finish`` at the end of the batch; everything returned goes into
the batch's Kafka transaction, so a fact or a follow-up is published exactly once, however
often the compute worker crashes or restarts (a discarded batch discards its extension).
"""

from __future__ import annotations

from typing import Any

from pipeline.core.config import Settings
from pipeline.core.events import Event
from streams.conversation import Contribution, ConversationState
from streams.customers.facts import (
    CustomerFact,
    customer_fact,
    encode_facts,
    floor_header,
    group_by_customer,
)
from streams.customers.followups import FollowupRules, followup_record
from streams.runtime.contracts import OutputRecord

__all__ = ["CustomerExtension"]


class CustomerExtension:
    """Collects one batch's customer facts; publishes follow-ups as they come."""

    def __init__(self, settings: Settings) -> None:
        c = settings.customers
        self.facts_topic = c.facts_topic
        self.followups_topic = c.followups_topic
        self.rules = FollowupRules.from_settings(c)
        self.facts_partitions = settings.topics.partitions
        self._facts: list[CustomerFact] = []

    def on_accepted(
        self, event: Event, state: ConversationState, contribution: Contribution, msg: Any
    ) -> list[OutputRecord]:
        source = (msg.partition, msg.offset, msg.timestamp)
        fact = customer_fact(event, state, contribution, source)
        if fact is not None:
            self._facts.append(fact)
        record = followup_record(event, state, source, self.rules)
        if record is None:
            return []
        return [OutputRecord(self.followups_topic, event.conversation_id.encode(), record)]

    def finish(
        self, partition: int, floor_us: int | None, end_floor_us: int | None
    ) -> list[OutputRecord]:
        """One facts record per customer of the batch (keyed by customer_id), each with
        the batch's floor, then a heartbeat to every facts partition when the end floor
        enters a new minute: the customer role knows from the floors how far its risk
        history is final, and the heartbeats keep that moving when a partition hears of
        none of this source partition's customers."""
        facts, self._facts = self._facts, []
        headers = () if floor_us is None else (floor_header(partition, floor_us),)
        out = [
            OutputRecord(self.facts_topic, k, v, headers=headers)
            for k, v in group_by_customer(facts)
        ]
        if end_floor_us is not None and (
            floor_us is None or end_floor_us // _MINUTE_US > floor_us // _MINUTE_US
        ):
            beat = (floor_header(partition, end_floor_us),)
            out.extend(
                OutputRecord(self.facts_topic, None, _EMPTY, partition=p, headers=beat)
                for p in range(self.facts_partitions)
            )
        return out


_MINUTE_US = 60_000_000
_EMPTY = encode_facts([])

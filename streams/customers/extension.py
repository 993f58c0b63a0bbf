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
from streams.customers.facts import CustomerFact, customer_fact, group_by_customer
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

    def finish(self) -> list[OutputRecord]:
        """One facts record per customer of the batch (keyed by customer_id)."""
        facts, self._facts = self._facts, []
        return [OutputRecord(self.facts_topic, k, v) for k, v in group_by_customer(facts)]

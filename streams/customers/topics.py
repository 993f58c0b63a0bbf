"""The customer topics and the configs their guarantees rely on (for ``cxpulse topics create``).

* ``cxpulse.customer-facts`` (key = customer_id): facts from the compute role, read by the
  customer role; a stream, kept as long as the events topic.
* ``cxpulse.customer-log`` (key = customer_id): the customer role's changelog *and* what the
  sink writes to ClickHouse. Compacted only, never deleted by age: a customer's state must
  survive 44 quiet days (it is removed by its tombstone); the compaction lag keeps every
  record until the sink has read it. Same partition count as the facts topic (one changelog
  partition per input partition).
* ``cxpulse.feedback-followups`` (key = conversation_id): low survey answers, a stream kept
  like the side topics.
"""

from __future__ import annotations

from pipeline.core.config import Settings
from pipeline.core.topics import TopicSpec

__all__ = ["customer_topic_specs"]

_DAY_MS = 86_400_000


def customer_topic_specs(settings: Settings) -> list[TopicSpec]:
    t = settings.topics
    c = settings.customers
    n = t.partitions
    return [
        TopicSpec(c.facts_topic, n, {"retention.ms": str(t.log_retention_days * _DAY_MS)}),
        TopicSpec(
            c.log_topic,
            n,
            {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": str(t.log_min_compaction_lag_hours * 3_600_000),
            },
        ),
        TopicSpec(c.followups_topic, n, {"retention.ms": str(t.side_retention_days * _DAY_MS)}),
    ]

"""Topic layout, created with kafka-python's admin client (idempotent)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.core.config import Settings
from pipeline.core.errors import ConfigError, CxpulseError
from pipeline.core.kafka import broker_reachable, kafka_python_kwargs, probe
from pipeline.core.logs import kv

__all__ = ["TopicSpec", "broker_reachable", "customer_topic_specs", "ensure_topics", "topic_specs"]

log = logging.getLogger(__name__)
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic cxpulse reads or writes, with the configs its guarantees rely on."""
    t = settings.topics
    n = t.partitions
    side = {"retention.ms": str(t.side_retention_days * _DAY_MS)}
    return [
        TopicSpec(t.events, n, {"retention.ms": str(t.log_retention_days * _DAY_MS)}),
        # The conversation-state changelog: compaction keeps each conversation's latest
        # state for recovery; deletion retires conversations idle longer than the state
        # retention (their state has expired by then).
        TopicSpec(
            t.conversation_log,
            n,
            {
                "cleanup.policy": "compact,delete",
                "min.compaction.lag.ms": str(t.log_min_compaction_lag_hours * 3_600_000),
                "retention.ms": str(t.log_retention_days * _DAY_MS),
            },
        ),
        # Minute deltas: read once by the sink, kept as long as the events for replays.
        TopicSpec(t.deltas, n, {"retention.ms": str(t.log_retention_days * _DAY_MS)}),
        TopicSpec(t.dead_letter, n, side),
        TopicSpec(t.late_events, n, side),
        *(customer_topic_specs(settings) if settings.customers.enabled else []),
    ]


def customer_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The customer role's topics: facts in (keyed by customer), its changelog, follow-ups.

    The customer log is compact-only: a customer's state must outlive any time-based
    retention (30 days of window and more); expired customers are removed by tombstones.
    """
    t, c, n = settings.topics, settings.customers, settings.topics.partitions
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


def _admin(settings: Settings, timeout_s: float | None) -> KafkaAdminClient:
    probe(settings, timeout_s)  # waits for the broker; a bad login or CA is one clear line
    try:
        return KafkaAdminClient(
            request_timeout_ms=15_000,
            **kafka_python_kwargs(settings, client_id=f"{settings.app_id}-admin"),
        )
    except KafkaError as exc:
        raise CxpulseError(
            f"cannot connect to Kafka at {settings.kafka.bootstrap_servers}: {exc}"
        ) from None


def _leader(partition: dict[str, object]) -> int:
    """The leader's broker id of a described partition (-1: none yet)."""
    leader = partition.get("leader_id", partition.get("leader", -1))
    return leader if isinstance(leader, int) else -1


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partitions per topic; waits (up to 30 s) while freshly created topics show none yet
    or a partition has no leader yet (their metadata reaches the broker a moment after
    CreateTopics returns; a producer writing before that is refused with
    NotLeaderForPartition)."""
    deadline = time.monotonic() + 30
    while True:
        described = admin.describe_topics(names)
        counts = {d.get("name", d.get("topic")): len(d["partitions"]) for d in described}
        led = all(_leader(p) >= 0 for d in described for p in d["partitions"])
        if (all(counts.get(n) for n in names) and led) or time.monotonic() >= deadline:
            return counts
        time.sleep(0.2)


def ensure_topics(settings: Settings, timeout_s: float | None = None) -> list[str]:
    """Create missing topics; refuse to run if an existing one has the wrong partition count.

    ``timeout_s`` (default ``kafka.connect_timeout_seconds``) is how long to wait for a
    broker. Returns the names created.
    """
    specs = topic_specs(settings)
    admin = _admin(settings, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            new = [
                NewTopic(
                    s.name, s.partitions, settings.kafka.replication_factor, topic_configs=s.config
                )
                for s in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                admin.create_topics(new, timeout_ms=30_000)
            created = [s.name for s in missing]
            log.info("topics created", extra=kv(topics=",".join(created)))
        counts = _partition_counts(admin, [s.name for s in specs])
        for spec in specs:
            have = counts.get(spec.name)
            if (
                have is not None
                and have != spec.partitions
                and spec.name
                in {
                    settings.topics.events,
                    settings.topics.conversation_log,
                    settings.topics.deltas,
                    settings.topics.dead_letter,
                    settings.topics.late_events,
                    settings.customers.facts_topic,
                    settings.customers.log_topic,
                }
            ):
                raise ConfigError(
                    f"topic {spec.name} has {have} partitions but CXPULSE_TOPICS__PARTITIONS="
                    f"{spec.partitions}; a stateful role writes its outputs to its input "
                    "partition's number, so these topics must match (set the setting to match, "
                    "or recreate the topics)"
                )
        return created
    except KafkaError as exc:
        raise CxpulseError(f"Kafka refused topic setup: {exc}") from exc
    finally:
        admin.close()

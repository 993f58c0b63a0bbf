"""One evaluator at a time with a ClickHouse server: a Kafka consumer-group lease.

Every process that may evaluate (sink workers, ``cxpulse worker --role alerts``) joins
the consumer group ``<app_id>-alerts`` on a one-partition topic (``alerts.lease_topic``).
Kafka assigns that partition to exactly one member; only the member holding partition 0
evaluates. On a rebalance the revoke callback waits for the running step to finish
(``guard``) before giving the lease up, so the next holder starts from a complete
checkpoint. A member that loses its session (a network partition) can, for at most the
session timeout, overlap with the next holder: both then compute the same transitions
(the detector is deterministic and every row is keyed by its content), so the only
effect is a notification sent twice, which Alertmanager and the webhook's idempotency
key absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pipeline.core.config import Settings
from pipeline.core.kafka import aiokafka_kwargs, kafka_python_kwargs
from pipeline.core.logs import kv

__all__ = ["KafkaLease"]

log = logging.getLogger(__name__)


def _ensure_topic(settings: Settings, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**kafka_python_kwargs(settings, client_id=f"{settings.app_id}-alerts"))
    try:
        admin.create_topics([NewTopic(topic, 1, settings.kafka.replication_factor)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


class KafkaLease:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.alerts.lease_topic
        self.group = f"{settings.app_id}-alerts"
        self.guard = asyncio.Lock()
        self._held = False
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    def held(self) -> bool:
        return self._held

    # aiokafka ConsumerRebalanceListener protocol
    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.guard:  # let a running step finish first
            if self._held:
                log.info("alert evaluator lease released", extra=kv(group=self.group))
            self._held = False

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._held = any(tp.topic == self.topic and tp.partition == 0 for tp in assigned)
        if self._held:
            log.info(
                "alert evaluator lease acquired: this process evaluates", extra=kv(group=self.group)
            )

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener

        await asyncio.get_running_loop().run_in_executor(
            None, _ensure_topic, self.settings, self.topic
        )
        self._consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(self.settings, client_id=self.group),
            group_id=self.group,
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        lease = self

        class _Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await lease.on_partitions_revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await lease.on_partitions_assigned(assigned)

        self._consumer.subscribe([self.topic], listener=_Listener())
        await self._consumer.start()
        self._task = asyncio.create_task(self._poll(), name="alerts-lease")

    async def _poll(self) -> None:
        """Keep the membership alive (the topic stays empty: nothing is ever read)."""
        while True:
            await self._consumer.getmany(timeout_ms=1000)

    async def stop(self) -> None:
        self._held = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

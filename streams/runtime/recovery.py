"""Bring local stores up to the end of their changelog partitions (read_committed).

Runs at assignment, after the partition's transactional producer has fenced any previous
owner (its open transaction is aborted then), so the changelog's last stable offset is its
true end. A store that is behind the log's start (retention or compaction removed what it
needs) or ahead of the log's end (the topic was recreated) is cleared and rebuilt from the
beginning: the log is the truth, local disk only a cache of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.core.logs import kv
from streams.runtime.stores import PartitionStore

__all__ = ["RestoreReport", "restore"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestoreReport:
    partition: int
    records: int
    from_offset: int
    to_offset: int
    rebuilt: bool
    seconds: float


async def restore(
    consumer: AIOKafkaConsumer,
    topic: str,
    stores: Mapping[int, PartitionStore],
    *,
    stall_timeout_s: float = 60.0,
) -> list[RestoreReport]:
    """Replay ``topic``'s partitions into ``stores`` (partition -> store) up to their end.

    ``consumer`` has no group and ``isolation_level="read_committed"``; it is assigned the
    partitions for the duration of the call.
    """
    if not stores:
        return []
    started = time.monotonic()
    tps = {p: TopicPartition(topic, p) for p in stores}
    consumer.assign(list(tps.values()))
    try:
        begin = await consumer.beginning_offsets(list(tps.values()))
        end = await consumer.end_offsets(list(tps.values()))
        starts: dict[int, int] = {}
        rebuilt: dict[int, bool] = {}
        pending: set[TopicPartition] = set()
        for p, tp in tps.items():
            store = stores[p]
            start = store.changelog_offset() + 1
            rebuilt[p] = start < begin[tp] or start > end[tp]
            if rebuilt[p]:
                if start > 0:
                    log.warning(
                        "local state does not match the changelog; rebuilding it",
                        extra=kv(
                            topic=topic,
                            partition=p,
                            store_next=start,
                            log_start=begin[tp],
                            log_end=end[tp],
                        ),
                    )
                store.clear()
                start = begin[tp]
            starts[p] = start
            if start < end[tp]:
                consumer.seek(tp, start)
                pending.add(tp)
        counts = dict.fromkeys(stores, 0)
        last_progress = time.monotonic()
        while pending:
            data = await consumer.getmany(*pending, timeout_ms=500, max_records=20_000)
            for tp, records in data.items():
                if records:
                    changes = {r.key: r.value for r in records if r.key is not None}
                    stores[tp.partition].apply(changes, records[-1].offset)
                    counts[tp.partition] += len(records)
                    last_progress = time.monotonic()
            for tp in list(pending):
                # With read_committed the position skips transaction markers, so it can
                # reach the end without a record at the end offset.
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if pending and time.monotonic() - last_progress > stall_timeout_s:
                raise TimeoutError(
                    f"changelog {topic} made no progress for {stall_timeout_s:.0f}s while "
                    f"restoring partitions {sorted(tp.partition for tp in pending)}"
                )
            await asyncio.sleep(0)
    finally:
        consumer.assign([])
    elapsed = time.monotonic() - started
    reports = [
        RestoreReport(p, counts[p], starts[p], end[tps[p]], rebuilt[p], elapsed) for p in stores
    ]
    for r in reports:
        log.info(
            "state restored",
            extra=kv(
                topic=topic,
                partition=r.partition,
                records=r.records,
                from_offset=r.from_offset,
                to_offset=r.to_offset,
                rebuilt=r.rebuilt,
                seconds=round(elapsed, 3),
            ),
        )
    return reports

"""One owned input partition: its logic, local store and transactional producer.

The checkpoint of a batch, in this order (the order is the guarantee):

1. ``logic.process`` folds the batch (pure, on committed state plus the batches still in
   flight: :class:`_Overlay`);
2. one Kafka transaction: the changelog entries, the outputs, and the input offset
   (``send_offsets_to_transaction``), committed together or not at all;
3. only after the commit, the changelog entries go to the local store, with the offset of
   the last changelog record, in one atomic write.

A crash anywhere leaves the store at or behind the changelog, never ahead; recovery replays
the changelog from the store's offset, and the input resumes at the committed offset,
which is exactly where the changelog stops. Up to two batches are in flight per partition
(the next batch is folded while the previous one commits); a failed commit discards both,
and the runtime rebuilds the partition from store + changelog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from aiokafka import TopicPartition

from streams.runtime.contracts import BatchResult, InputMessage, PartitionLogic
from streams.runtime.stores import PartitionStore

__all__ = ["PartitionRunner"]

_MAX_IN_FLIGHT = 2


class _Overlay:
    """The state ``process`` sees: uncommitted batches (newest first), then the store."""

    __slots__ = ("layers", "store")

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.layers: deque[dict[bytes, bytes | None]] = deque()

    def get(self, key: bytes) -> bytes | None:
        for layer in reversed(self.layers):
            if key in layer:
                return layer[key]
        return self.store.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        if self.layers:  # only ``open`` scans, and it runs with nothing in flight
            raise RuntimeError("cannot scan state while batches are in flight")
        return self.store.items()


class PartitionRunner:
    """Submits batches of one partition; commits them in order, one transaction each."""

    def __init__(
        self,
        *,
        tp: TopicPartition,
        group_id: str,
        changelog_topic: str,
        logic: PartitionLogic,
        store: PartitionStore,
        producer: Any,
        metrics: Any,
        role: str,
    ) -> None:
        self.tp = tp
        self.group_id = group_id
        self.changelog_topic = changelog_topic
        self.logic = logic
        self.store = store
        self.producer = producer
        self.state = _Overlay(store)
        self.fenced = False
        self.committed_next = -1  # input offset committed by the last successful commit
        self.last_message_at = time.monotonic()
        self.last_idle_at = 0.0
        self._pending: deque[asyncio.Task[None]] = deque()
        self._batch_seconds = metrics.batch_seconds.labels(role)
        self._commit_seconds = metrics.commit_seconds.labels(role)
        self._batch_messages = metrics.batch_messages.labels(role)

    # -- submitting --

    async def submit(self, messages: Sequence[InputMessage]) -> bool:
        """Fold ``messages`` and start their commit (after the previous one).

        False (nothing done) when a commit in flight has failed: the caller rebuilds the
        partition and fetches these messages again.
        """
        while len(self._pending) >= _MAX_IN_FLIGHT:
            await asyncio.wait({self._pending[0]})
            if self.failure() is not None:
                return False
        started = time.perf_counter()
        result = self.logic.process(messages, self.state)
        self._batch_seconds.observe(time.perf_counter() - started)
        self._batch_messages.observe(len(messages))
        self.last_message_at = time.monotonic()
        self._start_commit(result, messages[-1].offset + 1)
        return True

    def submit_idle(self, now_ms: int) -> bool:
        """Give the logic an idle tick (if it has one); True if something was submitted."""
        on_idle = getattr(self.logic, "on_idle", None)
        self.last_idle_at = time.monotonic()
        if on_idle is None or self._pending:
            return False
        result = on_idle(now_ms)
        if result is None:
            return False
        self._start_commit(result, None)
        return True

    def commit_position(self, position: int) -> None:
        """Commit an input position that moved over transaction markers only (a
        transactional input topic): nothing to process, but the group's lag becomes 0."""
        self._start_commit(BatchResult(), position)

    def _start_commit(self, result: BatchResult, next_offset: int | None) -> None:
        prev = self._pending[-1] if self._pending else None
        layer = dict(result.changelog)
        self.state.layers.append(layer)
        task = asyncio.create_task(self._commit(prev, result, layer, next_offset))
        self._pending.append(task)

    # -- committing --

    async def _commit(
        self,
        prev: asyncio.Task[None] | None,
        result: BatchResult,
        layer: dict[bytes, bytes | None],
        next_offset: int | None,
    ) -> None:
        if prev is not None:
            await prev  # a failed predecessor fails this one too: nothing after a gap
        started = time.perf_counter()
        producer = self.producer
        partition = self.tp.partition
        futures = []
        async with producer.transaction():
            for key, value in result.changelog.items():
                futures.append(
                    await producer.send(
                        self.changelog_topic, value=value, key=key, partition=partition
                    )
                )
            for out in result.outputs:
                await producer.send(
                    out.topic,
                    value=out.value,
                    key=out.key,
                    partition=out.partition,
                    headers=list(out.headers) or None,
                )
            if next_offset is not None:
                await producer.send_offsets_to_transaction({self.tp: next_offset}, self.group_id)
        last = -1
        if futures:
            metadata = await asyncio.gather(*futures)
            last = max(m.offset for m in metadata)
        # Committed: only now may local state move (it must never be ahead of the log).
        self.store.apply(result.changelog, last)
        if next_offset is not None:
            self.committed_next = next_offset
        if self.state.layers and self.state.layers[0] is layer:
            self.state.layers.popleft()
        self._commit_seconds.observe(time.perf_counter() - started)

    def _retire_done(self) -> None:
        while self._pending and self._pending[0].done() and not self._pending[0].exception():
            self._pending.popleft()

    def failure(self) -> BaseException | None:
        """The error of the first failed commit, if any (the partition must be rebuilt)."""
        for task in self._pending:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        self._retire_done()
        return None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def drain(self, timeout: float) -> BaseException | None:
        """Wait for every commit in flight; returns the first error (None = all committed)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)
        error = None
        for task in self._pending:
            if not task.done():
                task.cancel()
                error = error or TimeoutError(f"commit of {self.tp} did not finish in {timeout}s")
            elif not task.cancelled() and task.exception() is not None:
                error = error or task.exception()
        self._pending.clear()
        return error

    async def discard(self) -> None:
        """Cancel whatever is in flight (after a failure: it will be processed again)."""
        for task in self._pending:
            task.cancel()
        for task in self._pending:
            with contextlib.suppress(BaseException):  # each failure is handled by the caller
                await task
        self._pending.clear()
        self.state.layers.clear()

"""The sink boundary: ``add`` records, ``flush`` them as the step before a commit.

Shaped after Quix Streams' sinks: a flush either succeeds (the caller may then acknowledge
the offsets it covered) or raises. :class:`SinkBackpressureError` means "the destination is
slow or down, try again after ``retry_after`` seconds": the caller keeps the batch, stops
consuming and retries, so nothing is lost and memory stays bounded. :class:`SinkError` is
fatal (bad schema, bad credentials): retrying cannot help.
"""

from __future__ import annotations

import abc
from typing import Any, Generic, TypeVar

from pipeline.core.errors import CxpulseError

__all__ = ["BaseSink", "SinkBackpressureError", "SinkError", "SinkGroup"]

T = TypeVar("T")


class SinkError(CxpulseError):
    """A write failed in a way retrying will not fix."""


class SinkBackpressureError(CxpulseError):
    """A transient failure: keep the data, pause, retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, cause: str = "") -> None:
        super().__init__(f"destination unavailable, retry in {retry_after:.1f}s: {cause}")
        self.retry_after = retry_after
        self.cause = cause


class BaseSink(abc.ABC, Generic[T]):
    """A destination that batches records between commits."""

    def setup(self) -> None:
        """Connect and prepare the destination (called once before the first add)."""

    @abc.abstractmethod
    def add(self, record: T) -> None:
        """Take one record into the current batch (no I/O)."""

    @abc.abstractmethod
    def flush(self) -> int:
        """Write the batch; return rows written. Raise SinkBackpressureError or SinkError."""

    def close(self) -> None:
        """Release connections; not guaranteed to run on a crash, so never required."""


class SinkGroup(BaseSink[Any]):
    """Several sinks behind one ``add``/``flush``: records go to the sinks that take their
    topic; ``flush`` flushes them in order and fails as soon as one fails (the runner then
    retries the whole flush, which each sink makes idempotent)."""

    def __init__(self, routes: list[tuple[BaseSink[Any], frozenset[str]]]) -> None:
        self.routes = routes
        self._by_topic = {topic: sink for sink, topics in routes for topic in topics}

    def add(self, record: Any) -> None:
        sink = self._by_topic.get(record.topic)
        if sink is not None:
            sink.add(record)

    def flush(self) -> int:
        return sum(sink.flush() for sink, _ in self.routes)

    @property
    def has_pending(self) -> bool:
        return any(getattr(sink, "has_pending", False) for sink, _ in self.routes)

    def forget_partition(self, partition: int) -> None:
        for sink, _ in self.routes:
            forget = getattr(sink, "forget_partition", None)
            if forget is not None:
                forget(partition)

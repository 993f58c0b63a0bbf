"""What a stateful role's logic sees of Kafka, and what it hands back per batch.

State is bytes by key, per input partition. The runtime keeps it: a local store (RocksDB
or memory) that always equals the changelog topic up to the last committed transaction.
For each input partition it owns, the runtime

1. on assignment, brings the local store up to the changelog's end (the tail newer than
   the store, or all of it for the memory store), then calls ``open(state)``, where the
   logic may scan the state once to rebuild what it derives from it (indexes, watermarks);
2. calls ``process(messages, state)`` with the next batch of input messages of that
   partition, in offset order. The result's changelog entries, its outputs and the input
   offsets are committed in one Kafka transaction; the changelog entries are written to the
   local store only after that commit, so the store is never ahead of the log.

``state`` holds committed values only: within a batch the logic keeps its own view of the
keys it changed. ``process`` must be deterministic in (state, messages): a batch that
failed to commit is discarded together with the logic instance, a new instance is opened on
the unchanged store, and the same messages are processed again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["BatchResult", "InputMessage", "OutputRecord", "PartitionLogic", "StateReader"]


@dataclass(slots=True, frozen=True)
class InputMessage:
    """One consumed message. aiokafka's ``ConsumerRecord`` has this shape, so the runtime
    hands records over without copying them (a copy per message is measurable)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # Kafka timestamp, milliseconds since the epoch
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(slots=True, frozen=True)
class OutputRecord:
    """A record to produce in the batch's transaction (``partition=None``: by key)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class BatchResult:
    """What one batch changes: state (one changelog entry per key) and outputs."""

    # key -> new changelog value (``None`` = tombstone); written to the role's changelog
    # topic, on the input partition's number, and to the local store after the commit.
    changelog: dict[bytes, bytes | None] = field(default_factory=dict)
    outputs: list[OutputRecord] = field(default_factory=list)


class StateReader(Protocol):
    """Committed state of one input partition."""

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or None."""
        ...

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value (a full scan: for ``open`` only)."""
        ...


class PartitionLogic(Protocol):
    """The role's logic for one input partition (one instance per assignment)."""

    def open(self, state: StateReader) -> None:
        """Rebuild derived indexes from the recovered state, before the first batch."""
        ...

    def process(self, messages: Sequence[InputMessage], state: StateReader) -> BatchResult:
        """Fold one batch of the partition's messages (offset order) into state."""
        ...

"""What a stateful role's logic sees of Kafka, and what it hands back per batch.

The runtime calls, for each input partition it owns:

1. ``restore(key, value)`` for every changelog record newer than the local store (and for
   every record, with the memory store), at assignment, before any input;
2. ``process(messages)`` with the next batch of input messages of that partition, in
   offset order. The result's changelog entries, outputs and the input offsets are then
   committed in one Kafka transaction; local state is persisted only after that commit.

``process`` must be deterministic in (restored state, messages): a batch that failed to
commit is discarded with the logic instance, which is rebuilt from the store and the
changelog, and the same messages are processed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["BatchResult", "InputMessage", "OutputRecord", "PartitionLogic"]


@dataclass(slots=True, frozen=True)
class InputMessage:
    """One consumed message (a thin, client-independent copy of the Kafka record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


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


class PartitionLogic(Protocol):
    """The role's logic for one input partition (one instance per assignment)."""

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (``None`` = tombstone) to the local state."""
        ...

    def process(self, messages: Sequence[InputMessage]) -> BatchResult:
        """Fold one batch of the partition's messages (offset order) into state."""
        ...

"""Which conversations of a partition have outlived their state retention (event time).

The gate already treats an expired state as absent (``PartitionGate.is_expired``), so
deleting it is only housekeeping: it keeps the local store and the compacted log from
growing forever (Faust's own windowed tables never expire on RocksDB, #385). Expiry is
measured against the partition watermark, never the wall clock, so a replay deletes the
same conversations at the same point of the input.
"""

from __future__ import annotations

__all__ = ["ExpiryIndex"]


class ExpiryIndex:
    """Last event time per conversation key, for one partition."""

    __slots__ = ("_last", "_since_sweep", "sweep_every")

    def __init__(self, sweep_every: int) -> None:
        self._last: dict[bytes, int] = {}
        self._since_sweep = 0
        self.sweep_every = sweep_every

    def touch(self, key: bytes, last_event_us: int) -> None:
        self._last[key] = last_event_us
        self._since_sweep += 1

    def sweep_due(self) -> bool:
        return self._since_sweep >= self.sweep_every

    def expired(self, watermark_us: int, retention_us: int) -> list[bytes]:
        """Remove and return the keys whose last event is older than the retention."""
        self._since_sweep = 0
        cutoff = watermark_us - retention_us
        doomed = [k for k, t in self._last.items() if t < cutoff]
        for key in doomed:
            del self._last[key]
        return doomed

    def __len__(self) -> int:
        return len(self._last)

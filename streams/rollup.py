"""Delta cells -> minute rows of every default grouping, with per-row versions (sink side).

A row is identified by ``(source_partition, grouping, team, channel, region, priority,
segment, minute, lag_minutes)``; its ``version`` is the highest source offset of a batch
folded into it. Offsets of one partition only grow and every batch's updates to a row
arrive in one delta message, so a message whose offset is not above the row's version is
already inside the row (a re-read after a sink restart) and is skipped: that makes the
sink idempotent without coordinating with its own offset commits.

Pure code: loading rows from storage is the caller's job (:meth:`MinuteRollup.missing`
then :meth:`MinuteRollup.install`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streams.partials import MinutePartial

__all__ = [
    "GROUPINGS",
    "MinuteRollup",
    "RowKey",
    "StoredRow",
    "apply_increments",
    "group_keys",
]

_US = 1_000_000
# Grouping name -> which of (team, channel, region, priority, segment) it keeps.
GROUPINGS: dict[str, tuple[bool, bool, bool, bool, bool]] = {
    "overall": (False, False, False, False, False),
    "team": (True, False, False, False, False),
    "channel": (False, True, False, False, False),
    "region": (False, False, True, False, False),
    "priority": (False, False, False, True, False),
    "segment": (False, False, False, False, True),
    "team_channel": (True, True, False, False, False),
}
_GROUPING_ITEMS = tuple(GROUPINGS.items())

# (source_partition, grouping, team, channel, region, priority, segment, minute, lag_minutes)
RowKey = tuple[int, str, str, str, str, str, str, int, int]
# (minute, lag_minutes, team, channel, region, priority, segment): see streams.deltas
_Cell = tuple[int, int, str, str, str, str, str]


def group_keys(partition: int, cell: _Cell) -> Iterator[RowKey]:
    """The row of every grouping a cell lands in; '' = not part of the grouping."""
    minute, lag, *dims = cell
    for name, keep in _GROUPING_ITEMS:
        t, ch, r, p, s = (d if k else "" for d, k in zip(dims, keep, strict=True))
        yield (partition, name, t, ch, r, p, s, minute, lag)


def apply_increments(partial: MinutePartial, inc: dict[str, int]) -> None:
    """Fold one contribution's increments (see ``streams.conversation``) into a partial."""
    for name, value in inc.items():
        if name == "frt":
            partial.add_frt(value / _US, bool(inc.get("frt_breaches")))
        elif name == "reply":
            partial.add_reply(value / _US)
        elif name == "resolution":
            partial.add_resolution_time(value / _US)
        elif name == "csat":
            partial.add_csat(value)
        elif name == "nps":
            partial.add_nps(value)
        elif name == "ces":
            partial.add_ces(value)
        elif name == "frt_breaches":
            continue  # counted by add_frt together with its sample
        else:
            setattr(partial, name, getattr(partial, name) + value)


@dataclass(slots=True)
class StoredRow:
    partial: MinutePartial
    version: int
    dirty: bool = False


class MinuteRollup:
    """The sink's working set: minute rows of recent minutes, loaded per (partition, minute)."""

    __slots__ = ("_loaded", "rows")

    def __init__(self) -> None:
        self.rows: dict[RowKey, StoredRow] = {}
        self._loaded: set[tuple[int, int]] = set()

    def missing(self, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """(partition, minute) pairs the caller must load before :meth:`apply`."""
        loaded = self._loaded
        return {pm for pm in pairs if pm not in loaded}

    def install(
        self, pairs: Iterable[tuple[int, int]], rows: Iterable[tuple[RowKey, MinutePartial, int]]
    ) -> None:
        """Record stored rows (``key, partial, version``) and mark their minutes loaded."""
        for key, partial, version in rows:
            current = self.rows.get(key)
            if current is None or current.version < version:
                self.rows[key] = StoredRow(partial, version)
        self._loaded.update(pairs)

    def apply(
        self, partition: int, offset: int, cells: Iterable[tuple[_Cell, MinutePartial]]
    ) -> tuple[int, int]:
        """Fold one delta message's cells; returns (rows updated, rows already holding it)."""
        merged: dict[RowKey, MinutePartial] = {}
        for cell, partial in cells:
            for key in group_keys(partition, cell):
                acc = merged.get(key)
                if acc is None:
                    merged[key] = partial.copy()
                else:
                    acc.merge(partial)
        applied = skipped = 0
        rows = self.rows
        for key, partial in merged.items():
            row = rows.get(key)
            if row is None:
                rows[key] = StoredRow(partial, offset, True)
            elif offset <= row.version:
                skipped += 1
                continue
            else:
                row.partial.merge(partial)
                row.version = offset
                row.dirty = True
            applied += 1
        return applied, skipped

    def dirty(self) -> list[tuple[RowKey, StoredRow]]:
        return [(k, r) for k, r in self.rows.items() if r.dirty]

    def mark_clean(self, keys: Iterable[RowKey]) -> None:
        rows = self.rows
        for key in keys:
            rows[key].dirty = False

    def evict_before(self, partition: int, minute: int) -> int:
        """Drop clean rows of ``partition`` older than ``minute``; they reload on demand."""
        doomed = [
            k for k, r in self.rows.items() if k[0] == partition and k[7] < minute and not r.dirty
        ]
        for key in doomed:
            del self.rows[key]
        self._loaded = {pm for pm in self._loaded if pm[0] != partition or pm[1] >= minute}
        return len(doomed)

    def drop_partition(self, partition: int) -> None:
        """Forget a partition another sink owns now (its rows reload if it comes back)."""
        self.rows = {k: r for k, r in self.rows.items() if k[0] != partition}
        self._loaded = {pm for pm in self._loaded if pm[0] != partition}

    def __len__(self) -> int:
        return len(self.rows)

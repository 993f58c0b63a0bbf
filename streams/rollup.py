"""Contributions -> minute partials for every default grouping, with per-row versions.

A row is identified by ``(source_partition, grouping, team, channel, region, priority,
segment, minute)``; its ``version`` is the highest conversation-log offset folded into it.
Log offsets of one partition only grow, so a contribution whose offset is not above the
row's version is already inside the row (a re-read after a sink restart) and is skipped:
that makes the sink idempotent without coordinating with its own offset commits.

Pure code: loading rows from storage is the caller's job (:meth:`MinuteRollup.missing`
then :meth:`MinuteRollup.install`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streams.conversation import Contribution
from streams.partials import MinutePartial

__all__ = ["GROUPINGS", "MinuteRollup", "RowKey", "StoredRow", "apply_increments", "group_keys"]

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

# (source_partition, grouping, team, channel, region, priority, segment, minute)
RowKey = tuple[int, str, str, str, str, str, str, int]


def group_keys(partition: int, c: Contribution) -> Iterator[RowKey]:
    """The row of every grouping this contribution lands in; '' = not part of the grouping."""
    dims = (c.team, c.channel, c.region, c.priority, c.segment)
    for name, keep in _GROUPING_ITEMS:
        t, ch, r, p, s = (d if k else "" for d, k in zip(dims, keep, strict=True))
        yield (partition, name, t, ch, r, p, s, c.minute)


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

    def missing(self, items: Iterable[tuple[int, Contribution]]) -> set[tuple[int, int]]:
        """(partition, minute) pairs the caller must load before :meth:`apply`."""
        loaded = self._loaded
        return {(p, c.minute) for p, c in items if (p, c.minute) not in loaded}

    def install(
        self, pairs: Iterable[tuple[int, int]], rows: Iterable[tuple[RowKey, MinutePartial, int]]
    ) -> None:
        """Record stored rows (``key, partial, version``) and mark their minutes loaded."""
        for key, partial, version in rows:
            current = self.rows.get(key)
            if current is None or current.version < version:
                self.rows[key] = StoredRow(partial, version)
        self._loaded.update(pairs)

    def apply(self, partition: int, offset: int, contribution: Contribution) -> bool:
        """Fold one contribution; False if every row already holds it (a re-read)."""
        applied = False
        rows = self.rows
        for key in group_keys(partition, contribution):
            row = rows.get(key)
            if row is None:
                row = rows[key] = StoredRow(MinutePartial(), -1)
            elif offset <= row.version:
                continue
            apply_increments(row.partial, contribution.increments)
            row.version = offset
            row.dirty = True
            applied = True
        return applied

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

    def __len__(self) -> int:
        return len(self.rows)

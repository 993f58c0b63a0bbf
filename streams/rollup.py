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

import operator
from collections.abc import Iterable, Iterator
from typing import Any

from streams.partials import PARTIAL_COLUMNS, SKETCH_FIELDS, TIME_SUM_FIELDS, MinutePartial

__all__ = [
    "GROUPINGS",
    "SKETCH_COLUMNS",
    "STORED_COLUMNS",
    "VALUE_COLUMNS",
    "VALUE_INDEX",
    "CellValues",
    "MinuteRollup",
    "RowKey",
    "StoredRow",
    "StoredRowData",
    "apply_increments",
    "cell_values",
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
# (key, values, sketches, version) of a stored row, as loaded from storage
StoredRowData = tuple[RowKey, list[int], dict[str, dict[int, int]], int]


_TEMPLATES: dict[
    tuple[str, str, str, str, str], tuple[tuple[str, str, str, str, str, str], ...]
] = {}


_BY_PATTERN = {keep: name for name, keep in GROUPINGS.items()}


def _templates(dims: tuple[str, str, str, str, str]) -> tuple[tuple[str, ...], ...]:
    """(grouping, team, channel, region, priority, segment) of every grouping a delta row
    feeds, cached. '' = dimension not kept: a row whose blanks match a grouping (see
    ``streams.deltas.grouping_rows``) is that grouping's row; a row with every dimension
    set feeds all seven."""
    found = _TEMPLATES.get(dims)
    if found is None:
        name = _BY_PATTERN.get(tuple(bool(d) for d in dims))  # type: ignore[arg-type]
        names = (name,) if name is not None else tuple(GROUPINGS)
        found = tuple(
            (name, *(d if k else "" for d, k in zip(dims, GROUPINGS[name], strict=True)))
            for name in names
        )
        if len(_TEMPLATES) > 100_000:
            _TEMPLATES.clear()
        _TEMPLATES[dims] = found  # type: ignore[assignment]
    return found


def group_keys(partition: int, cell: _Cell) -> Iterator[RowKey]:
    """The row of every grouping a cell lands in; '' = not part of the grouping."""
    minute, lag = cell[0], cell[1]
    head = (partition,)
    tail = (minute, lag)
    for template in _templates(cell[2:]):  # type: ignore[arg-type]
        yield head + template + tail  # type: ignore[misc]


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


# Column names of a stored row (kpi_minute_partials): time sums are integer microseconds.
STORED_COLUMNS: tuple[str, ...] = tuple(
    f"{c}_us" if c in TIME_SUM_FIELDS else c for c in PARTIAL_COLUMNS
)
SKETCH_COLUMNS = frozenset(SKETCH_FIELDS)


VALUE_COLUMNS: tuple[str, ...] = tuple(c for c in STORED_COLUMNS if c not in SKETCH_COLUMNS)
VALUE_INDEX: dict[str, int] = {name: i for i, name in enumerate(VALUE_COLUMNS)}
_N_VALUES = len(VALUE_COLUMNS)
_add = operator.add

# A delta cell as the sink folds it: dense integer values (VALUE_COLUMNS order) and the
# sketch buckets it carries (None when it has no time sample).
CellValues = tuple[list[int], dict[str, dict[int, int]] | None]


def cell_values(sparse: dict[str, Any]) -> CellValues:
    """A delta cell's JSON (non-zero stored columns) in the dense form rows merge."""
    values = [0] * _N_VALUES
    sketches: dict[str, dict[int, int]] | None = None
    for name, value in sparse.items():
        if name in SKETCH_COLUMNS:
            if sketches is None:
                sketches = {}
            sketches[name] = {int(k): c for k, c in value.items()}
        else:
            values[VALUE_INDEX[name]] = value
    return values, sketches


class StoredRow:
    """One minute row as the sink keeps it: dense integers and sketch buckets.

    ``values`` holds the integer columns in ``VALUE_COLUMNS`` order (counts, score sums,
    time sums in microseconds: every sum exact in any order); ``sketches`` maps sketch
    columns to ``{bucket: count}``. Merging adds two lists element-wise, in C.
    """

    __slots__ = ("dirty", "sketches", "values", "version")

    def __init__(
        self,
        values: list[int] | None = None,
        sketches: dict[str, dict[int, int]] | None = None,
        version: int = -1,
        dirty: bool = False,
    ) -> None:
        self.values: list[int] = values if values is not None else [0] * _N_VALUES
        self.sketches: dict[str, dict[int, int]] = sketches if sketches is not None else {}
        self.version = version
        self.dirty = dirty

    def merge(self, cell: CellValues) -> None:
        """Add a delta cell (see :func:`cell_values`)."""
        values, sketches = cell
        # A new list, never in place: a row may have adopted a decoded delta's list.
        self.values = list(map(_add, self.values, values))
        if sketches:
            mine = self.sketches
            for name, add in sketches.items():
                bins = mine.get(name)
                if bins is None:
                    mine[name] = dict(add)
                else:
                    for k, c in add.items():
                        bins[k] = bins.get(k, 0) + c

    def column(self, name: str) -> Any:
        """The value of one stored column (a sketch as a key-sorted map)."""
        if name in SKETCH_COLUMNS:
            bins = self.sketches.get(name, {})
            return {k: bins[k] for k in sorted(bins)}
        return self.values[VALUE_INDEX[name]]

    def to_partial(self) -> MinutePartial:
        """The row as a MinutePartial (KPI formulas, tests)."""
        row: dict[str, Any] = {}
        for name, stored in zip(PARTIAL_COLUMNS, STORED_COLUMNS, strict=True):
            value = self.column(stored)
            row[name] = value / _US if name in TIME_SUM_FIELDS else value
        return MinutePartial.from_row(row)


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

    def install(self, pairs: Iterable[tuple[int, int]], rows: Iterable[StoredRowData]) -> None:
        """Record stored rows (``key, values, sketches, version``); mark their minutes loaded."""
        for key, values, sketches, version in rows:
            current = self.rows.get(key)
            if current is None or current.version < version:
                self.rows[key] = StoredRow(values, sketches, version)
        self._loaded.update(pairs)

    def apply(
        self, partition: int, offset: int, cells: Iterable[tuple[_Cell, CellValues]]
    ) -> tuple[int, int]:
        """Fold one delta message's cells; returns (rows updated, rows already holding it).

        Every update a batch makes to a row is in one message, so a row whose version is
        not below ``offset`` already holds this message, unless this very call touched it.
        """
        rows = self.rows
        touched: set[RowKey] = set()
        skipped: set[RowKey] = set()
        for cell, values in cells:
            keys = list(group_keys(partition, cell))
            if len(keys) == 1:
                # One row per delta row (the usual case): a new row adopts the decoded
                # values instead of copying them.
                key = keys[0]
                row = rows.get(key)
                if row is None:
                    sketches = values[1]
                    rows[key] = StoredRow(
                        values[0],
                        {n: dict(b) for n, b in sketches.items()} if sketches else None,
                        offset,
                        True,
                    )
                    touched.add(key)
                    continue
            for key in keys:
                if key in touched:
                    rows[key].merge(values)
                    continue
                row = rows.get(key)
                if row is None:
                    dense, sketches = values
                    rows[key] = StoredRow(
                        list(dense),
                        {n: dict(b) for n, b in sketches.items()} if sketches else None,
                        offset,
                        True,
                    )
                    touched.add(key)
                    continue
                if offset <= row.version:
                    skipped.add(key)
                    continue
                row.merge(values)
                row.version = offset
                row.dirty = True
                touched.add(key)
        return len(touched), len(skipped)

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

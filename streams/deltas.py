"""Minute deltas: what one batch of one source partition adds to the KPI minutes.

The compute role folds a batch's contributions into the rows of the seven groupings per
(minute, lag_minutes) — integer counters, microsecond sums and sketch buckets, the columns
of ``kpi_minute_partials`` — counts verdicts per arrival minute, and publishes the result
inside the batch's Kafka transaction as one or more *delta messages* on the source
partition's number. The sink folds each row into the stored minute row whose ``version`` is
the highest source offset folded in: a delta whose ``offset`` is not above a row's version
is already inside that row (a re-read after a sink restart), which makes the sink
idempotent.

Why per (minute, lag): ``lag_minutes`` (partition event-time progress minute at
processing minus the sample's minute) lets a reader select exactly the samples known when
a minute closed (``minute + lag_minutes <= C``), so alert evaluation replays identically.

A big batch is split into several messages, but never inside one (minute, lag): each
stored row gets all its updates of a batch from a single message, so the per-row version
check stays exact.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.partials import SKETCH_FIELDS
from streams.rollup import VALUE_COLUMNS, VALUE_INDEX, CellValues
from streams.sketch import bucket_key

__all__ = [
    "DELTA_FORMAT",
    "VERDICTS",
    "BatchDelta",
    "CellKey",
    "DeltaMessage",
    "decode_delta",
]

DELTA_FORMAT = 1
# Order of the verdict counters in a delta (and columns of event_verdicts).
VERDICTS = ("accepted", "duplicate", "late", "invalid", "replayed")
_VERDICT_INDEX = {name: i for i, name in enumerate(VERDICTS)}
_SKETCHES = frozenset(SKETCH_FIELDS)
_LATENCY_BUCKET_MS = 100

# (minute, lag_minutes, team, channel, region, priority, segment)
CellKey = tuple[int, int, str, str, str, str, str]


_SECOND = 1_000_000
_N = len(VALUE_COLUMNS)
_I = VALUE_INDEX
# increment name -> (count column, sum column, sketch column) for time samples
_TIME = {
    "frt": (_I["frt_count"], _I["frt_sum_us"], "frt_sketch"),
    "reply": (_I["reply_count"], _I["reply_sum_us"], "reply_sketch"),
    "resolution": (_I["resolution_count"], _I["resolution_sum_us"], "resolution_sketch"),
}
_add = operator.add


def _prepare(inc: dict[str, int]) -> tuple[list[tuple[int, int]], list[tuple[str, int]]]:
    """One contribution as (column index, increment) pairs and (sketch, bucket) pairs.

    Computed once per event, then added to each of the event's four base rows. The
    classification (satisfied, promoter, easy, ...) is the one ``MinutePartial`` applies;
    tests check the two agree.
    """
    values: list[tuple[int, int]] = []
    buckets: list[tuple[str, int]] = []
    for name, value in inc.items():
        time = _TIME.get(name)
        if time is not None:
            count, total, sketch = time
            values.append((count, 1))
            if value > 0:
                values.append((total, value))
            buckets.append((sketch, bucket_key(round(value / _SECOND, 6) if value > 0 else 0.0)))
        elif name == "csat":
            values += ((_I["csat_responses"], 1), (_I["csat_sum"], value))
            if value >= 4:
                values.append((_I["csat_satisfied"], 1))
        elif name == "nps":
            values.append((_I["nps_responses"], 1))
            if value >= 9:
                values.append((_I["nps_promoters"], 1))
            elif value <= 6:
                values.append((_I["nps_detractors"], 1))
        elif name == "ces":
            values += ((_I["ces_responses"], 1), (_I["ces_sum"], value))
            if value >= 5:
                values.append((_I["ces_easy"], 1))
        else:
            values.append((_I[name], value))
    return values, buckets


class _Row:
    """A base or grouping row of a batch: dense integer columns and sketch buckets."""

    __slots__ = ("sketches", "values")

    def __init__(self) -> None:
        self.values = [0] * _N
        self.sketches: dict[str, dict[int, int]] = {}

    def add(self, values: list[tuple[int, int]], buckets: list[tuple[str, int]]) -> None:
        vals = self.values
        for index, value in values:
            vals[index] += value
        for name, key in buckets:
            bins = self.sketches.get(name)
            if bins is None:
                self.sketches[name] = {key: 1}
            else:
                bins[key] = bins.get(key, 0) + 1

    def merge(self, other: _Row) -> None:
        self.values = list(map(_add, self.values, other.values))
        for name, add in other.sketches.items():
            bins = self.sketches.get(name)
            if bins is None:
                self.sketches[name] = dict(add)
            else:
                for k, c in add.items():
                    bins[k] = bins.get(k, 0) + c


def _base_keys(key: CellKey) -> tuple[CellKey, CellKey, CellKey, CellKey]:
    minute, lag, team, channel, region, priority, segment = key
    return (
        (minute, lag, team, channel, "", "", ""),
        (minute, lag, "", "", region, "", ""),
        (minute, lag, "", "", "", priority, ""),
        (minute, lag, "", "", "", "", segment),
    )


def grouping_rows(rows: dict[CellKey, _Row]) -> dict[CellKey, _Row]:
    """The batch's base rows plus the groupings derived from the (team, channel) rows.

    '' marks a dimension a row does not keep (contract values are never empty), so a row's
    key says its grouping: all blank is ``overall``, (team, channel) ``team_channel``, one
    dimension its own grouping. Each event was added to its four *base* rows ((team,
    channel), region, priority, segment); overall, team and channel are sums of the
    (team, channel) rows. The sink receives one row per stored row.
    """
    out = dict(rows)
    for (minute, lag, team, channel, region, _p, _s), row in rows.items():
        if team and not region:
            for key in (
                (minute, lag, "", "", "", "", ""),
                (minute, lag, team, "", "", "", ""),
                (minute, lag, "", channel, "", "", ""),
            ):
                target = out.get(key)
                if target is None:
                    target = out[key] = _Row()
                target.merge(row)
    return out


class BatchDelta:
    """Accumulates one batch of one partition (the compute side)."""

    __slots__ = ("facts", "latency", "partition", "rows", "verdicts")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.rows: dict[CellKey, _Row] = {}  # base rows of the batch
        # One conversation_facts row per conversation the batch changed (FACT_FIELDS order).
        self.facts: list[list[Any]] = []
        self.verdicts: dict[int, list[int]] = {}  # arrival minute -> counts in VERDICTS order
        self.latency: dict[int, int] = {}  # Kafka timestamp / 100 ms -> accepted events

    def add(self, key: CellKey, increments: dict[str, int]) -> None:
        """One accepted event's contribution at (minute, lag, team, channel, ...)."""
        values, buckets = _prepare(increments)
        rows = self.rows
        for base in _base_keys(key):
            row = rows.get(base)
            if row is None:
                row = rows[base] = _Row()
            row.add(values, buckets)

    def count(self, timestamp_ms: int, verdict: str) -> None:
        minute = timestamp_ms // 60_000
        row = self.verdicts.get(minute)
        if row is None:
            row = self.verdicts[minute] = [0] * len(VERDICTS)
        row[_VERDICT_INDEX[verdict]] += 1
        if verdict == "accepted":
            bucket = timestamp_ms // _LATENCY_BUCKET_MS
            self.latency[bucket] = self.latency.get(bucket, 0) + 1

    def is_empty(self) -> bool:
        return not self.rows and not self.verdicts

    def encode(
        self,
        *,
        first_offset: int,
        offset: int,
        watermark_us: int | None,
        progress_us: int | None,
        idle: bool = False,
        max_cells: int = 2000,
    ) -> list[bytes]:
        """The delta messages of this batch (at least one: progress travels with it)."""
        groups: dict[tuple[int, int], list[Any]] = {}
        for key, row in grouping_rows(self.rows).items():
            # A sketch travels as a flat [bucket, count, bucket, count, ...] list.
            wire = (
                {n: [x for kc in sorted(b.items()) for x in kc] for n, b in row.sketches.items()}
                if row.sketches
                else None
            )
            groups.setdefault((key[0], key[1]), []).append([*key, row.values, wire])
        chunks: list[list[Any]] = [[]]
        for rows in groups.values():
            if chunks[-1] and len(chunks[-1]) + len(rows) > max_cells:
                chunks.append([])
            chunks[-1].extend(rows)
        head = {
            "v": DELTA_FORMAT,
            "p": self.partition,
            "o0": first_offset,
            "o": offset,
            "wm": watermark_us,
            "prog": progress_us,
            "idle": idle,
        }
        out = []
        for i, rows in enumerate(chunks):
            body: dict[str, Any] = {**head, "rows": rows}
            if i == 0:
                body["verdicts"] = [[m, *c] for m, c in self.verdicts.items()]
                body["lat"] = [[b * _LATENCY_BUCKET_MS, n] for b, n in self.latency.items()]
            out.append(orjson.dumps(body))
        facts = self.facts
        for i in range(0, len(facts), max_cells):
            out.append(orjson.dumps({**head, "rows": [], "facts": facts[i : i + max_cells]}))
        return out


@dataclass(slots=True)
class DeltaMessage:
    """One decoded delta message (the sink side)."""

    partition: int
    first_offset: int
    offset: int
    watermark_us: int | None
    progress_us: int | None
    idle: bool
    cells: list[tuple[CellKey, CellValues]] = field(default_factory=list)
    verdicts: list[tuple[int, list[int]]] = field(default_factory=list)
    # (Kafka timestamp in ms, rounded down to 100 ms; accepted events) for visibility latency
    latency: list[tuple[int, int]] = field(default_factory=list)
    facts: list[list[Any]] = field(default_factory=list)


def decode_delta(raw: bytes) -> DeltaMessage:
    """Inverse of :meth:`BatchDelta.encode` (one message). Raises ValueError if foreign."""
    data = orjson.loads(raw)
    if not isinstance(data, dict) or data.get("v") != DELTA_FORMAT:
        raise ValueError(f"not a cxpulse delta (format {DELTA_FORMAT}) message")
    cells: list[tuple[CellKey, CellValues]] = []
    for minute, lag, team, channel, region, priority, segment, dense, wire in data["rows"]:
        key: CellKey = (minute, lag, team, channel, region, priority, segment)
        sketches = (
            {n: dict(zip(flat[::2], flat[1::2], strict=True)) for n, flat in wire.items()}
            if wire
            else None
        )
        cells.append((key, (dense, sketches)))
    verdicts = [(row[0], list(row[1:])) for row in data.get("verdicts", ())]
    latency = [(t, n) for t, n in data.get("lat", ())]
    return DeltaMessage(
        partition=data["p"],
        first_offset=data["o0"],
        offset=data["o"],
        watermark_us=data["wm"],
        progress_us=data["prog"],
        idle=bool(data["idle"]),
        cells=cells,
        verdicts=verdicts,
        latency=latency,
        facts=data.get("facts", []),
    )

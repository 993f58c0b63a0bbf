"""Minute deltas: what one batch of one source partition adds to the KPI minutes.

The compute role folds a batch's contributions per (minute, lag_minutes, team, channel,
region, priority, segment) into cells of integer counters, microsecond sums and sketch
buckets (the columns of ``kpi_minute_partials``), counts verdicts per arrival
minute, and publishes the result inside the batch's Kafka transaction as one or more
*delta messages* on the source partition's number. The sink expands each cell into the
default groupings and folds it into stored minute rows whose ``version`` is the highest
source offset folded in: a delta whose ``offset`` is not above a row's version is already
inside that row (a re-read after a sink restart), which makes the sink idempotent.

Why per (minute, lag): ``lag_minutes`` (partition event-time progress minute at
processing minus the sample's minute) lets a reader select exactly the samples known when
a minute closed (``minute + lag_minutes <= C``), so alert evaluation replays identically.

A big batch is split into several messages, but never inside one (minute, lag): every
grouping row is fed by cells of a single message, so all its updates of a batch arrive
together and the per-row version check stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.partials import SKETCH_FIELDS
from streams.rollup import CellValues, cell_values
from streams.sketch import QuantileSketch

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


_TIME_SAMPLES = ("frt", "reply", "resolution")
_SECOND = 1_000_000


def _seconds(us: int) -> float:
    # As MinutePartial records a duration: whole microseconds, negatives as zero.
    return round(us / _SECOND, 6) if us > 0 else 0.0


class _Cell:
    """One (minute, lag, dims) of a batch: plain counters and raw samples until encoded.

    Cheaper per event than a MinutePartial (no sketches until the end); ``to_json`` holds
    exactly what a MinutePartial fed the same increments stores (tests compare the two).
    """

    __slots__ = ("counts", "samples")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.samples: dict[str, list[int]] = {}

    def add(self, inc: dict[str, int]) -> None:
        counts = self.counts
        for name, value in inc.items():
            if name in _TIME_SAMPLES:
                bucket = self.samples.get(name)
                if bucket is None:
                    self.samples[name] = [value]
                else:
                    bucket.append(value)
            elif name == "csat":
                counts["csat_responses"] = counts.get("csat_responses", 0) + 1
                counts["csat_sum"] = counts.get("csat_sum", 0) + value
                if value >= 4:
                    counts["csat_satisfied"] = counts.get("csat_satisfied", 0) + 1
            elif name == "nps":
                counts["nps_responses"] = counts.get("nps_responses", 0) + 1
                if value >= 9:
                    counts["nps_promoters"] = counts.get("nps_promoters", 0) + 1
                elif value <= 6:
                    counts["nps_detractors"] = counts.get("nps_detractors", 0) + 1
            elif name == "ces":
                counts["ces_responses"] = counts.get("ces_responses", 0) + 1
                counts["ces_sum"] = counts.get("ces_sum", 0) + value
                if value >= 5:
                    counts["ces_easy"] = counts.get("ces_easy", 0) + 1
            else:
                counts[name] = counts.get(name, 0) + value

    def finish(self) -> dict[str, Any]:
        """Non-zero stored columns (``kpi_minute_partials`` names; sums in microseconds;
        sketches as ``{bucket: count}``)."""
        out: dict[str, Any] = dict(self.counts)
        for kind, values in self.samples.items():
            out[f"{kind}_count"] = len(values)
            out[f"{kind}_sum_us"] = sum(v if v > 0 else 0 for v in values)
            sketch = QuantileSketch()
            for v in values:
                sketch.add(_seconds(v))
            out[f"{kind}_sketch"] = sketch.to_map()
        return out


def _merge_into(target: dict[str, Any], cell: dict[str, Any]) -> None:
    for name, value in cell.items():
        if name in _SKETCHES:
            bins = target.get(name)
            if bins is None:
                target[name] = dict(value)
            else:
                for k, c in value.items():
                    bins[k] = bins.get(k, 0) + c
        else:
            target[name] = target.get(name, 0) + value


def grouping_rows(cells: dict[CellKey, _Cell]) -> dict[CellKey, dict[str, Any]]:
    """Fine cells rolled up into the rows of the seven groupings, for this batch.

    '' marks a dimension a grouping does not keep (contract values are never empty), so a
    row's key says its grouping: all blank is ``overall``, (team, channel) ``team_channel``,
    one dimension its own grouping. Fine cells are first folded into the four *base* rows
    ((team, channel), region, priority, segment), and overall, team and channel are derived
    from the (team, channel) rows: each event is touched once, each base row a few times,
    and the sink receives one row per stored row, so its work per event stays small.
    """
    base: dict[CellKey, dict[str, Any]] = {}
    for (minute, lag, team, channel, region, priority, segment), cell in cells.items():
        values = cell.finish()
        for key in (
            (minute, lag, team, channel, "", "", ""),
            (minute, lag, "", "", region, "", ""),
            (minute, lag, "", "", "", priority, ""),
            (minute, lag, "", "", "", "", segment),
        ):
            _merge_copy(base, key, values)
    out = dict(base)
    for (minute, lag, team, channel, region, _p, _s), values in base.items():
        if team and not region:  # a (team, channel) row
            _merge_copy(out, (minute, lag, "", "", "", "", ""), values)
            _merge_copy(out, (minute, lag, team, "", "", "", ""), values)
            _merge_copy(out, (minute, lag, "", channel, "", "", ""), values)
    return out


def _merge_copy(out: dict[CellKey, dict[str, Any]], key: CellKey, values: dict[str, Any]) -> None:
    target = out.get(key)
    if target is None:
        out[key] = {k: (dict(v) if k in _SKETCHES else v) for k, v in values.items()}
    else:
        _merge_into(target, values)


class BatchDelta:
    """Accumulates one batch of one partition (the compute side)."""

    __slots__ = ("cells", "facts", "latency", "partition", "verdicts")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.cells: dict[CellKey, _Cell] = {}
        # One conversation_facts row per conversation the batch changed (FACT_FIELDS order).
        self.facts: list[list[Any]] = []
        self.verdicts: dict[int, list[int]] = {}  # arrival minute -> counts in VERDICTS order
        self.latency: dict[int, int] = {}  # Kafka timestamp / 100 ms -> accepted events

    def add(self, key: CellKey, increments: dict[str, int]) -> None:
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = _Cell()
        cell.add(increments)

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
        return not self.cells and not self.verdicts

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
        for key, values in grouping_rows(self.cells).items():
            dense, sketches = cell_values(values)
            # A sketch travels as a flat [bucket, count, bucket, count, ...] list.
            wire = (
                {n: [x for kc in sorted(b.items()) for x in kc] for n, b in sketches.items()}
                if sketches
                else None
            )
            groups.setdefault((key[0], key[1]), []).append([*key, dense, wire])
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

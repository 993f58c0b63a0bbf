"""Per-minute partial aggregates and the KPI formulas computed from them.

A :class:`MinutePartial` holds only counts, sums and sketches, so any set of minutes (a
rolling window, the same minute from several workers) merges into another partial by
addition; every KPI is computed at read time from the merged partial. This is how the
definitions make rolling windows "sums of buckets" with exact counts and sums.

Exactness of the float sums: event times are truncated to microseconds, so every duration
is a whole number of microseconds. Durations are recorded and time sums are merged
rounded to the microsecond, which makes merging bit-identical in any order and grouping
as long as a sum stays below about 1.5e9 s (47 years of waiting); beyond that float64
cannot hold microseconds and sums are exact to float precision only. Survey score sums
are integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Self

from streams.sketch import QuantileSketch

__all__ = [
    "CLICKHOUSE_TYPES",
    "COUNT_FIELDS",
    "KPI_NAMES",
    "PARTIAL_COLUMNS",
    "PERCENTILES",
    "SKETCH_FIELDS",
    "SUM_FIELDS",
    "TIME_SUM_FIELDS",
    "MinutePartial",
    "merge_all",
    "rolling",
]

# Rounding unit of durations and time sums: 6 decimals = microseconds (see module doc).
_SECOND_DECIMALS: Final = 6

# (label, q) of the percentiles reported for every sketch.
PERCENTILES: Final[tuple[tuple[str, float], ...]] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p95", 0.95),
    ("p99", 0.99),
)
_QS: Final = tuple(q for _, q in PERCENTILES)

# Survey classification, from the KPI definitions.
_CSAT_RANGE: Final = (1, 5)
_CSAT_SATISFIED_MIN: Final = 4
_NPS_RANGE: Final = (0, 10)
_NPS_PROMOTER_MIN: Final = 9
_NPS_DETRACTOR_MAX: Final = 6
_CES_RANGE: Final = (1, 7)
_CES_EASY_MIN: Final = 5


def _sum_seconds(a: float, b: float) -> float:
    """Order-independent sum of two microsecond-valued second counts (see module doc)."""
    return round(a + b, _SECOND_DECIMALS)


def _duration(seconds: float) -> float:
    """A duration sample: negatives count as zero, sub-microsecond noise is dropped."""
    if seconds != seconds:
        raise ValueError("duration is NaN")
    return round(seconds, _SECOND_DECIMALS) if seconds > 0 else 0.0


def _check_score(kind: str, score: int, bounds: tuple[int, int]) -> None:
    if isinstance(score, bool) or not isinstance(score, int):
        raise TypeError(f"{kind} score must be an int, got {score!r}")
    if not bounds[0] <= score <= bounds[1]:
        raise ValueError(f"{kind} score {score} outside {bounds[0]}..{bounds[1]}")


def _ratio(numerator: float, denominator: float, scale: float = 1.0) -> float | None:
    """``scale * numerator / denominator``; None for an empty denominator, never 0."""
    if not denominator:
        return None
    return scale * numerator / denominator


@dataclass(slots=True)
class MinutePartial:
    """Counts, sums and sketches of one minute (or of any merged set of minutes)."""

    opened: int = 0
    resolutions: int = 0
    reopens: int = 0
    one_touch_resolutions: int = 0
    frt_count: int = 0
    frt_sum: float = 0.0
    frt_breaches: int = 0
    frt_sketch: QuantileSketch = field(default_factory=QuantileSketch)
    reply_count: int = 0
    reply_sum: float = 0.0
    reply_sketch: QuantileSketch = field(default_factory=QuantileSketch)
    resolution_count: int = 0
    resolution_sum: float = 0.0
    resolution_sketch: QuantileSketch = field(default_factory=QuantileSketch)
    csat_responses: int = 0
    csat_sum: int = 0
    csat_satisfied: int = 0
    nps_responses: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0
    ces_responses: int = 0
    ces_sum: int = 0
    ces_easy: int = 0
    messages_customer: int = 0
    messages_agent_human: int = 0
    messages_agent_bot: int = 0
    events: int = 0

    # -- recording samples (the classification rules live here, next to the formulas) --

    def add_frt(self, seconds: float, breach: bool) -> None:
        """One first-response-time sample; ``breach`` = strictly above its SLA target."""
        seconds = _duration(seconds)
        self.frt_count += 1
        self.frt_sum = _sum_seconds(self.frt_sum, seconds)
        self.frt_breaches += bool(breach)
        self.frt_sketch.add(seconds)

    def add_reply(self, seconds: float) -> None:
        """One reply-time sample (a closed wait after the first of its cycle)."""
        seconds = _duration(seconds)
        self.reply_count += 1
        self.reply_sum = _sum_seconds(self.reply_sum, seconds)
        self.reply_sketch.add(seconds)

    def add_resolution_time(self, seconds: float) -> None:
        """One resolution-time sample (resolve minus the first open)."""
        seconds = _duration(seconds)
        self.resolution_count += 1
        self.resolution_sum = _sum_seconds(self.resolution_sum, seconds)
        self.resolution_sketch.add(seconds)

    def add_csat(self, score: int) -> None:
        """One CSAT answer (1-5); 4 and 5 are satisfied."""
        _check_score("CSAT", score, _CSAT_RANGE)
        self.csat_responses += 1
        self.csat_sum += score
        self.csat_satisfied += score >= _CSAT_SATISFIED_MIN

    def add_nps(self, score: int) -> None:
        """One NPS answer (0-10); 9-10 promote, 0-6 detract."""
        _check_score("NPS", score, _NPS_RANGE)
        self.nps_responses += 1
        self.nps_promoters += score >= _NPS_PROMOTER_MIN
        self.nps_detractors += score <= _NPS_DETRACTOR_MAX

    def add_ces(self, score: int) -> None:
        """One CES answer (1-7, higher is easier); 5-7 are easy."""
        _check_score("CES", score, _CES_RANGE)
        self.ces_responses += 1
        self.ces_sum += score
        self.ces_easy += score >= _CES_EASY_MIN

    # -- merging --

    def merge(self, other: MinutePartial) -> None:
        """Add ``other`` into this partial in place (``other`` is unchanged)."""
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in TIME_SUM_FIELDS:
            setattr(self, name, _sum_seconds(getattr(self, name), getattr(other, name)))
        for name in SKETCH_FIELDS:
            getattr(self, name).merge(getattr(other, name))

    def copy(self) -> MinutePartial:
        """Deep copy: merging into it leaves this partial and its sketches unchanged."""
        clone = MinutePartial()
        clone.merge(self)
        return clone

    def is_empty(self) -> bool:
        """True when nothing was recorded (such rows need not be stored)."""
        return not any(getattr(self, name) for name in COUNT_FIELDS + TIME_SUM_FIELDS) and all(
            getattr(self, name).count == 0 for name in SKETCH_FIELDS
        )

    # -- storage --

    def to_row(self) -> dict[str, Any]:
        """Column values in ``PARTIAL_COLUMNS`` order; sketches as ``{key: count}``."""
        row: dict[str, Any] = {}
        for name in PARTIAL_COLUMNS:
            value = getattr(self, name)
            row[name] = value.to_map() if name in _SKETCH_SET else value
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Inverse of ``to_row``; other keys (minute, grouping columns) are ignored."""
        missing = [name for name in PARTIAL_COLUMNS if name not in row]
        if missing:
            raise KeyError(f"row lacks partial columns: {', '.join(missing)}")
        values: dict[str, Any] = {}
        for name in PARTIAL_COLUMNS:
            raw = row[name]
            if name in _SKETCH_SET:
                values[name] = QuantileSketch.from_map(raw)
            elif name in _TIME_SUM_SET:
                values[name] = float(raw)
            else:
                values[name] = int(raw)
        return cls(**values)

    # -- KPIs --

    def kpis(self) -> dict[str, float | None]:
        """Every KPI of the definitions page plus the raw counts; None = no denominator."""
        out: dict[str, float | None] = {}
        for prefix in ("frt", "reply", "resolution"):
            sketch: QuantileSketch = getattr(self, f"{prefix}_sketch")
            for (label, _), value in zip(PERCENTILES, sketch.quantiles(_QS), strict=True):
                out[f"{prefix}_{label}"] = value
            out[f"{prefix}_avg"] = _ratio(
                getattr(self, f"{prefix}_sum"), getattr(self, f"{prefix}_count")
            )
        out["frt_sla_breach_rate"] = _ratio(self.frt_breaches, self.frt_count)
        out["resolution_rate"] = _ratio(self.resolutions, self.opened)
        out["one_touch_rate"] = _ratio(self.one_touch_resolutions, self.resolutions)
        out["reopen_rate"] = _ratio(self.reopens, self.resolutions)
        out["csat_pct"] = _ratio(self.csat_satisfied, self.csat_responses, 100.0)
        out["csat_avg"] = _ratio(self.csat_sum, self.csat_responses)
        out["nps"] = _ratio(self.nps_promoters - self.nps_detractors, self.nps_responses, 100.0)
        out["ces_avg"] = _ratio(self.ces_sum, self.ces_responses)
        out["ces_easy_pct"] = _ratio(self.ces_easy, self.ces_responses, 100.0)
        for name in _RAW_COUNTS:
            out[name] = getattr(self, name)
        return out


PARTIAL_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in fields(MinutePartial))
SKETCH_FIELDS: Final[tuple[str, ...]] = tuple(n for n in PARTIAL_COLUMNS if n.endswith("_sketch"))
# Float seconds, merged with microsecond rounding.
TIME_SUM_FIELDS: Final[tuple[str, ...]] = ("frt_sum", "reply_sum", "resolution_sum")
# All sums (time sums in seconds, survey score sums as integers).
SUM_FIELDS: Final[tuple[str, ...]] = tuple(n for n in PARTIAL_COLUMNS if n.endswith("_sum"))
# Integer columns merged by plain addition (includes the integer score sums).
COUNT_FIELDS: Final[tuple[str, ...]] = tuple(
    n for n in PARTIAL_COLUMNS if n not in SKETCH_FIELDS and n not in TIME_SUM_FIELDS
)
_RAW_COUNTS: Final = tuple(n for n in COUNT_FIELDS if n not in SUM_FIELDS)
_SKETCH_SET: Final = frozenset(SKETCH_FIELDS)
_TIME_SUM_SET: Final = frozenset(TIME_SUM_FIELDS)

# Column types for the ClickHouse sink; all merge by addition (SummingMergeTree / sumMap).
CLICKHOUSE_TYPES: Final[dict[str, str]] = {
    name: (
        "Map(Int16, UInt64)"
        if name in _SKETCH_SET
        else "Float64"
        if name in _TIME_SUM_SET
        else "UInt64"
    )
    for name in PARTIAL_COLUMNS
}

KPI_NAMES: Final[tuple[str, ...]] = tuple(MinutePartial().kpis())


def merge_all(partials: Iterable[MinutePartial]) -> MinutePartial:
    """A new partial holding the sum of ``partials`` (which are left unchanged)."""
    total = MinutePartial()
    for partial in partials:
        total.merge(partial)
    return total


def rolling(minutes: Mapping[int, MinutePartial], end_minute: int, size: int) -> MinutePartial:
    """Merge of the ``size``-minute window ending at ``end_minute``: minutes E-N+1 .. E.

    Minutes are integer minutes since the Unix epoch (UTC); absent minutes are empty.
    """
    if size < 1:
        raise ValueError(f"window size must be >= 1 minute, got {size}")
    first = end_minute - size + 1
    if len(minutes) < size:  # sparse: scan what exists instead of every minute
        return merge_all(p for m, p in sorted(minutes.items()) if first <= m <= end_minute)
    return merge_all(minutes[m] for m in range(first, end_minute + 1) if m in minutes)

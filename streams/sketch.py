"""DDSketch-style mergeable quantile sketch for response, reply and resolution times.

Percentiles must be mergeable across minutes and workers (see "Windows and exactness" in
the KPI definitions), so a sample is kept only as a count in a logarithmic bucket. Every
bucket ``k`` covers ``(GAMMA**(k-1), GAMMA**k]`` and is reported as one representative
value that lies within ``RELATIVE_ACCURACY`` of anything in it. Buckets are added up key
by key, which makes merging exact, associative and commutative: the sketch of concatenated
data equals the merge of the sketches.

``bucket_key`` / ``bucket_value`` are the contract with ClickHouse, which stores a sketch
as ``Map(Int16, UInt64)`` and reads quantiles with :func:`quantile_sql`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Self

__all__ = [
    "GAMMA",
    "MAX_KEY",
    "MIN_VALUE",
    "RELATIVE_ACCURACY",
    "ZERO_KEY",
    "QuantileSketch",
    "bucket_key",
    "bucket_value",
    "quantile_sql",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
# Seconds. Durations are whole microseconds, so the smallest non-zero one (1 us) keeps its
# 1% accuracy; only 0 (and negatives, clamped to 0) land in the zero bucket.
MIN_VALUE = 5e-7
# Int16 minimum; cannot collide with a real key (values > MIN_VALUE give keys >= -725).
ZERO_KEY = -32768
# Int16 maximum; values too large for it (about 1e284 s and above, or inf) are clamped.
MAX_KEY = 32767

# Division by the precomputed logarithm is bit-identical to ``log(value) / log(GAMMA)``;
# multiplying by its reciprocal is not, and would move some values on a bucket edge.
_LOG_GAMMA = math.log(GAMMA)
# Module-level aliases: a global lookup is cheaper than math.<attr> on the hot path.
_log = math.log
_ceil = math.ceil
# One bucket below MAX_KEY so that rounding in log() can never produce MAX_KEY + 1.
_MAX_VALUE = GAMMA ** (MAX_KEY - 1)


def _edge_key(value: float) -> int:
    """Key of a value outside ``(MIN_VALUE, _MAX_VALUE]``: the slow, rare path of ``add``."""
    if value > _MAX_VALUE:
        return MAX_KEY
    if value != value:  # NaN: a bug upstream, never a duration.
        raise ValueError("cannot add NaN to a sketch")
    return ZERO_KEY


def bucket_key(value: float) -> int:
    """Bucket of ``value``: ``ceil(log(value) / log(GAMMA))``, or ``ZERO_KEY`` if tiny."""
    if MIN_VALUE < value <= _MAX_VALUE:
        return math.ceil(math.log(value) / _LOG_GAMMA)
    return _edge_key(value)


def bucket_value(key: int) -> float:
    """Representative of a bucket, within ``RELATIVE_ACCURACY`` of every value in it."""
    if key == ZERO_KEY:
        return 0.0
    return 2 * GAMMA**key / (GAMMA + 1)


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q!r}")


class QuantileSketch:
    """Counts per logarithmic bucket; ``add`` is the per-sample hot path."""

    __slots__ = ("_bins", "_count")

    def __init__(self) -> None:
        self._bins: dict[int, int] = {}
        self._count = 0

    def add(self, value: float, count: int = 1) -> None:
        """Record ``count`` samples of ``value`` (seconds)."""
        if count <= 0:
            if count == 0:
                return
            raise ValueError(f"count must be >= 0, got {count!r}")
        # bucket_key inlined: a function call costs as much as the rest of add.
        if MIN_VALUE < value <= _MAX_VALUE:
            key = _ceil(_log(value) / _LOG_GAMMA)
        else:
            key = _edge_key(value)
        bins = self._bins
        bins[key] = bins.get(key, 0) + count
        self._count += count

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s buckets into this sketch (in place; ``other`` is unchanged)."""
        bins = self._bins
        for key, count in tuple(other._bins.items()):
            bins[key] = bins.get(key, 0) + count
        self._count += other._count

    @property
    def count(self) -> int:
        """Number of samples recorded."""
        return self._count

    def quantile(self, q: float) -> float | None:
        """Representative of the first bucket whose cumulative count reaches ``q * count``.

        ``q = 0`` gives the first non-empty bucket; an empty sketch gives None.
        """
        _check_q(q)
        if not self._count:
            return None
        # Same comparison as quantile_sql: cumulative >= greatest(q * total, 1).
        rank = max(q * self._count, 1)
        cumulative = 0
        bins = self._bins
        for key in sorted(bins):
            cumulative += bins[key]
            if cumulative >= rank:
                return bucket_value(key)
        raise AssertionError("unreachable: cumulative count ends at self._count")

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Several quantiles with one sort (the KPI set asks for four at a time)."""
        qs = list(qs)
        for q in qs:
            _check_q(q)
        if not self._count:
            return [None] * len(qs)
        keys = sorted(self._bins)
        cumulative: list[int] = []
        running = 0
        for key in keys:
            running += self._bins[key]
            cumulative.append(running)
        # bisect_left finds the first cumulative count >= rank, as quantile() does.
        return [bucket_value(keys[bisect_left(cumulative, max(q * self._count, 1))]) for q in qs]

    def to_map(self) -> dict[int, int]:
        """Buckets as ``{key: count}`` sorted by key, ready for a ``Map(Int16, UInt64)``."""
        return {key: self._bins[key] for key in sorted(self._bins)}

    @classmethod
    def from_map(cls, m: Mapping[int, int]) -> Self:
        """Rebuild from ``to_map`` output or a ClickHouse map; zero counts are dropped."""
        sketch = cls()
        bins = sketch._bins
        total = 0
        for raw_key, raw_count in m.items():
            key, count = int(raw_key), int(raw_count)
            if key != raw_key or count != raw_count:
                raise ValueError(f"bucket {raw_key!r}: {raw_count!r} is not integral")
            if not ZERO_KEY <= key <= MAX_KEY:
                raise ValueError(f"bucket key {key} does not fit Int16")
            if count < 0:
                raise ValueError(f"bucket {key} has a negative count {count}")
            if count:
                bins[key] = bins.get(key, 0) + count
                total += count
        sketch._count = total
        return sketch

    def copy(self) -> Self:
        """Independent copy (merging into it leaves this sketch unchanged)."""
        clone = type(self)()
        clone._bins = dict(self._bins)
        clone._count = self._count
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return self._count == other._count and self._bins == other._bins

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __len__(self) -> int:
        """Number of non-empty buckets (not samples: see ``count``)."""
        return len(self._bins)

    def __repr__(self) -> str:
        return f"QuantileSketch(count={self._count}, buckets={len(self._bins)})"


def quantile_sql(map_expr: str, q: float) -> str:
    """ClickHouse expression equal to ``QuantileSketch.from_map(map).quantile(q)``.

    ``map_expr`` must be one already merged ``Map(Int16, UInt64)`` per row, such as
    ``sumMap(frt_sketch)`` or a column. Keys are sorted here because a stored Map keeps
    its insertion order (only sumMap's output is sorted). The result is Nullable(Float64),
    NULL when the map holds no samples. Literals are written with ``repr`` so that
    ClickHouse does the same IEEE arithmetic as Python.
    """
    _check_q(q)
    m = f"({map_expr})"
    total = f"arraySum(mapValues({m}))"
    values = (
        f"arrayMap(k -> if(k = {ZERO_KEY}, 0., 2 * pow({GAMMA!r}, k) / ({GAMMA!r} + 1)), "
        f"arraySort(mapKeys({m})))"
    )
    cumulative = f"arrayCumSum(arraySort((c, k) -> k, mapValues({m}), mapKeys({m})))"
    rank = f"greatest({float(q)!r} * {total}, 1)"
    return f"if({total} = 0, NULL, arrayFirst((v, s) -> s >= {rank}, {values}, {cumulative}))"

"""The vector the detector keeps per series and minute: counters plus coarse time histograms.

A *leaf* is one stored series the detector reads (a ``team_channel`` row, or a ``region``,
``priority`` or ``segment`` row); coarser groups (team, channel, overall) are exact sums of
``team_channel`` leaves. Each leaf and minute becomes one integer vector: the counters of
:class:`streams.partials.MinutePartial` the rules use, then the FRT and reply-time sketches
folded into ``BINS`` coarse logarithmic bins. Integers only, so every sum is exact and a
replay reproduces the same numbers bit for bit.

Bins: bin 0 holds durations up to 1 s (zero included); bin ``b >= 1`` holds sketch keys
``(STEP*(b-1), STEP*b]``, i.e. durations in ``(GAMMA**(STEP*(b-1)), GAMMA**(STEP*b)]``
seconds, about 22 % wide; the last bin also takes everything slower (about 4.3 days+).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import numpy as np

from streams.sketch import GAMMA, ZERO_KEY, bucket_key

__all__ = [
    "BINS",
    "COUNTERS",
    "HISTOGRAMS",
    "LEAF_GROUPINGS",
    "STEP",
    "WIDTH",
    "bin_of_key",
    "bin_sql",
    "column",
    "edge_log",
    "edge_seconds",
    "hist_slice",
    "vector_from_partial",
]

COUNTERS: Final[tuple[str, ...]] = (
    "opened",
    "resolutions",
    "reopens",
    "one_touch_resolutions",
    "frt_count",
    "frt_breaches",
    "reply_count",
    "csat_responses",
    "csat_satisfied",
    "nps_responses",
    "nps_promoters",
    "nps_detractors",
    "ces_responses",
    "ces_easy",
    "events",
)
HISTOGRAMS: Final[tuple[str, ...]] = ("frt", "reply")
STEP: Final = 10
BINS: Final = 66
WIDTH: Final = len(COUNTERS) + BINS * len(HISTOGRAMS)
# Stored groupings the detector reads; team, channel and overall are sums of team_channel.
LEAF_GROUPINGS: Final[tuple[str, ...]] = ("team_channel", "region", "priority", "segment")

_INDEX: Final = {name: i for i, name in enumerate(COUNTERS)}
_LOG_STEP: Final = STEP * math.log(GAMMA)


def column(name: str) -> int:
    """Index of a counter in the vector."""
    return _INDEX[name]


def hist_slice(kind: str) -> slice:
    """Columns of the ``frt`` or ``reply`` histogram."""
    start = len(COUNTERS) + BINS * HISTOGRAMS.index(kind)
    return slice(start, start + BINS)


def bin_of_key(key: int) -> int:
    """Coarse bin of a sketch bucket key (see module doc)."""
    if key <= 0:  # ZERO_KEY and every duration up to 1 s
        return 0
    return min((key - 1) // STEP + 1, BINS - 1)


def bin_of_seconds(seconds: float) -> int:
    return bin_of_key(bucket_key(seconds)) if seconds > 0 else 0


def bin_sql(map_expr: str) -> str:
    """ClickHouse: a sketch map folded into coarse bins, as ``(keys, counts)`` for sumMap."""
    return (
        f"arrayMap(k -> toUInt8(if(k <= 0, 0, least(intDiv(k - 1, {STEP}) + 1, {BINS - 1}))), "
        f"mapKeys({map_expr})), mapValues({map_expr})"
    )


def edge_log(b: np.ndarray | float) -> np.ndarray | float:
    """log(seconds) of the upper edge of bin ``b`` (bin 0 ends at 1 s, log 0)."""
    return np.asarray(b, dtype=float) * _LOG_STEP


def edge_seconds(b: int) -> float:
    return math.exp(b * _LOG_STEP)


def bins_from_map(sketch: Mapping[int, int], out: np.ndarray) -> None:
    """Add a ``{key: count}`` sketch map into the histogram ``out`` (length BINS)."""
    for key, count in sketch.items():
        if count:
            out[bin_of_key(int(key))] += int(count)


def vector_from_partial(partial: object) -> np.ndarray:
    """The leaf vector of a :class:`~streams.partials.MinutePartial` (same as the SQL path)."""
    vec = np.zeros(WIDTH, dtype=np.int64)
    for i, name in enumerate(COUNTERS):
        vec[i] = getattr(partial, name)
    for kind in HISTOGRAMS:
        sketch = getattr(partial, f"{kind}_sketch")
        bins_from_map(sketch.to_map(), vec[hist_slice(kind)])
    return vec


assert bin_of_key(ZERO_KEY) == 0

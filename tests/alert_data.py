"""Synthetic minute partials with injected drops, for the alert evaluator tests.

Rows are what the sink writes to ``kpi_minute_partials`` (``team_channel`` rows, several
source partitions, some samples late: ``lag_minutes > 0``), built from real
``MinutePartial`` objects, plus ``source_progress`` rows that close minutes.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streams.alerts.layout import vector_from_partial
from streams.partials import PARTIAL_COLUMNS, SKETCH_FIELDS, TIME_SUM_FIELDS, MinutePartial

TEAMS = ("billing", "tech")
CHANNELS = ("chat", "email")
PARTITIONS = 2
_STORED = tuple(f"{c}_us" if c in TIME_SUM_FIELDS else c for c in PARTIAL_COLUMNS)
COLUMNS = ("source_partition", "grouping", "team", "channel", "region", "priority", "segment",
           "minute", "lag_minutes", "version", *_STORED)  # fmt: skip

RULES = """
defaults:
  windows: [15m, 30m, 1h]
  baseline: {kind: trailing, span: 3h}
  min_count: 15
  min_baseline: 60
  alpha: 1.0e-5
  for: 1m
  resolve_after: 5m
rules:
  - name: csat_drop
    kpi: csat_pct
    groupings: [team]
    severity: page
    margin: 3
  - name: frt_slowdown
    kpi: frt_p50
    groupings: [team, team_channel]
    margin: 1.2
"""


@dataclass
class Drop:
    kpi: str  # csat | frt
    team: str
    start: int  # minute offset
    end: int
    value: float  # csat: satisfied share; frt: factor


@dataclass
class Synthetic:
    start: int  # absolute minute of offset 0
    rows: list[tuple[int, str, str, int, int, MinutePartial]] = field(default_factory=list)

    def insert(self, store: Any) -> None:
        """Write the rows as the sink would (time sums in microseconds)."""
        cols: list[list[Any]] = [[] for _ in COLUMNS]
        for version, (p, team, channel, minute, lag, part) in enumerate(self.rows, 1):
            at = datetime.fromtimestamp(minute * 60, tz=UTC)
            values: list[Any] = [p, "team_channel", team, channel, "", "", "", at, lag, version]
            for name in PARTIAL_COLUMNS:
                v = getattr(part, name)
                if name in SKETCH_FIELDS:
                    v = v.to_map()
                elif name in TIME_SUM_FIELDS:
                    v = round(v * 1_000_000)
                values.append(v)
            for c, v in zip(cols, values, strict=True):
                c.append(v)
        store.insert("kpi_minute_partials", cols, COLUMNS)

    def known_rows(self) -> dict[int, list[tuple[tuple[str, ...], int, np.ndarray]]]:
        """Engine input: rows by the minute they become known (partitions summed)."""
        acc: dict[tuple[int, tuple[str, ...], int], np.ndarray] = {}
        for _p, team, channel, minute, lag, part in self.rows:
            key = (minute + lag, ("team_channel", team, channel, "", "", ""), minute)
            vec = vector_from_partial(part)
            acc[key] = acc[key] + vec if key in acc else vec
        out: dict[int, list] = defaultdict(list)
        for (known, leaf, minute), vec in sorted(acc.items()):
            out[known].append((leaf, minute, vec))
        return out

    @property
    def last_minute(self) -> int:
        return max(m + lag for _, _, _, m, lag, _ in self.rows)


def synthetic(
    minutes: int, drops: tuple[Drop, ...] = (), seed: int = 1, start: int | None = None
) -> Synthetic:
    """``minutes`` minutes ending about now (so no TTL drops them) for 2 teams x 2 channels."""
    rng = random.Random(seed)
    if start is None:
        start = int(datetime.now(UTC).timestamp()) // 60 - minutes - 60
    data = Synthetic(start)
    medians = {"chat": 60.0, "email": 3600.0}
    for offset in range(minutes):
        minute = start + offset
        for team in TEAMS:
            sat, factor = 0.9, 1.0
            for d in drops:
                if d.team == team and d.start <= offset < d.end:
                    sat = d.value if d.kpi == "csat" else sat
                    factor = d.value if d.kpi == "frt" else factor
            for channel in CHANNELS:
                per_partition = [MinutePartial() for _ in range(PARTITIONS)]
                late = MinutePartial()
                for _ in range(_poisson(rng, 1.2)):
                    per_partition[rng.randrange(PARTITIONS)].add_csat(
                        5 if rng.random() < sat else 2
                    )
                for _ in range(_poisson(rng, 2.0)):
                    seconds = factor * medians[channel] * math.exp(rng.gauss(0.0, 1.0))
                    target = (
                        late if rng.random() < 0.05 else per_partition[rng.randrange(PARTITIONS)]
                    )
                    target.add_frt(seconds, False)
                    target.events += 1
                for p, part in enumerate(per_partition):
                    if not part.is_empty():
                        data.rows.append((p, team, channel, minute, 0, part))
                if not late.is_empty():
                    data.rows.append((0, team, channel, minute, rng.randint(1, 4), late))
    return data


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def insert_progress(store: Any, closed: int, partitions: int = PARTITIONS) -> None:
    """Every partition's progress at the start of ``closed + 1``: minute ``closed`` closes."""
    at = datetime.fromtimestamp((closed + 1) * 60, tz=UTC)
    store.insert(
        "source_progress",
        [list(range(partitions)), [at] * partitions, [at] * partitions, [0] * partitions,
         [0] * partitions, [(closed + 1) * 60_000_000] * partitions],
        ("source_partition", "watermark", "progress", "idle", "source_offset", "version"),
    )  # fmt: skip

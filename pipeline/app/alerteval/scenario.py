"""Simulated histories for the detector evaluation: who, how busy, and what goes wrong.

Per seed: three teams of about 100, 500 and 2,000 conversations a day, slow drift on,
a warm-up week (baselines fill), then eight weeks alternating incident weeks and quiet
weeks. An incident week gives every team three incidents, at least 12 hours apart,
drawn from every KPI family the simulator can break, in several sizes and lengths, on
the team or on one of its channels. Everything is a pure function of the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pipeline.simulator import Incident, SimulationParams
from pipeline.simulator.drift import DriftParams
from pipeline.simulator.seasonality import mean_season_factor, week_table

__all__ = ["TEAMS", "Scenario", "build"]

# team -> conversations per day (the issue: ~100 to ~2,000)
TEAMS: dict[str, int] = {"small": 100, "medium": 500, "large": 2000}
_MONDAY = datetime.fromisoformat("2026-01-05T00:00:00+00:00")
_WEEK = timedelta(days=7)
# kpi -> (weight, sizes, durations in hours)
_FAMILIES: dict[str, tuple[float, tuple[float, ...], tuple[float, ...]]] = {
    "csat": (0.40, (10, 15, 20, 30, 40), (4, 8, 24, 48)),  # points below baseline
    "frt": (0.34, (1.5, 2.0, 3.0, 4.0), (2, 4, 8, 24)),  # factor
    "reply_time": (0.07, (1.5, 2.0, 3.0), (2, 4, 8, 24)),
    "nps": (0.06, (25, 45), (4, 24)),  # points below baseline
    "ces": (0.05, (15, 30), (4, 24)),  # points below baseline
    "volume": (0.05, (3.0, 0.3), (1, 4)),
    "resolution_rate": (0.03, (0.5,), (4, 24)),
}
# Model baselines the targets are set from (SimulationParams defaults; CSAT after the
# breach penalty; drift moves around these).
_BASE = {"csat": 85.0, "nps": 20.0, "ces": 72.0}


@dataclass(frozen=True)
class Scenario:
    seed: int
    params: SimulationParams
    weeks: int  # evaluated weeks after the warm-up week
    quiet_weeks: tuple[int, ...]  # indices (1-based after warm-up) without incidents

    @property
    def eval_start(self) -> datetime:
        return self.params.start + _WEEK

    def week_of(self, moment: datetime) -> int:
        """0 = warm-up, 1.. = evaluated weeks."""
        return int((moment - self.params.start) / _WEEK)


def _peak_rate(per_day: float, params: SimulationParams) -> float:
    """Peak conversations/hour whose daily mean (seasonality, repeats) is ``per_day``."""
    season = mean_season_factor(week_table(params.weekend_factors))
    boost = 1.0 / (1.0 - params.repeat_contact_probability * params.resolve_probability)
    return per_day / 24.0 / season / boost


def build(seed: int, weeks: int = 8, incidents_per_team: int = 3) -> Scenario:
    rng = random.Random(f"cxpulse-alert-eval:{seed}")
    teams = tuple(TEAMS)
    base = SimulationParams(
        seed=seed,
        start=_MONDAY,
        duration=_WEEK * (weeks + 1),
        teams=teams,
        team_weights=tuple(float(v) for v in TEAMS.values()),
        drift=DriftParams(),
        late_rate=0.001,
        duplicate_rate=0.001,
    )
    params = replace(base, conversations_per_hour=_peak_rate(sum(TEAMS.values()), base))
    quiet = tuple(w for w in range(1, weeks + 1) if w % 2 == 0)
    incidents: list[Incident] = []
    names = list(_FAMILIES)
    weights = [v[0] for v in _FAMILIES.values()]
    for week in range(1, weeks + 1):
        if week in quiet:
            continue
        week_start = _MONDAY + _WEEK * week
        for team in teams:
            t = week_start + timedelta(minutes=rng.randrange(120, 1800))
            for _ in range(incidents_per_team):
                kpi = rng.choices(names, weights)[0]
                _, sizes, hours = _FAMILIES[kpi]
                size = rng.choice(sizes)
                duration = timedelta(hours=rng.choice(hours))
                if t + duration > week_start + _WEEK - timedelta(hours=6):
                    break
                channel = rng.choice(("chat", "email")) if rng.random() < 0.2 else None
                if kpi in _BASE:
                    inc = Incident(kpi, t, duration, team, channel, target=_BASE[kpi] - size)
                else:
                    inc = Incident(kpi, t, duration, team, channel, factor=size)
                incidents.append(inc)
                t += duration + timedelta(minutes=rng.randrange(720, 2400))
    return Scenario(seed, replace(params, incidents=tuple(incidents)), weeks, quiet)

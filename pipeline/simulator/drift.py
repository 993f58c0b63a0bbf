"""Slow drift: satisfaction and agent speed wander over hours and days, per team.

Real support KPIs are never flat: a team has good and bad days, a queue slowly fills over
an afternoon. A detector tuned on a flat world alarms on every such wander, so the
simulator can add it: per team, two Ornstein-Uhlenbeck processes (a slow one with a
correlation time of days, a fast one of hours), sampled hourly and interpolated, shift

- the odds of a satisfied CSAT answer, a CES "easy" answer and an NPS promoter (logit
  shift), and
- every first-response and reply wait (log-factor: ``exp(x)`` times slower).

Deterministic by seed: each team and process has its own random stream, advanced hour by
hour from the simulation start, so the drift at a time does not depend on when or how
often it is asked for. ``SimulationParams(drift=None)`` (the default) changes nothing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Drift", "DriftParams"]

_HOUR_US = 3_600_000_000


@dataclass(frozen=True, slots=True)
class DriftParams:
    """Stationary standard deviations (logit / log units) and correlation times (hours)."""

    # About +-1.5 points of CSAT and +-7 % of agent speed (one sd), over hours and days.
    satisfaction_slow_sd: float = 0.12
    satisfaction_fast_sd: float = 0.06
    speed_slow_sd: float = 0.06
    speed_fast_sd: float = 0.04
    slow_hours: float = 48.0
    fast_hours: float = 6.0

    def __post_init__(self) -> None:
        for name in (
            "satisfaction_slow_sd",
            "satisfaction_fast_sd",
            "speed_slow_sd",
            "speed_fast_sd",
        ):
            if not 0 <= getattr(self, name) <= 2:
                raise ValueError(f"drift {name} must be within 0..2")
        if not (self.slow_hours > 0 and self.fast_hours > 0):
            raise ValueError("drift correlation times must be positive hours")


class _OU:
    """Hourly knots of an OU process, generated forward on demand."""

    __slots__ = ("_a", "_knots", "_noise", "_rng")

    def __init__(self, seed: str, sd: float, hours: float) -> None:
        self._rng = random.Random(seed)
        self._a = math.exp(-1.0 / hours)
        self._noise = sd * math.sqrt(1.0 - self._a * self._a)
        self._knots = [self._rng.gauss(0.0, sd)]

    def at(self, hours: float) -> float:
        if hours <= 0:
            return self._knots[0]
        k = int(hours)
        knots = self._knots
        while len(knots) <= k + 1:
            knots.append(knots[-1] * self._a + self._noise * self._rng.gauss(0.0, 1.0))
        frac = hours - k
        return knots[k] + frac * (knots[k + 1] - knots[k])


class Drift:
    """Drift of one simulation: ``share(p, t, team)`` and ``speed(t, team)``."""

    def __init__(self, params: DriftParams, seed: int, teams: tuple[str, ...], start_us: int):
        self.start_us = start_us
        self._sat: dict[str, tuple[_OU, _OU]] = {}
        self._speed: dict[str, tuple[_OU, _OU]] = {}
        p = params
        for team in teams:
            self._sat[team] = (
                _OU(f"cxpulse-drift:{seed}:{team}:sat-slow", p.satisfaction_slow_sd, p.slow_hours),
                _OU(f"cxpulse-drift:{seed}:{team}:sat-fast", p.satisfaction_fast_sd, p.fast_hours),
            )
            self._speed[team] = (
                _OU(f"cxpulse-drift:{seed}:{team}:speed-slow", p.speed_slow_sd, p.slow_hours),
                _OU(f"cxpulse-drift:{seed}:{team}:speed-fast", p.speed_fast_sd, p.fast_hours),
            )

    def _value(self, table: dict[str, tuple[_OU, _OU]], t_us: int, team: str) -> float:
        pair = table.get(team)
        if pair is None:
            return 0.0
        hours = (t_us - self.start_us) / _HOUR_US
        return pair[0].at(hours) + pair[1].at(hours)

    def satisfaction_shift(self, t_us: int, team: str) -> float:
        """Logit shift of satisfaction at ``t_us`` (0 = the configured level)."""
        return self._value(self._sat, t_us, team)

    def share(self, p: float, t_us: int, team: str) -> float:
        """A satisfied / easy / promoter share ``p`` moved by the drift."""
        shift = self.satisfaction_shift(t_us, team)
        if p <= 0.0 or p >= 1.0 or shift == 0.0:
            return p
        x = math.log(p / (1.0 - p)) + shift
        return 1.0 / (1.0 + math.exp(-x))

    def speed(self, t_us: int, team: str) -> float:
        """Factor on agent waits at ``t_us`` (above 1: slower)."""
        return math.exp(self._value(self._speed, t_us, team))

"""Simulator drift: deterministic by seed, off by default, and of the documented size."""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import replace
from datetime import timedelta

import pytest

from pipeline.simulator import SimulationParams, simulate
from pipeline.simulator.drift import Drift, DriftParams

HOUR_US = 3_600_000_000


def test_drift_is_a_pure_function_of_seed_and_time() -> None:
    a = Drift(DriftParams(), 7, ("billing", "tech"), 0)
    b = Drift(DriftParams(), 7, ("billing", "tech"), 0)
    late = [b.speed(t * HOUR_US, "billing") for t in range(200, 0, -7)]  # asked backwards
    early = [a.speed(t * HOUR_US, "billing") for t in range(200, 0, -7)]
    assert late == early
    assert a.speed(10 * HOUR_US, "tech") != a.speed(10 * HOUR_US, "billing")
    assert Drift(DriftParams(), 8, ("billing",), 0).speed(HOUR_US, "billing") != a.speed(
        HOUR_US, "billing"
    )
    assert a.speed(HOUR_US, "nobody") == 1.0 and a.share(0.9, HOUR_US, "nobody") == 0.9


def test_drift_wanders_by_the_documented_amount() -> None:
    d = Drift(DriftParams(), 3, ("t",), 0)
    hours = range(0, 24 * 400, 3)
    logs = [math.log(d.speed(h * HOUR_US, "t")) for h in hours]
    sd = statistics.pstdev(logs)
    assert 0.04 < sd < 0.11  # about 7 % (slow 0.06, fast 0.04)
    shares = [d.share(0.88, h * HOUR_US, "t") for h in hours]
    assert 0.85 < statistics.mean(shares) < 0.91 and 0.005 < statistics.pstdev(shares) < 0.03
    # it wanders: neighbouring hours are close, distant days are not the same
    steps = [abs(a - b) for a, b in itertools.pairwise(logs)]
    assert statistics.mean(steps) < sd


def test_no_drift_changes_nothing_and_drift_changes_only_content() -> None:
    base = SimulationParams(seed=5, duration=timedelta(hours=3), conversations_per_hour=300)
    plain = [e.value for e in simulate(base)]
    assert plain == [e.value for e in simulate(replace(base, drift=None))]
    drifted = [e.value for e in simulate(replace(base, drift=DriftParams()))]
    assert drifted != plain
    assert drifted == [e.value for e in simulate(replace(base, drift=DriftParams()))]


def test_bad_drift_parameters() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.2"):
        DriftParams(speed_slow_sd=3)
    with pytest.raises(ValueError, match="DriftParams"):
        SimulationParams(drift=0.1)  # type: ignore[arg-type]
